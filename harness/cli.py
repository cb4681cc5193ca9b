"""bmc-hil: the command line of the BMC hardware-in-the-loop harness (also python -m harness).

Exit codes: 0 success (the board did what Linux would have done), 1 divergences (a check
failed), 2 error (bad input, missing tools, a board that cannot be reached, a run the
oracle could not judge), 130 Ctrl-C, 143 SIGTERM; `ssh` exits with the remote command's
status. Progress goes to stderr (a live status line on a terminal), results to stdout.
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


class _Progress:
    """Long work, on stderr: lines that stay (what happened), and on a terminal a live
    status line below them (a spinner, what is going on, the time it has taken)."""

    def __init__(self):
        from rich.console import Console

        self.console = Console(stderr=True, highlight=False, soft_wrap=True)
        self._live = None
        self._task = None

    def __enter__(self) -> _Progress:
        return self

    def __exit__(self, *exc) -> None:
        self.done()

    def note(self, text: str) -> None:
        """A line that stays."""
        self.console.print(text, markup=False, highlight=False)

    def status(self, text: str, restart: bool = False) -> None:
        """What is going on now (`restart`: a new piece of work, its clock from zero)."""
        if not self.console.is_terminal:
            return
        if self._live is None:
            from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

            self._live = Progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(),
                                  console=self.console, transient=True)
            self._live.start()
        elif restart and self._task is not None:
            self._live.remove_task(self._task)
            self._task = None
        if self._task is None:
            self._task = self._live.add_task(text, total=None)
        else:
            self._live.update(self._task, description=text)

    def done(self) -> None:
        if self._live is not None:
            self._live.stop()
            self._live, self._task = None, None


# -- what a person reads: steps, frames, peers ----------------------------------------------
PEER_TEXT = {
    "slirp": "QEMU's user networking (slirp): it asks for the board's address, connects, acknowledges "
             "and closes",
    "silent": "the harness on a wire it owns: it answers ARP and never TCP (its SYN is never acknowledged)",
    "stalled": "the harness on a wire it owns: it answers ARP and the board's SYN, then acknowledges nothing",
    "deaf": "the harness on a wire it owns: it asks for the board's address once, before the first step, "
            "and answers no ARP",
    "late": "the harness on a wire it owns: it answers the board's ARP from its second request on, and never TCP",
    "idle": "the harness on a wire it owns: it answers ARP and completes its own connects' handshakes, then "
            "sends nothing (no data, no answer to keepalive probes)",
    "closing": "the harness on a wire it owns: it answers ARP and the board's SYN, acknowledges the board's data "
               "and FIN, and sends its own FIN at a peer_fin step",
}


def describe_step(step, config) -> str:
    """A scenario step in words: `connect ssh (port 22)`, `link down`."""
    from harness.scenario import ScenarioError, connect_port, peer_ip_str

    a = step.args
    if step.do == "connect":
        try:
            port = connect_port(step, config)
        except ScenarioError:
            port = None
        if "service" in a:
            return f"connect {a['service']} (port {port})" if port else f"connect {a['service']} (not declared)"
        served = any(svc.port == port for svc in config.services)
        return f"connect to port {port}" + ("" if served else " (no declared service)")
    if step.do == "board_connect":
        what = f"the board connects to {peer_ip_str(config)}:{a['port']}"
        what += f" and writes {a['data']!r}" if "data" in a else ""
        return what + (", then shuts its side (shutdown(SHUT_WR))" if a.get("shutdown") else "")
    if step.do == "board_close":
        return f"the board's program connected to port {a['port']} is killed (its socket closed)"
    if step.do == "peer_fin":
        return "the peer sends its FIN"
    if step.do == "watchdog_start":
        return f"watchdog started (timeout {a['timeout']} s, kicked every {a.get('period', 1)} s)"
    if step.do == "frame":
        return f"a frame to the board ({len(a['hex'].replace(' ', '')) // 2} bytes)"
    if step.do == "ping":
        to = {"board": "the board", "subnet-broadcast": "the subnet's broadcast",
              "limited-broadcast": "255.255.255.255"}.get(a.get("to", "board"), a.get("to"))
        return f"ping {to}" + (f" from {a['from']}" if "from" in a else "")
    return {"link_down": "link down", "link_up": "link up", "reboot": "reboot typed on the console",
            "watchdog_starve": "watchdog starved (its daemon killed with SIGKILL)",
            "watchdog_stop": "watchdog stopped (its daemon ends with the magic close)"}.get(step.do, step.do)


def _tcp_flag_names(flags: int) -> str:
    from models.wire import ACK, FIN, PSH, RST, SYN

    names = [n for bit, n in ((SYN, "SYN"), (FIN, "FIN"), (RST, "RST"), (PSH, "PSH")) if flags & bit]
    if flags & ACK:
        names.append("ACK")
    return "-".join(names) or "no flags"


def _ip(value: int) -> str:
    from models.wire import ip4_str

    return ip4_str(int(value))


def describe_packet(t, i: int) -> str:
    """Row `i` of a harness.ingest.pcap PacketTable in words: `tcp SYN-ACK :22 -> :40000`,
    `ARP request who-has 10.0.2.2`."""
    from harness.ingest.pcap import Layer, TcpOpt

    layers = int(t.layers[i])
    if layers & Layer.ARP:
        op = int(t.arp_op[i])
        if op == 1:
            unicast = int(t.eth_dst[i]) != 0xFFFFFFFFFFFF
            return (f"ARP request{' (unicast)' if unicast else ''} who-has {_ip(t.arp_tpa[i])} "
                    f"tell {_ip(t.arp_spa[i])}")
        if op == 2:
            mac = int(t.arp_sha[i]).to_bytes(6, "big").hex(":")
            return f"ARP reply {_ip(t.arp_spa[i])} is-at {mac}"
        return f"ARP op {op}"
    if layers & Layer.TCP:
        what = f"tcp {_tcp_flag_names(int(t.tcp_flags[i]))} :{int(t.sport[i])} -> :{int(t.dport[i])}"
        opts = int(t.tcp_opts[i])
        extra = []
        if opts & TcpOpt.MSS:
            extra.append(f"mss {int(t.tcp_mss[i])}")
        if opts & TcpOpt.SACK_PERM:
            extra.append("sack")
        if opts & TcpOpt.TIMESTAMP:
            extra.append("ts")
        if opts & TcpOpt.WSCALE:
            extra.append(f"wscale {int(t.tcp_wscale[i])}")
        if int(t.payload_len[i]):
            extra.append(f"{int(t.payload_len[i])} bytes of data")
        return what + (f" ({', '.join(extra)})" if extra else "")
    if layers & Layer.UDP:
        return f"udp :{int(t.sport[i])} -> :{int(t.dport[i])}"
    if layers & Layer.ICMP:
        kind = {0: "echo reply", 3: "destination unreachable", 8: "echo request"}.get(int(t.icmp_type[i]),
                                                                                       f"type {int(t.icmp_type[i])}")
        return f"icmp {kind} {_ip(t.ip_src[i])} -> {_ip(t.ip_dst[i])}"
    if layers & Layer.IPV4:
        return f"ipv4 protocol {int(t.ip_proto[i])}"
    return f"ethertype 0x{int(t.ethertype[i]):04x} ({int(t.wire_len[i])} bytes)"


def _default_out(name: str) -> Path:
    from harness.paths import safe_name

    # A board's name is the user's text: one safe path component.
    return Path("bmc-hil-runs") / f"{time.strftime('%Y%m%d-%H%M%S')}-{safe_name(name)}"


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
    start = time.monotonic()
    with _Progress() as progress:
        if args.refresh_packages:
            from harness.image.initramfs import fetch_board_debs

            progress.status("fetching the board's Debian packages")
            fetch_board_debs(log=progress.note, refresh=True)
        progress.status("building the emulated image (or taking it from the cache)", restart=True)
        image = build_image(config, log=progress.note)
    info = {"kernel": str(image.kernel.zimage), "boots": str(image.kernel.uimage), "kernel_recipe": image.kernel.recipe_hash,
            "dtbs": {m: str(image.kernel.dtb(m)) for m in ("ast2500-evb", "romulus-bmc")},
            "initramfs": str(image.initramfs), "seconds": round(time.monotonic() - start, 3)}
    if args.json:
        print(json.dumps(info, indent=2))
    else:
        print(f"kernel    : {info['kernel']}  (recipe {info['kernel_recipe']})")
        print(f"boots     : {info['boots']}  (the same kernel, uncompressed, as a uImage)")
        for machine, dtb in info["dtbs"].items():
            print(f"dtb       : {dtb}  ({machine})")
        print(f"initramfs : {info['initramfs']}")
        print(f"took {info['seconds']:.1f} s")
    return EXIT_OK


# -- boot ------------------------------------------------------------------------------
def cmd_boot(args) -> int:
    from harness.board import BoardState, BoardStrategy, load_board_file, open_board, timeouts_for

    spec = load_board_file(args.board)
    if spec.kind == "model":
        raise HarnessError(_MODEL_HAS_NO_BOARD)
    out = Path(args.out) if args.out else _default_out(spec.name)
    with _Progress() as progress:
        progress.status(f"preparing board {spec.name}")
        board = open_board(spec, out, log=progress.note)
        strategy = BoardStrategy(board, timeouts_for(spec))
        with board:
            if args.check:
                return _boot_check(board, strategy, args, progress)
            seconds = _boot_to(strategy, BoardState.SSH, progress)
            progress.done()
            return _serve(board, seconds, args)


# What each step of the board strategy waits for, as the live status says it.
_BOOT_STEPS = {"booted": "powering on, waiting for the kernel's banner", "shell": "waiting for a shell on the console",
               "network": "waiting for eth0 up with its address", "ssh": "waiting for SSH to answer"}


def _boot_to(strategy, wanted, progress: _Progress) -> dict[str, float]:
    """The board strategy to `wanted`, one state at a time (the live status says which);
    the seconds each step took."""
    from harness.board import BoardState

    seconds: dict[str, float] = {}
    for state in (BoardState.BOOTED, BoardState.SHELL, BoardState.NETWORK, BoardState.SSH):
        if state > wanted:
            break
        name = state.name.lower()
        progress.status(f"{strategy.board.name}: {_BOOT_STEPS[name]}")
        seconds.update(strategy.transition(state).seconds)
        if name in seconds:
            progress.note(f"{strategy.board.name}: {name} after {seconds[name]:.2f} s")
    return seconds


def _boot_check(board, strategy, args, progress: _Progress) -> int:
    from harness.board import BoardState

    start = time.monotonic()
    try:
        seconds = _boot_to(strategy, BoardState.SSH, progress)
        progress.status(f"{board.name}: uname -a over SSH")
        uname = board.run("uname -a", timeout=30).stdout.strip()
    except HarnessError as exc:
        progress.done()
        report = {"ok": False, "error": str(exc), "out": str(board.out_dir)}
        print(json.dumps(report, indent=2) if args.json else f"boot check FAILED: {exc}")
        return EXIT_ERROR  # a board that cannot be reached is an error, not a divergence
    progress.done()
    ready = time.monotonic() - start
    report = {"ok": True, "board": board.name, "boot_to_ready_s": round(ready, 3),
              "steps_s": {k: round(v, 3) for k, v in seconds.items()}, "uname": uname,
              "out": str(board.out_dir)}
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(f"uname -a: {uname}")
        print(f"boot to SSH-ready: {ready:.2f} s  ("
              + ", ".join(f"{k} {v:.2f} s" for k, v in seconds.items()) + ")")
        print(f"artifacts: {board.out_dir}")
    return EXIT_OK


def _serve(board, seconds: dict[str, float], args) -> int:
    """Keep the board up for other `bmc-hil` commands until Ctrl-C."""
    from harness.board.console_proxy import ConsoleProxy
    from harness.board.qemu import QemuBoard
    from harness.session import Session

    total = sum(seconds.values())
    if not isinstance(board, QemuBoard):
        print(f"board {board.name} is up (SSH ready in {total:.2f} s)")
        return EXIT_OK
    proxy = ConsoleProxy(board.console)
    session = Session(name=board.name, pid=_pid(), console_url=proxy.url, ssh_host="127.0.0.1",
                      ssh_port=board.host_port("ssh"), ssh_user=board.image.credentials.user,
                      key_file=str(board.image.credentials.key_file),
                      control_socket=str(board.control_socket), out_dir=str(board.out_dir),
                      forwards={k: {"guest": g, "host": h} for k, (g, h) in board.forwards.items()})
    session.save()
    print(f"board {board.name} is up: SSH ready in {total:.2f} s")
    print(f"  console : {proxy.url}   (bmc-hil console)")
    for name, (g, h) in board.forwards.items():
        print(f"  {name:8}: 127.0.0.1:{h} -> board port {g}")
    print(f"  logs    : {board.out_dir}")
    print("Ctrl-C powers it off.", flush=True)
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    board.follow_link(_LinkFollower(session, board.link_up).wanted)
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


class _LinkFollower:
    """What the serving board's link should be, with `bmc-hil link` run elsewhere: its
    request is recorded in the session before its set_link is sent, so the board asks
    here (QemuBoard.follow_link) before it says "down" again after a reset."""

    def __init__(self, session, up: bool):
        self.session, self.up = session, up
        self.seen = len(session.records())

    def wanted(self) -> bool:
        recs = self.session.records()
        new, self.seen = recs[self.seen:], len(recs)
        for rec in new:
            if rec.get("by") and rec.get("event") in ("link_up", "link_down"):
                self.up = rec["event"] == "link_up"
        return self.up


def _pid() -> int:
    import os

    return os.getpid()


# -- console / ssh / link / power / qmp ----------------------------------------------------
_MODEL_HAS_NO_BOARD = ("the model-as-board (kind: model) has no console, SSH, link or power to drive: it plays "
                       "scenarios only (bmc-hil run, bmc-hil predict)")


def _session_or_spec(board_arg: str):
    """The running session of an emulated board (None for a real one) and the board file."""
    from harness.board import load_board_file
    from harness.session import Session

    spec = load_board_file(board_arg)
    if spec.kind == "model":
        raise HarnessError(_MODEL_HAS_NO_BOARD)
    if spec.kind == "emulated":
        return Session.load(spec.name), spec
    return None, spec


def cmd_console(args) -> int:
    session, spec = _session_or_spec(args.board)
    if spec.kind == "labgrid":
        # the place is held while the terminal is open, and released when it ends
        with _verb_board(spec, args, "console") as board:
            return _miniterm(board.console_url, board.baudrate)
    return _miniterm(session.console_url if session else spec.console_url, spec.baudrate)


def _miniterm(url: str, baudrate: int) -> int:
    import serial
    from serial.tools.miniterm import Miniterm

    try:
        port = serial.serial_for_url(url, baudrate=baudrate, timeout=1)
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

    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not args.timeout > 0:
        raise HarnessError(f"--timeout must be a positive number of seconds, got {args.timeout:g}")
    session, spec = _session_or_spec(args.board)
    if spec.kind == "labgrid":
        # the place's network service, the place held for the session
        with _verb_board(spec, args, "ssh") as board:
            return _attach(board.ssh, command, args.timeout, None)
    if session:
        conn = SSHConnection(session.ssh_host, session.ssh_port, session.ssh_user,
                             key_file=Path(session.key_file), known_hosts="auto-accept")
    else:
        s = spec.ssh
        conn = SSHConnection(s.host, s.port, s.user, password=s.password, key_file=s.key_file,
                             known_hosts=s.known_hosts, known_hosts_file=s.known_hosts_file)
    return _attach(conn, command, args.timeout, session)


def _attach(conn, command: list[str], timeout: float, session) -> int:
    from harness.errors import SSHError

    try:
        # As ssh(1): the words are joined with spaces and the board's shell reads them.
        if command:
            return conn.attach(" ".join(command), timeout=timeout, connect_timeout=timeout)
        return conn.attach(None, timeout=None, connect_timeout=timeout)
    except SSHError as exc:
        hint = "; see the link with: bmc-hil link status" if "link down" in str(exc) and session else ""
        raise SSHError(f"{exc}{hint}") from exc
    finally:
        conn.close()


def _verb_board(spec, args, what: str):
    """A real or lab board for one verb (open_board: a lab board's place is acquired, and
    released when the verb ends; the power it was left in stays)."""
    from harness.board import open_board

    out = Path(args.out) if getattr(args, "out", None) else _default_out(f"{what}-{spec.name}")
    return open_board(spec, out, log=_stderr, leave_powered=True)


def cmd_link(args) -> int:
    session, spec = _session_or_spec(args.board)
    if args.state == "status":
        return _link_status(session, spec, args)
    up = args.state == "up"
    if session:
        # Recorded first: the serving board asks the record before it re-asserts a link.
        session.record("link_up" if up else "link_down", by=f"bmc-hil link {args.state}")
        _qmp_commands(Path(session.control_socket), [("set_link", {"name": "net0", "up": up})])
    else:
        with _verb_board(spec, args, "link") as board:
            board.set_link(up)
    print(f"link {args.state}")
    return EXIT_OK


def _clock(wall_s: float) -> str:
    return time.strftime("%H:%M:%S", time.localtime(wall_s)) + f".{int(wall_s * 1000) % 1000:03d}"


def _link_status(session, spec, args) -> int:
    """The link as the harness set it (QEMU 7.2 reports no netdev link state over QMP:
    info network leaves it out) and as the board last said it on its console."""
    from harness.board.console import clean_text

    if session is None:
        raise HarnessError(f"{spec.source}: a real board's link is whatever its link commands last did; the harness "
                           "keeps no record between commands (ask the board: ip link show)")
    rec = session.link_record()
    state = "up" if rec is None or rec["event"] == "link_up" else "down"
    line = session.last_link_line()
    if args.json:
        print(json.dumps({"link": state, "set_by": rec.get("by", "the board's own harness") if rec else None,
                          "set_wall_ns": rec["host_wall_ns"] if rec else None,
                          "console": {"text": clean_text(line[1]), "wall_s": line[0]} if line else None}, indent=1))
        return EXIT_OK
    if rec is None:
        print("link up (never changed since power-on)")
    else:
        print(f"link {state} (set by {rec.get('by', 'the serving bmc-hil boot')} at {_clock(rec['host_wall_ns'] / 1e9)})")
    if line:
        print(f"the board last said, at {_clock(line[0])}: {clean_text(line[1])}")
    else:
        print("the board has not said Link is Up or Down on its console yet")
    return EXIT_OK


def cmd_power(args) -> int:
    session, spec = _session_or_spec(args.board)
    if session:
        return _power_emulated(session, args)
    if spec.kind == "labgrid":
        if args.action == "status":
            raise HarnessError(f"{spec.source}: labgrid's power drivers cannot ask a place's power state")
        with _verb_board(spec, args, "power") as board:
            {"on": board.power_on, "off": board.power_off, "cycle": board.reset}[args.action]()
            place = board.lease.place
        print(f"power {args.action}: done (place {place}'s power resource)")
        return EXIT_OK
    verbs = spec.power_commands
    if args.action == "status":
        raise HarnessError(f"{spec.source}: the board file has no way to ask a real board's power state")
    need = {"on": ["on"], "off": ["off"], "cycle": ["reset"] if "reset" in verbs else ["off", "on"]}[args.action]
    missing = [v for v in need if v not in verbs]
    if missing:
        raise HarnessError(f"{spec.source}: no power.{missing[0]} command in the board file")
    with _verb_board(spec, args, "power") as board:
        {"on": board.power_on, "off": board.power_off, "cycle": board.reset}[args.action]()
    print(f"power {args.action}: done ({' then '.join('power.' + v for v in need)})")
    return EXIT_OK


def _power_emulated(session, args) -> int:
    """The emulated board's power through QMP: off holds it stopped in reset (QEMU keeps
    running, so the console, SSH forward and session stay), on lets it run from the reset,
    cycle resets it (a fresh boot, as a power cycle gives)."""
    sock = Path(session.control_socket)
    status = _qmp_commands(sock, [("query-status", None)])[0]["status"]
    running = status == "running"
    by = f"bmc-hil power {args.action}"
    if args.action == "status":
        state = "on" if running else "off" if status == "prelaunch" else f"off ({status})"
        print(json.dumps({"power": state.split()[0], "qemu_status": status}) if args.json else f"power {state}")
        return EXIT_OK
    if args.action == "off":
        if not running and status == "prelaunch":
            print("power off (it already was)")
            return EXIT_OK
        _qmp_commands(sock, [("stop", None), ("system_reset", None)])
        session.record("power_off", by=by)
        print("power off (held in reset; power on boots it)")
    elif args.action == "on":
        if running:
            print("power on (it already was)")
            return EXIT_OK
        _qmp_commands(sock, [("cont", None)])
        session.record("power_on", by=by)
        print("power on" + (" (resumed: it was paused, not off)" if status != "prelaunch" else ""))
    else:
        _qmp_commands(sock, [("system_reset", None)] + ([] if running else [("cont", None)]))
        session.record("reset" if running else "power_on", by=by)
        print("power cycle: the board boots again")
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
        name, _, rest = item.strip().partition(" ")
        try:
            arguments = json.loads(rest) if rest.strip() else None
        except json.JSONDecodeError as exc:
            raise HarnessError(f"QMP arguments of {name!r} are not JSON: {exc}") from exc
        commands.append((name, arguments))
    session = None
    if args.socket:
        socket_path = Path(args.socket)
    else:
        session, spec = _session_or_spec(args.board)
        if session is None:
            raise HarnessError(f"{spec.source}: QMP is the emulated board's; give --socket for another QEMU")
        socket_path = Path(session.control_socket)
    for (name, arguments), reply in zip(commands, _qmp_commands(socket_path, commands), strict=True):
        if session is not None and name == "set_link" and (arguments or {}).get("name") == "net0":
            up = bool(arguments.get("up"))
            session.record("link_up" if up else "link_down", by="bmc-hil qmp set_link")
        print(json.dumps(reply))
    return EXIT_OK


# -- scenarios / predict ---------------------------------------------------------------------
def cmd_scenarios(args) -> int:
    from harness.scenario import builtin_scenarios, load_scenario

    rows = []
    for name, path in builtin_scenarios(args.tier).items():
        sc = load_scenario(path)
        rows.append({"name": name, "tier": sc.tier, "peer": sc.peer, "duration_s": sc.end_ns / 1e9,
                     "steps": len(sc.steps), "summary": _first_sentence(sc.description),
                     "description": sc.description.strip()})
    if args.json:
        print(json.dumps(rows, indent=1))
        return EXIT_OK
    from rich.console import Console
    from rich.table import Table

    con = Console()
    if not con.is_terminal:  # one line per scenario, for grep and scripts
        for r in rows:
            print(f"{r['name']:24} {r['tier']:5} {r['peer']:8} {r['duration_s']:6g} s  {r['summary']}")
        return EXIT_OK
    t = Table(title=f"built-in scenarios ({args.tier} tier{'s' if args.tier == 'all' else ''})")
    for col in ("name", "tier", "peer", "duration", "description"):
        t.add_column(col, justify="right" if col == "duration" else "left", no_wrap=col != "description")
    for r in rows:
        t.add_row(r["name"], r["tier"], r["peer"], f"{r['duration_s']:g} s", r["summary"])
    con.print(t)
    return EXIT_OK


def _first_sentence(text: str) -> str:
    """The first line of a description, up to its first full stop."""
    import re

    line = (text.strip().splitlines() or [""])[0]
    return re.split(r"(?<=\.)\s+(?=[A-Z])", line, maxsplit=1)[0]


def cmd_predict(args) -> int:
    import dataclasses
    import tempfile

    from harness.board import load_board_file
    from harness.oracle import Tolerance
    from harness.runner import check_scenario, run_scenario
    from harness.scenario import load_scenario

    spec = load_board_file(args.board)
    sc = load_scenario(args.scenario)
    # The model plays the board (the declared firmware, Linux's own constants) against the
    # scenario's own peer, as the harness plays it against a board, and the oracle judges
    # that run as `run` judges a board's: the prediction shown is what `run` checks.
    player = dataclasses.replace(spec, kind="model", image_config=None, player_seed=args.seed, player_constants={})
    with tempfile.TemporaryDirectory(prefix="bmc-hil-predict-") as tmp:
        out = Path(args.out) if args.out else Path(tmp) / "run"
        try:
            run = run_scenario(player, sc, out, log=lambda m: None)
            verdict = check_scenario(player, run, Tolerance())
        except HarnessError as exc:
            raise HarnessError(f"the model could not play {sc.name} on {spec.name}'s declared firmware against "
                               f"its peer ({sc.peer}): {_predict_failure(exc, sc, spec, args.out)}") from exc
        rows, events = _prediction(sc, spec.firmware, verdict, out)
    start = verdict.start_ns
    if args.json:
        print(json.dumps({"scenario": sc.name, "board": spec.name, "peer": sc.peer,
                          "peer_description": PEER_TEXT[sc.peer], "scenario_start_ns": start,
                          "scenario_end_ns": verdict.end_ns,
                          "verdict": {"ok": verdict.ok, "error": verdict.error, "divergences": len(verdict.rows)},
                          "timeline": rows, "events": events, "constraints": _link_down_spans(sc, start, verdict.end_ns)},
                         indent=1, default=int))
    else:
        _print_prediction(sc, spec, rows, args.out)
    if verdict.ok:
        return EXIT_OK
    why = verdict.error or f"{len(verdict.rows)} divergences, first: {verdict.rows[0]['kind']} {verdict.rows[0]['stream_name']}"
    _stderr(f"bmc-hil: the oracle does not pass the model's own run of {sc.name}: {why}")
    return EXIT_ERROR if verdict.error else EXIT_FAIL


def _predict_failure(exc: HarnessError, sc, spec, kept: str | None) -> str:
    """Why the model's run failed, without a folder that is gone (unless --out kept it)."""
    why = str(exc).split("\n", 1)[0]
    if not kept:
        why = why.split(" (logs kept in ")[0]
    address = spec.firmware.interface.address
    if sc.peer == "slirp" and str(address.ip) != "10.0.2.15":
        why += (f"; the model's slirp forwards to 10.0.2.15 as QEMU's does, and {spec.name} is declared "
                f"{address}")
    return why


