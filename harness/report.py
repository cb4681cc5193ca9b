"""Reports: the divergence table and a timeline plot per scenario, as JSON, PNG and HTML."""

from __future__ import annotations

import html
import json
from pathlib import Path

from harness.oracle import Verdict
from harness.paths import unique_names


def timeline_plot(verdict: Verdict, path: Path) -> Path:
    """Predicted windows against observed events, one row per stream kind."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    s = verdict.series
    t0 = verdict.start_ns
    names = sorted({n for n, *_ in s.get("predicted", [])} | {n for n, _ in s.get("observed", [])})
    y = {n: i for i, n in enumerate(names)}
    fig, ax = plt.subplots(figsize=(10, 1.2 + 0.45 * max(1, len(names))))
    for lo, hi in s.get("quiet", []):
        ax.axvspan((lo - t0) / 1e9, (hi - t0) / 1e9, color="tab:gray", alpha=0.15)
    for n, t, lo, hi in s.get("predicted", []):
        ax.plot([(lo - t0) / 1e9, (hi - t0) / 1e9], [y[n], y[n]], color="tab:green", lw=6, alpha=0.35,
                solid_capstyle="butt")
        ax.plot((t - t0) / 1e9, y[n], "|", color="tab:green", ms=14)
    for n, t in s.get("observed", []):
        ax.plot((t - t0) / 1e9, y[n], "o", color="tab:blue", ms=5)
    for row in verdict.rows:
        if row.get("obs_ns") is not None:
            ax.plot((row["obs_ns"] - t0) / 1e9, y.get(row["stream_name"], 0), "x", color="tab:red", ms=10, mew=2)
        elif row.get("pred_ns") is not None and row["stream_name"] in y:
            ax.plot((row["pred_ns"] - t0) / 1e9, y[row["stream_name"]], "x", color="tab:red", ms=10, mew=2)
    ax.set_yticks(range(len(names)), names)
    ax.set_xlabel("seconds from scenario start (green: model window, blue: board, red: divergence, "
                  "grey: link down)")
    ax.set_title(f"{verdict.scenario}: {_word(verdict)}")
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def _word(v: Verdict) -> str:
    if v.error:
        return "ERROR"
    return "pass" if v.ok else f"FAIL ({len(v.rows)} divergences)"


def _rel(t, t0):
    return None if t is None else t - t0


def _ms(ns) -> str:
    return "" if ns is None else f"{ns / 1e6:.1f}"


def write_report(out_dir: Path, verdicts: list[Verdict], meta: dict) -> dict[str, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    # A scenario's name is the user's text: its plot's file name is made safe and unique.
    names = unique_names([v.scenario for v in verdicts])
    plots = [timeline_plot(v, out_dir / f"{name}.timeline.png") for v, name in zip(verdicts, names, strict=True)]
    data = {**meta, "ok": all(v.ok for v in verdicts), "scenarios": [v.to_json() for v in verdicts]}
    (out_dir / "report.json").write_text(json.dumps(data, indent=1, default=int) + "\n")
    parts = ["<!doctype html><html><head><meta charset='utf-8'><title>bmc-hil report</title>"
             "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}"
             "td,th{border:1px solid #ccc;padding:2px 6px;font-size:90%}.ok{color:green}.bad{color:#b00}"
             "</style></head><body>",
             f"<h1>bmc-hil: {html.escape(str(meta.get('board', '')))}</h1>",
             "<table><tr><th>scenario</th><th>verdict</th><th>predicted</th><th>observed</th>"
             "<th>divergences</th></tr>"]
    for v in verdicts:
        cls = "ok" if v.ok else "bad"
        parts.append(f"<tr class='scenario'><td><a href='#{html.escape(v.scenario)}'>{html.escape(v.scenario)}</a>"
                     f"</td><td class='{cls}'>{_word(v)}</td><td>{v.predicted}</td>"
                     f"<td>{v.observed}</td><td>{len(v.rows)}</td></tr>")
    parts.append("</table>")
    for v, plot in zip(verdicts, plots, strict=True):
        parts.append(f"<h2 id='{html.escape(v.scenario)}'>{html.escape(v.scenario)}</h2>")
        parts.append(f"<img src='{html.escape(plot.name)}' alt='timeline of {html.escape(v.scenario)}'>")
        if v.rows:
            parts.append("<table class='divergences'><tr><th>kind</th><th>field</th><th>stream</th>"
                         "<th>predicted (ms)</th><th>observed (ms)</th><th>frame</th><th>delta (ms)</th>"
                         "<th>tolerance (ms)</th><th>predicted value</th><th>observed value</th></tr>")
            for r in v.rows:
                parts.append("<tr>" + "".join(f"<td>{html.escape(str(x))}</td>" for x in (
                    r["kind"], r.get("field") or "", r["stream_name"], _ms(_rel(r.get("pred_ns"), v.start_ns)),
                    _ms(_rel(r.get("obs_ns"), v.start_ns)), r.get("frame") or "", _ms(r.get("delta_ns")), _ms(r.get("tol_ns")),
                    r.get("pred_value") if r.get("field") else "", r.get("obs_value") if r.get("field") else "",
                )) + "</tr>")
            parts.append("</table>")
        if v.error:
            parts.append(f"<p class='bad'>error: {html.escape(v.error)}</p>")
        elif not v.rows:
            parts.append("<p class='ok'>The board did what Linux 6.1 would have done.</p>")
        for note in v.notes:
            parts.append(f"<p>note: {html.escape(note)}</p>")
    parts.append("</body></html>")
    (out_dir / "report.html").write_text("\n".join(parts))
    return {"json": out_dir / "report.json", "html": out_dir / "report.html",
            **{f"png:{v.scenario}": p for v, p in zip(verdicts, plots, strict=True)}}
