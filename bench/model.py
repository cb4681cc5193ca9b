"""Benchmark: predicted events per second of the stack model on a long scenario.

Ten minutes of board time: a peer pings the board every 2 ms (ICMP echo through
ip_rcv/icmp_echo/neigh/ftgmac100), answers its ARP probes, and the link flaps down for
5 s every minute. Events = inputs applied + outputs predicted. Prints one JSON object.

`--baseline REV` runs the same workload on revision REV's `models/` too (taken with
`git archive` into a temporary directory and run in a subprocess), so both figures come
from one run on one machine: the JSON then holds both, their ratio (ours / baseline, by wall
time and by CPU time) and whether both predicted the same outputs (a hash of
`Prediction.to_json()`).
`--baseline 1878b9a` is the model before its hot path was made lean.

`--instructions` (with `--baseline REV`) counts CPU instructions instead of timing, under
valgrind's callgrind: each tree runs the workload's first 10 and first 20 s of board time,
and the difference over the difference in events is the instructions one event costs,
setup (imports, the scenario) left out. On a machine whose speed drifts by tens of
percent from one second to the next, this ratio is the same in every run.

    python bench/model.py [--minutes 10] [--interval-ms 2] [--describe] [--repeat 1] [--baseline REV]
    python bench/model.py --instructions --baseline REV
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import re
import shutil
import struct
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# The tree whose models/ this process measures: this one, or (in the subprocess that
# --baseline starts) the baseline revision's, extracted into a temporary directory.
MODELS_ROOT_ENV = "BENCH_MODEL_MODELS_ROOT"
sys.path.insert(0, os.environ.get(MODELS_ROOT_ENV) or str(REPO))

from models.board import predict  # noqa: E402
from models.clock import NSEC_PER_MSEC, NSEC_PER_SEC  # noqa: E402
from models.config import FirmwareConfig  # noqa: E402
from models.wire import ArpRepr, EthernetRepr, IcmpRepr, Ipv4Repr, ip4, mac_bytes  # noqa: E402
from models.wire.arp import ARPOP_REPLY, ARPOP_REQUEST  # noqa: E402

PEER_MAC = mac_bytes("52:54:00:12:35:02")
PEER = ip4("10.0.2.2")
TARGET_EVENTS_PER_SECOND = 500_000


def scenario(config: FirmwareConfig, minutes: int, interval_ms: float) -> list[dict]:
    board_mac = mac_bytes(config.interface.mac)
    board = int(config.interface.address.ip)
    arp_req = EthernetRepr(b"\xff" * 6, PEER_MAC, 0x0806).emit(
        ArpRepr(ARPOP_REQUEST, PEER_MAC, PEER, bytes(6), board).emit()).hex()
    arp_rep = EthernetRepr(board_mac, PEER_MAC, 0x0806).emit(
        ArpRepr(ARPOP_REPLY, PEER_MAC, PEER, board_mac, board).emit()).hex()
    inputs: list[dict] = [{"t": 2 * NSEC_PER_SEC, "kind": "frame", "hex": arp_req}]
    end = minutes * 60 * NSEC_PER_SEC
    step = int(interval_ms * NSEC_PER_MSEC)
    t, seq = 3 * NSEC_PER_SEC, 0
    while t < end:
        seq = (seq + 1) & 0xFFFF
        echo = IcmpRepr(8, 0, 0x1234, seq, struct.pack("!Q", t) * 7).emit()
        packet = Ipv4Repr(PEER, board, 1, len(echo), ident=seq, df=False).emit(echo)
        inputs.append({"t": t, "kind": "frame", "hex": EthernetRepr(board_mac, PEER_MAC, 0x0800).emit(packet).hex()})
        t += step
    # the peer answers unicast ARP probes (sent a second or so before; answering often is harmless)
    inputs += [{"t": s * NSEC_PER_SEC + 500 * NSEC_PER_MSEC, "kind": "frame", "hex": arp_rep}
               for s in range(3, minutes * 60)]
    for m in range(1, minutes):
        inputs.append({"t": m * 60 * NSEC_PER_SEC, "kind": "link", "up": False})
        inputs.append({"t": m * 60 * NSEC_PER_SEC + 5 * NSEC_PER_SEC, "kind": "link", "up": True})
    return inputs


def measure(minutes: int, interval_ms: float, describe: bool, repeat: int, digest: bool) -> dict:
    """Run the workload `repeat` times on this process's models/; the best run's figures."""
    config = FirmwareConfig.default()
    inputs = scenario(config, minutes, interval_ms)
    wall = cpu = float("inf")
    for _ in range(repeat):
        start, start_cpu = time.perf_counter(), time.process_time()
        pred = predict(config, inputs, until=minutes * 60 * NSEC_PER_SEC, describe_frames=describe)
        wall = min(wall, time.perf_counter() - start)
        cpu = min(cpu, time.process_time() - start_cpu)
    events = pred.inputs_processed + len(pred.events)
    kinds: dict[str, int] = {}
    for e in pred.events:
        kinds[e.kind] = kinds.get(e.kind, 0) + 1
    # CPU time beside wall time: on a busy machine it leaves out the time others had the CPU
    out = {"inputs": pred.inputs_processed, "predicted": kinds, "events": events, "wall_seconds": round(wall, 3),
           "events_per_second": round(events / wall), "cpu_seconds": round(cpu, 3),
           "events_per_cpu_second": round(events / cpu)}
    if digest:
        out["prediction_sha256"] = hashlib.sha256(pred.to_json().encode()).hexdigest()
    return out


def _revision_tree(rev: str, tmp: str) -> str:
    """Revision `rev`'s models/ extracted into `tmp`; its commit."""
    found = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}"],
                           capture_output=True, text=True)
    if found.returncode != 0:
        raise SystemExit(f"--baseline {rev}: not a commit of the repository at {REPO}")
    commit = found.stdout.strip()
    archive = subprocess.run(["git", "-C", str(REPO), "archive", "--format=tar", commit, "models"],
                             capture_output=True, check=True).stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(tmp)
    return commit


