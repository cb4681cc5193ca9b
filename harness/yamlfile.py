"""Reading the YAML files users write (board files, firmware configs, scenarios).

They are read the way YAML 1.2's core schema reads them, so a value means what a person
wrote: `on`, `off`, `yes` and `no` are text (YAML 1.1 makes `power: {on: ..., off: ...}`
the keys True and False), only `true`/`false` are booleans, `52:54:00:12:34:56` is text (not
a base-60 integer), `017` is seventeen (not octal), and a date stays text. A key given
twice is an error, not a silent overwrite; a tag other than the core schema's is refused.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml
from yaml.constructor import ConstructorError, SafeConstructor

__all__ = ["load_yaml", "parse_yaml", "UserYamlLoader", "MAX_FILE_BYTES"]

# No hand-written board file, config or scenario comes near this; reading /dev/zero (or a
# capture named by mistake) must stop.
MAX_FILE_BYTES = 16 * 1024 * 1024

_CORE = "tag:yaml.org,2002:"


class UserYamlLoader(yaml.SafeLoader):
    """PyYAML's safe loader with YAML 1.2 core schema resolution (null, bool, int, float,
    str), no base-60 numbers, and duplicate keys refused."""

    # Only these implicit resolvers (the class attribute is replaced, not added to).
    yaml_implicit_resolvers: dict = {}
    yaml_constructors: dict = {}

    def construct_mapping(self, node, deep=False):
        if isinstance(node, yaml.MappingNode):
            first: dict[Any, Any] = {}
            for key_node, _ in node.value:
                if key_node.tag == _CORE + "merge":
                    continue
                key = self.construct_object(key_node, deep=True)
                try:
                    seen = first.get(key)
                except TypeError:
                    continue   # an unhashable key: the base class says so, with its place
                if seen is not None:
                    raise ConstructorError("while constructing a mapping", node.start_mark,
                                           f"found the key {key!r} twice (first on line {seen.line + 1})",
                                           key_node.start_mark)
                first[key] = key_node.start_mark
        return super().construct_mapping(node, deep=deep)


def _construct_bool(loader: UserYamlLoader, node) -> bool:
    text = loader.construct_scalar(node)
    if text in ("true", "True", "TRUE"):
        return True
    if text in ("false", "False", "FALSE"):
        return False
    raise ConstructorError(None, None, f"expected true or false, got {text!r}", node.start_mark)


def _construct_int(loader: UserYamlLoader, node) -> int:
    text = loader.construct_scalar(node)
    try:
        if re.fullmatch(r"0o[0-7]+", text):
            return int(text[2:], 8)
        if re.fullmatch(r"0x[0-9a-fA-F]+", text):
            return int(text[2:], 16)
        if re.fullmatch(r"[-+]?[0-9]+", text):
            return int(text, 10)
    except ValueError:   # more digits than int() converts (sys.get_int_max_str_digits)
        raise ConstructorError(None, None, f"an integer of {len(text)} digits is too long",
                               node.start_mark) from None
    raise ConstructorError(None, None, f"not an integer YAML 1.2 reads: {text[:40]!r}", node.start_mark)


def _construct_float(loader: UserYamlLoader, node) -> float:
    text = loader.construct_scalar(node)
    special = {".inf": float("inf"), "+.inf": float("inf"), "-.inf": float("-inf"), ".nan": float("nan")}
    if text.lower() in special:
        return special[text.lower()]
    try:
        if re.fullmatch(r"[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?", text):
            return float(text)
    except ValueError:
        pass
    raise ConstructorError(None, None, f"not a number YAML 1.2 reads: {text[:40]!r}", node.start_mark)


# The YAML 1.2 core schema's tag resolution (yaml.org/spec/1.2.2, 10.3.2), in the order
# PyYAML tries them; a plain scalar matching none of them is a string.
for _tag, _regexp, _first in (
    ("null", r"^(?:~|null|Null|NULL|)$", ["~", "n", "N", ""]),
    ("bool", r"^(?:true|True|TRUE|false|False|FALSE)$", list("tTfF")),
    ("int", r"^(?:[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+)$", list("-+0123456789")),
    ("float", r"^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?"
              r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$", list("-+0123456789.")),
    ("merge", r"^(?:<<)$", ["<"]),   # anchors and `<<: *defaults` keep working
):
    UserYamlLoader.add_implicit_resolver(_CORE + _tag, re.compile(_regexp), _first)

for _tag, _constructor in (
    ("null", SafeConstructor.construct_yaml_null),
    ("bool", _construct_bool),
    ("int", _construct_int),
    ("float", _construct_float),
    ("str", SafeConstructor.construct_yaml_str),
    ("seq", SafeConstructor.construct_yaml_seq),
    ("map", SafeConstructor.construct_yaml_map),
):
    UserYamlLoader.add_constructor(_CORE + _tag, _constructor)
UserYamlLoader.add_constructor(None, SafeConstructor.construct_undefined)


def parse_yaml(text: str) -> Any:
    """`text` read as UserYamlLoader reads it (yaml.YAMLError when it is not YAML)."""
    loader = UserYamlLoader(text)
    try:
        return loader.get_single_data()
    finally:
        loader.dispose()


def load_yaml(path: Path, what: str, error: type[Exception]) -> Any:
    """The parsed document; `error("<path>[: line L, column C]: ...")` when it cannot be
    read, is not UTF-8 text, or is not YAML."""
    try:
        with open(path, "rb") as fh:
            data = fh.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise error(f"{path}: cannot read {what}: {exc.strerror or exc}") from exc
    if len(data) > MAX_FILE_BYTES:
        raise error(f"{path}: cannot read {what}: larger than {MAX_FILE_BYTES // 2**20} MiB")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        column = exc.start - (data.rfind(b"\n", 0, exc.start) + 1) + 1
        raise error(f"{path}: line {line}, column {column}: not UTF-8 text (byte 0x{data[exc.start]:02x}); "
                    f"save the {what} as UTF-8") from exc
    try:
        return parse_yaml(text)
    except yaml.YAMLError as exc:
        raise error(f"{path}:{_where(exc, text)}: not valid YAML: {_problem(exc)}") from exc
    except RecursionError as exc:
        raise error(f"{path}: not valid YAML: nested too deeply") from exc


def _where(exc: yaml.YAMLError, text: str) -> str:
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    if mark is not None:
        return f" line {mark.line + 1}, column {mark.column + 1}"
    position = getattr(exc, "position", None)     # a ReaderError: a character YAML refuses
    if isinstance(position, int):
        line_start = text.rfind("\n", 0, position) + 1
        return f" line {text.count(chr(10), 0, position) + 1}, column {position - line_start + 1}"
    return ""


def _problem(exc: yaml.YAMLError) -> str:
    if isinstance(exc, yaml.reader.ReaderError):
        return f"the character #x{exc.character:04x} is not allowed in YAML" \
            if isinstance(exc.character, int) else str(exc.reason)
    context, problem = getattr(exc, "context", None), getattr(exc, "problem", None)
    if context and problem:
        return f"{context}, {problem}"
    return str(problem or exc)
