"""Reading the YAML files users write (board files, firmware configs, scenarios)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml


def load_yaml(path: Path, what: str, error: type[Exception]) -> Any:
    """The parsed document; `error("<path>[: line L, column C]: ...")` when it cannot be
    read or is not YAML."""
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise error(f"{path}: cannot read {what}: {exc.strerror}") from exc
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise error(f"{path}:{where}: not valid YAML: {getattr(exc, 'problem', exc)}") from exc
