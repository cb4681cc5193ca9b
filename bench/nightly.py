"""The whole nightly, timed with one board and with two, side by side in one run: every
built-in scenario through the oracle, then the pytest and Robot suites, as
`bmc-hil nightly --board emulated [--board emulated]` runs them. Prints JSON: wall seconds
of each night and of its phases, its exit code and verdicts, and the ratio.

    python bench/nightly.py                          # the whole night, 1 then 2 boards
    python bench/nightly.py --boards 1 --boards 2 --boards 1
    python bench/nightly.py --scenario closed-port --pytest-args '-k closed' --robot-args '--test *Closed*'

The two nights run one after the other on the same machine, so the ratio is what counts
(these machines are noisy). Each night's folder is kept with --keep DIR.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def night(boards: int, out: Path, extra: list[str]) -> dict:
    command = [sys.executable, "-m", "harness", "nightly", *(["--board", "emulated"] * boards), "--out", str(out),
               *extra]
    t0 = time.monotonic()
    proc = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    wall = time.monotonic() - t0
    summary = json.loads((out / "summary.json").read_text()) if (out / "summary.json").exists() else {}
    scenarios = summary.get("scenarios", [])
    return {
        "boards": boards,
        "wall_s": round(wall, 1),
        "exit_code": proc.returncode,
        "scenario_phase_s": summary.get("scenario_phase_seconds"),
        "scenario_rows_s": round(sum(s["seconds"] for s in scenarios), 1),   # the boards' time, summed
        "suites_s": {s["name"]: s["seconds"] for s in summary.get("suites", [])},
        "scenarios": {s["name"]: s["status"] for s in scenarios},
        "tests": {s["name"]: {"passed": s["passed"], "failed": s["failed"] + s["errors"], "skipped": s["skipped"]}
                  for s in summary.get("suites", [])},
        "stderr_tail": proc.stderr[-1500:] if proc.returncode else "",
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--boards", type=int, action="append", help="a night with this many boards (repeat; default 1, 2)")
    ap.add_argument("--scenario", action="append", default=[], help="only these scenarios (repeat)")
    ap.add_argument("--pytest-args", default=None)
    ap.add_argument("--robot-args", default=None)
    ap.add_argument("--keep", type=Path, help="keep each night's folder here")
    args = ap.parse_args()
    extra = [a for s in args.scenario for a in ("--scenario", s)]
    if args.pytest_args is not None:
        extra += ["--pytest-args", args.pytest_args]
    if args.robot_args is not None:
        extra += ["--robot-args", args.robot_args]
    with tempfile.TemporaryDirectory(prefix="bmc-hil-bench-nightly-") as tmp:
        root = args.keep or Path(tmp)
        nights = [night(n, root / f"night-{i}-{n}-boards", extra) for i, n in enumerate(args.boards or [1, 2])]
    one = next((n for n in nights if n["boards"] == 1), None)
    out = {"nights": nights, "cpus": __import__("os").cpu_count()}
    if one is not None:
        out["speedup_vs_one_board"] = {f"{n['boards']} boards": round(one["wall_s"] / n["wall_s"], 2)
                                       for n in nights if n["boards"] > 1}
    print(json.dumps(out, indent=1))
    return 0 if all(n["exit_code"] == 0 for n in nights) else 1


if __name__ == "__main__":
    sys.exit(main())