# A row's `who`: the harness (a step), a frame to or from the board, the board's console or reset.
_WHO_ORDER = {"harness": 0, "peer -> board": 1, "board -> peer": 2, "console": 3, "reset": 4}
_RESET_TEXT = "the board resets"


def _prediction(sc, config, verdict, out: Path) -> tuple[list[dict], list[dict]]:
    """The timeline `predict` shows, from the model's run and the oracle's predictions:
    the steps, the frames the board got (what the model was fed), and what it should do,
    each prediction with the window `run` allows (None: a reply, judged by the frame
    tolerance from its predecessor) and whether `run` checks it. Also the predicted
    outputs as events (harness.cli's JSON, as models.board.Prediction's events were)."""
    import re

    from harness.board.console import clean_text
    from harness.ingest.console import parse_console
    from harness.ingest.events import EventKind
    from harness.ingest.pcap import read_capture
    from models.wire import mac_bytes

    start, end = verdict.start_ns, verdict.end_ns
    rows: list[dict] = []

    def row(t: int, who: str, what: str, checked: bool | None = None, window=None, **more) -> dict:
        r = {"t_ns": int(t), "t_s": round((t - start) / 1e9, 6), "who": who, "what": what, "checked": checked,
             "window_s": None if window is None else [round((w - start) / 1e9, 6) for w in window], **more}
        rows.append(r)
        return r

    for step in sc.steps:
        row(start + step.at_ns, "harness", describe_step(step, config), step=step.do)
    frames: dict[int, tuple[int, int, str]] = {}
    others: list[tuple[str, int, int, int]] = []
    for name, t, lo, hi in verdict.series.get("predicted", []):
        kind = EventKind.__members__.get(name)
        if kind is not None and kind < EventKind.BOOT:
            frames[int(t)] = (int(lo), int(hi), name)
        elif kind is not None:
            others.append((name, int(t), int(lo), int(hi)))
    events = []
    board_mac = int.from_bytes(mac_bytes(config.interface.mac), "big")
    table = read_capture(out / "predicted.pcap").packets
    for i, t in enumerate(table.time_ns.tolist()):
        if not start <= t <= end:
            continue
        if int(table.eth_src[i]) != board_mac:
            row(t, "peer -> board", describe_packet(table, i))
            continue
        lo, hi, name = frames.get(t, (t, t, None))
        r = row(t, "board -> peer", describe_packet(table, i), name is not None,
                (lo, hi) if hi > lo else None, kind=name)
        fields = _packet_fields(table, i)
        events.append({"t": t, "earliest": lo, "latest": hi, "kind": "frame", "compared": r["checked"], **fields})
    console = parse_console((out / "console.log").read_bytes(), "console.log", strict=False)
    for name, t, lo, hi in others:
        kind = EventKind[name]
        if kind == EventKind.QMP_RESET:
            text = _RESET_TEXT
        else:
            near = [i for i in range(len(console)) if console.kind[i] == kind]
            best = min(near, key=lambda i: abs(int(console.host_wall_ns[i]) - t), default=None)
            text = clean_text(re.sub(r"^.*?\[\s*\d+\.\d+\]\s*", "", console.text[best])) if best is not None else name
        row(t, "reset" if kind == EventKind.QMP_RESET else "console", text, True, (lo, hi) if hi > lo else None,
            kind=name)
        events.append({"t": t, "earliest": lo, "latest": hi, "kind": "reset" if kind == EventKind.QMP_RESET
                       else "console", "text": text, "compared": True})
    rows.sort(key=lambda r: (r["t_ns"], _WHO_ORDER[r["who"]]))
    return rows, events


