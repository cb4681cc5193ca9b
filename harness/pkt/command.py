"""`bmc-hil pkt`: run packetdrill-syntax scripts against a target, a line per script."""

from __future__ import annotations

import json
import sys
import threading
import time
from pathlib import Path

from harness.errors import HarnessError

from .run import run_script
from .script import PktSyntaxError, parse_file
from .target import ModelTarget

__all__ = ["run_command", "run_on_board"]

EXIT_OK, EXIT_FAIL, EXIT_ERROR = 0, 1, 2


def run_on_board(parsed: list, board_file: str | None, out: Path, tolerance_usecs: int | None,
                 log=print, late_slack_ns: int | None = None) -> list:
    """Boot the emulated board of `board_file` (the built-in one if None) on the harness's
    own wire, start pktagent on its console, and run each script in turn. The wire's
    capture (capture.pcap), the console and QEMU's log are kept in `out`."""
    from harness.board import BoardState, BoardStrategy, emulated_spec, load_board_file, timeouts_for
    from harness.board.qemu import QemuBoard
    from harness.errors import BoardError
    from harness.image import build_image

    from .board import BoardHost

    spec = load_board_file(board_file) if board_file else emulated_spec()
    if spec.kind != "emulated":
        raise BoardError(f"{spec.source}: --target board runs on an emulated board (kind: emulated): the "
                         f"harness plays the remote on its own wire, which a {spec.kind} board does not have yet")
    out.mkdir(parents=True, exist_ok=True)
    image = build_image(spec.image_config or spec.firmware, log=lambda m: None)
    board = QemuBoard(image, out, machine=spec.machine, network="wire", declared=spec.firmware, name=spec.name)
    results: list = [None] * len(parsed)
    errors: list[BaseException] = []
    # Scripts that run long in virtual time (give-ups, TIME_WAIT) run at once beside the
    # others, each in its own agent slot with its own addresses: the corpus takes about as
    # long as its longest script, not the sum.
    long_ones = {i for i, script in enumerate(parsed) if _virtual_seconds(script) > LONG_SCRIPT_S}
    with board:
        board.capture_start(out / "capture.pcap")
        BoardStrategy(board, timeouts_for(spec)).transition(BoardState.NETWORK)
        host = BoardHost(board, log, late_slack_ns)

        def run_one(i: int) -> None:
            try:
                target = host.target()
                try:
                    result = run_script(parsed[i], target, tolerance_usecs)
                    result.notes = list(target.notes)
                finally:
                    target.close()
                results[i] = result
            except BaseException as exc:  # noqa: BLE001 - re-raised in the main thread below
                errors.append(exc)

        try:
            threads = [threading.Thread(target=run_one, args=(i,), name=f"pkt {parsed[i].path}", daemon=True)
                       for i in sorted(long_ones)]
            for t in threads:
                # one at a time: each start is a burst of console requests (ARP, clock
                # readings, the first calls) that would make the others' calls late
                t.start()
                time.sleep(LONG_SCRIPT_STAGGER_S)
            for i in range(len(parsed)):
                if i not in long_ones and not errors:
                    run_one(i)
            for t in threads:
                t.join()
        finally:
            host.close()
    if errors:
        raise errors[0]
    return results


LONG_SCRIPT_S = 10.0
LONG_SCRIPT_STAGGER_S = 1.5


def _virtual_seconds(script) -> float:
    """How long the script runs on the model (virtual time): its length on a board."""
    target = ModelTarget()
    run_script(script, target)
    return target.now / 1e9


def run_command(scripts: list[str], target: str, tolerance_usecs: int | None, as_json: bool,
                board_file: str | None = None, out: str | None = None) -> int:
    """Parse every script first (a bad one is exit 2, nothing run), then run each."""
    if tolerance_usecs is not None and tolerance_usecs < 0:
        print("bmc-hil pkt: --tolerance-usecs must not be negative", file=sys.stderr)
        return EXIT_ERROR
    if board_file and target != "board":
        print("bmc-hil pkt: --board is for --target board", file=sys.stderr)
        return EXIT_ERROR
    parsed = []
    for path in scripts:
        try:
            parsed.append(parse_file(path))
        except PktSyntaxError as exc:
            print(f"bmc-hil pkt: {exc}", file=sys.stderr)
            return EXIT_ERROR
    if target == "board":
        try:
            results = run_on_board(parsed, board_file, Path(out or "pkt-out"), tolerance_usecs,
                                   log=lambda m: print(m, file=sys.stderr))
        except HarnessError as exc:
            print(f"bmc-hil pkt: {exc}", file=sys.stderr)
            return EXIT_ERROR
    else:
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
