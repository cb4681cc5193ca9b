"""The reports a person reads (harness.report), from runs of the model-as-board with
seeded faults: each divergence row names its flow and its frames in both pcaps, times
say what they are measured from, a pass shows its measured times, an error is never
drawn as a pass, and the page renders in headless Chromium with no broken link."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

import numpy as np
import pytest

from harness.board.boardfile import parse_board
from harness.ingest.pcap import read_capture
from harness.ingest.streams import TCP_ACK, TCP_SYN
from harness.oracle import Tolerance, Verdict
from harness.report import ScenarioView, field_value, timeline_rows, write_report
from harness.runner import check_scenario, run_scenario
from harness.scenario import load_scenario
from models.config import DEFAULT_CONFIG

FLOW = re.compile(r"^(?:(\w+) )?:(\d+) (<-|->) (\d+\.\d+\.\d+\.\d+):(\d+)$")
MTU_1400 = {**DEFAULT_CONFIG, "interface": {**DEFAULT_CONFIG["interface"], "mtu": 1400}}
NO_HTTP = {**DEFAULT_CONFIG, "services": {"ssh": {"port": 22}, "http": {"enabled": False}}}
BOARD_DIED = "the board did not boot: QEMU exited with status 1"


def model_board(image: dict | None = None, **extra):
    return parse_board({"kind": "model", **({"image": image} if image else {}), **extra}, "<model board>")


# -- reading a page back ----------------------------------------------------------------
class Page(HTMLParser):
    """A report page as sections of tables: rows of cell texts, and every link."""

    def __init__(self, text: str):
        super().__init__()
        self.sections: dict[str, dict] = {}
        self.summary: list[list[str]] = []
        self.links: list[str] = []
        self.ids: set[str] = set()
        self._section: dict | None = None
        self._table: str | None = None
        self._row: list[str] | None = None
        self._cell: list[str] | None = None
        self._text: list[str] = []
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if a.get("id"):
            self.ids.add(a["id"])
        if tag == "section":
            self._section = self.sections.setdefault(a["id"], {"tables": {}, "text": [], "links": []})
        for name in ("href", "src"):
            if a.get(name):
                self.links.append(a[name])
                if self._section is not None:
                    self._section["links"].append(a[name])
        if tag == "table":
            self._table = a.get("class", "")
        elif tag == "tr":
            self._row = []
        elif tag in ("td", "th"):
            self._cell = []

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._row is not None:
            self._row.append(" ".join("".join(self._cell).split()))
            self._cell = None
        elif tag == "tr" and self._row is not None:
            if self._table == "summary":
                self.summary.append(self._row)
            elif self._section is not None and self._table:
                self._section["tables"].setdefault(self._table, []).append(self._row)
            self._row = None
        elif tag == "section":
            self._section = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)
        if self._section is not None:
            self._section["text"].append(data)

    def table(self, section: str, name: str) -> list[dict[str, str]]:
        """A table of a section as dicts by column heading."""
        head, *rows = self.sections[section]["tables"][name]
        return [dict(zip(head, r, strict=True)) for r in rows]

    def text(self, section: str) -> str:
        return " ".join(" ".join(self.sections[section]["text"]).split())


def broken_links(page_dir: Path, links: list[str], ids: set[str]) -> list[str]:
    """Links that resolve to no file (relative and file: URLs) or to no id (#anchors)."""
    out = []
    for link in links:
        url = urlsplit(link)
        if url.scheme in ("data", "http", "https", "about"):
            continue
        if not url.path:
            if url.fragment and url.fragment not in ids:
                out.append(link)
            continue
        path = Path(unquote(url.path)) if url.scheme == "file" else page_dir / unquote(url.path)
        if not path.is_file():
            out.append(link)
    return out


# -- headless Chromium ------------------------------------------------------------------
def chromium() -> str:
    """The browser `bmc-hil setup` installs; a test that needs it fails without it, never skips."""
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    assert exe, "chromium is not installed: run `bmc-hil setup` (it installs Debian's chromium)"
    return exe


def render(page: Path, profile: Path, screenshot: Path | None = None) -> str:
    """The page's DOM after its scripts ran, and optionally a screenshot, from headless Chromium."""
    base = [chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
            f"--user-data-dir={profile}", "--virtual-time-budget=5000", "--window-size=1400,2000"]
    if screenshot is not None:
        shot = subprocess.run([*base, f"--screenshot={screenshot}", page.resolve().as_uri()], capture_output=True,
                              text=True, timeout=120)
        assert shot.returncode == 0 and screenshot.is_file(), shot.stderr[-2000:]
    dom = subprocess.run([*base, "--dump-dom", page.resolve().as_uri()], capture_output=True, text=True, timeout=120)
    assert dom.returncode == 0 and "<html" in dom.stdout, dom.stderr[-2000:]
    return dom.stdout


def drawn_fraction(png: Path) -> float:
    """How much of a screenshot is not blank page."""
    import matplotlib.image

    img = matplotlib.image.imread(str(png))[..., :3]
    return float(np.mean(np.any(img < 0.9, axis=-1)))


# -- the runs ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def report(tmp_path_factory):
    """One report over seeded runs: an MTU fault (FIELD_MISMATCH on both services), a
    closed service (MISSING and EXTRA), a slow initial RTO (LATE), a healthy link flap
    (a pass), and a scenario that never ran (an error)."""
    out = tmp_path_factory.mktemp("report")
    cases = [("mtu", model_board(MTU_1400), "handshake"), ("no-http", model_board(NO_HTTP), "handshake"),
             ("slow-rto", model_board(constants={"TCP_TIMEOUT_INIT": "1.3s"}), "syn-retransmit"),
             ("healthy", model_board(), "link-flap")]
    verdicts, folders = [], []
    for folder, spec, scenario in cases:
        run = run_scenario(spec, load_scenario(scenario), out / "runs" / folder, log=lambda m: None)
        verdicts.append(check_scenario(spec, run, Tolerance()))
        folders.append(run.out_dir)
    verdicts.append(Verdict.not_compared("board-died", BOARD_DIED))
    folders.append(None)
    paths = write_report(out / "report", verdicts, {"board": "model"}, folders=folders,
                         declared=model_board().firmware)
    return paths, verdicts, folders, Page(paths["html"].read_text())


def test_each_divergence_row_names_its_flow_so_the_two_services_mss_rows_differ(report):
    _, verdicts, _, page = report
    rows = [r for r in page.table("handshake", "divergences") if r["field"] == "tcp_mss"]
    assert [(r["predicted value"], r["observed value"]) for r in rows] == [("1460", "1360")] * 2
    flows = [FLOW.match(r["flow"]) for r in rows]
    assert all(flows), [r["flow"] for r in rows]
    assert {(m[1], m[2], m[3], m[4]) for m in flows} == {("ssh", "22", "<-", "10.0.2.2"),
                                                         ("http", "80", "<-", "10.0.2.2")}


def test_rows_give_their_frame_in_predicted_and_captured_pcaps(report):
    paths, _, folders, page = report
    for r in page.table("handshake", "divergences"):
        port = FLOW.match(r["flow"])[2]
        frames = dict(re.findall(r"(predicted\.pcap|capture\.pcap) #(\d+)", r["frames"]))
        assert set(frames) == {"predicted.pcap", "capture.pcap"}, r
        for name, number in frames.items():
            t = read_capture(folders[0] / name).packets
            i = int(np.flatnonzero(t.frame == int(number))[0])
            assert int(t.tcp_flags[i]) & (TCP_SYN | TCP_ACK) == TCP_SYN | TCP_ACK, (name, number)
            assert int(t.sport[i]) == int(port), (name, number)


def test_late_rows_say_how_far_beyond_which_window(report):
    _, verdicts, _, page = report
    late = [r for r in verdicts[2].rows if r["kind"] == "LATE"]
    shown = [r for r in page.table("syn-retransmit", "divergences") if r["kind"] == "LATE"]
    assert late and len(shown) == len(late)
    for row, cells in zip(late, shown, strict=True):
        m = re.fullmatch(r"beyond the window by ([\d.]+) ms \(window ([\d.]+)–([\d.]+) ms; tolerance ([\d.]+) ms\)",
                         cells["timing"])
        assert m, cells["timing"]
        assert float(m[1]) == pytest.approx(row["delta_ns"] / 1e6, abs=0.05)
        assert float(m[4]) == pytest.approx(row["tol_ns"] / 1e6, abs=0.05)
        board_ms = (row["obs_ns"] - verdicts[2].start_ns) / 1e6
        assert board_ms - float(m[3]) == pytest.approx(float(m[1]), abs=0.1)   # measured from the window's far edge


def test_extra_rows_leave_the_time_cells_blank(report):
    _, _, _, page = report
    extra = [r for r in page.table("handshake-2", "divergences") if r["kind"] == "EXTRA"]
    assert extra and all(r["event"] == "TCP_RST" for r in extra)
    for r in extra:
        assert (r["model (ms)"], r["timing"], r["predicted value"], r["observed value"]) == ("", "", "", "")
        assert r["board (ms)"] and FLOW.match(r["flow"])[2] == "80"


def test_a_pass_lists_the_measured_times_beside_the_models_windows(report):
    _, verdicts, _, page = report
    assert verdicts[3].ok
    text = page.text("link-flap")
    assert "The board did what Linux 6.1 would have done." in text
    rows = {r["event"]: r for r in page.table("link-flap", "compared")}
    down = rows["LINK_DOWN"]
    assert down["flow"] == "console" and "–" in down["model's window (ms)"]
    assert down["board (ms)"] and down["outside the window (ms)"] == "inside"
    assert re.fullmatch(r"[\d.]+ ms after link down", down["measured from the stimulus"])
    synacks = [r for r in page.table("link-flap", "compared") if r["event"] == "TCP_SYNACK"]
    assert synacks and all(FLOW.match(r["flow"])[1] == "ssh" and r["board (ms)"] for r in synacks)


def test_the_runs_clock_uncertainty_is_shown(report):
    _, verdicts, _, page = report
    spread = max(abs(o["spread_ns"]) for o in verdicts[0].timeline["offsets"])
    assert f"clock uncertainty of this run: ±{spread / 1e6:.1f} ms" in page.text("handshake")
    assert page.summary[1][page.summary[0].index("clock ± (ms)")] == f"{spread / 1e6:.1f}"


def test_an_error_is_shown_as_one_and_never_as_a_pass(report):
    _, _, _, page = report
    text = page.text("board-died")
    assert "ERROR" in text and BOARD_DIED in text and "not a pass" in text
    assert "would have done" not in text
    row = next(r for r in page.summary if r[0] == "board-died")
    assert row[1] == "ERROR"


def test_every_scenario_links_its_own_artifacts_and_no_link_is_broken(report):
    paths, _, folders, page = report
    base = paths["html"].parent
    assert not broken_links(base, page.links, page.ids)
    assert all(not Path(unquote(x)).is_absolute() for x in page.links)   # the folders move together
    for section, folder in zip(("handshake", "handshake-2", "syn-retransmit", "link-flap"), folders, strict=False):
        targets = {(base / unquote(x)).resolve() for x in page.sections[section]["links"] if not x.endswith(".png")}
        assert {folder / n for n in ("capture.pcap", "predicted.pcap", "console.log", "verdict.json")} <= targets
    assert not [x for x in page.sections["board-died"]["links"] if not x.endswith(".png")]


def test_the_timeline_has_a_row_per_flow_and_the_harness_stimuli(report):
    paths, verdicts, folders, _ = report
    from harness.report import ScenarioFiles

    view = ScenarioView.build(verdicts[0], "handshake", ScenarioFiles.in_dir(folders[0]), model_board().firmware)
    rows = timeline_rows(view)
    assert rows[0] == "harness" and len(rows) == 3
    assert {FLOW.match(r)[1] for r in rows[1:]} == {"ssh", "http"}
    assert [s.label for s in view.stimuli][:2] == ["connect ssh", "connect http"]
    flap = ScenarioView.build(verdicts[3], "link-flap", ScenarioFiles.in_dir(folders[3]))
    assert "console" in timeline_rows(flap)
    assert {"link down", "link up"} <= {s.label for s in flap.stimuli} and len(flap.link_down) == 1
    assert paths["png:link-flap"].read_bytes()[:4] == b"\x89PNG"


def test_field_values_read_as_a_person_reads_them():
    assert field_value("eth_src", 0x525400123456) == "52:54:00:12:34:56"
    assert field_value("tcp_flags", 0x12) == "SYN|ACK"
    assert field_value("tcp_opt_order", 2 | 4 << 8 | 8 << 16 | 1 << 24 | 3 << 32) == "MSS,SACK_PERM,TS,NOP,WS"
    assert field_value("tcp_mss", -1) == "absent"


def test_the_report_renders_in_headless_chromium_with_no_broken_link(report, tmp_path):
    paths, _, _, _ = report
    shot = tmp_path / "report.png"
    dom = Page(render(paths["html"], tmp_path / "profile", shot))
    assert shot.read_bytes()[:4] == b"\x89PNG" and drawn_fraction(shot) > 0.02
    assert len(dom.summary) == 1 + 5
    images = [x for x in dom.links if x.endswith(".png")]
    assert len(images) == 5
    assert not broken_links(paths["html"].parent, dom.links, dom.ids)


def test_bmc_hil_run_links_each_scenarios_sibling_folder(tmp_path):
    """`bmc-hil run` passes no folders: the report finds each scenario's subfolder."""
    board = tmp_path / "mtu.yaml"
    board.write_text("kind: model\nimage:\n  hostname: bmc\n  interface: {address: 10.0.2.15/24, gateway: 10.0.2.2, "
                     "mac: \"52:54:00:12:34:56\", mtu: 1400}\n  services: {ssh: {port: 22}, http: {port: 80}}\n")
    out = tmp_path / "run"
    proc = subprocess.run([sys.executable, "-m", "harness", "run", "handshake", "closed-port", "--board", str(board),
                           "--out", str(out)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1, proc.stderr[-2000:]
    page = Page((out / "report.html").read_text())
    assert not broken_links(out, page.links, page.ids)
    for scenario in ("handshake", "closed-port"):
        linked = {unquote(x) for x in page.links}
        assert {f"{scenario}/capture.pcap", f"{scenario}/console.log", f"{scenario}/verdict.json"} <= linked
    flows = {r["flow"] for r in page.table("handshake", "divergences")}
    assert {FLOW.match(f)[1] for f in flows} == {"ssh", "http"}   # service names from the steps run
    dom = Page(render(out / "report.html", tmp_path / "profile"))
    assert not broken_links(out, dom.links, dom.ids)


def test_compare_links_its_own_folder_and_names_flows_from_predicted_pcap(report, tmp_path):
    """`bmc-hil compare` judges captures kept elsewhere: its report links what is in its
    folder, and names the flows from predicted.pcap (which holds what the board received)."""
    _, _, folders, _ = report
    run = folders[0]
    out = tmp_path / "compare"
    board = tmp_path / "board.yaml"
    board.write_text("kind: model\n")
    proc = subprocess.run([sys.executable, "-m", "harness", "compare", "--board", str(board), "--scenario", "handshake",
                           "--pcap", str(run / "capture.pcap"), "--console", str(run / "console.log"),
                           "--host-events", str(run / "host-events.jsonl"), "--qmp", str(run / "qmp.jsonl"),
                           "--out", str(out)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1, proc.stderr[-2000:]
    page = Page((out / "report.html").read_text())
    assert not broken_links(out, page.links, page.ids)
    assert {"verdict.json", "predicted.pcap"} <= {unquote(x) for x in page.links}
    flows = [r["flow"] for r in page.table("handshake", "divergences") + page.table("handshake", "compared")]
    assert {FLOW.match(f)[2] for f in flows} == {"22", "80"}, flows


def test_unreadable_artifacts_leave_the_rows_named_by_kind(report, tmp_path):
    _, verdicts, folders, _ = report
    damaged = tmp_path / "damaged"
    shutil.copytree(folders[0], damaged)
    (damaged / "capture.pcap").write_bytes(b"not a pcap")
    (damaged / "predicted.pcap").write_bytes(b"")
    (damaged / "host-events.jsonl").write_text("not json\n{\"event\": 1}\n")
    paths = write_report(tmp_path / "report", [verdicts[0]], {"board": "model"}, folders=[damaged])
    page = Page(paths["html"].read_text())
    assert {r["flow"] for r in page.table("handshake", "divergences")} == {"TCP_SYNACK"}
    assert not broken_links(paths["html"].parent, page.links, page.ids)


def test_without_the_declared_config_a_connect_step_names_the_connection_it_opened(report, tmp_path):
    """An emulated board's steps.json says which service a connect step asked for, not its
    port: the connection opened to the board just after the step is that service's."""
    import json

    _, verdicts, folders, _ = report
    run = tmp_path / "run"
    shutil.copytree(folders[0], run)
    steps = json.loads((run / "steps.json").read_text())
    (run / "steps.json").write_text(json.dumps([{k: v for k, v in s.items() if k != "guest_port"} for s in steps]))
    paths = write_report(tmp_path / "report", [verdicts[0]], {"board": "model"}, folders=[run])
    flows = {FLOW.match(r["flow"]).group(1, 2) for r in Page(paths["html"].read_text()).table("handshake", "divergences")}
    assert flows == {("ssh", "22"), ("http", "80")}


def test_a_report_rewritten_as_verdicts_come_in_draws_each_plot_once(report, tmp_path, monkeypatch):
    """The nightly rewrites report.html after every scenario: with a ReportCache a verdict
    already drawn keeps its PNG (drawn once, not once per later scenario), a verdict that
    changed (a re-run's) is drawn again, and the page is the one a single write gives."""
    import dataclasses

    import harness.report as rep

    _, verdicts, folders, _ = report
    drawn = []
    real_plot = rep.timeline_plot
    monkeypatch.setattr(rep, "timeline_plot", lambda v, path, view=None: drawn.append(v.scenario) or
                        real_plot(v, path, view))
    cache = rep.ReportCache()
    for k in range(1, len(verdicts) + 1):
        rep.write_report(tmp_path / "inc", verdicts[:k], {"board": "model"}, folders=folders[:k],
                         declared=model_board().firmware, cache=cache)
    assert drawn == [v.scenario for v in verdicts]
    changed = [*verdicts[:-1], dataclasses.replace(verdicts[-1], error="the board died again")]
    rep.write_report(tmp_path / "inc", changed, {"board": "model"}, folders=folders,
                     declared=model_board().firmware, cache=cache)
    assert drawn[len(verdicts):] == [verdicts[-1].scenario]
    rep.write_report(tmp_path / "once", changed, {"board": "model"}, folders=folders, declared=model_board().firmware)
    assert (tmp_path / "inc" / "report.html").read_text().replace(str(tmp_path / "inc"), "") == \
        (tmp_path / "once" / "report.html").read_text().replace(str(tmp_path / "once"), "")