def _packet_fields(table, i: int) -> dict:
    """Row `i` of a PacketTable as the JSON fields of a predicted frame."""
    from harness.ingest.pcap import Layer, TcpOpt
    from models.wire.tcp import flags_str

    layers = int(table.layers[i])
    if layers & Layer.ARP:
        return {"proto": "arp", "op": "request" if int(table.arp_op[i]) == 1 else "reply",
                "sip": _ip(table.arp_spa[i]), "tip": _ip(table.arp_tpa[i])}
    if layers & Layer.TCP:
        opts = int(table.tcp_opts[i])
        return {"proto": "tcp", "src_ip": _ip(table.ip_src[i]), "dst_ip": _ip(table.ip_dst[i]),
                "sport": int(table.sport[i]), "dport": int(table.dport[i]), "flags": flags_str(int(table.tcp_flags[i])),
                "len": int(table.payload_len[i]), "mss": int(table.tcp_mss[i]) if opts & TcpOpt.MSS else None,
                "wscale": int(table.tcp_wscale[i]) if opts & TcpOpt.WSCALE else None,
                "sack_perm": bool(opts & TcpOpt.SACK_PERM), "ts": bool(opts & TcpOpt.TIMESTAMP)}
    return {"proto": "other", "ethertype": int(table.ethertype[i])}


