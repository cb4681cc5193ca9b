"""The emulated AST2500: `qemu-system-arm -M ast2500-evb` (or `romulus-bmc`, NC-SI).

- Console: a chardev TCP socket on 127.0.0.1, read through pyserial's `socket://` URL,
  the code path a real serial port takes.
- QMP: qemu.qmp on a unix socket, for set_link, system_reset, quit, capture filters, and
  the WATCHDOG / RESET events (logged with their stamps).
- Network: user networking with `restrict=on` and forwards bound to 127.0.0.1 on free
  ports found at run time, captured by a `filter-dump` object; or `wire` mode, where the
  harness owns the board's only network (see wire.py).
- QEMU starts paused (`-S`) so the console and QMP are attached before the first
  instruction: nothing of the boot is lost.
- QEMU dies with the harness (PR_SET_PDEATHSIG), and `close()` quits it, then kills it by
  pid, so no QEMU outlives a failed or interrupted run.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from pathlib import Path

from harness.board.base import Board
from harness.board.console import SerialConsole
from harness.board.qmp import Qmp
from harness.board.ssh import SSHConnection
from harness.board.wire import Wire
from harness.errors import BoardError, QemuError
from harness.image import FirmwareImage
from harness.proc import die_with_parent
from models.config import FirmwareConfig

MACHINES = ("ast2500-evb", "romulus-bmc")
NETWORK_MODES = ("user", "wire")
NETDEV_ID = "net0"
QEMU_BINARY = "qemu-system-arm"
# The guest's slirp addresses (QEMU's defaults for user networking).
SLIRP_NET = "10.0.2.0/24"
LINK_UP_RE = re.compile(r"eth0: Link is Up")
LINK_DOWN_RE = re.compile(r"eth0: Link is Down")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free now (QEMU binds it right after)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# A powered-on board's QMP, console and wire sockets live in a folder named after the pid
# of the harness that made it, so one left by a harness killed with SIGKILL is swept away by
# the next one to power on a board.
SOCKDIR_PREFIX = "bmc-hil-"


def sweep_socket_dirs() -> list[Path]:
    """Remove socket folders whose harness process is gone; return what was removed."""
    removed = []
    for d in Path(tempfile.gettempdir()).glob(f"{SOCKDIR_PREFIX}*-*"):
        pid = d.name[len(SOCKDIR_PREFIX):].split("-", 1)[0]
        try:
            if not d.is_dir() or not pid.isdigit() or d.stat().st_uid != os.getuid():
                continue                   # not one of ours
        except OSError:
            continue
        try:
            os.kill(int(pid), 0)
            continue                       # its harness still runs
        except ProcessLookupError:
            pass
        except PermissionError:
            continue                       # someone else's, alive
        shutil.rmtree(d, ignore_errors=True)
        removed.append(d)
    return removed


class QemuBoard(Board):
    """An emulated AST2500 running `image`, declared to be `declared` (default: the image's config)."""

    def __init__(self, image: FirmwareImage, out_dir: Path, machine: str = "ast2500-evb",
                 network: str = "user", declared: FirmwareConfig | None = None, name: str = "emulated",
                 memory_mb: int = 512, extra_forwards: dict[str, int] | None = None,
                 boot_timeout: float = 60.0, kernel_args: str = ""):
        if machine not in MACHINES:
            raise ValueError(f"machine {machine!r}; expected one of {', '.join(MACHINES)}")
        if network not in NETWORK_MODES:
            raise ValueError(f"network {network!r}; expected one of {', '.join(NETWORK_MODES)}")
        super().__init__(name, out_dir, declared or image.config)
        self.image = image
        self.machine = machine
        self.network = network
        self.memory_mb = memory_mb
        self.boot_timeout = boot_timeout
        self.kernel_args = kernel_args
        self.extra_forwards = dict(extra_forwards or {})
        self._proc: subprocess.Popen | None = None
        self._qmp: Qmp | None = None
        self._console: SerialConsole | None = None
        self._ssh: SSHConnection | None = None
        self._sockdir: Path | None = None
        self.wire: Wire | None = None
        # service name -> (guest port, host port on 127.0.0.1)
        self.forwards: dict[str, tuple[int, int]] = {}
        self.console_port: int | None = None
        self._link_up = True
        self._link_wanted = None
        self._capture: Path | None = None
        self.capture_files: list[Path] = []
        self._boots = 0

    # -- the verbs -------------------------------------------------------------------
    @property
    def console(self) -> SerialConsole:
        if self._console is None:
            raise BoardError("the emulated board is powered off (no console)")
        return self._console

    @property
    def ssh(self) -> SSHConnection:
        if self._ssh is None:
            raise BoardError("the emulated board is powered off (no SSH forward)")
        return self._ssh

    @property
    def qmp(self) -> Qmp:
        if self._qmp is None:
            raise BoardError("the emulated board is powered off (no QMP)")
        return self._qmp

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def running(self) -> bool:
        """QEMU was started and has not exited."""
        return self._proc is not None and self._proc.poll() is None

    @property
    def emulator(self) -> QemuBoard:
        return self

    @property
    def wired(self) -> bool:
        return self.network == "wire"

    def service_address(self, service: str, port: int) -> tuple[str, int]:
        """A service is reached through its slirp forward on 127.0.0.1 (`service` is a
        service name or `port<N>`)."""
        return "127.0.0.1", self.host_port(service)

    def command_line(self) -> list[str]:
        """The full QEMU command line for the next power-on."""
        img = self.image
        iface = img.config.interface
        args = [
            QEMU_BINARY, "-M", self.machine, "-m", str(self.memory_mb),
            "-display", "none", "-monitor", "none", "-S",
            "-kernel", str(img.kernel.uimage), "-dtb", str(img.kernel.dtb(self.machine)),
            "-initrd", str(img.initramfs),
            "-append", " ".join(filter(None, ["console=ttyS4,115200 rdinit=/init printk.time=1",
                                              self.kernel_args])),
            # nodelay: QEMU writes the UART's output a byte at a time; with Nagle, all but
            # the first byte of a line wait for the harness's delayed ACK (40 ms)
            "-chardev", f"socket,id=con0,host=127.0.0.1,port={self.console_port},server=on,wait=off,nodelay=on",
            "-serial", "chardev:con0",
            "-qmp", f"unix:{self._sockdir / 'qmp.sock'},server=on,wait=off",
            # A second monitor for other processes (`bmc-hil link`, a lab-style board file).
            "-qmp", f"unix:{self.control_socket},server=on,wait=off",
        ]
        if self.network == "user":
            fwds = "".join(f",hostfwd=tcp:127.0.0.1:{hport}-:{gport}"
                           for gport, hport in sorted(self.forwards.values()))
            args += ["-netdev", f"user,id={NETDEV_ID},restrict=on,net={SLIRP_NET}{fwds}"]
        else:
            args += ["-netdev", self.wire.qemu_netdev(NETDEV_ID)]
        args += ["-net", f"nic,netdev={NETDEV_ID},macaddr={iface.mac}"]
        return args

    @property
    def control_socket(self) -> Path:
        """The QMP socket left free for other processes while the board runs."""
        if self._sockdir is None:
            raise BoardError("the emulated board is powered off (no QMP control socket)")
        return self._sockdir / "control.sock"

    def host_port(self, service: str) -> int:
        """The 127.0.0.1 port forwarded to `service`'s guest port (user networking)."""
        if service not in self.forwards:
            raise BoardError(f"no forward for {service!r}; have {', '.join(self.forwards) or 'none'}")
        return self.forwards[service][1]

    def _wanted_forwards(self) -> dict[str, int]:
        wanted = {s.name: s.port for s in self.image.config.services if s.enabled}
        # The declared services are forwarded too, so a test can see a refused port.
        for s in self.declared.services:
            wanted.setdefault(s.name, s.port)
        wanted.setdefault("ssh", 22)
        wanted.update(self.extra_forwards)
        return wanted

    def power_on(self) -> None:
        if self._proc is not None:
            raise BoardError("the emulated board is already powered on")
        if shutil.which(QEMU_BINARY) is None:
            raise QemuError(f"{QEMU_BINARY} not found on PATH; run `bmc-hil setup`", artifacts=self.out_dir)
        sweep_socket_dirs()
        self._sockdir = Path(tempfile.mkdtemp(prefix=f"{SOCKDIR_PREFIX}{os.getpid()}-"))
        self.console_port = free_port()
        self.forwards = {name: (gport, free_port()) for name, gport in self._wanted_forwards().items()}
        if self.network == "wire":
            self.wire = Wire(self._sockdir)
        self._boots += 1
        qemu_log = open(self.out_dir / "qemu.log", "ab")
        cmd = self.command_line()
        qemu_log.write(("$ " + " ".join(cmd) + "\n").encode())
        qemu_log.flush()
        try:
            self._proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=qemu_log, stderr=qemu_log,
                                          preexec_fn=die_with_parent, start_new_session=True)
        except OSError as exc:
            qemu_log.close()
            self._cleanup_sockets()
            raise QemuError(f"cannot start {QEMU_BINARY}: {exc}", artifacts=self.out_dir) from exc
        qemu_log.close()
        self.record("power_on", pid=self._proc.pid, boot=self._boots)
        try:
            self._wait_for_socket(self._sockdir / "qmp.sock")
            self._qmp = Qmp(self._sockdir / "qmp.sock", self.out_dir / "qmp.jsonl")
            self._qmp.connect()
            self._qmp.add_listener(self._on_qmp_event)
            self._console = SerialConsole(f"socket://127.0.0.1:{self.console_port}", self.out_dir / "console.log")
            self._console.open()
            self._console.add_listener(self._on_console_line)
            if self._capture is not None:
                self._add_capture_filter(self._next_capture_path())
            if not self._link_up:
                self.qmp.execute("set_link", {"name": NETDEV_ID, "up": False})
            self.qmp.execute("cont")
        except BoardError as exc:
            status = self._proc.poll()
            reason = f"{QEMU_BINARY} exited with status {status} at start-up" if status is not None else str(exc)
            tail = self._qemu_log_tail()
            self._kill()
            raise QemuError(f"emulated board failed to start: {reason}", console_tail=tail,
                            artifacts=self.out_dir) from exc
        cred = self.image.credentials
        self._ssh = SSHConnection("127.0.0.1", self.host_port("ssh"), cred.user, password=cred.password,
                                  key_file=cred.key_file, known_hosts="auto-accept")
        self._activated()

    def _wait_for_socket(self, path: Path, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while not path.exists():
            if self._proc.poll() is not None:
                raise QemuError(f"{QEMU_BINARY} exited with status {self._proc.returncode} at start-up",
                                console_tail=self._qemu_log_tail(), artifacts=self.out_dir)
            if time.monotonic() > deadline:
                raise QemuError(f"QMP socket {path} did not appear within {timeout:g} s",
                                console_tail=self._qemu_log_tail(), artifacts=self.out_dir)
            time.sleep(0.02)

    def _qemu_log_tail(self) -> str:
        try:
            return "\n".join((self.out_dir / "qemu.log").read_text(errors="replace").splitlines()[-15:])
        except OSError:
            return ""

    def check_alive(self) -> None:
        """Raise QemuError (with logs) if QEMU has died."""
        if self._proc is not None and self._proc.poll() is not None:
            raise QemuError(f"QEMU exited unexpectedly with status {self._proc.returncode}",
                            console_tail=self.console_tail() + "\n--- qemu.log ---\n" + self._qemu_log_tail(),
                            artifacts=self.out_dir)

    def power_off(self) -> None:
        """Quit QEMU (politely through QMP, then by pid) and release its sockets."""
        if self._proc is None:
            return
        if self._capture is not None:
            self._remove_capture_filter()
        try:
            if self._qmp is not None and self._proc.poll() is None:
                self._qmp.execute("quit", timeout=5)
        except BoardError:
            pass
        self._kill()
        self.record("power_off")

    def _kill(self) -> None:
        if self._qmp is not None:
            self._qmp.close()
            self._qmp = None
        if self._console is not None:
            self._console.close()
            self._console = None
        if self._ssh is not None:
            self._ssh.close()
            self._ssh = None
        if self._proc is not None:
            try:
                self._proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                os.kill(self._proc.pid, signal.SIGKILL)
                self._proc.wait(timeout=5)
            self._proc = None
        if self.wire is not None:
            self.wire.close()
            self.wire = None
        self._cleanup_sockets()
        self._activated(False)

    def _cleanup_sockets(self) -> None:
        if self._sockdir is not None:
            shutil.rmtree(self._sockdir, ignore_errors=True)
            self._sockdir = None

    def reset(self) -> None:
        self.check_alive()
        self.qmp.execute("system_reset")
        self.record("reset")

    def set_link(self, up: bool) -> None:
        """QMP set_link on the NIC's netdev: QEMU drops frames both ways while down."""
        self.check_alive()
        self._link_up = up
        self.qmp.execute("set_link", {"name": NETDEV_ID, "up": up})
        self.record("link_up" if up else "link_down")

    @property
    def link_up(self) -> bool:
        return self._link_up

    def follow_link(self, wanted) -> None:
        """Another process may set this board's link (`bmc-hil link` beside a kept-up
        `bmc-hil boot`): `wanted()` says what the link should be now, and is asked before
        every re-assertion, so a link brought up elsewhere is never taken down again."""
        self._link_wanted = wanted

    def _wants_down(self) -> bool:
        if self._link_wanted is not None:
            self._link_up = self._link_wanted()
        return not self._link_up

    # A MAC soft reset in QEMU resets the PHY with link on, whatever set_link said: when
    # the harness wants the link down, say so again after every reset and Link-Up line.
    def _on_qmp_event(self, ev) -> None:
        if ev.name == "RESET" and self._wants_down():
            threading.Thread(target=self._reassert_link_down, daemon=True).start()

    def _on_console_line(self, line) -> None:
        if LINK_UP_RE.search(line.text) and self._wants_down():
            threading.Thread(target=self._reassert_link_down, daemon=True).start()

    def _reassert_link_down(self) -> None:
        # The driver resets the MAC again from its reset task right after Link is Up, so
        # one re-assertion can come too early: repeat until the guest logs Link is Down.
        for _ in range(4):
            try:
                if self._qmp is None or not self._wants_down():
                    return
                since = self._console.cursor() if self._console is not None else 0
                self._qmp.execute("set_link", {"name": NETDEV_ID, "up": False})
                self.record("link_down_reasserted")
                if self._console is None:
                    return
                self._console.expect(LINK_DOWN_RE, 1.5, since=since, check_panic=False)
                return
            except BoardError:
                continue  # not seen yet (or the board went away: power_off reports that)

    # -- capture -------------------------------------------------------------------
    def capture_start(self, path: Path) -> None:
        """Record the board's frames to `path` (filter-dump, or the wire's own pcap)."""
        if self._capture is not None:
            raise BoardError(f"a capture to {self._capture} is already running")
        self._capture = Path(path)
        self.capture_files = []
        if self._proc is not None:
            self._add_capture_filter(self._next_capture_path())
        self.record("capture_start", path=str(path))

    def _next_capture_path(self) -> Path:
        # After a power cycle the capture goes on in a new file beside the first.
        base = self._capture
        n = len(self.capture_files)
        path = base if n == 0 else base.with_name(f"{base.stem}.{n}{base.suffix}")
        self.capture_files.append(path)
        return path

    def _add_capture_filter(self, path: Path) -> None:
        if self.network == "wire":
            self.wire.capture_start(path)
        else:
            # filter-dump stamps frames with the wall-clock second the filter was made in
            # plus QEMU's virtual clock: record that second so ingest can pin the offset.
            before = time.time_ns()
            self.qmp.execute("object-add", {"qom-type": "filter-dump", "id": "capture0",
                                            "netdev": NETDEV_ID, "file": str(path)})
            self.record("capture_filter", path=str(path), wall_before_ns=before, wall_after_ns=time.time_ns())

    def _remove_capture_filter(self) -> None:
        if self.network == "wire":
            if self.wire is not None:
                self.wire.capture_stop()
        elif self._qmp is not None and self._proc is not None and self._proc.poll() is None:
            self.qmp.execute("object-del", {"id": "capture0"})

    def capture_stop(self) -> Path:
        if self._capture is None:
            raise BoardError("no capture is running")
        path = self._capture
        if self._proc is not None:
            self._remove_capture_filter()
        self._capture = None
        self.record("capture_stop", files=[str(p) for p in self.capture_files])
        return path

    def close(self) -> None:
        try:
            self.power_off()
        finally:
            super().close()
