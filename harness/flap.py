"""Link-flap experiments: take the board's link down and up N times and measure how long
the firmware takes to notice each change, against the window the stack model gives
(phylib polls the PHY once a second with an unknown phase, so Linux logs a change
between 0 and 1 s after it happens).

The model is asked, not hard-coded: `model_windows()` runs `models.board.predict` over
the same down/up timeline and reads the windows of its `Link is Down` / `Link is Up`
console lines relative to their cause.
"""

from __future__ import annotations

import json
import re
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from harness.board.base import Board
from harness.errors import BoardError, ConsoleTimeout

LINK_DOWN_RE = re.compile(r"eth0: Link is Down")
LINK_UP_RE = re.compile(r"eth0: Link is Up")
TRAFFIC_KINDS = ("idle", "ssh", "http")


@dataclass(frozen=True)
class DetectionWindow:
    """How long after a link change Linux may log it: [earliest, latest] ns after the cause."""

    earliest_ns: int
    latest_ns: int


@dataclass
class FlapCycle:
    """One down/up cycle as observed, with the model's windows and the verdict."""

    cycle: int
    down_delay_ns: int | None
    up_delay_ns: int | None
    down_window: DetectionWindow
    up_window: DetectionWindow
    tolerance_ns: int
    down_line: str = ""
    up_line: str = ""
    traffic_errors: int = 0

    def _inside(self, delay: int | None, w: DetectionWindow) -> bool:
        return delay is not None and w.earliest_ns - self.tolerance_ns <= delay <= w.latest_ns + self.tolerance_ns

    @property
    def down_ok(self) -> bool:
        return self._inside(self.down_delay_ns, self.down_window)

    @property
    def up_ok(self) -> bool:
        return self._inside(self.up_delay_ns, self.up_window)

    @property
    def verdict(self) -> str:
        if self.down_delay_ns is None:
            return "MISSING Link is Down"
        if self.up_delay_ns is None:
            return "MISSING Link is Up"
        if not self.down_ok:
            return "LATE Link is Down" if self.down_delay_ns > self.down_window.latest_ns else "EARLY Link is Down"
        if not self.up_ok:
            return "LATE Link is Up" if self.up_delay_ns > self.up_window.latest_ns else "EARLY Link is Up"
        return "ok"

    def to_json(self) -> dict:
        d = asdict(self)
        d["verdict"] = self.verdict
        return d


def model_windows(config, down_s: float, up_s: float) -> tuple[DetectionWindow, DetectionWindow]:
    """The model's detection windows for a link that goes down, then up `down_s` later."""
    from models.board import predict
    from models.clock import sec

    settle = sec(10)  # let the modelled board finish booting before the flap
    t_down, t_up = settle, settle + sec(down_s)
    pred = predict(config, [{"t": t_down, "kind": "link", "up": False},
                            {"t": t_up, "kind": "link", "up": True}], until=t_up + sec(up_s))
    lines = [e for e in pred.of_kind("console") if e.t >= t_down]
    down = next((e for e in lines if LINK_DOWN_RE.search(e.detail["text"])), None)
    up = next((e for e in lines if LINK_UP_RE.search(e.detail["text"]) and e.t >= t_up), None)
    if down is None or up is None or down.window is None or up.window is None:
        raise BoardError("the model predicts no Link is Down / Link is Up window for this flap; "
                         "is the declared board an NC-SI one (no PHY)?")
    return (DetectionWindow(down.window.earliest - t_down, down.window.latest - t_down),
            DetectionWindow(up.window.earliest - t_up, up.window.latest - t_up))


class _Traffic:
    """Background traffic during the flap: SSH commands or HTTP GETs, counting failures."""

    def __init__(self, board: Board, kind: str):
        if kind not in TRAFFIC_KINDS:
            raise ValueError(f"traffic {kind!r}; expected one of {', '.join(TRAFFIC_KINDS)}")
        self.board, self.kind = board, kind
        self.ok = 0
        self.errors = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=f"traffic-{kind}", daemon=True)

    def start(self) -> None:
        if self.kind != "idle":
            self._thread.start()

    def _once(self) -> None:
        if self.kind == "ssh":
            self.board.run("true", timeout=5)
        else:
            import socket

            http = next((s.port for s in self.board.declared.services if s.name == "http"), 80)
            with socket.create_connection(self.board.service_address("http", http), timeout=3) as s:
                s.sendall(b"GET / HTTP/1.0\r\n\r\n")
                s.settimeout(3)
                if not s.recv(16).startswith(b"HTTP/"):
                    raise OSError("no HTTP answer")

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self._once()
                self.ok += 1
            except Exception:  # noqa: BLE001 - while the link is down, failures are the point
                self.errors += 1
            self._stop.wait(0.2)

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=10)


