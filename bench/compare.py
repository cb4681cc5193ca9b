"""Benchmark of the oracle's compute core; prints one JSON document.

Comparison: two 1M-event sets (predicted, observed) over 1000 streams, observed derived
from predicted with jitter, drops, late events and field flips, both in time order as the
model and ingest produce them. Measured: the numba core
(full labelled comparison and each stage), the plain-Python reference on a prefix, and
dtaidistance's C warping path (window = the same band) as a peer.

Ingest: a 1M-packet pcap generated into a temp dir (4096 distinct random frames of the
kinds a BMC capture holds, cycled). Measured: the numba reader, the plain-Python reference
reader and pyshark FileCapture(use_json=True) on prefixes, and `tshark -T fields` on the
whole file. Every number comes from this run.

    python bench/compare.py [--events N] [--packets N] [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from harness.compare import Constraints, ObservedEvents, PredictedEvents, compare  # noqa: E402
from harness.compare import kernels as K  # noqa: E402
from harness.compare.core import DEFAULT_BAND, DEFAULT_MAX_SHIFT_NS, _before_positions, run_stages_numba  # noqa: E402
from harness.compare.events import prepare  # noqa: E402
from harness.ingest import pcapwrite as W  # noqa: E402
from harness.ingest.pcap import read_capture  # noqa: E402
from harness.ingest.pcap_reference import decode_bytes  # noqa: E402

MS = 1_000_000
TSHARK_FIELDS = ["frame.time_epoch", "frame.len", "eth.type", "ip.src", "ip.dst", "ip.id", "tcp.srcport",
                 "tcp.dstport", "tcp.seq_raw", "tcp.ack_raw", "tcp.flags", "tcp.window_size_value",
                 "tcp.options.mss_val", "arp.opcode"]


def best_of(fn, repeat: int) -> tuple[float, float, object]:
    """(best seconds, median seconds, last result)."""
    times, out = [], None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return min(times), float(np.median(times)), out


def make_events(n: int, n_streams: int = 1000, seed: int = 0):
    rng = np.random.default_rng(seed)
    stream = rng.integers(0, n_streams, n)
    t = np.sort(rng.integers(0, 3600_000 * MS, n))
    fields = rng.integers(0, 4, (n, 3))
    pred = PredictedEvents.build(stream, t, fields, tol_abs_ns=2 * MS, tol_frac=0.05)
    ot = t + rng.normal(0, 0.5 * MS, n).astype(np.int64)
    late = rng.random(n) < 0.001
    ot[late] += 50 * MS
    of = fields.copy()
    of[rng.random(n) < 0.001, 0] += 1
    keep = rng.random(n) > 0.001
    # in capture order, as ingest hands them over
    by_time = np.flatnonzero(keep)[np.argsort(ot[keep], kind="stable")]
    obs = ObservedEvents.build(stream[by_time], ot[by_time], np.arange(by_time.size), of[by_time])
    return pred, obs


def prefix_events(pred: PredictedEvents, obs: ObservedEvents, n: int):
    """The first `n` predictions by time and the observations up to the same time."""
    order = np.argsort(pred.time_ns, kind="stable")[:n]
    t_end = pred.time_ns[order].max()
    keep = obs.time_ns <= t_end

    def sub(ev, idx):
        return type(ev)(**{k: v[idx] for k, v in vars(ev).items()})

    return sub(pred, order), sub(obs, keep)


def bench_compare(n: int, ref_n: int, repeat: int) -> dict:
    pred, obs = make_events(n)
    events = len(pred) + len(obs)
    t0 = time.perf_counter()
    compare(*prefix_events(pred, obs, 1000))  # loads (or compiles) the cached kernels
    first_call = time.perf_counter() - t0
    best, median, result = best_of(lambda: compare(pred, obs), repeat)
    counts = {k: int(v) for k, v in zip(*np.unique(result.divergences["kind"], return_counts=True), strict=True)}

    prep_s, _, prep = best_of(lambda: prepare(pred, obs), repeat)
    tol = K.tolerances(prep.p_stream, prep.p_t, prep.p_tol_abs, prep.p_tol_frac)
    seg = (prep.seg_p0, prep.seg_p1, prep.seg_o0, prep.seg_o1)

    def matcher():
        match = np.full(prep.p_t.size, -1, np.int64)
        stage = np.zeros(prep.p_t.size, np.int8)
        K.windowed_match(*seg, prep.p_t, prep.p_wlo, prep.p_whi, tol, prep.o_t, prep.p_fields, prep.o_fields,
                         prep.p_check, match, stage)
        return match

    match_s, _, _ = best_of(matcher, repeat)
    cons = Constraints()
    pos = _before_positions(prep, cons)
    stages_s, _, _ = best_of(lambda: run_stages_numba(prep, cons, *pos, DEFAULT_MAX_SHIFT_NS, DEFAULT_BAND), repeat)

    rp, ro = prefix_events(pred, obs, ref_n)
    ref_events = len(rp) + len(ro)
    ref_s, _, ref_result = best_of(lambda: compare(rp, ro, engine="reference"), 1)
    same = np.array_equal(ref_result.divergences, compare(rp, ro).divergences)
    numba_prefix_s, _, _ = best_of(lambda: compare(rp, ro), repeat)

    # dtaidistance as a peer: one warping path between the two whole time sequences (DTW
    # knows no streams), Sakoe-Chiba window = our band
    from dtaidistance import dtw

    a = np.sort(pred.time_ns).astype(np.double) / 1e9
    b = np.sort(obs.time_ns).astype(np.double) / 1e9
    dtw_s, _, path = best_of(lambda: dtw.warping_path_fast(a, b, window=DEFAULT_BAND), 1)
    # dtaidistance widens the window to the length difference (here about 1000 dropped
    # events); cut both to one length to see it at the nominal band as well
    m = min(a.size, b.size)
    dtw_eq_s, _, _ = best_of(lambda: dtw.warping_path_fast(a[:m], b[:m], window=DEFAULT_BAND), 1)

    return {
        "predicted_events": len(pred), "observed_events": len(obs), "streams": int(prep.streams.size),
        "divergences": {_kind_name(k): v for k, v in counts.items()},
        "numba": {
            "full_comparison_s": round(best, 4), "full_comparison_median_s": round(median, 4),
            "events_per_s": round(events / best), "first_call_s": round(first_call, 3),
            "stages_s": {"prepare_sort_segment": round(prep_s, 4), "windowed_matcher": round(match_s, 5),
                         "all_kernels": round(stages_s, 4)},
            "matcher_events_per_s": round(events / match_s),
        },
        "reference": {"prefix_events": ref_events, "seconds": round(ref_s, 3), "events_per_s": round(ref_events / ref_s),
                      "identical_to_numba_on_prefix": bool(same),
                      "numba_on_same_prefix_events_per_s": round(ref_events / numba_prefix_s)},
        "dtaidistance": {"function": "dtw.warping_path_fast", "window": DEFAULT_BAND, "events": a.size + b.size,
                         "seconds": round(dtw_s, 3), "events_per_s": round((a.size + b.size) / dtw_s),
                         "path_length": len(path),
                         "equal_length_cut": {"events": 2 * m, "seconds": round(dtw_eq_s, 3),
                                              "events_per_s": round(2 * m / dtw_eq_s)}},
        "ratios": {"numba_over_reference": round((events / best) / (ref_events / ref_s), 1),
                   "numba_over_dtaidistance": round((events / best) / ((a.size + b.size) / dtw_s), 1),
                   "numba_over_dtaidistance_equal_length": round((events / best) / (2 * m / dtw_eq_s), 1),
                   "matcher_over_target_20M": round(events / match_s / 20e6, 2),
                   "full_comparison_s_over_target_0.5s": round(best / 0.5, 2)},
    }


def _kind_name(k: int) -> str:
    from harness.compare import DivergenceKind

    return DivergenceKind(int(k)).name


def bench_ingest(n: int, pyshark_n: int, ref_n: int, repeat: int, tmp: Path) -> dict:
    rng = random.Random(1)
    frames = [r[1] for r in W.random_records(rng, 4096)]
    t0 = 1_700_000_000_000_000_000
    path = W.write_pcap(tmp / "bench.pcap", ((t0 + i * 1000, frames[i % 4096]) for i in range(n)))
    small = W.write_pcap(tmp / "prefix.pcap", ((t0 + i * 1000, frames[i % 4096]) for i in range(pyshark_n)))
    size = path.stat().st_size
    path.read_bytes()  # into the page cache

    t = time.perf_counter()
    read_capture(small)  # loads the cached kernels
    first_call = time.perf_counter() - t
    best, median, cap = best_of(lambda: read_capture(path), repeat)
    assert len(cap.packets) == n

    data = path.read_bytes()
    # a prefix of whole records: the reference stops at the cut with TRUNCATED_RECORD
    ref_s, _, (ref_table, _, _) = best_of(lambda: decode_bytes(data[: 24 + ref_n * 200]), 1)
    ref_count = len(ref_table)

    import pyshark

    def run_pyshark():
        capture = pyshark.FileCapture(str(small), use_json=True, keep_packets=False)
        count = 0
        try:
            for pkt in capture:
                _ = pkt.sniff_timestamp
                count += 1
        finally:
            capture.close()
        return count

    py_s, _, py_count = best_of(run_pyshark, 1)

    def run_tshark():
        cmd = ["tshark", "-r", str(path), "-T", "fields"]
        for f in TSHARK_FIELDS:
            cmd += ["-e", f]
        out = subprocess.run(cmd, check=True, capture_output=True).stdout
        return out.count(b"\n")

    ts_s, _, ts_count = best_of(run_tshark, 1)
    assert ts_count == n, ts_count
    rate = n / best
    return {
        "packets": n, "pcap_bytes": size,
        "numba": {"seconds": round(best, 4), "median_s": round(median, 4), "packets_per_s": round(rate),
                  "first_call_s": round(first_call, 3)},
        "reference_python": {"packets": ref_count, "seconds": round(ref_s, 3), "packets_per_s": round(ref_count / ref_s)},
        "pyshark_filecapture_json": {"packets": py_count, "seconds": round(py_s, 3),
                                     "packets_per_s": round(py_count / py_s)},
        "tshark_fields": {"packets": ts_count, "fields": len(TSHARK_FIELDS), "seconds": round(ts_s, 3),
                          "packets_per_s": round(ts_count / ts_s), "note": "tshark output read, not parsed"},
        "ratios": {"numba_over_tshark": round(rate / (ts_count / ts_s), 1),
                   "numba_over_pyshark": round(rate / (py_count / py_s), 1),
                   "numba_over_reference": round(rate / (ref_count / ref_s), 1),
                   "numba_over_target_5M": round(rate / 5e6, 2)},
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=1_000_000)
    ap.add_argument("--packets", type=int, default=1_000_000)
    ap.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    args = ap.parse_args()
    if args.quick:
        args.events, args.packets = 20_000, 20_000
    with tempfile.TemporaryDirectory() as tmp:
        out = {
            "machine": {"python": platform.python_version(), "cpus": os.cpu_count(),
                        "loadavg_at_start": [round(x, 2) for x in os.getloadavg()]},
            "compare": bench_compare(args.events, ref_n=min(50_000, args.events), repeat=5),
            "ingest": bench_ingest(args.packets, pyshark_n=min(2000, args.packets), ref_n=min(20_000, args.packets),
                                   repeat=5, tmp=Path(tmp)),
        }
        out["machine"]["loadavg_at_end"] = [round(x, 2) for x in os.getloadavg()]
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