def _link_down_spans(sc, start: int, end: int) -> list[dict]:
    """While the link is down the board sends nothing: the spans, as constraints."""
    spans, down = [], None
    for step in sc.steps:
        if step.do == "link_down" and down is None:
            down = start + step.at_ns
        elif step.do == "link_up" and down is not None:
            spans.append({"kind": "no_frames_between", "from": down, "to": start + step.at_ns})
            down = None
    if down is not None:
        spans.append({"kind": "no_frames_between", "from": down, "to": end})
    return spans


def _print_prediction(sc, spec, rows: list[dict], kept: str | None) -> None:
    from rich.console import Console
    from rich.table import Table

    con = Console()
    if not con.is_terminal:
        con = Console(width=160)  # a log or a pipe: one line per row where it fits
    con.print(f"[bold]{sc.name}[/bold] on {spec.name}: what Linux 6.1 should do", highlight=False)
    con.print(f"peer: {sc.peer}: {PEER_TEXT[sc.peer]}", highlight=False, markup=False)
    t = Table(caption="t: seconds from the scenario's start; window: where run accepts a timer's frame or line "
                      "(a reply is held to the frame tolerance from what it answers); checked: run compares it",
              caption_justify="left")
    for col in ("t", "window", "who", "what", "checked"):
        t.add_column(col, justify="right" if col == "t" else "left", no_wrap=col != "what")
    for r in rows:
        win = "" if r["window_s"] is None else f"{r['window_s'][0]:.3f}..{r['window_s'][1]:.3f}"
        checked = "" if r["checked"] is None else "yes" if r["checked"] else "no"
        style = "dim" if r["who"] in ("harness", "peer -> board") else None
        t.add_row(f"{r['t_s']:.3f}", win, r["who"], r["what"], checked, style=style)
    con.print(t)
    if kept:
        con.print(f"the model's run (capture, console, predicted.pcap): {kept}", highlight=False)


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

    boards = args.boards or ["emulated"]
    specs = [load_board_file(b) for b in boards]
    spec = specs[0]
    names = args.scenarios or list(builtin_scenarios())
    scenarios = [load_scenario(n) for n in names]  # all parsed before the board is touched
    out = Path(args.out) if args.out else _default_out(f"run-{'+'.join(dict.fromkeys(s.name for s in specs))}")
    tol = _tolerance(args)
    if len(specs) > 1:
        return _run_on_boards(args, boards, specs, scenarios, names, out)
    prepare_run_dir(out)
    verdicts, interrupted = [], None
    with _Progress() as progress:
        for n, (sc, folder) in enumerate(zip(scenarios, unique_names([sc.name for sc in scenarios]), strict=True), 1):
            if interrupted is not None:
                verdicts.append(_not_compared(sc.name, f"not run: {interrupted}"))
                continue
            head = f"[{n}/{len(scenarios)}] {sc.name}"
            progress.note(f"{head}: peer {sc.peer}, {len(sc.steps)} step{'s' if len(sc.steps) != 1 else ''} over "
                          f"{sc.end_ns / 1e9:g} s")
            progress.status(f"{head}: booting a fresh board", restart=True)
            try:
                v = _run_one(spec, sc, out / folder, tol, _StepLog(sc, spec.firmware, progress, head))
            except KeyboardInterrupt as exc:
                interrupted = _interruption(exc)
                v = _not_compared(sc.name, f"{interrupted} during the scenario; its artifacts so far are kept")
            verdicts.append(v)
            progress.note(f"{head}: " + ("pass" if v.ok else f"error: {v.error}" if v.error
                                         else f"{len(v.rows)} divergences"))
    paths = write_report(out, verdicts, {"board": spec.name, "tolerance_scale": args.tolerance_scale,
                                         "interrupted": interrupted},
                         folders=[out / f for f in unique_names([sc.name for sc in scenarios])],
                         declared=spec.firmware)
    code = _print_verdicts(verdicts, paths, args.json)
    if interrupted is not None:
        raise Terminated() if "SIGTERM" in interrupted else KeyboardInterrupt()
    return code


