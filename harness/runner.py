"""`bmc-hil run`: drive a board through scenarios, capture, and ask the oracle.

Each scenario gets a fresh boot with the capture running from power-on, so the model
sees everything the board saw (the harness's own SSH login included) and both start
from the same state. Steps run at their times on the host's monotonic clock.
"""

from __future__ import annotations

import dataclasses
import json
import socket
import time
from dataclasses import dataclass
from pathlib import Path

from harness.board import BoardState, BoardStrategy, timeouts_for
from harness.board.boardfile import BoardSpec
from harness.errors import BoardError, HarnessError
from harness.oracle import Artifacts, Tolerance, Verdict, check_run
from harness.paths import prepare_run_dir
from harness.scenario import Scenario, ScenarioError, Step, connect_port, peer_ip_str, peer_syn_frame

CONNECT_HOLD_S = 0.5
# How long before its first step a scenario's window opens (the board is quiet then: it has
# settled for 0.5 s); much more than the capture clock's uncertainty (1 ms spread).
SCENARIO_LEAD_S = 0.1
# Peers that are the harness itself on a wire it owns (QEMU -netdev dgram).
WIRE_PEERS = ("silent", "stalled", "deaf", "late", "idle", "closing")
# How long a board_connect with data keeps its connection open (longer than any scenario).
BOARD_WRITE_HOLD_S = 300
# busybox nc -w bounds its connect(): longer than Linux's own give-up (tcp_syn_retries 6:
# ETIMEDOUT 127 s after the SYN), so the kernel, not nc, ends an unanswered connect.
BOARD_CONNECT_WAIT_S = 300


@dataclass
class ScenarioRun:
    scenario: Scenario
    out_dir: Path
    start_wall_ns: int
    end_wall_ns: int
    step_log: list[dict]
    error: str | None = None     # a step that failed (the steps after it did not run)


def _forwards_for(scenario: Scenario, spec: BoardSpec) -> dict[str, int]:
    ports = {}
    for step in scenario.steps:
        if step.do == "connect" and "port" in step.args:
            ports[f"port{step.args['port']}"] = int(step.args["port"])
    return ports


def open_scenario_board(spec: BoardSpec, scenario: Scenario, out: Path):
    """A board for one scenario run (emulated: with forwards for the ports it connects to)."""
    if spec.kind == "model":
        from harness.board.modelboard import open_model_board

        return open_model_board(spec, scenario, out)
    if spec.kind == "emulated":
        from harness.board.qemu import QemuBoard
        from harness.image import build_image

        network = "wire" if scenario.peer in WIRE_PEERS else spec.network
        if any(s.do == "frame" for s in scenario.steps) and network != "wire":
            raise ScenarioError(f"{scenario.source}: frame steps need a board with network: wire")
        image = build_image(spec.image_config or spec.firmware, log=lambda m: None)
        return QemuBoard(image, out, machine=spec.machine, network=network, declared=spec.firmware,
                         name=spec.name, extra_forwards=_forwards_for(scenario, spec))
    if scenario.peer != "slirp":
        raise ScenarioError(f"{scenario.source}: peer: {scenario.peer} needs an emulated board")
    if spec.kind == "labgrid":
        from harness.board.labgrid import LabgridBoard

        return LabgridBoard(spec, out)
    from harness.board.real import RealBoard

    return RealBoard(spec, out)


def _do_connect(board, step: Step, n: int = 0) -> dict:
    port = connect_port(step, board.declared)
    if board.wired:
        # The harness is the peer: it sends the SYN and never answers the SYN-ACK (a
        # half-open connection). The board ARPs for the peer first; SilentPeer answers.
        board.wire.inject(peer_syn_frame(board.declared, n, port))
        return {"sent_syn": True}
    host, hport = board.service_address(step.args.get("service") or f"port{port}", port)
    try:
        with socket.create_connection((host, hport), timeout=5) as s:
            s.settimeout(CONNECT_HOLD_S)
            try:
                s.recv(64)
            except (TimeoutError, OSError):
                pass
        return {"connected": True}
    except OSError as exc:
        return {"connected": False, "error": str(exc)}