def measure_revision(rev: str, args: argparse.Namespace) -> dict:
    """The same workload on revision `rev`'s models/, in a subprocess of this script."""
    with tempfile.TemporaryDirectory(prefix="bench-model-") as tmp:
        commit = _revision_tree(rev, tmp)
        cmd = [sys.executable, str(Path(__file__).resolve()), "--minutes", str(args.minutes),
               "--interval-ms", str(args.interval_ms), "--repeat", str(args.repeat)]
        if args.describe:
            cmd.append("--describe")
        child = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, MODELS_ROOT_ENV: tmp})
    if child.returncode != 0:
        raise RuntimeError(f"the baseline run at {rev} failed:\n{child.stderr}")
    result = json.loads(child.stdout)
    return {"revision": rev, "commit": commit, **{k: result[k] for k in (
        "inputs", "predicted", "events", "wall_seconds", "events_per_second", "cpu_seconds", "events_per_cpu_second",
        "prediction_sha256")}}


INSTRUCTION_SPANS_S = (10, 20)   # board seconds of the workload each tree runs under callgrind


def _events_in(seconds: int, interval_ms: float) -> int:
    """(The child side of --instructions.) Run the workload's first `seconds` of board
    time on this process's models/; the events it made."""
    config = FirmwareConfig.default()
    inputs = [ev for ev in scenario(config, max(1, -(-seconds // 60)), interval_ms) if ev["t"] <= seconds * NSEC_PER_SEC]
    pred = predict(config, inputs, until=seconds * NSEC_PER_SEC, describe_frames=False)
    return pred.inputs_processed + len(pred.events)


def count_instructions(models_root: str | None, interval_ms: float) -> dict:
    """Instructions per event of the models/ at `models_root` (None: this tree's)."""
    valgrind = shutil.which("valgrind")
    if valgrind is None:
        raise SystemExit("--instructions needs valgrind (apt-get install valgrind)")
    env = {**os.environ, "PYTHONHASHSEED": "0", **({MODELS_ROOT_ENV: models_root} if models_root else {})}
    counts = []
    for seconds in INSTRUCTION_SPANS_S:
        child = subprocess.run([valgrind, "--tool=callgrind", "--callgrind-out-file=/dev/null", sys.executable,
                                str(Path(__file__).resolve()), "--events-in", str(seconds),
                                "--interval-ms", str(interval_ms)], capture_output=True, text=True, env=env)
        found = re.search(r"Collected : (\d+)", child.stderr)
        if child.returncode != 0 or found is None:
            raise RuntimeError(f"callgrind run of {seconds} s failed:\n{child.stderr[-2000:]}")
        counts.append((int(found.group(1)), int(child.stdout.split()[-1])))
    (i1, e1), (i2, e2) = counts
    return {"instructions": [i for i, _ in counts], "events": [e for _, e in counts],
            "instructions_per_event": round((i2 - i1) / (e2 - e1))}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=int, default=10)
    ap.add_argument("--interval-ms", type=float, default=2.0)
    ap.add_argument("--describe", action="store_true", help="also decode every predicted frame (slower)")
    ap.add_argument("--repeat", type=int, default=1, help="run the workload N times, report the fastest")
    ap.add_argument("--baseline", metavar="REV",
                    help="also run the workload on REV's models/ (e.g. 1878b9a) and report both and the ratio")
    ap.add_argument("--instructions", action="store_true",
                    help="count instructions per event under callgrind (this tree's and --baseline's) instead of time")
    ap.add_argument("--events-in", type=int, metavar="SECONDS", help=argparse.SUPPRESS)   # --instructions' child
    args = ap.parse_args()
    if args.events_in is not None:
        print(_events_in(args.events_in, args.interval_ms))
        return
    if args.instructions:
        ours = count_instructions(None, args.interval_ms)
        report = {"benchmark": "models.board.predict, instructions per event (callgrind)",
                  "scenario": f"ICMP echo every {args.interval_ms} ms, board seconds {INSTRUCTION_SPANS_S}", **ours}
        if args.baseline:
            with tempfile.TemporaryDirectory(prefix="bench-model-") as tmp:
                commit = _revision_tree(args.baseline, tmp)
                base = count_instructions(tmp, args.interval_ms)
            report["baseline"] = {"revision": args.baseline, "commit": commit, **base}
            report["ratio"] = round(base["instructions_per_event"] / ours["instructions_per_event"], 2)
        print(json.dumps(report, indent=1))
        return
    # a baseline run, and the subprocess that measures one, also hash the whole prediction
    digest = bool(args.baseline or os.environ.get(MODELS_ROOT_ENV))
    ours = measure(args.minutes, args.interval_ms, args.describe, max(1, args.repeat), digest)
    report = {
        "benchmark": "models.board.predict",
        "scenario": f"{args.minutes} min, ICMP echo every {args.interval_ms} ms, link down 5 s every minute",
        "board_seconds": args.minutes * 60,
        **ours,
        "target_events_per_second": TARGET_EVENTS_PER_SECOND,
        "describe_frames": args.describe,
    }
    if args.baseline:
        base = measure_revision(args.baseline, args)
        report["baseline"] = base
        report["ratio"] = round(ours["events_per_second"] / base["events_per_second"], 2)
        report["ratio_cpu"] = round(ours["events_per_cpu_second"] / base["events_per_cpu_second"], 2)
        report["same_prediction"] = ours["prediction_sha256"] == base["prediction_sha256"]
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
