"""`bmc-hil pkt`: run packetdrill-syntax scripts against a target, a line per script."""

from __future__ import annotations

import json
import sys

from .run import run_script
from .script import PktSyntaxError, parse_file
from .target import ModelTarget

__all__ = ["run_command", "BOARD_NOT_BUILT"]

EXIT_OK, EXIT_FAIL, EXIT_ERROR = 0, 1, 2
BOARD_NOT_BUILT = ("the board target is not built yet: it needs the syscall agent in the board image "
                   "(issue 10); run the scripts with --target model meanwhile")


def run_command(scripts: list[str], target: str, tolerance_usecs: int | None, as_json: bool) -> int:
    """Parse every script first (a bad one is exit 2, nothing run), then run each."""
    if target == "board":
        print(f"bmc-hil pkt: {BOARD_NOT_BUILT}", file=sys.stderr)
        return EXIT_ERROR
    if tolerance_usecs is not None and tolerance_usecs < 0:
        print("bmc-hil pkt: --tolerance-usecs must not be negative", file=sys.stderr)
        return EXIT_ERROR
    parsed = []
    for path in scripts:
        try:
            parsed.append(parse_file(path))
        except PktSyntaxError as exc:
            print(f"bmc-hil pkt: {exc}", file=sys.stderr)
            return EXIT_ERROR
    results = [run_script(script, ModelTarget(), tolerance_usecs) for script in parsed]
    if as_json:
        print(json.dumps({"target": target, "passed": sum(r.passed for r in results), "failed":
                          sum(not r.passed for r in results), "scripts": [r.to_json() for r in results]}, indent=2))
    else:
        for r in results:
            if r.passed:
                print(f"PASS {r.path} ({r.events} events, target {r.target})")
            else:
                print(f"FAIL {r.failure.describe(r.path)}")
        print(f"{sum(r.passed for r in results)}/{len(results)} scripts passed on target {target}")
    return EXIT_OK if all(r.passed for r in results) else EXIT_FAIL