def _wait_listening(board, ports: set[int], timeout: float = 20.0) -> None:
    """Wait (on the console) until the board listens on `ports`: with the harness on the
    wire the board is taken only to NETWORK, and its services start in the background.
    busybox httpd binds the IPv6 wildcard (create_and_bind_stream_or_die with no address),
    a dual-stack listener that /proc/net/tcp6 lists, so both tables are read."""
    deadline = time.monotonic() + timeout
    want = {f"{p:04X}" for p in ports}
    out = ""
    while True:
        out, _ = board.console.run("cat /proc/net/tcp /proc/net/tcp6", timeout=10)
        listening = {cols[1].split(":")[1] for cols in (line.split() for line in out.splitlines())
                     if len(cols) > 3 and cols[3] == "0A" and ":" in cols[1]}
        if want <= listening:
            return
        if time.monotonic() > deadline:
            raise BoardError(f"the board does not listen on {sorted(ports)} within {timeout:g} s; "
                             f"/proc/net/tcp: {out.strip()}")
        time.sleep(0.5)


def _board_write_command(peer: str, port: int, data: str) -> str:
    """busybox nc connects, writes `data` once connected and keeps the connection open:
    its stdin stays open (the subshell sleeps), so no EOF and no shutdown(SHUT_WR)/FIN."""
    import shlex

    hold = BOARD_WRITE_HOLD_S
    return (f"(printf '%s' {shlex.quote(data)}; sleep {hold}) 2>/dev/null </dev/null "
            f"| setsid nc -w {hold} {peer} {port} >/dev/null 2>&1 &")


def _board_write_shutdown_command(peer: str, port: int, data: str) -> str:
    """busybox nc connects, writes `data` and, at its stdin's EOF, shuts its side
    (shutdown(SHUT_WR): the FIN), then reads until the peer closes or it is killed; its
    pid is left in `_nc_pidfile(port)` for a `board_close` step."""
    import shlex

    hold = BOARD_WRITE_HOLD_S
    return (f"printf '%s' {shlex.quote(data)} 2>/dev/null | setsid sh -c "
            f"{shlex.quote(f'echo $$ >{_nc_pidfile(port)}; exec nc -w {hold} {peer} {port}')} >/dev/null 2>&1 &")


def _nc_pidfile(port: int) -> str:
    return f"/tmp/bmc-hil-nc-{port}.pid"


def _shell(board, command: str) -> None:
    """A command on the board: over SSH, or on the console when the harness owns the wire."""
    if board.wired:
        board.console.run(command, timeout=10)
    else:
        board.run(command, timeout=10)


def do_step(board, step: Step, n: int = 0) -> dict:
    """One scenario step on a board (the scenario's `n`-th); returns what happened (for the
    step log)."""
    if step.do == "link_down":
        board.set_link(False)
    elif step.do == "link_up":
        board.set_link(True)
    elif step.do == "watchdog_start":
        board.watchdog_start(step.args["timeout"], step.args.get("period", 1))
    elif step.do == "watchdog_starve":
        board.watchdog_starve()
    elif step.do == "watchdog_stop":
        board.watchdog_stop()
    elif step.do == "reboot":
        # Typed on the console, not over SSH: an SSH session open across the reboot would be
        # torn down by init killing its dropbear, and those FINs and RSTs are the
        # application's doing (the harness's own session), not the firmware's.
        board.record("reboot")
        board.console.sendline("reboot")
    elif step.do == "connect":
        return _do_connect(board, step, n)
    elif step.do == "frame":
        board.wire.inject(bytes.fromhex(step.args["hex"].replace(" ", "")))
    elif step.do == "ping":
        # The harness is the peer on the wire: an echo request made from the declared config.
        # The board answers (or not) by itself; its ARP for the reply's next hop is the
        # wire peer's to answer (SilentPeer answers for the peer's address only).
        from harness.scenario import ping_addresses, ping_frame

        src, dst, eth_dst = ping_addresses(board.declared, step)
        board.wire.inject(ping_frame(board.declared, step, n))
        return {"src": src, "dst": dst, "eth_dst": eth_dst}
    elif step.do == "board_connect":
        peer, port = peer_ip_str(board.declared), int(step.args["port"])
        # The request is recorded before it is made: the oracle's input is the request,
        # and when the program got to connect() is learnt within the app-latency bound.
        if step.args.get("shutdown"):
            board.record("board_connect", addr=peer, port=port, data=step.args["data"], shutdown=True)
            _shell(board, _board_write_shutdown_command(peer, port, step.args["data"]))
        elif "data" in step.args:
            board.record("board_connect", addr=peer, port=port, data=step.args["data"])
            _shell(board, _board_write_command(peer, port, step.args["data"]))
        else:
            # The board's own connect(): busybox nc in its own session, left to retry on its own.
            board.record("board_connect", addr=peer, port=port)
            _shell(board, f"setsid nc -w {BOARD_CONNECT_WAIT_S} {peer} {port} </dev/null >/dev/null 2>&1 &")
    elif step.do == "board_close":
        # The program that connected to `port` is ended (SIGTERM): the kernel closes its
        # socket (tcp_close), which sends nothing from FIN_WAIT2. Recorded before it is
        # typed: when the program really exited is only bounded (app_latency).
        port = int(step.args["port"])
        board.record("board_close", port=port)
        command = f"kill $(cat {_nc_pidfile(port)})"
        if not board.wired:
            board.run(command, timeout=10)    # raises on a non-zero status
            return {}
        out, status = board.console.run(command, timeout=10)
        if status != 0:
            raise BoardError(f"board_close: `{command}` gave status {status}: {out.strip()[:120]!r}")
    elif step.do == "peer_fin":
        return {"fins": board.wire_peer.fin()}
    return {}