def _run_on_boards(args, boards: list[str], specs, scenarios, names: list[str], out: Path) -> int:
    """`run` over several boards: the scenarios spread over them as the nightly's are (a
    worker process per board takes the next scenario when its board is free), each judged
    once, no re-run; the report lists them in the order asked (each worker's log names
    what its board ran)."""
    from harness.nightly import NightlyResult, Progress, run_scenarios, worker_board_args
    from harness.oracle import Verdict
    from harness.paths import prepare_run_dir, unique_names
    from harness.report import write_report

    board_args = worker_board_args(boards, specs)
    prepare_run_dir(out)
    result = NightlyResult(" + ".join(dict.fromkeys(s.name for s in specs)), out, time.time())
    interrupted = None
    try:
        run_scenarios(specs, names, out, args.tolerance_scale, Progress(), result, board_args, rerun=False)
    except KeyboardInterrupt as exc:
        interrupted = _interruption(exc)
    by_folder = {o.folder: o for o in result.scenarios}
    folders = unique_names([sc.name for sc in scenarios])   # as run_scenarios names them
    verdicts = []
    for sc, folder in zip(scenarios, folders, strict=True):
        o = by_folder.get(folder)
        if o is not None and o.verdict is not None:
            verdicts.append(Verdict.from_json(o.verdict))
        else:
            why = o.error if o is not None and o.error else f"not run: {interrupted or 'the run ended before it'}"
            verdicts.append(_not_compared(sc.name, why))
    paths = write_report(out, verdicts, {"board": result.board, "tolerance_scale": args.tolerance_scale,
                                         "interrupted": interrupted},
                         folders=[out / f for f in folders], declared=specs[0].firmware, cache=result.report_cache)
    code = _print_verdicts(verdicts, paths, args.json)
    if interrupted is not None:
        raise Terminated() if "SIGTERM" in interrupted else KeyboardInterrupt()
    return code


