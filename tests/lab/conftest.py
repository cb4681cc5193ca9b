"""A real labgrid lab on 127.0.0.1: labgrid's own coordinator and exporter processes, places
defined through labgrid's client, and an emulated AST2500 exported as a place by the
bench (`python -m harness.board.labgrid bench`: QEMU, ser2net from Debian, a PDU over HTTP).

Every process here listens on 127.0.0.1 only, dies with the test run (PR_SET_PDEATHSIG),
and is ended by its pid.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from harness.board.labgrid import LabgridSession
from harness.board.qemu import free_port
from harness.proc import die_with_parent
from models.config import DEFAULT_CONFIG

# The exporter of the lab's idle places (resources that no test powers or reads).
IDLE_EXPORTER = "lab-idle"
BENCH_EXPORTER = "lab-bench"


@dataclass
class Lab:
    """A labgrid coordinator on 127.0.0.1 and the exporters started against it."""

    address: str
    folder: Path
    session: LabgridSession
    procs: list[subprocess.Popen] = field(default_factory=list)

    def start(self, argv: list[str], log: str) -> subprocess.Popen:
        with open(self.folder / log, "ab") as out:
            proc = subprocess.Popen(argv, cwd=self.folder, stdin=subprocess.DEVNULL, stdout=out,
                                    stderr=subprocess.STDOUT, preexec_fn=die_with_parent)
        self.procs.append(proc)
        return proc

    def export(self, exporter: str, resources: dict | Path) -> subprocess.Popen:
        """labgrid-exporter named `exporter` for a resource file (or a mapping written to one);
        returns once the coordinator lists every group it exports."""
        if isinstance(resources, dict):
            path = self.folder / f"{exporter}.yaml"
            path.write_text(json.dumps(resources, indent=2) + "\n")
        else:
            path = resources
        groups = set(json.loads(path.read_text()))
        proc = self.start([sys.executable, "-m", "labgrid.remote.exporter", "-c", self.address, "-n", exporter,
                           "--hostname", "127.0.0.1", str(path)], f"exporter-{exporter}.log")
        deadline = time.monotonic() + 30
        while groups - set(self.session.client.resources.get(exporter, {})):
            assert proc.poll() is None, f"labgrid-exporter {exporter} exited: {self.log_tail(exporter)}"
            assert time.monotonic() < deadline, f"labgrid-exporter {exporter} exported nothing in 30 s"
            time.sleep(0.1)
        return proc

    def log_tail(self, exporter: str) -> str:
        return (self.folder / f"exporter-{exporter}.log").read_text(errors="replace")[-2000:]

    def place(self, name: str):
        """The coordinator's view of place `name` (labgrid's Place), fresh."""
        async def fetch():
            await self.session.client.sync_with_coordinator()
            return self.session.client.places[name]

        return self.session.call(fetch())

    def reservations(self) -> list:
        from labgrid.remote.generated import labgrid_coordinator_pb2 as pb2

        async def fetch():
            return list((await self.session.client.stub.GetReservations(pb2.GetReservationsRequest())).reservations)

        return self.session.call(fetch())

    def board_file(self, folder: Path, **fields) -> Path:
        """A `kind: labgrid` board file on this lab's coordinator, declaring the default firmware."""
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "firmware.json").write_text(json.dumps(DEFAULT_CONFIG))
        data = {"kind": "labgrid", "coordinator": self.address, "firmware": "firmware.json",
                "ssh": {"known_hosts": "auto-accept"}, **fields}
        path = folder / "lab.yaml"
        path.write_text(json.dumps(data, indent=2) + "\n")   # JSON is YAML
        return path


def end(proc: subprocess.Popen, timeout: float = 10.0) -> None:
    """SIGTERM, then SIGKILL, by pid."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()


@pytest.fixture(scope="session")
def lab(tmp_path_factory):
    """labgrid-coordinator on 127.0.0.1 (its places.yaml in a folder of its own)."""
    folder = tmp_path_factory.mktemp("lab")
    address = f"127.0.0.1:{free_port()}"
    with open(folder / "coordinator.log", "ab") as log:
        coordinator = subprocess.Popen([sys.executable, "-m", "labgrid.remote.coordinator", "-l", address],
                                       cwd=folder, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                       preexec_fn=die_with_parent)
    try:
        host, port = address.split(":")
        deadline = time.monotonic() + 30
        while True:
            assert coordinator.poll() is None, (folder / "coordinator.log").read_text()
            try:
                socket.create_connection((host, int(port)), timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "labgrid-coordinator did not listen within 30 s"
                time.sleep(0.1)
        session = LabgridSession(address)
        lab = Lab(address, folder, session)
        try:
            yield lab
        finally:
            for proc in reversed(lab.procs):
                end(proc)
            session.close()
    finally:
        end(coordinator)


@pytest.fixture(scope="session")
def idle_place(lab) -> str:
    """Place `idle0`: a console and an SSH service nobody answers on (nothing here boots)."""
    lab.export(IDLE_EXPORTER, {"idle0": {
        "console": {"cls": "NetworkSerialPort", "host": "127.0.0.1", "port": free_port(), "protocol": "raw"},
        "ssh": {"cls": "NetworkService", "address": "127.0.0.1", "port": free_port(), "username": "root"},
    }})
    lab.session.define_place("idle0", [f"{IDLE_EXPORTER}/idle0/*"], {"board": "idle"})
    return "idle0"


@contextlib.contextmanager
def bench(lab: Lab, folder: Path, name: str, tags: dict[str, str]):
    """Place `name`: an emulated AST2500 exported by the bench (`python -m harness.board.labgrid
    bench`: QEMU, ser2net, a PDU and a link relay over HTTP, a frame tap), with `tags`; the
    bench and its exporter end when the block does."""
    resources = folder / f"{name}.yaml"
    proc = lab.start([sys.executable, "-m", "harness.board.labgrid", "bench", "--name", name,
                      "--resources", str(resources), "--out", str(folder / f"logs-{name}")], f"bench-{name}.log")
    exporter = None
    try:
        deadline = time.monotonic() + 600          # a first run builds the image
        while not resources.exists():
            assert proc.poll() is None, (lab.folder / f"bench-{name}.log").read_text(errors="replace")[-3000:]
            assert time.monotonic() < deadline, "the bench wrote no resource file in 10 minutes"
            time.sleep(0.2)
        exporter = lab.export(f"{BENCH_EXPORTER}-{name}", resources)
        if name not in lab.session.client.places:
            lab.session.define_place(name, [f"{BENCH_EXPORTER}-{name}/{name}/*"], tags)
        yield name
    finally:
        for p in (exporter, proc):
            if p is not None:
                end(p)


@pytest.fixture(scope="module")
def bench_place(lab, tmp_path_factory):
    """Place `bench0`, tagged board=ast2500: an emulated AST2500 exported by the bench (for
    the tests of one module: the bench and its exporter end with it)."""
    with bench(lab, tmp_path_factory.mktemp("bench"), "bench0", {"board": "ast2500"}) as name:
        yield name
