"""False-alarm soak: every built-in scenario N times on the healthy emulated image; the
oracle must report no divergence and no error. Prints JSON: runs, false alarms (divergent
or errored runs), the rows and errors seen, and time per scenario run.

    python bench/soak.py [--repeat 10] [--tier ci|long|all] [--scenario NAME ...] [--keep DIR]

With --keep, the artifacts of every false alarm are kept under DIR/<scenario>-<i>.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

from harness.board.boardfile import emulated_spec
from harness.oracle import Tolerance
from harness.runner import check_scenario, run_scenario
from harness.scenario import builtin_scenarios, load_scenario


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeat", type=int, default=10)
    ap.add_argument("--scenario", action="append", help="built-in scenario (default: all)")
    ap.add_argument("--tier", default="ci", choices=["ci", "long", "all"], help="built-ins of this tier (default ci)")
    ap.add_argument("--keep", type=Path, help="keep the artifacts of false alarms here")
    args = ap.parse_args()
    names = args.scenario or list(builtin_scenarios(args.tier))
    spec = emulated_spec()
    per = {n: {"runs": 0, "divergent_runs": 0, "error_runs": 0, "false_alarms": 0, "rows": Counter(), "errors": [], "seconds": []}
           for n in names}
    with tempfile.TemporaryDirectory(prefix="bmc-hil-soak-") as tmp:
        for i in range(args.repeat):
            for name in names:
                start = time.monotonic()
                run = run_scenario(spec, load_scenario(name), Path(tmp) / f"{name}-{i}", log=lambda m: None)
                v = check_scenario(spec, run, Tolerance())
                p = per[name]
                p["runs"] += 1
                p["seconds"].append(time.monotonic() - start)
                p["divergent_runs"] += bool(v.rows)
                p["false_alarms"] += bool(v.rows or v.error)
                p["rows"].update(f"{r['kind']} {r['stream_name']}" + (f" {r['field']}" if r.get("field") else "")
                                 for r in v.rows)
                if v.error:
                    p["error_runs"] += 1
                    p["errors"].append(v.error)
                if (v.rows or v.error) and args.keep:
                    shutil.copytree(run.out_dir, args.keep / f"{name}-{i}", dirs_exist_ok=True)
                print(f"{name} #{i + 1}: {len(v.rows)} divergences" + (f", error: {v.error}" if v.error else ""),
                      file=sys.stderr, flush=True)
    out = {"repeat": args.repeat, "scenarios": {
        n: {"runs": p["runs"], "divergent_runs": p["divergent_runs"], "error_runs": p["error_runs"],
            "rows": dict(p["rows"]), "errors": p["errors"], "median_run_s": round(statistics.median(p["seconds"]), 2)}
        for n, p in per.items()}}
    out["false_alarm_runs"] = sum(p["false_alarms"] for p in per.values())
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
