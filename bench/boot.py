"""Boot-to-SSH-ready of the emulated AST2500, median over N boots, printed as JSON.

Two ways side by side, in one run on the same image:
- `strategy`: the harness's BoardStrategy (banner, shell answers, eth0 up, SSH runs a command);
- `bare`: power on and poll SSH only (what a hand-written script would do), so the
  strategy's overhead for its checks is visible as a ratio.

    python bench/boot.py [--boots 5]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

from harness.board import BoardState, BoardStrategy
from harness.board.qemu import QemuBoard
from harness.image import build_image


def boot_strategy(image, out: Path) -> dict:
    with QemuBoard(image, out) as board:
        start = time.monotonic()
        result = BoardStrategy(board).transition(BoardState.SSH)
        total = time.monotonic() - start
    return {"total_s": total, **{f"{k}_s": v for k, v in result.seconds.items()}}


def boot_bare(image, out: Path) -> dict:
    with QemuBoard(image, out) as board:
        start = time.monotonic()
        board.power_on()
        board.ssh.wait_until_up(120, interval=0.1)
        return {"total_s": time.monotonic() - start}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--boots", type=int, default=5)
    args = ap.parse_args()
    image = build_image(log=lambda m: print(m, file=sys.stderr))
    runs = {"strategy": [], "bare": []}
    with tempfile.TemporaryDirectory(prefix="bmc-hil-bench-") as tmp:
        for i in range(args.boots):  # interleaved, so load changes hit both alike
            runs["strategy"].append(boot_strategy(image, Path(tmp) / f"s{i}"))
            runs["bare"].append(boot_bare(image, Path(tmp) / f"b{i}"))
    result = {"boots": args.boots, "machine": "ast2500-evb"}
    for name, rs in runs.items():
        totals = [r["total_s"] for r in rs]
        result[name] = {"median_boot_to_ssh_ready_s": round(statistics.median(totals), 3),
                        "min_s": round(min(totals), 3), "max_s": round(max(totals), 3),
                        "runs_s": [round(t, 3) for t in totals]}
        steps = sorted({k for r in rs for k in r if k != "total_s"})
        if steps:
            result[name]["median_step_s"] = {k: round(statistics.median(r[k] for r in rs), 3) for k in steps}
    result["ratio_strategy_over_bare"] = round(result["strategy"]["median_boot_to_ssh_ready_s"]
                                               / result["bare"]["median_boot_to_ssh_ready_s"], 3)
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