# What the board's kernel counted (SNMP and Linux MIBs), read on the console before the
# first step and after the last: the triage record of what happened below the wire
# (TCPSpuriousRtxHostQueues, TCPTimeouts, ...).
COUNTER_FILES = ("/proc/net/snmp", "/proc/net/netstat")


def parse_proc_net_counters(text: str) -> dict[str, dict[str, int]]:
    """/proc/net/snmp and /proc/net/netstat: pairs of `Group: names...` / `Group: values...`."""
    out: dict[str, dict[str, int]] = {}
    rows = [line.split() for line in text.splitlines() if ":" in line.split(" ", 1)[0]]
    for names, values in zip(rows, rows[1:], strict=False):
        if names[0] != values[0] or names[0].rstrip(":") in out or not all(v.lstrip("-").isdigit()
                                                                             for v in values[1:]):
            continue
        out[names[0].rstrip(":")] = {k: int(v) for k, v in zip(names[1:], values[1:], strict=False)}
    return out


def read_kernel_counters(board) -> dict[str, dict[str, int]] | None:
    """The board's counters over its console, or None if it does not answer."""
    try:
        text, _ = board.console.run("cat " + " ".join(COUNTER_FILES), timeout=5)
    except HarnessError:
        return None
    return parse_proc_net_counters(text)


# After the window, a board that is rebooting (a watchdog reset, a reboot step near the end)
# may take as long to answer on its console again as a boot may take to reach a shell: the
# board's own boot budget (Timeouts.booted + Timeouts.shell, 90 s by default; the emulated
# board boots to a shell in 5-15 s on a loaded machine, bench/latency.py).


def check_liveness(board, timeout: float) -> dict:
    """After the scenario: is the board alive? Its emulator (if any) still runs, and its
    console shell answers a command within `timeout`. Recorded as `liveness` in the host
    events, so the oracle (and a later `bmc-hil compare`) sees a board that died or hung as
    an error, never as a pass; the answer also proves the console log ran to the end."""
    start = time.monotonic()
    last = "no answer"
    while True:
        try:
            board.check_alive()
        except BoardError as exc:
            return {"alive": False, "reason": str(exc).splitlines()[0]}
        try:
            out, status = board.console.run("echo alive", timeout=5)
            if status == 0 and "alive" in out:
                return {"alive": True, "answered_after_s": round(time.monotonic() - start, 3)}
            last = f"`echo alive` gave status {status}: {out.strip()[:80]!r}"
        except HarnessError as exc:
            last = str(exc).splitlines()[0]
        if time.monotonic() - start > timeout:
            return {"alive": False, "reason": f"the console did not answer within {timeout:g} s after the "
                                              f"scenario ({last})"}
        time.sleep(1.0)


