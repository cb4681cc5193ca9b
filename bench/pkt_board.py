"""Run the pkt corpus on the emulated board and measure how late its segments come.

    python bench/pkt_board.py [--rounds 2] [--slack-ms 500] [--out DIR] [SCRIPT.pkt ...]

Boots the emulated board once (the harness's wire, pktagent on the console) and runs the
scripts (default: suites/pkt/*.pkt) `--rounds` times with a wide late allowance, so that
each script's run shows every outbound segment's offset from its script time, not only
the first that is late. Prints JSON: per script the rounds it passed with that wide
allowance and its offsets, and over all segments the offsets' median, 95th and 99th
percentile and maximum beside pkt_board_latency (the offsets include the timer wheel's
rounding of long timers, which the 12.5 % tolerance covers, so compare the median and
p95), and how late the calls began beside pkt_call_latency. Negative offsets (a segment
early) are counted apart: the allowance never covers those.
"""

from __future__ import annotations

import argparse
import glob
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from harness.oracle.bounds import CONSTANTS  # noqa: E402
from harness.pkt.command import run_on_board  # noqa: E402
from harness.pkt.script import parse_file  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("scripts", nargs="*")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--slack-ms", type=float, default=500.0)
    ap.add_argument("--board", help="an emulated board file (default: the built-in image)")
    ap.add_argument("--out", help="keep the board's artifacts here")
    args = ap.parse_args()
    paths = args.scripts or sorted(glob.glob(str(ROOT / "suites/pkt/*.pkt")))
    parsed = [parse_file(p) for p in paths] * args.rounds
    out = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="bmc-hil-pkt-bench-"))
    results = run_on_board(parsed, args.board, out, None, log=lambda m: print(m, file=sys.stderr),
                           late_slack_ns=int(args.slack_ms * 1e6))
    constant = CONSTANTS["pkt_board_latency"].value_ns
    per_script: dict[str, dict] = {}
    late, early, calls = [], [], []
    for r in results:
        name = Path(r.path).name
        d = per_script.setdefault(name, {"rounds": 0, "passed_wide": 0, "offsets_ms": [],
                                         "failures": []})
        d["rounds"] += 1
        d["passed_wide"] += r.passed
        d["offsets_ms"].append([round(o / 1e6, 2) for o in r.offsets_ns])
        if r.failure:
            d["failures"].append(f"line {r.failure.line}: {r.failure.message}; {r.failure.actual}")
        late += [o for o in r.offsets_ns if o > 0]
        calls += r.call_lates_ns
        early += [o for o in r.offsets_ns if o < 0]
    offs = np.array(late or [0], dtype=np.int64) / 1e6
    summary = {
        "scripts": len(paths), "rounds": args.rounds, "segments_late": len(late), "segments_early": len(early),
        "late_ms": {"median": float(np.median(offs)), "p95": float(np.percentile(offs, 95)),
                    "p99": float(np.percentile(offs, 99)), "max": float(offs.max())},
        "early_ms_min": min(early) / 1e6 if early else 0.0,
        "pkt_board_latency_ms": constant / 1e6,
        "call_late_ms": {"median": float(np.median(calls)) / 1e6 if calls else 0.0,
                         "p99": float(np.percentile(calls, 99)) / 1e6 if calls else 0.0,
                         "max": max(calls) / 1e6 if calls else 0.0},
        "pkt_call_latency_ms": CONSTANTS["pkt_call_latency"].value_ns / 1e6,
        "passed_wide": sum(d["passed_wide"] for d in per_script.values()),
        "runs": len(results),
    }
    print(json.dumps({"summary": summary, "per_script": per_script}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