def _not_compared(scenario: str, error: str):
    from harness.oracle import Verdict

    return Verdict.not_compared(scenario, error)


def _interruption(exc: BaseException) -> str:
    return "interrupted by SIGTERM" if isinstance(exc, Terminated) else "interrupted by Ctrl-C"


class _StepLog:
    """The runner's log: it says a step is done as `  NAME: do {args}`, one line per step in
    order; shown as the step in words with its time (`+0 s connect ssh (port 22)`), and as
    the live status (what the scenario waits for next)."""

    def __init__(self, sc, config, progress: _Progress, head: str):
        self.sc, self.config, self.progress, self.head = sc, config, progress, head
        self.done = 0

    def __call__(self, msg: str) -> None:
        steps = self.sc.steps
        said = msg.strip().split(": ", 1)[-1].split(" ", 1)[0]
        if msg.startswith(f"  {self.sc.name}: ") and self.done < len(steps) and said == steps[self.done].do:
            step = steps[self.done]
            self.done += 1
            self.progress.note(f"{self.head}: +{step.at_ns / 1e9:g} s {describe_step(step, self.config)}")
            nxt = (f"next: +{steps[self.done].at_ns / 1e9:g} s {describe_step(steps[self.done], self.config)}"
                   if self.done < len(steps) else f"observing until +{self.sc.end_ns / 1e9:g} s")
            self.progress.status(f"{self.head}: step {self.done}/{len(steps)} done; {nxt}")
        else:
            self.progress.note(msg)


def _run_one(spec, sc, folder: Path, tol, log=_stderr):
    """One scenario, start to verdict. Whatever goes wrong is this scenario's error verdict
    (a board that does not boot, an emulator that dies, a harness bug with its traceback in
    the scenario's folder); the run goes on with the next scenario on a fresh board."""
    from harness.runner import check_scenario, run_scenario

    try:
        run = run_scenario(spec, sc, folder, log=log)
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
    from harness.report import ScenarioFiles

    files = ScenarioFiles(out, captures=tuple(pcaps), predicted=out / "predicted.pcap", console=art.console,
                          verdict=out / "verdict.json", host_events=art.host_events)
    paths = write_report(out, [v], {"board": spec.name}, folders=[files], declared=spec.firmware)
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
    with _Progress() as progress:
        progress.status(f"preparing board {spec.name}")
        board = open_board(spec, out, log=progress.note)
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
        with _Progress() as progress:
            _boot_to(BoardStrategy(board, timeouts_for(spec)), BoardState.SSH, progress)
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
    result = nightly(args.boards or ["emulated"], out, args.tolerance_scale, args.scenarios, shlex.split(args.pytest_args),
                     shlex.split(args.robot_args), Path(args.suites) if args.suites else None)
    for s in result.scenarios:
        _stderr(f"scenario {s.name}: {s.status}")
    for s in result.suites:
        _stderr(f"{s.name}: {s.passed} passed, {s.failed + s.errors} failed, {s.skipped} skipped"
                + (f"; {s.error}" if s.error else ""))
    _stderr(f"summary: {result.out / 'summary.html'}")
    if result.interrupted:
        raise result.interrupted if isinstance(result.interrupted, KeyboardInterrupt) else KeyboardInterrupt()
    return result.exit_code


# -- pkt -------------------------------------------------------------------------------
def cmd_pkt(args) -> int:
    from harness.pkt.command import run_command

    return run_command(args.scripts, args.target, args.tolerance_usecs, args.json, args.board, args.out)


# -- parser ----------------------------------------------------------------------------
EXIT_CODES = """exit codes:
  0    success: the board did what Linux would have done
  1    divergences: a check failed
  2    error: bad input, missing tools, a board that cannot be reached, a run the
       oracle could not judge
  130  Ctrl-C
  143  SIGTERM"""