def run_scenario(spec: BoardSpec, scenario: Scenario, out: Path, log=print) -> ScenarioRun:
    """One scenario on a fresh board. A step that fails (the board died, a command timed
    out) ends the steps, not the run: the artifacts so far are kept and the failure is the
    run's `error`, which makes the verdict an error."""
    if spec.kind == "model":
        # The model plays the board in virtual time: the same steps, no sleeping.
        from harness.board.modelboard import run_model_scenario

        return run_model_scenario(spec, scenario, out, log)
    prepare_run_dir(out)
    board = open_scenario_board(spec, scenario, out)
    steps = []
    error = None
    with board:
        board.capture_start(out / "capture.pcap")
        if board.wired:
            from harness.board.wire import SilentPeer

            BoardStrategy(board, timeouts_for(spec)).transition(BoardState.NETWORK)
            if scenario.peer == "stalled":
                from harness.board.wire import StalledPeer

                StalledPeer(board.wire, peer_ip_str(board.declared))
            elif scenario.peer == "deaf":
                from harness.board.wire import DeafPeer

                DeafPeer(board.wire, peer_ip_str(board.declared), str(board.declared.interface.address.ip))
            elif scenario.peer == "late":
                from harness.board.wire import LatePeer

                LatePeer(board.wire, peer_ip_str(board.declared))
            elif scenario.peer == "idle":
                from harness.board.wire import IdlePeer

                IdlePeer(board.wire, peer_ip_str(board.declared))
            elif scenario.peer == "closing":
                from harness.board.wire import ClosingPeer

                board.wire_peer = ClosingPeer(board.wire, peer_ip_str(board.declared))
            else:
                SilentPeer(board.wire, peer_ip_str(board.declared))
            ports = {connect_port(s, board.declared) for s in scenario.steps if s.do == "connect"}
            if ports:
                _wait_listening(board, ports)
        else:
            BoardStrategy(board, timeouts_for(spec)).transition(BoardState.SSH)
            board.ssh.close()
        counters = {"before": read_kernel_counters(board)}
        time.sleep(0.5)
        start_wall = board.record("scenario_start", scenario=scenario.name).host_wall_ns
        # The window opens a little before the first step: a frame the first step provokes
        # must not be mapped before the window's start by the capture clock's uncertainty
        # (milliseconds: the filter-dump pin's spread, QEMU's virtual clock against the
        # host's), or its reply would be compared without its cause.
        time.sleep(SCENARIO_LEAD_S)
        t0 = time.monotonic()
        try:
            for n, step in enumerate(scenario.steps):
                delay = t0 + step.at_ns / 1e9 - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                try:
                    info = do_step(board, step, n)
                except HarnessError as exc:
                    error = f"step {n} ({step.do} at {step.at_ns / 1e9:g} s) failed: {exc}"
                    board.record("step_error", step=n, do=step.do, error=str(exc))
                    steps.append({"at_s": step.at_ns / 1e9, "do": step.do, **step.args, "error": str(exc)})
                    break
                steps.append({"at_s": step.at_ns / 1e9, "do": step.do, **step.args, **info,
                              "late_s": round(max(0.0, -delay), 3)})
                log(f"  {scenario.name}: {step.do} {step.args or ''}")
            rest = t0 + scenario.end_ns / 1e9 - time.monotonic()
            if rest > 0 and error is None:
                time.sleep(rest)
        finally:
            end_wall = board.record("scenario_end", scenario=scenario.name).host_wall_ns
            (out / "steps.json").write_text(json.dumps(steps, indent=1) + "\n")
        budget = timeouts_for(spec)
        liveness = check_liveness(board, budget.booted + budget.shell)
        board.record("liveness", **liveness)
        if board.wire is not None and board.wire.errors:
            board.record("harness_error", what="wire", errors=list(board.wire.errors))
        board.capture_stop()
        counters["after"] = read_kernel_counters(board) if liveness["alive"] else None
    (out / "kernel-counters.json").write_text(json.dumps(counters, indent=1) + "\n")
    return ScenarioRun(scenario, out, start_wall, end_wall, steps, error)


def check_scenario(spec: BoardSpec, run: ScenarioRun, tol: Tolerance) -> Verdict:
    wired = run.scenario.peer in WIRE_PEERS or spec.network == "wire"
    capture_clock = "qemu-filter-dump" if spec.kind == "emulated" and not wired else "host-wall"
    art = Artifacts.in_dir(run.out_dir, capture_clock)
    if not art.captures:
        raise BoardError(f"{run.out_dir}: the run left no capture")
    if spec.app_latency is not None:
        tol = dataclasses.replace(tol, app_latency_ns=int(spec.app_latency * 1e9))
    # A failed step is in the host events (step_error), so the judge makes it an error.
    return check_run(art, spec.firmware, run.start_wall_ns, run.end_wall_ns, run.scenario.name, tol, run.out_dir,
                     expect=getattr(run.scenario, "expect", ()))
