"""Measure the latencies the oracle's bounds and tolerances rest on, on a board.

    python bench/latency.py [--board emulated] [--rounds 3] [--out DIR]

Runs handshake, board-connect-flap, data-retransmit and reboot `--rounds` times each on a
fresh board and prints JSON: per measured quantity its samples' median, 95th percentile
and maximum, beside the constant the oracle uses (harness.oracle.bounds.CONSTANTS) and
their ratio (max / constant: below 1 means the constant covers every sample).

- reply_delay: a frame the kernel sends in reply to one that arrived (SYN-ACK, RST, ARP
  reply), observed minus predicted: QEMU and slirp latency -> frame_tolerance;
- console_lag: a console line past the edge of the model's window -> console_tolerance;
- app_latency: the harness asked (board_connect) to the program's connect() (its ARP
  request or SYN), and connection established to its first write -> app_latency;
- reboot_lag: `reboot` typed to the Restarting line -> shutdown_latency + app_latency.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from harness.board import load_board_file  # noqa: E402
from harness.oracle import CONSTANTS, Tolerance  # noqa: E402
from harness.runner import check_scenario, run_scenario  # noqa: E402
from harness.scenario import load_scenario  # noqa: E402

SCENARIOS = ("handshake", "board-connect-flap", "data-retransmit", "reboot")
REPLY_KINDS = ("TCP_SYNACK", "TCP_RST", "ARP_REPLY")
CONSOLE_KINDS = ("LINK_UP", "LINK_DOWN", "RESTARTING", "WATCHDOG_DID_NOT_STOP")


def samples_of(verdict) -> dict[str, list[int]]:
    """The latencies one verdict shows (ns)."""
    out: dict[str, list[int]] = {"reply_delay": [], "console_lag": [], "app_latency": [], "reboot_lag": []}
    seen: dict[str, list[int]] = {}
    for kind, t in verdict.series["observed"]:
        seen.setdefault(kind, []).append(t)
    for kind, t, lo, hi in verdict.series["predicted"]:
        near = [o for o in seen.get(kind, []) if lo - 10**9 <= o <= hi + 10**9]
        if not near:
            continue
        o = min(near, key=lambda x: abs(x - t))
        if kind in REPLY_KINDS and lo == hi:
            out["reply_delay"].append(abs(o - t))
        elif kind in CONSOLE_KINDS:
            out["console_lag"].append(max(0, o - hi, lo - o))
    for v in verdict.learnt:
        if v.name == "app_latency":
            out["reboot_lag" if v.where.startswith("reboot") else "app_latency"].append(v.value)
    return out


def summary(values: list[int], constant_ns: int) -> dict:
    if not values:
        return {"n": 0, "constant_ms": constant_ns / 1e6}
    a = np.array(values, np.float64) / 1e6
    return {"n": len(values), "median_ms": round(float(np.median(a)), 2),
            "p95_ms": round(float(np.percentile(a, 95)), 2), "max_ms": round(float(a.max()), 2),
            "constant_ms": constant_ns / 1e6, "max_over_constant": round(float(a.max()) / (constant_ns / 1e6), 3)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--board", default="emulated")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    spec = load_board_file(args.board)
    out = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="bmc-hil-latency-"))
    samples: dict[str, list[int]] = {"reply_delay": [], "console_lag": [], "app_latency": [], "reboot_lag": []}
    verdicts = []
    for r in range(args.rounds):
        for name in SCENARIOS:
            run = run_scenario(spec, load_scenario(name), out / f"{name}-{r}", log=lambda m: None)
            v = check_scenario(spec, run, Tolerance())
            verdicts.append({"scenario": name, "round": r, "ok": v.ok, "rows": len(v.rows), "error": v.error})
            for k, xs in samples_of(v).items():
                samples[k].extend(xs)
    c = {k: v.value_ns for k, v in CONSTANTS.items()}
    result = {"board": spec.name, "rounds": args.rounds, "verdicts": verdicts,
              "reply_delay": summary(samples["reply_delay"], c["frame_tolerance"]),
              "console_lag": summary(samples["console_lag"], c["console_tolerance"]),
              "app_latency": summary(samples["app_latency"], c["app_latency"]),
              "reboot_lag": summary(samples["reboot_lag"], c["shutdown_latency"] + c["app_latency"])}
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
