"""`bmc-hil`: the command line (also `python -m harness`).

Exit codes: 0 success, 1 a check failed (the board did not do what it should), 2 error
(bad input, missing tools, a board that cannot be reached).
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import time
from pathlib import Path

from harness.errors import HarnessError, Terminated

EXIT_OK, EXIT_FAIL, EXIT_ERROR = 0, 1, 2
# Beyond this the windows are minutes wide and the oracle no longer tells timings apart.
MAX_TOLERANCE_SCALE = 100.0


def _stderr(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _default_out(name: str) -> Path:
    return Path("bmc-hil-runs") / f"{time.strftime('%Y%m%d-%H%M%S')}-{name}"


# -- setup / image ----------------------------------------------------------------------
def cmd_setup(args) -> int:
    from harness.sysdeps import run_setup

    run_setup(log=_stderr, dry_run=args.dry_run)
    return EXIT_OK


def cmd_image_build(args) -> int:
    from harness.board.boardfile import load_firmware_config
    from harness.image import build_image
    from models.config import FirmwareConfig

    if args.config:
        config = load_firmware_config(args.config)
    else:
        config = FirmwareConfig.default()
    if args.refresh_packages:
        from harness.image.initramfs import fetch_board_debs

        fetch_board_debs(log=_stderr, refresh=True)
    start = time.monotonic()
    image = build_image(config, log=_stderr)
    info = {"kernel": str(image.kernel.zimage), "kernel_recipe": image.kernel.recipe_hash,
            "dtbs": {m: str(image.kernel.dtb(m)) for m in ("ast2500-evb", "romulus-bmc")},
            "initramfs": str(image.initramfs), "seconds": round(time.monotonic() - start, 3)}
    if args.json:
        print(json.dumps(info, indent=2))
    else:
        for k, v in info.items():
            print(f"{k}: {v}")
    return EXIT_OK


# -- boot ------------------------------------------------------------------------------
def cmd_boot(args) -> int:
    from harness.board import BoardState, BoardStrategy, load_board_file, open_board, timeouts_for

    spec = load_board_file(args.board)
    out = Path(args.out) if args.out else _default_out(spec.name)
    board = open_board(spec, out, log=_stderr)
    strategy = BoardStrategy(board, timeouts_for(spec))
    with board:
        if args.check:
            return _boot_check(board, strategy, args)
        result = strategy.transition(BoardState.SSH)
        return _serve(board, result, args)


def _boot_check(board, strategy, args) -> int:
    from harness.board import BoardState

    start = time.monotonic()
    try:
        result = strategy.transition(BoardState.SSH)
        uname = board.run("uname -a", timeout=30).stdout.strip()
    except HarnessError as exc:
        report = {"ok": False, "error": str(exc), "out": str(board.out_dir)}
        print(json.dumps(report, indent=2) if args.json else f"boot check FAILED: {exc}")
        return EXIT_ERROR  # a board that cannot be reached is an error, not a divergence
    ready = time.monotonic() - start
    report = {"ok": True, "board": board.name, "boot_to_ready_s": round(ready, 3),
              "steps_s": {k: round(v, 3) for k, v in result.seconds.items()}, "uname": uname,
              "out": str(board.out_dir)}
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(f"uname -a: {uname}")
        print(f"boot to SSH-ready: {ready:.2f} s  ("
              + ", ".join(f"{k} {v:.2f} s" for k, v in result.seconds.items()) + ")")
        print(f"artifacts: {board.out_dir}")
    return EXIT_OK


def _serve(board, result, args) -> int:
    """Keep the board up for other `bmc-hil` commands until Ctrl-C."""
    from harness.board.console_proxy import ConsoleProxy
    from harness.board.qemu import QemuBoard
    from harness.session import Session

    if not isinstance(board, QemuBoard):
        print(f"board {board.name} is up (SSH ready in {result.total:.2f} s)")
        return EXIT_OK
    proxy = ConsoleProxy(board.console)
    session = Session(name=board.name, pid=_pid(), console_url=proxy.url, ssh_host="127.0.0.1",
                      ssh_port=board.host_port("ssh"), ssh_user=board.image.credentials.user,
                      key_file=str(board.image.credentials.key_file),
                      control_socket=str(board.control_socket), out_dir=str(board.out_dir),
                      forwards={k: {"guest": g, "host": h} for k, (g, h) in board.forwards.items()})
    session.save()
    print(f"board {board.name} is up: SSH ready in {result.total:.2f} s")
    print(f"  console : {proxy.url}   (bmc-hil console)")
    for name, (g, h) in board.forwards.items():
        print(f"  {name:8}: 127.0.0.1:{h} -> board port {g}")
    print(f"  logs    : {board.out_dir}")
    print("Ctrl-C powers it off.", flush=True)
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    try:
        while not stop:
            board.check_alive()
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    finally:
        session.remove()
        proxy.close()
    return EXIT_OK


def _pid() -> int:
    import os

    return os.getpid()


# -- console / ssh / link / qmp ----------------------------------------------------------
def _session_or_spec(board_arg: str):
    from harness.board import load_board_file
    from harness.session import Session

    spec = load_board_file(board_arg)
    if spec.kind == "emulated":
        return Session.load(spec.name), spec
    return None, spec


def cmd_console(args) -> int:
    import serial
    from serial.tools.miniterm import Miniterm

    session, spec = _session_or_spec(args.board)
    url = session.console_url if session else spec.console_url
    try:
        port = serial.serial_for_url(url, baudrate=spec.baudrate, timeout=1)
    except (ValueError, serial.SerialException) as exc:
        raise HarnessError(f"console {url}: {exc}") from exc
    term = Miniterm(port, eol="lf")
    term.set_rx_encoding("utf-8")
    term.set_tx_encoding("utf-8")
    _stderr(f"--- console {url}; quit: Ctrl-] ---")
    term.start()
    try:
        term.join(True)
    except KeyboardInterrupt:
        pass
    term.join()
    term.close()
    return EXIT_OK


def cmd_ssh(args) -> int:
    from harness.board.ssh import SSHConnection

    if not args.command:
        raise HarnessError("bmc-hil ssh: give the command to run, e.g. `bmc-hil ssh uname -a`")
    session, spec = _session_or_spec(args.board)
    if session:
        conn = SSHConnection(session.ssh_host, session.ssh_port, session.ssh_user,
                             key_file=Path(session.key_file), known_hosts="auto-accept")
    else:
        s = spec.ssh
        conn = SSHConnection(s.host, s.port, s.user, password=s.password, key_file=s.key_file,
                             known_hosts=s.known_hosts, known_hosts_file=s.known_hosts_file)
    try:
        result = conn.run(" ".join(args.command), timeout=args.timeout)
    finally:
        conn.close()
    sys.stdout.write(result.stdout)
    sys.stderr.write(result.stderr)
    return result.exit_status


def cmd_link(args) -> int:
    up = args.state == "up"
    session, spec = _session_or_spec(args.board)
    if session:
        _qmp_commands(Path(session.control_socket), [("set_link", {"name": "net0", "up": up})])
    else:
        from harness.board.real import RealBoard

        with RealBoard(spec, Path(args.out) if args.out else _default_out(spec.name)) as board:
            board.set_link(up)
    print(f"link {args.state}")
    return EXIT_OK


def _qmp_commands(socket_path: Path, commands) -> list:
    from harness.board.qmp import Qmp

    qmp = Qmp(socket_path, name="bmc-hil-cli")
    qmp.connect(timeout=5)
    try:
        return [qmp.execute(name, arguments) for name, arguments in commands]
    finally:
        qmp.close()


def cmd_qmp(args) -> int:
    commands = []
    for item in args.commands:
        name, _, rest = item.partition(" ")
        try:
            arguments = json.loads(rest) if rest.strip() else None
        except json.JSONDecodeError as exc:
            raise HarnessError(f"QMP arguments of {name!r} are not JSON: {exc}") from exc
        commands.append((name, arguments))
    for reply in _qmp_commands(Path(args.socket), commands):
        print(json.dumps(reply))
    return EXIT_OK


# -- predict ---------------------------------------------------------------------------
def cmd_predict(args) -> int:
    from harness.board import load_board_file
    from harness.scenario import MODEL_SCENARIO_START_NS, load_scenario, model_inputs
    from models.board import predict

    spec = load_board_file(args.board)
    scenario = load_scenario(args.scenario)
    start = MODEL_SCENARIO_START_NS
    pred = predict(spec.firmware, model_inputs(scenario, spec.firmware, start), until=start + scenario.end_ns,
                   seed=args.seed)
    if args.json:
        data = json.loads(pred.to_json())
        data.update(scenario=scenario.name, board=spec.name, scenario_start_ns=start)
        print(json.dumps(data, indent=1))
        return EXIT_OK
    from rich.console import Console
    from rich.table import Table

    t = Table(title=f"{scenario.name} on {spec.name}: what Linux 6.1 should do (s from scenario start)")
    for col in ("t", "window", "kind", "what"):
        t.add_column(col)
    for e in pred.events:
        if e.t < start:
            continue  # the modelled boot before the scenario
        d = e.detail
        if e.kind == "console":
            what = d["text"]
        elif e.kind == "frame":
            what = " ".join(f"{k}={d[k]}" for k in ("proto", "op", "src_ip", "dst_ip", "sport", "dport", "flags",
                                                     "mss", "wscale", "sack_perm", "ts") if d.get(k) is not None)
        else:
            what = ", ".join(f"{k}={v}" for k, v in d.items() if k not in ("hex", "raw"))
        win = "" if e.window is None else f"{(e.window.earliest - start) / 1e9:.3f}..{(e.window.latest - start) / 1e9:.3f}"
        t.add_row(f"{(e.t - start) / 1e9:.3f}", win, e.kind, what)
    Console().print(t)
    return EXIT_OK


# -- run / compare -----------------------------------------------------------------------
def _tolerance(args):
    from harness.oracle import Tolerance

    if not 0 < args.tolerance_scale <= MAX_TOLERANCE_SCALE:
        raise HarnessError(f"--tolerance-scale must be a number in (0, {MAX_TOLERANCE_SCALE:g}], got "
                           f"{args.tolerance_scale}")
    return Tolerance().scaled(args.tolerance_scale)


def cmd_run(args) -> int:
    from harness.board import load_board_file
    from harness.paths import prepare_run_dir, unique_names
    from harness.report import write_report
    from harness.scenario import builtin_scenarios, load_scenario

    spec = load_board_file(args.board)
    names = args.scenarios or list(builtin_scenarios())
    scenarios = [load_scenario(n) for n in names]  # all parsed before the board is touched
    out = Path(args.out) if args.out else _default_out(f"run-{spec.name}")
    tol = _tolerance(args)
    prepare_run_dir(out)
    verdicts, interrupted = [], None
    for sc, folder in zip(scenarios, unique_names([sc.name for sc in scenarios]), strict=True):
        if interrupted is not None:
            verdicts.append(_not_compared(sc.name, f"not run: {interrupted}"))
            continue
        _stderr(f"scenario {sc.name} ...")
        try:
            v = _run_one(spec, sc, out / folder, tol)
        except KeyboardInterrupt as exc:
            interrupted = _interruption(exc)
            v = _not_compared(sc.name, f"{interrupted} during the scenario; its artifacts so far are kept")
        verdicts.append(v)
        _stderr(f"scenario {sc.name}: " + ("pass" if v.ok else f"error: {v.error}" if v.error
                                            else f"{len(v.rows)} divergences"))
    paths = write_report(out, verdicts, {"board": spec.name, "tolerance_scale": args.tolerance_scale,
                                         "interrupted": interrupted})
    code = _print_verdicts(verdicts, paths, args.json)
    if interrupted is not None:
        raise Terminated() if "SIGTERM" in interrupted else KeyboardInterrupt()
    return code


def _not_compared(scenario: str, error: str):
    from harness.oracle import Verdict

    return Verdict.not_compared(scenario, error)


def _interruption(exc: BaseException) -> str:
    return "interrupted by SIGTERM" if isinstance(exc, Terminated) else "interrupted by Ctrl-C"


def _run_one(spec, sc, folder: Path, tol):
    """One scenario, start to verdict. Whatever goes wrong is this scenario's error verdict
    (a board that does not boot, an emulator that dies, a harness bug with its traceback in
    the scenario's folder); the run goes on with the next scenario on a fresh board."""
    from harness.runner import check_scenario, run_scenario

    try:
        run = run_scenario(spec, sc, folder, log=_stderr)
        return check_scenario(spec, run, tol)
    except HarnessError as exc:
        return _not_compared(sc.name, str(exc))
    except Exception as exc:  # a harness bug: one scenario's error, with the traceback kept
        log = _write_traceback(folder)
        return _not_compared(sc.name, f"internal error: {type(exc).__name__}: {exc} (traceback: {log})")


def _write_traceback(folder: Path | None) -> Path:
    """The current exception's traceback in `folder` (else the cache's), for a bug report."""
    import traceback

    from harness.paths import cache_dir

    for base in ([folder] if folder is not None else []) + [cache_dir() / "tracebacks"]:
        try:
            base.mkdir(parents=True, exist_ok=True)
            path = base / f"traceback-{time.strftime('%Y%m%d-%H%M%S')}-{_pid()}.log"
            path.write_text(traceback.format_exc())
            return path
        except OSError:
            continue
    return Path("(not written)")


def _print_verdicts(verdicts, paths, as_json: bool) -> int:
    if as_json:
        print(paths["json"].read_text())
    else:
        from rich.console import Console
        from rich.table import Table

        t = Table(title="bmc-hil verdicts")
        for col in ("scenario", "verdict", "predicted", "observed", "divergences"):
            t.add_column(col)
        for v in verdicts:
            word = "[green]pass[/green]" if v.ok else "[red]ERROR[/red]" if v.error else "[red]FAIL[/red]"
            t.add_row(v.scenario, word, str(v.predicted),
                      str(v.observed), str(len(v.rows)))
        con = Console()
        con.print(t)
        for v in verdicts:
            if v.error:
                con.print(f"  {v.scenario}: error: {v.error}")
            for r in v.rows:
                what = f"{r['kind']} {r['stream_name']}" + (f" field {r['field']}: predicted {r['pred_value']}, "
                                                            f"observed {r['obs_value']}" if r.get("field") else "")
                con.print(f"  {v.scenario}: {what}")
        con.print(f"report: {paths['html']}")
    if any(v.error for v in verdicts):
        return EXIT_ERROR
    return EXIT_OK if all(v.ok for v in verdicts) else EXIT_FAIL


def cmd_compare(args) -> int:
    from harness.board import load_board_file
    from harness.oracle import Artifacts, check_run
    from harness.paths import prepare_run_dir
    from harness.report import write_report
    from harness.scenario import load_scenario

    spec = load_board_file(args.board)
    sc = load_scenario(args.scenario)
    pcaps = [_input_file(p, "--pcap") for p in args.pcap]
    art = Artifacts(pcaps, _input_file(args.console, "--console"), _input_file(args.host_events, "--host-events"),
                    _input_file(args.qmp, "--qmp") if args.qmp else None, args.capture_clock, salvage=args.salvage)
    start, end = _compare_window(art.host_events, sc, args.start_wall_ns, args.end_wall_ns)
    out = Path(args.out) if args.out else _default_out(f"compare-{spec.name}")
    prepare_run_dir(out)
    v = check_run(art, spec.firmware, start, end, sc.name, _tolerance(args), out,
                  expect=getattr(sc, "expect", ()))
    paths = write_report(out, [v], {"board": spec.name})
    return _print_verdicts([v], paths, args.json)


def _input_file(path: str, option: str) -> Path:
    p = Path(path)
    if not p.exists():
        raise HarnessError(f"{option} {path}: no such file")
    if not p.is_file():
        raise HarnessError(f"{option} {path}: not a file")
    return p


def _compare_window(host_events: Path, sc, start: int | None, end: int | None) -> tuple[int, int]:
    """The window `compare` judges: by default the scenario's own, from the run's
    scenario_start and scenario_end records (a run's records also hold the boot before
    it, which the scenario's expectations are not about). Empty or inverted is an error."""
    if start is None:
        start = _wall_of_record(host_events, "scenario_start", "--start-wall-ns")
    if end is None:
        try:
            end = _wall_of_record(host_events, "scenario_end", "--end-wall-ns")
        except HarnessError:
            end = start + sc.end_ns
    if end <= start:
        raise HarnessError(f"the comparison window is empty or inverted: it ends at {end} ns, "
                           f"{(start - end) / 1e9:g} s before or at its start ({start} ns)")
    return start, end


def _wall_of_record(host_events: Path, name: str, option: str) -> int:
    """The host wall time of the first `name` record in a host-events.jsonl."""
    from harness.ingest.events import read_host_events

    table = read_host_events(host_events)
    for t, event in zip(table.time_ns.tolist(), table.names, strict=True):
        if event == name:
            return int(t)
    raise HarnessError(f"{host_events}: no {name} record (a run written by `bmc-hil run` has one); give {option}")


# -- flap ------------------------------------------------------------------------------
# An experiment longer than a day is a soak for bench/, not a flap.
MAX_FLAP_CYCLES, MAX_FLAP_PHASE_S = 10_000, 3600.0


def _check_flap_args(args) -> None:
    """Before the board boots: a bad number fails in a second, not after a minute's boot."""
    if not 1 <= args.cycles <= MAX_FLAP_CYCLES:
        raise HarnessError(f"--cycles must be 1..{MAX_FLAP_CYCLES}, got {args.cycles}")
    for opt in ("down", "up"):
        val = getattr(args, opt)
        if not 0 < val <= MAX_FLAP_PHASE_S:
            raise HarnessError(f"--{opt} must be seconds in (0, {MAX_FLAP_PHASE_S:g}], got {val}")
    if not 0 <= args.tolerance_ms <= MAX_FLAP_PHASE_S * 1e3:
        raise HarnessError(f"--tolerance-ms must be 0..{MAX_FLAP_PHASE_S * 1e3:g}, got {args.tolerance_ms}")


def cmd_flap(args) -> int:
    from rich.console import Console
    from rich.live import Live
    from rich.table import Table

    from harness.board import BoardState, BoardStrategy, load_board_file, open_board, timeouts_for
    from harness.flap import run_flap, write_report

    _check_flap_args(args)
    from harness.paths import prepare_run_dir

    spec = load_board_file(args.board)
    out = Path(args.out) if args.out else _default_out(f"flap-{spec.name}")
    prepare_run_dir(out)
    term = Console(stderr=not args.json)
    board = open_board(spec, out, log=_stderr)
    rows = []

    def table() -> Table:
        t = Table(title=f"link flap: {args.cycles} x (down {args.down:g} s, up {args.up:g} s), traffic {args.traffic}")
        for col in ("cycle", "Link is Down after", "Link is Up after", "model window", "traffic errors", "verdict"):
            t.add_column(col, justify="right" if col != "verdict" else "left")
        def fmt(ns):
            return "-" if ns is None else f"{ns / 1e6:.0f} ms"

        for c in rows:
            win = f"{c.down_window.earliest_ns / 1e6:.0f}..{c.down_window.latest_ns / 1e6:.0f} ms (+{c.tolerance_ns / 1e6:.0f})"
            style = "green" if c.verdict == "ok" else "red"
            t.add_row(str(c.cycle), fmt(c.down_delay_ns), fmt(c.up_delay_ns), win, str(c.traffic_errors),
                      f"[{style}]{c.verdict}[/{style}]")
        return t

    with board:
        BoardStrategy(board, timeouts_for(spec)).transition(BoardState.SSH)
        board.capture_start(out / "flap.pcap")
        with Live(table(), console=term, refresh_per_second=4, transient=args.json) as live:
            def on_cycle(c):
                rows.append(c)
                live.update(table())

            cycles = run_flap(board, args.down, args.up, args.cycles, args.traffic,
                              tolerance_ns=int(args.tolerance_ms * 1e6), on_cycle=on_cycle)
        board.capture_stop()
    paths = write_report(cycles, out, {"board": spec.name, "down_s": args.down, "up_s": args.up,
                                       "traffic": args.traffic})
    bad = [c for c in cycles if c.verdict != "ok"]
    if args.json:
        print(paths["json"].read_text())
    else:
        term.print(f"{len(cycles) - len(bad)}/{len(cycles)} cycles inside the model's window; "
                   f"plot {paths['png']}, capture {out / 'flap.pcap'}")
    return EXIT_FAIL if bad else EXIT_OK


# -- nightly ---------------------------------------------------------------------------
def cmd_nightly(args) -> int:
    import shlex

    from harness.nightly import nightly

    out = Path(args.out) if args.out else _default_out("nightly")
    result = nightly(args.board, out, args.tolerance_scale, args.scenarios, shlex.split(args.pytest_args),
                     shlex.split(args.robot_args), Path(args.suites) if args.suites else None)
    for s in result.scenarios:
        _stderr(f"scenario {s.name}: {s.status}")
    for s in result.suites:
        _stderr(f"{s.name}: {s.passed} passed, {s.failed + s.errors} failed, {s.skipped} skipped"
                + (f"; {s.error}" if s.error else ""))
    _stderr(f"summary: {result.out / 'summary.html'}")
    return 130 if result.interrupted else result.exit_code


# -- parser ----------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="bmc-hil", description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    s = sub.add_parser("setup", help="install the system packages the harness needs (as root)")
    s.add_argument("--dry-run", action="store_true", help="print what would be installed")
    s.set_defaults(func=cmd_setup)

    img = sub.add_parser("image", help="the emulated firmware image")
    img_sub = img.add_subparsers(dest="image_command", required=True, metavar="ACTION")
    b = img_sub.add_parser("build", help="build (or fetch from the cache) the emulated image")
    b.add_argument("--config", help="firmware config YAML to build from (default: the built-in one)")
    b.add_argument("--refresh-packages", action="store_true",
                   help="resolve and download the board's Debian packages again")
    b.add_argument("--json", action="store_true", help="print the result as JSON")
    b.set_defaults(func=cmd_image_build)

    def board_arg(sp):
        sp.add_argument("--board", default="emulated", metavar="FILE|emulated",
                        help="board file, or 'emulated' for the built-in emulated board (default)")

    bt = sub.add_parser("boot", help="boot a board to SSH-ready (and keep it up, or --check and stop)")
    board_arg(bt)
    bt.add_argument("--check", action="store_true",
                    help="boot, wait for SSH, run `uname -a`, print boot-to-ready seconds, power off")
    bt.add_argument("--out", help="artifact folder (default: bmc-hil-runs/TIME-NAME)")
    bt.add_argument("--json", action="store_true", help="print the check's result as JSON")
    bt.set_defaults(func=cmd_boot)

    c = sub.add_parser("console", help="attach a terminal to the board's serial console (quit: Ctrl-])")
    board_arg(c)
    c.set_defaults(func=cmd_console)

    sh = sub.add_parser("ssh", help="run a command on the board over SSH; exits with its status")
    board_arg(sh)
    sh.add_argument("--timeout", type=float, default=60.0)
    sh.add_argument("command", nargs=argparse.REMAINDER, help="the command line to run on the board")
    sh.set_defaults(func=cmd_ssh)

    ln = sub.add_parser("link", help="take the board's Ethernet link down or up")
    board_arg(ln)
    ln.add_argument("state", choices=["down", "up"])
    ln.add_argument("--out", help="artifact folder for a real board's host-event log")
    ln.set_defaults(func=cmd_link)

    rn = sub.add_parser("run", help="drive a board through scenarios, capture, and compare with the model")
    rn.add_argument("scenarios", nargs="*", metavar="SCENARIO",
                    help="scenario files or built-in names (default: every built-in scenario)")
    board_arg(rn)
    rn.add_argument("--out", help="report and artifact folder (default: bmc-hil-runs/TIME-run-NAME)")
    rn.add_argument("--tolerance-scale", type=float, default=1.0, help="multiply every timing tolerance")
    rn.add_argument("--json", action="store_true", help="print the report as JSON")
    rn.set_defaults(func=cmd_run)

    cp = sub.add_parser("compare", help="compare captures taken elsewhere with the model")
    board_arg(cp)
    cp.add_argument("--pcap", action="append", required=True, help="capture file (repeat for a power cycle)")
    cp.add_argument("--console", required=True, help="console log written by a bmc-hil board driver")
    cp.add_argument("--host-events", required=True, help="host-events.jsonl of the same run")
    cp.add_argument("--qmp", help="qmp.jsonl (emulated boards)")
    cp.add_argument("--scenario", required=True, help="the scenario that was run (file or built-in name)")
    cp.add_argument("--capture-clock", default="host-wall", choices=["host-wall", "qemu-filter-dump"])
    cp.add_argument("--start-wall-ns", type=int,
                    help="start of the compared window (default: the run's scenario_start record)")
    cp.add_argument("--end-wall-ns", type=int,
                    help="end of the compared window (default: the run's scenario_end record, else start + "
                         "the scenario's duration)")
    cp.add_argument("--tolerance-scale", type=float, default=1.0)
    cp.add_argument("--salvage", action="store_true",
                    help="compare a damaged capture up to its cut (the verdict names the cut) instead of "
                         "making it an error")
    cp.add_argument("--out", help="report folder")
    cp.add_argument("--json", action="store_true")
    cp.set_defaults(func=cmd_compare)

    pr = sub.add_parser("predict", help="what the stack model says the board should do in a scenario")
    pr.add_argument("scenario", help="scenario YAML file")
    board_arg(pr)
    pr.add_argument("--seed", type=int, default=0, help="seed for what Linux randomises (default 0)")
    pr.add_argument("--json", action="store_true", help="print the prediction as JSON")
    pr.set_defaults(func=cmd_predict)

    fl = sub.add_parser("flap", help="link-flap experiment: detection delays against the model's window")
    board_arg(fl)
    fl.add_argument("--down", type=float, default=2.0, help="seconds the link stays down (default 2)")
    fl.add_argument("--up", type=float, default=5.0, help="seconds the link stays up (default 5)")
    fl.add_argument("--cycles", type=int, default=20, help="number of down/up cycles (default 20)")
    fl.add_argument("--traffic", choices=["idle", "ssh", "http"], default="idle",
                    help="traffic kept running during the flap (default idle)")
    fl.add_argument("--tolerance-ms", type=float, default=250.0,
                    help="slack beyond the model's window for console latency and emulation (default 250)")
    fl.add_argument("--out", help="artifact folder (default: bmc-hil-runs/TIME-flap-NAME)")
    fl.add_argument("--json", action="store_true", help="print the cycles as JSON")
    fl.set_defaults(func=cmd_flap)

    nt = sub.add_parser("nightly", help="the unattended run: every scenario through the oracle, the pytest and "
                                        "Robot suites, one HTML summary")
    board_arg(nt)
    nt.add_argument("--out", help="results folder (default: bmc-hil-runs/TIME-nightly)")
    nt.add_argument("--tolerance-scale", type=float, default=1.0, help="multiply every timing tolerance")
    nt.add_argument("--scenario", dest="scenarios", action="append", metavar="NAME|FILE",
                    help="run this scenario through the oracle (repeat; default: every built-in scenario)")
    nt.add_argument("--pytest-args", default="", metavar="'ARGS'",
                    help="more arguments for the pytest suites, e.g. '-k closed' (default: run them all)")
    nt.add_argument("--robot-args", default="", metavar="'ARGS'",
                    help="more arguments for the Robot suites, e.g. '--test *Closed*' (default: run them all)")
    nt.add_argument("--suites", metavar="DIR", help="the suites folder (default: ./suites, else the harness's own)")
    nt.set_defaults(func=cmd_nightly)

    q = sub.add_parser("qmp", help="send QMP commands to a QEMU monitor socket (emulated boards)")
    q.add_argument("--socket", required=True, help="QMP unix socket (the session's control socket)")
    q.add_argument("commands", nargs="+", metavar="'COMMAND [JSON-ARGS]'")
    q.set_defaults(func=cmd_qmp)
    return p


def _raise_terminated(signum, frame):
    raise Terminated()


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # SIGTERM (timeout(1), a cancelled CI job) unwinds as Ctrl-C does: boards powered off
    # and recorded, reports written, no emulator or socket folder left behind.
    previous = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        return args.func(args)
    except HarnessError as exc:
        _stderr(f"bmc-hil: error: {exc}")
        return EXIT_ERROR
    except Terminated:
        _stderr("bmc-hil: terminated (SIGTERM)")
        return 128 + signal.SIGTERM
    except KeyboardInterrupt:
        _stderr("bmc-hil: interrupted")
        return 130
    except Exception as exc:  # never a traceback at a user: one line, the rest in a file
        out = getattr(args, "out", None)
        log = _write_traceback(Path(out) if out else None)
        _stderr(f"bmc-hil: internal error: {type(exc).__name__}: {exc}\n(the traceback is in {log}; "
                "please attach it to a bug report)")
        return EXIT_ERROR
    finally:
        signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":
    sys.exit(main())