EPILOGS = {
    "pkt": """examples:
  bmc-hil pkt suites/pkt/*.pkt                  the project's corpus against the model
  bmc-hil pkt my.pkt --tolerance-usecs 10000    a wider timing tolerance
  bmc-hil pkt suites/pkt/*.pkt --json           the results as JSON
  bmc-hil pkt suites/pkt/*.pkt --target board   the same scripts on the emulated board

exit codes:
  0    every script passed
  1    a script failed (its line, the expected and the actual segment are printed)
  2    bad input: a syntax error (file:line:column), a missing file; a board that
       could not be booted or reached""",
    "bmc-hil": """examples:
  bmc-hil boot --check             boot the emulated board, SSH in, power off
  bmc-hil boot                     keep it up; in another terminal:
  bmc-hil ssh -- ls -la /          a command over SSH (or: bmc-hil ssh, a shell)
  bmc-hil link down                take its Ethernet link down (up, status)
  bmc-hil power cycle              reset it: a fresh boot (on, off, status)
  bmc-hil scenarios                the built-in scenarios
  bmc-hil predict syn-retransmit   what Linux 6.1 should do in one
  bmc-hil run handshake            run it on a fresh board and judge it

""" + EXIT_CODES + """
  ssh exits with the remote command's status, as ssh(1) does.

Every command takes --help.""",
    "setup": """examples:
  bmc-hil setup --dry-run          what would be installed
  sudo bmc-hil setup               install it (as root)

""" + EXIT_CODES,
    "image build": """examples:
  bmc-hil image build                          the default firmware config
  bmc-hil image build --config firmware.yaml   another one (an initramfs rebuild: seconds)
  bmc-hil image build --json                   the paths as JSON

The kernel is built once per recipe (about 6 minutes on 2 cores) and kept in the cache
(~/.cache/bmc-hil, or $BMC_HIL_CACHE). Progress goes to stderr.

""" + EXIT_CODES,
    "boot": """examples:
  bmc-hil boot --check             boot, SSH in, uname -a, boot-to-ready seconds, power off
  bmc-hil boot --check --json      the same as JSON
  bmc-hil boot                     keep the emulated board up until Ctrl-C, for the
                                   console, ssh, link, power and qmp commands
  bmc-hil boot --board lab.yaml    a real board: brought to SSH-ready, left running

""" + EXIT_CODES + """
  --check: 2 when the board does not boot or answer. A kept-up board is ended by
  Ctrl-C or SIGTERM: it is powered off and the exit code is 0.""",
    "console": """examples:
  bmc-hil console                  the running emulated board's console (bmc-hil boot)
  bmc-hil console --board lab.yaml a real board's serial console

Quit with Ctrl-]. Exit codes: 0, or 2 when the console cannot be opened.""",
    "ssh": """examples:
  bmc-hil ssh                      a login shell (a terminal when stdin is one)
  bmc-hil ssh -- ls -la /          a command; -- ends bmc-hil's own options
  bmc-hil ssh uname -a             without --: the words after the first one go with it
  bmc-hil ssh --timeout 5 -- cat /proc/net/tcp
  echo hi | bmc-hil ssh -- cat     stdin goes to the command

The words of the command are joined with spaces and run by the board's shell, as
ssh(1) does. Options go before the command.

exit codes:
  the remote command's own exit status, as ssh(1) passes it through
  2    error: no running board, no SSH answer within --timeout (is the link down?),
       a command still running at --timeout, or no exit status (killed by a signal)
  141  what read its output went away (SIGPIPE), as for ssh(1) in a pipe
  130  Ctrl-C (in a shell, Ctrl-C goes to the board)
  143  SIGTERM""",
    "link": """examples:
  bmc-hil link down                take the running emulated board's link down
  bmc-hil link up
  bmc-hil link status              up or down, and what the board last said about it
  bmc-hil link down --board lab.yaml   a real board: the board file's link.down command

The emulated board's link is QEMU's set_link on its netdev, through the session's QMP
control socket; each change is recorded in the session's host-events.jsonl. QEMU 7.2
does not report a netdev's link state, so status is the harness's record of its set_link
commands, beside the board's last Link is Up/Down console line.

""" + EXIT_CODES,
    "power": """examples:
  bmc-hil power cycle              reset the running emulated board: a fresh boot
  bmc-hil power off                hold it in reset (QEMU and the session stay)
  bmc-hil power on                 let it boot from the reset
  bmc-hil power status             on or off
  bmc-hil power cycle --board lab.yaml   a real board: power.reset, else power.off then on

The emulated board's power is QMP: off is stop and system_reset, on is cont, cycle is
system_reset. Each action is recorded in the session's host-events.jsonl.

""" + EXIT_CODES,
    "qmp": """examples:
  bmc-hil qmp query-status
  bmc-hil qmp 'set_link {"name": "net0", "up": false}'
  bmc-hil qmp 'human-monitor-command {"command-line": "info network"}'
  bmc-hil qmp --socket /tmp/other/qmp.sock query-version

Each COMMAND is a QMP command name, then optionally its arguments as one JSON object,
in one shell word; the replies are printed one JSON line each. Without --socket, the
running emulated board's control socket (bmc-hil boot). Useful commands: query-status,
stop, cont, system_reset, set_link, human-monitor-command (any HMP command, e.g.
info network, info qtree), query-commands (the full list).

""" + EXIT_CODES,
    "scenarios": """examples:
  bmc-hil scenarios                every built-in scenario
  bmc-hil scenarios --tier ci      those bmc-hil run runs by default
  bmc-hil scenarios --json

Exit codes: 0, or 2 on a bad --tier.""",
    "predict": """examples:
  bmc-hil predict syn-retransmit
  bmc-hil predict handshake --json
  bmc-hil predict my-scenario.yaml --board lab.yaml --out predicted/

The model plays the board (the board file's declared firmware, Linux 6.1's constants)
against the scenario's own peer (slirp, silent, stalled or deaf, as bmc-hil run plays
them), and the oracle judges that run as bmc-hil run judges a board's. The table shows
the steps, the frames the board receives and, marked checked, what run compares: each
with its window where Linux leaves the time open (a timer's frame, a link line).

exit codes:
  0    the prediction (and the oracle passes a board that does exactly this)
  1    the oracle does not pass the model's own run (a gap between model and oracle)
  2    error: a bad scenario or board file, or a run the oracle could not judge""",
    "run": """examples:
  bmc-hil run                                  every CI-tier built-in, emulated board
  bmc-hil run handshake link-flap --board lab.yaml
  bmc-hil run syn-giveup synack-giveup         long-tier scenarios, by name
  bmc-hil run my-scenario.yaml --out runs/mine --json

Each scenario runs on a fresh board; progress (each step in words) goes to stderr;
report.json and report.html go to --out, whatever happens.

""" + EXIT_CODES,
    "compare": """examples:
  bmc-hil compare --board lab.yaml --pcap cap.pcap --console console.log \\
      --host-events host-events.jsonl --scenario handshake
  bmc-hil compare ... --pcap cap.pcap --pcap cap.1.pcap       a power cycle in between
  bmc-hil compare ... --capture-clock qemu-filter-dump --qmp qmp.jsonl   an emulated
                                                            board's user-network capture

The window judged is the run's own, from its scenario_start and scenario_end records
(or --start-wall-ns / --end-wall-ns); an empty window is an error.

""" + EXIT_CODES,
    "flap": """examples:
  bmc-hil flap                                 20 x (down 2 s, up 5 s), no traffic
  bmc-hil flap --down 0.5 --up 3 --cycles 50 --traffic ssh
  bmc-hil flap --board lab.yaml --json

A live table on stderr (stdout with --json holds the JSON); flap.json, flap.png and
the capture go to --out.

exit codes:
  0    every cycle inside the model's window
  1    a cycle outside it (LATE, EARLY or MISSING)
  2    error
  130  Ctrl-C
  143  SIGTERM""",
    "nightly": """examples:
  bmc-hil nightly --out nightly/
  bmc-hil nightly --board emulated --board emulated     # two emulated boards at once
  bmc-hil nightly --board bmc-1.yaml --board bmc-2.yaml # two lab boards (labgrid places)
  bmc-hil nightly --board lab.yaml --scenario handshake --pytest-args '-k closed'

""" + EXIT_CODES,
}