def _wait_line(board: Board, pattern: re.Pattern, since: int, stimulus_ns: int, timeout: float):
    try:
        line, _ = board.console.expect(pattern, timeout, since=since)
    except ConsoleTimeout:
        return None, ""
    return line.host_monotonic_ns - stimulus_ns, line.text


def run_flap(board: Board, down_s: float, up_s: float, cycles: int, traffic: str = "idle",
             tolerance_ns: int = 250_000_000, on_cycle=None) -> list[FlapCycle]:
    """Flap `board`'s link `cycles` times; call `on_cycle(FlapCycle)` after each one."""
    if down_s <= 0 or up_s <= 0 or cycles <= 0:
        raise ValueError("--down, --up and --cycles must be positive")
    down_w, up_w = model_windows(board.declared, down_s, up_s)
    load = _Traffic(board, traffic)
    load.start()
    results = []
    try:
        for n in range(1, cycles + 1):
            errors_before = load.errors
            since = board.console.cursor()
            board.set_link(False)
            t_down = board.host_events[-1].host_monotonic_ns
            time.sleep(down_s)
            down_delay, down_text = _wait_line(board, LINK_DOWN_RE, since, t_down,
                                               timeout=max(0.1, (down_w.latest_ns + tolerance_ns) / 1e9 - down_s))
            since = board.console.cursor()
            board.set_link(True)
            t_up = board.host_events[-1].host_monotonic_ns
            time.sleep(up_s)
            up_delay, up_text = _wait_line(board, LINK_UP_RE, since, t_up,
                                           timeout=max(0.1, (up_w.latest_ns + tolerance_ns) / 1e9 - up_s))
            cyc = FlapCycle(n, down_delay, up_delay, down_w, up_w, tolerance_ns, down_text, up_text,
                            load.errors - errors_before)
            results.append(cyc)
            if on_cycle is not None:
                on_cycle(cyc)
    finally:
        load.stop()
    return results


def write_report(cycles: list[FlapCycle], out_dir: Path, meta: dict) -> dict[str, Path]:
    """flap.json and a PNG plot of detection delays against the model's windows."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"json": out_dir / "flap.json", "png": out_dir / "flap.png"}
    paths["json"].write_text(json.dumps({**meta, "cycles": [c.to_json() for c in cycles]}, indent=2) + "\n")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    fig, axes = plt.subplots(1, 2, figsize=(10, 4), sharey=True)
    for ax, what in zip(axes, ("down", "up"), strict=True):
        w = getattr(cycles[0], f"{what}_window") if cycles else DetectionWindow(0, 0)
        tol = cycles[0].tolerance_ns if cycles else 0
        xs = [c.cycle for c in cycles]
        ys = [getattr(c, f"{what}_delay_ns") for c in cycles]
        ax.axhspan(w.earliest_ns / 1e6, w.latest_ns / 1e6, color="tab:green", alpha=0.2, label="model window")
        ax.axhspan(w.latest_ns / 1e6, (w.latest_ns + tol) / 1e6, color="tab:olive", alpha=0.15, label="tolerance")
        ok = [(x, y / 1e6) for x, y in zip(xs, ys, strict=True) if y is not None]
        ax.plot([p[0] for p in ok], [p[1] for p in ok], "o", color="tab:blue", label="observed")
        missing = [x for x, y in zip(xs, ys, strict=True) if y is None]
        if missing:
            ax.plot(missing, [0] * len(missing), "x", color="tab:red", label="missing")
        ax.set_title(f"Link is {what.capitalize()}: detection delay")
        ax.set_xlabel("cycle")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("ms after the link change")
    axes[0].legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    fig.savefig(paths["png"], dpi=100)
    plt.close(fig)
    return paths