def _sub(sub, name: str, help_text: str, epilog_key: str | None = None, **kw):
    return sub.add_parser(name, help=help_text, description=help_text[:1].upper() + help_text[1:] + ".",
                          epilog=EPILOGS.get(epilog_key or name), formatter_class=argparse.RawDescriptionHelpFormatter,
                          **kw)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="bmc-hil", description=__doc__.split("\n")[0],
                                epilog=EPILOGS["bmc-hil"], formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    s = _sub(sub, "setup", "install the system packages the harness needs (as root)")
    s.add_argument("--dry-run", action="store_true", help="print what would be installed")
    s.set_defaults(func=cmd_setup)

    img = _sub(sub, "image", "the emulated firmware image", "image build")
    img_sub = img.add_subparsers(dest="image_command", required=True, metavar="ACTION")
    b = _sub(img_sub, "build", "build (or take from the cache) the emulated image", "image build")
    b.add_argument("--config", help="firmware config YAML to build from (default: the built-in one)")
    b.add_argument("--refresh-packages", action="store_true",
                   help="resolve and download the board's Debian packages again")
    b.add_argument("--json", action="store_true", help="print the paths as JSON")
    b.set_defaults(func=cmd_image_build)

    def board_arg(sp):
        sp.add_argument("--board", default="emulated", metavar="FILE|emulated",
                        help="board file, or 'emulated' for the built-in emulated board (default)")

    bt = _sub(sub, "boot", "boot a board to SSH-ready (and keep it up, or --check and stop)")
    board_arg(bt)
    bt.add_argument("--check", action="store_true",
                    help="boot, wait for SSH, run uname -a, print boot-to-ready seconds, power off")
    bt.add_argument("--out", help="artifact folder (default: bmc-hil-runs/TIME-NAME)")
    bt.add_argument("--json", action="store_true", help="print the check's result as JSON")
    bt.set_defaults(func=cmd_boot)

    c = _sub(sub, "console", "attach a terminal to the board's serial console (quit: Ctrl-])")
    board_arg(c)
    c.set_defaults(func=cmd_console)

    sh = _sub(sub, "ssh", "run a command, or a shell, on the board over SSH; exits with the command's status")
    board_arg(sh)
    sh.add_argument("--timeout", type=float, default=60.0, metavar="SECONDS",
                    help="a command: connecting and running it take at most this long; a shell: connecting "
                         "does (default 60)")
    sh.add_argument("command", nargs=argparse.REMAINDER, metavar="[--] COMMAND ...",
                    help="the command line to run on the board (none: a login shell)")
    sh.set_defaults(func=cmd_ssh)

    ln = _sub(sub, "link", "take the board's Ethernet link down or up, or show it")
    board_arg(ln)
    ln.add_argument("state", choices=["down", "up", "status"], help="down, up, or status (show it)")
    ln.add_argument("--out", help="artifact folder for a real board's host-event log")
    ln.add_argument("--json", action="store_true", help="status as JSON")
    ln.set_defaults(func=cmd_link)

    pw = _sub(sub, "power", "power the board on, off or through a cycle, or show it")
    board_arg(pw)
    pw.add_argument("action", choices=["on", "off", "cycle", "status"],
                    help="on, off, cycle (a reset: a fresh boot), or status (emulated board only)")
    pw.add_argument("--out", help="artifact folder for a real board's host-event log")
    pw.add_argument("--json", action="store_true", help="status as JSON")
    pw.set_defaults(func=cmd_power)

    sc = _sub(sub, "scenarios", "list the built-in scenarios: name, tier, peer, duration, what each is about")
    sc.add_argument("--tier", choices=["ci", "long", "all"], default="all",
                    help="ci: what bmc-hil run runs by default; long: too long for CI; all (default)")
    sc.add_argument("--json", action="store_true", help="print the list as JSON")
    sc.set_defaults(func=cmd_scenarios)

    rn = _sub(sub, "run", "drive a board through scenarios, capture, and compare with the model")
    rn.add_argument("scenarios", nargs="*", metavar="SCENARIO",
                    help="scenario files or built-in names (default: every CI-tier built-in scenario)")
    rn.add_argument("--board", dest="boards", action="append", metavar="FILE|emulated",
                    help="board file, or 'emulated' for the built-in emulated board (default); repeat it to "
                         "spread the scenarios over several boards")
    rn.add_argument("--out", help="report and artifact folder, new or empty (default: bmc-hil-runs/TIME-run-NAME)")
    rn.add_argument("--tolerance-scale", type=float, default=1.0, metavar="K",
                    help="multiply every timing tolerance by K (default 1)")
    rn.add_argument("--json", action="store_true", help="print the report as JSON")
    rn.set_defaults(func=cmd_run)

    cp = _sub(sub, "compare", "compare captures taken elsewhere with the model")
    board_arg(cp)
    cp.add_argument("--pcap", action="append", required=True, help="capture file (repeat for a power cycle)")
    cp.add_argument("--console", required=True, help="console log written by a bmc-hil board driver")
    cp.add_argument("--host-events", required=True, help="host-events.jsonl of the same run")
    cp.add_argument("--qmp", help="qmp.jsonl (emulated boards)")
    cp.add_argument("--scenario", required=True, help="the scenario that was run (file or built-in name)")
    cp.add_argument("--capture-clock", default="host-wall", choices=["host-wall", "qemu-filter-dump"],
                    help="how the capture is stamped: host-wall, the host's wall clock (tcpdump or tshark on "
                         "the host, a harness-owned wire; the default); qemu-filter-dump, QEMU's filter-dump "
                         "(an emulated board's user-network capture, pinned by the run's capture_filter "
                         "records)")
    cp.add_argument("--start-wall-ns", type=int,
                    help="start of the compared window (default: the run's scenario_start record)")
    cp.add_argument("--end-wall-ns", type=int,
                    help="end of the compared window (default: the run's scenario_end record, else start + "
                         "the scenario's duration)")
    cp.add_argument("--tolerance-scale", type=float, default=1.0, metavar="K",
                    help="multiply every timing tolerance by K (default 1)")
    cp.add_argument("--salvage", action="store_true",
                    help="compare a damaged capture up to its cut (the verdict names the cut) instead of "
                         "making it an error")
    cp.add_argument("--out", help="report folder, new or empty (default: bmc-hil-runs/TIME-compare-NAME)")
    cp.add_argument("--json", action="store_true", help="print the report as JSON")
    cp.set_defaults(func=cmd_compare)

    pr = _sub(sub, "predict", "what Linux 6.1 should do in a scenario, against its peer: the timeline run checks")
    pr.add_argument("scenario", help="scenario file or built-in name (bmc-hil scenarios lists them)")
    board_arg(pr)
    pr.add_argument("--seed", type=int, default=0,
                    help="seed for what Linux randomises (ISN, ports, the phylib phase; default 0)")
    pr.add_argument("--out", help="keep the model's run here (capture, console, predicted.pcap); new or empty")
    pr.add_argument("--json", action="store_true", help="print the timeline and the predicted events as JSON")
    pr.set_defaults(func=cmd_predict)

    fl = _sub(sub, "flap", "link-flap experiment: detection delays against the model's window")
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

    nt = _sub(sub, "nightly", "the unattended run: every scenario through the oracle, the pytest and Robot "
                              "suites, one HTML summary")
    nt.add_argument("--board", dest="boards", action="append", metavar="FILE|emulated",
                    help="board file, or 'emulated' (default); repeat it to spread the scenarios and the pytest "
                         "suites over several boards")
    nt.add_argument("--out", help="results folder (default: bmc-hil-runs/TIME-nightly)")
    nt.add_argument("--tolerance-scale", type=float, default=1.0, metavar="K",
                    help="multiply every timing tolerance by K (default 1)")
    nt.add_argument("--scenario", dest="scenarios", action="append", metavar="NAME|FILE",
                    help="run this scenario through the oracle (repeat; default: every built-in scenario)")
    nt.add_argument("--pytest-args", default="", metavar="'ARGS'",
                    help="more arguments for the pytest suites, e.g. '-k closed' (default: run them all)")
    nt.add_argument("--robot-args", default="", metavar="'ARGS'",
                    help="more arguments for the Robot suites, e.g. '--test *Closed*' (default: run them all)")
    nt.add_argument("--suites", metavar="DIR", help="the suites folder (default: ./suites, else the harness's own)")
    nt.set_defaults(func=cmd_nightly)

    pk = _sub(sub, "pkt", "run packetdrill-syntax scripts against the model or the emulated board")
    pk.add_argument("scripts", nargs="+", metavar="SCRIPT.pkt", help="packetdrill-syntax scripts (suites/pkt/*.pkt)")
    pk.add_argument("--target", choices=["model", "board"], default="model",
                    help="model: the reference model in virtual time (default); board: the emulated board's "
                         "Linux, syscalls run by its pktagent, the remote played on the harness's wire")
    pk.add_argument("--board", metavar="FILE",
                    help="with --target board: an emulated board file (default: the built-in image)")
    pk.add_argument("--out", metavar="DIR", default="pkt-out",
                    help="with --target board: where the wire's capture, the console and QEMU's log go "
                         "(default: pkt-out)")
    pk.add_argument("--tolerance-usecs", type=int, metavar="N",
                    help="timing tolerance in microseconds (default: the script's --tolerance_usecs, else 4000; "
                         "12.5%% of the gap when that is more)")
    pk.add_argument("--json", action="store_true", help="print the results as JSON")
    pk.set_defaults(func=cmd_pkt)

    q = _sub(sub, "qmp", "send QMP commands to the emulated board's QEMU")
    board_arg(q)
    q.add_argument("--socket", help="a QMP unix socket (default: the running emulated board's control socket)")
    q.add_argument("commands", nargs="+", metavar="'COMMAND [JSON-ARGS]'",
                   help="a QMP command, with its arguments as one JSON object, in one shell word")
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
