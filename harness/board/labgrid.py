"""A board in a labgrid lab: a place on a labgrid coordinator, held for the run.

The harness acquires the place through labgrid's client session (`labgrid.remote.client`),
maps the place's resources onto the board verbs, and releases the place on every exit:
`close()` runs as the `with board:` block unwinds, Ctrl-C and SIGTERM included.

| verb     | the place's resource                                   | driven through              |
|----------|--------------------------------------------------------|-----------------------------|
| console  | NetworkSerialPort `console` (or the only one): ser2net, RFC 2217 or raw TCP | pyserial's rfc2217:// or socket:// (console.py) |
| power    | NetworkPowerPort or PDUDaemonPort `power` (or the only one not named `link`) | labgrid's NetworkPowerDriver / PDUDaemonDriver |
| link     | `link`: a power port, or a digital output (HttpDigitalOutput, ModbusTCPCoil); on = link up | labgrid's driver for it |
| SSH      | NetworkService `ssh` (or the only one)                 | paramiko (ssh.py)           |
| services | NetworkServices named after a declared service or `port<N>`: where the board's port is forwarded (an emulated bench) | the runner's connects |
| capture  | the board file's `capture.interface` (a host interface, as a real board), else NetworkSerialPort `capture`: a frame tap | pyshark (capture.py), or `FrameTap` |

A place is held as labgrid holds it, by `host/user`. The harness asks for it through a
labgrid reservation (the coordinator's own scheduler: priority, then first come first
served; filtered by the place's name or by tags). Without `wait` a place that is not free
at once is a `PlaceBusyError` naming who holds it; with `wait` the reservation queues
until the coordinator allocates the place, then the harness acquires it.

The second half of the module is the emulated bench: an emulated AST2500 exported as the
resources of a place, on 127.0.0.1 only (`python -m harness.board.labgrid bench`).
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import ipaddress
import json
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

# gRPC's fork handlers only log that they are skipped (every subprocess the harness starts
# while a session is open); the children exec at once and need none.
os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "false")

import grpc
from labgrid import Target, target_factory
from labgrid.remote.client import ClientSession
from labgrid.remote.client import Error as LabgridClientError
from labgrid.remote.common import Reservation, ReservationState
from labgrid.remote.generated import labgrid_coordinator_pb2 as pb2
from labgrid.remote.generated import labgrid_coordinator_pb2_grpc
from labgrid.util.proxy import proxymanager

from harness.board.base import Board
from harness.board.boardfile import BoardSpec
from harness.board.capture import LiveCapture
from harness.board.console import SerialConsole
from harness.board.ssh import SSHConnection
from harness.errors import BoardError, HarnessError
from harness.ingest.pcapwrite import PcapWriter
from harness.proc import die_with_parent

# labgrid's own default coordinator port.
COORDINATOR_PORT = 20408
# How long a session may take to say hello to the coordinator, and an RPC to answer.
RPC_TIMEOUT_S = 15.0
# labgrid's own client channel options (keepalive), and a connection of the session's own.
CHANNEL_OPTIONS = [("grpc.keepalive_time_ms", 7500), ("grpc.keepalive_timeout_ms", 10000),
                   ("grpc.http2.ping_timeout_ms", 10000), ("grpc.http2.max_pings_without_data", 0),
                   ("grpc.use_local_subchannel_pool", 1)]
# A waiting reservation is polled this often; the coordinator drops one not polled for 60 s.
RESERVATION_POLL_S = 1.0
# The place's resources by role, with the labgrid drivers that work them.
POWER_DRIVERS = {"NetworkPowerPort": "NetworkPowerDriver", "PDUDaemonPort": "PDUDaemonDriver"}
OUTPUT_DRIVERS = {"HttpDigitalOutput": "HttpDigitalOutputDriver", "ModbusTCPCoil": "ModbusCoilDriver"}
_FORWARD_NAME = re.compile(r"port(\d{1,5})")


class PlaceError(BoardError):
    """The place cannot be had or used: no such place, its exporter is gone, a resource is missing."""


class PlaceBusyError(PlaceError):
    """The place is held (or reserved) by another client; the message names the holder."""

    def __init__(self, msg: str, holders: dict[str, str]):
        self.holders = holders
        super().__init__(msg)


# -- the client session ----------------------------------------------------------------------
class _SessionLoop:
    """The one asyncio loop, in a thread of its own, that every labgrid session of this
    process runs on: grpc.aio keeps a channel on the loop it was made on, and the loop must
    keep running between calls so the session reads its stream of place updates."""

    _lock = threading.Lock()
    _loop: asyncio.AbstractEventLoop | None = None
    _thread: threading.Thread | None = None
    _users = 0

    @classmethod
    def enter(cls) -> asyncio.AbstractEventLoop:
        with cls._lock:
            if cls._loop is None:
                loop = asyncio.new_event_loop()
                thread = threading.Thread(target=loop.run_forever, name="labgrid sessions", daemon=True)
                thread.start()
                cls._loop, cls._thread = loop, thread
            cls._users += 1
            return cls._loop

    @classmethod
    def leave(cls) -> None:
        with cls._lock:
            cls._users -= 1
            if cls._users > 0 or cls._loop is None:
                return
            loop, thread = cls._loop, cls._thread
            cls._loop = cls._thread = None
        try:
            asyncio.run_coroutine_threadsafe(_cancel_tasks(), loop).result(5)
        except Exception:  # noqa: BLE001 - the loop is being shut down; nothing to report to
            pass
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=5)
        if not thread.is_alive():
            loop.close()


async def _cancel_tasks() -> None:
    me = asyncio.current_task()
    tasks = [t for t in asyncio.all_tasks() if t is not me]
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


class LabgridSession:
    """A labgrid client session with the coordinator at `address` (host:port): labgrid's
    `ClientSession`, driven from the caller's thread. `call` runs one of its coroutines."""

    def __init__(self, address: str, timeout: float = RPC_TIMEOUT_S):
        self.address = address
        self._loop = _SessionLoop.enter()
        self._closed = False
        try:
            self.client: ClientSession = self.call(self._start(), timeout,
                                                   f"connecting to the labgrid coordinator at {address}")
        except BaseException:
            _SessionLoop.leave()
            raise

    async def _start(self) -> ClientSession:
        client = ClientSession(self.address, asyncio.get_running_loop())
        # The coordinator tells its clients apart by their connection, and gRPC lets the
        # channels of one process to one address share a connection: a session of its own
        # (two boards in one run, say) needs a channel with its own subchannel pool.
        await client.channel.close()
        client.channel = grpc.aio.insecure_channel(self.address, options=CHANNEL_OPTIONS)
        client.stub = labgrid_coordinator_pb2_grpc.CoordinatorStub(client.channel)
        try:
            await client.start()
        except BaseException:
            await client.stop()
            await client.close()
            raise
        return client

    @property
    def identity(self) -> str:
        """Who this session is to the coordinator: `host/user`, as `labgrid-client who` shows."""
        return f"{self.client.gethostname()}/{self.client.getuser()}"

    def call(self, coro, timeout: float | None = RPC_TIMEOUT_S, doing: str = "a labgrid request"):
        """Run `coro` on the session's loop and wait for it (Ctrl-C cancels it)."""
        future = asyncio.run_coroutine_threadsafe(coro, self._loop)
        try:
            return future.result(timeout)
        except concurrent.futures.TimeoutError as exc:
            future.cancel()
            raise PlaceError(f"{doing}: no answer within {timeout:g} s") from exc
        except grpc.aio.AioRpcError as exc:
            raise PlaceError(f"{doing}: the coordinator at {self.address} said: {exc.details()}") from exc
        except LabgridClientError as exc:
            detail = " ".join(str(a) for a in exc.args)
            if "Could not connect" in detail:
                detail = "cannot reach it (is labgrid-coordinator running there?)"
            raise PlaceError(f"{doing}: {detail}") from exc
        except BaseException:
            future.cancel()
            raise

    def define_place(self, name: str, matches: list[str], tags: dict[str, str] | None = None) -> None:
        """Create place `name` matching `matches` (exporter/group/class/name patterns) with
        `tags`, as `labgrid-client create`, `add-match` and `set-tags` do."""
        async def define():
            stub = self.client.stub
            await stub.AddPlace(pb2.AddPlaceRequest(name=name))
            for pattern in matches:
                await stub.AddPlaceMatch(pb2.AddPlaceMatchRequest(placename=name, pattern=pattern))
            if tags:
                await stub.SetPlaceTags(pb2.SetPlaceTagsRequest(placename=name, tags=tags))
            await self.client.sync_with_coordinator()

        self.call(define(), doing=f"defining place {name}")

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True

        async def stop():
            await self.client.stop()
            await self.client.close()

        try:
            self.call(stop(), 10, "closing the labgrid session")
        except HarnessError:
            pass
        finally:
            _SessionLoop.leave()


@dataclass(frozen=True)
class PlaceResource:
    """One resource of an acquired place, as the coordinator publishes it."""

    name: str                 # the place's name for it (a match may rename it)
    cls: str                  # the labgrid resource class
    args: dict                # what the class is built from (host, port, ...)
    extra: dict = field(default_factory=dict)
    avail: bool = True
    path: str = ""            # exporter/group/class/name

    def __repr__(self) -> str:  # a NetworkService may carry a password: keep it out of reprs
        shown = {k: ("***" if k == "password" else v) for k, v in self.args.items()}
        return f"PlaceResource({self.name!r}, {self.cls}, {shown})"


class PlaceLease:
    """A place on a labgrid coordinator, acquired by `acquire()` and released by `release()`
    (idempotent, and never raises: a release that fails is logged with the command that
    frees the place by hand)."""

    def __init__(self, coordinator: str, place: str | None = None, tags: dict[str, str] | None = None,
                 wait_s: float | None = None, log=print):
        if (place is None) == (not tags):
            raise ValueError("a place is asked for by name or by tags, one of the two")
        self.coordinator = coordinator
        self.wanted = place
        self.tags = dict(tags or {})
        self.wait_s = wait_s
        self.log = log
        self.session: LabgridSession | None = None
        self.place: str | None = None          # the place this lease holds
        self.resources: list[PlaceResource] = []
        self._token: str | None = None         # our reservation
        self._acquiring: asyncio.Future | None = None

    @property
    def asked(self) -> str:
        return f"place {self.wanted}" if self.wanted else "a place tagged " + ", ".join(
            f"{k}={v}" for k, v in sorted(self.tags.items()))

    @property
    def identity(self) -> str:
        return self.session.identity if self.session else "?"

    def acquire(self) -> list[PlaceResource]:
        """Reserve, acquire and read the place's resources; PlaceBusyError if it is held
        (after waiting up to `wait_s`, if given)."""
        if self.session is None:
            self.session = LabgridSession(self.coordinator)
        s = self.session
        if self.wanted:
            s.call(self._check_place(self.wanted), doing=f"looking up place {self.wanted}")
        fltr = {"name": self.wanted} if self.wanted else self.tags
        wait = self.wait_s or 0.0
        self.place = s.call(self._reserve_and_acquire(fltr, wait), None if self.wait_s else RPC_TIMEOUT_S,
                            f"acquiring {self.asked} on the labgrid coordinator at {self.coordinator}")
        self.resources = s.call(self._resources(self.place), doing=f"reading the resources of place {self.place}")
        return self.resources

    async def _check_place(self, name: str) -> None:
        client = self.session.client
        if name not in client.places:
            known = ", ".join(sorted(client.places)) or "none"
            raise PlaceError(f"no place {name!r} on the labgrid coordinator at {self.coordinator} (places: {known})")
        self._check_matches(client.places[name])

    def _check_matches(self, place) -> None:
        client = self.session.client
        paths = [(exporter, group, res.cls, name) for exporter, groups in client.resources.items()
                 for group, resources in groups.items() for name, res in resources.items()]
        missing = place.unmatched(paths)
        if missing:
            raise PlaceError(f"place {place.name}: its match {missing} has no resource on the coordinator "
                             f"(is its labgrid-exporter running?)")

    async def _reserve_and_acquire(self, fltr: dict[str, str], wait_s: float) -> str:
        stub = self.session.client.stub
        made = await stub.CreateReservation(pb2.CreateReservationRequest(
            filters={"main": pb2.Reservation.Filter(filter=fltr)}, prio=0))
        self._token = made.reservation.token
        res = Reservation.from_pb2(made.reservation)
        deadline = time.monotonic() + wait_s
        told = False
        while res.state is ReservationState.waiting:
            holders = await self._holders()
            if time.monotonic() >= deadline:
                await self._cancel_reservation()
                raise PlaceBusyError(self._busy_message(holders, waited=wait_s), holders)
            if not told:
                told = True
                self.log(f"{self.asked}: {self._holders_text(holders)}; waiting up to {wait_s:g} s "
                         f"(labgrid reservation {self._token})")
            await asyncio.sleep(RESERVATION_POLL_S)
            polled = await stub.PollReservation(pb2.PollReservationRequest(token=self._token))
            res = Reservation.from_pb2(polled.reservation)
        if res.state is not ReservationState.allocated:
            await self._cancel_reservation()
            raise PlaceError(f"the labgrid reservation for {self.asked} ended {res.state.name}")
        name = res.allocations["main"][0]
        if not self.wanted:
            self._check_matches(self.session.client.places[name])
        # Once sent, the acquire runs to its end whatever happens to the caller (Ctrl-C):
        # release() then knows whether the place is ours.
        self._acquiring = asyncio.ensure_future(self._acquire_place(name))
        return await asyncio.shield(self._acquiring)

    async def _acquire_place(self, name: str) -> str:
        client = self.session.client
        try:
            await client.stub.AcquirePlace(pb2.AcquirePlaceRequest(placename=name))
        except grpc.aio.AioRpcError as exc:
            await client.sync_with_coordinator()
            holders = await self._holders()
            if holders:
                raise PlaceBusyError(self._busy_message(holders), holders) from exc
            raise PlaceError(f"the coordinator would not give place {name}: {exc.details()}") from exc
        self.place = name
        await client.sync_with_coordinator()
        return name

    async def _holders(self) -> dict[str, str]:
        """Who holds each place this lease could have: place -> `held by host/user` or
        `reserved for host/user`."""
        client = self.session.client
        owners = {}
        try:
            got = await client.stub.GetReservations(pb2.GetReservationsRequest())
            owners = {r.token: r.owner for r in got.reservations}
        except grpc.aio.AioRpcError:
            pass
        out = {}
        for name, place in sorted(client.places.items()):
            if self.wanted and name != self.wanted:
                continue
            if not self.wanted and not self.tags.items() <= place.tags.items():
                continue
            if place.acquired:
                out[name] = f"held by {place.acquired}"
            elif place.reservation and place.reservation != self._token:
                out[name] = f"reserved for {owners.get(place.reservation, 'another client')}"
        return out

    def _holders_text(self, holders: dict[str, str]) -> str:
        if not holders:
            return "no such place is free (others are queued for it)"
        return "; ".join(f"{name} is {who}" for name, who in holders.items())

    def _busy_message(self, holders: dict[str, str], waited: float = 0.0) -> str:
        text = f"{self.asked} on the labgrid coordinator at {self.coordinator} is not free"
        if waited:
            text += f" after waiting {waited:g} s"
        text += f": {self._holders_text(holders)}"
        mine = [n for n, who in holders.items() if who == f"held by {self.identity}"]
        if mine:
            text += (f" (that is this user on this host: another run, or one that ended without releasing it; "
                     f"`labgrid-client -x {self.coordinator} -p {mine[0]} release` frees it)")
        if not waited:
            text += ". Set `wait: true` (or a number of seconds) in the board file to queue for it"
        return text

    async def _cancel_reservation(self) -> None:
        token, self._token = self._token, None
        if token:
            try:
                await self.session.client.stub.CancelReservation(pb2.CancelReservationRequest(token=token))
            except grpc.aio.AioRpcError:
                pass   # already gone (expired)

    async def _resources(self, name: str) -> list[PlaceResource]:
        client = self.session.client
        place = client.places[name]
        out = []
        for path in place.acquired_resources:
            exporter, group, cls, rname = path
            match = place.getmatch(path)
            entry = client.resources.get(exporter, {}).get(group, {}).get(rname)
            if entry is None:
                raise PlaceError(f"place {name}: resource {'/'.join(path)} is gone (its exporter disconnected?)")
            out.append(PlaceResource((match.rename if match and match.rename else rname), entry.cls,
                                     dict(entry.args), dict(entry.extra), bool(entry.avail), "/".join(path)))
        return out

    def check(self) -> None:
        """PlaceError if the place is no longer this lease's (released or taken over)."""
        if self.session is None or self.place is None:
            raise PlaceError(f"{self.asked} is not held")
        client = self.session.client
        if client.stopping.is_set():
            return   # the coordinator is out of reach: the place is still ours there
        now = client.places.get(self.place)
        holder = now.acquired if now is not None else None
        if holder != self.identity:
            raise PlaceError(f"place {self.place} is no longer held by this run (now: {holder or 'free'})")

    def release(self) -> None:
        """Release the place (if this lease acquired it) and cancel the reservation."""
        if self.session is None:
            return
        try:
            self.session.call(self._release(), RPC_TIMEOUT_S, f"releasing place {self.place}")
        except PlaceError as exc:
            if self.place:
                self.log(f"{exc}: release it by hand with `labgrid-client -x {self.coordinator} -p "
                         f"{self.place} release`")
        finally:
            self.session.close()
            self.session = None
            self.place = None

    async def _release(self) -> None:
        client = self.session.client
        if self._acquiring is not None:
            await asyncio.wait([self._acquiring])   # an acquire sent before Ctrl-C: see it to its end
        # The reservation goes first: the coordinator gives a place to the next reservation
        # only in a scheduling pass that starts with the place neither acquired nor marked
        # reserved, and the pass that a cancel runs clears the mark only at its end. Cancel
        # then release: the release's pass finds the place free. (Release then cancel: the
        # next in the queue waits for the coordinator's 15 s poll.)
        await self._cancel_reservation()
        if self.place is not None:                  # set only by an acquire that succeeded
            await client.stub.ReleasePlace(pb2.ReleasePlaceRequest(placename=self.place))
            await client.sync_with_coordinator()


# -- the board ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class PlaceVerbs:
    """Which of a place's resources each board verb uses."""

    console_url: str                      # rfc2217://host:port or socket://host:port
    baudrate: int
    tap: tuple[str, int] | None           # the capture tap's host and port
    power: PlaceResource | None
    link: PlaceResource | None
    ssh: PlaceResource
    forwards: dict[str, tuple[int, int]]  # name -> (board port, port on 127.0.0.1); {} at its own address


def map_place(place: str, resources: list[PlaceResource], declared) -> PlaceVerbs:
    """The board verbs of `place` from its resources (see the module's table); PlaceError
    names what is missing, ambiguous or unusable. `declared` is the firmware config (its
    services name the forwards)."""
    unavailable = [r.name for r in resources if not r.avail]
    if unavailable:
        raise PlaceError(f"place {place}: its exporter says {', '.join(unavailable)} not available")
    serial = [r for r in resources if r.cls == "NetworkSerialPort"]
    con = _pick(place, serial, "console", "a console (NetworkSerialPort)", exclude={"capture"})
    scheme = {"rfc2217": "rfc2217", "raw": "socket"}.get(con.args.get("protocol", "rfc2217"))
    if scheme is None:
        raise PlaceError(f"place {place}: console protocol {con.args.get('protocol')!r}; expected rfc2217 or raw")
    host, port = _endpoint(place, con)
    tap = next((r for r in serial if r.name == "capture"), None)

    power = _pick(place, [r for r in resources if r.cls in POWER_DRIVERS and r.name != "link"], "power", "power",
                  optional=True)
    link = next((r for r in resources if r.name == "link"), None)
    if link is not None and link.cls not in POWER_DRIVERS and link.cls not in OUTPUT_DRIVERS:
        raise PlaceError(f"place {place}: link is a {link.cls}; the harness drives a link through "
                         f"{', '.join(sorted({*POWER_DRIVERS, *OUTPUT_DRIVERS}))}")
    services = [r for r in resources if r.cls == "NetworkService"]
    ssh = _pick(place, services, "ssh", "SSH (a NetworkService)")
    return PlaceVerbs(f"{scheme}://{host}:{port}", int(con.args.get("speed", 115200)),
                      _endpoint(place, tap) if tap is not None else None, power, link, ssh,
                      _forwards(place, ssh, services, declared))


def _forwards(place: str, ssh: PlaceResource, services: list[PlaceResource], declared) -> dict[str, tuple[int, int]]:
    """A board whose SSH is on a loopback address is forwarded (an emulated bench): its
    NetworkServices named after a declared service or `port<N>` say where each port is."""
    if not _loopback(ssh.args["address"]):
        return {}
    ports = {s.name: s.port for s in declared.services}
    ports.setdefault("ssh", 22)
    out = {}
    for r in services:
        m = _FORWARD_NAME.fullmatch(r.name)
        board_port = ports.get(r.name) or (int(m.group(1)) if m else None)
        if board_port is None:
            continue
        if not _loopback(r.args["address"]):
            raise PlaceError(f"place {place} forwards the board's {r.name} on {r.args['address']}, its SSH on a "
                             "loopback address: forwarded services are reached through 127.0.0.1 only (run the "
                             "bench beside the harness)")
        out[r.name] = (board_port, int(r.args.get("port", 22)))
    return out


def _labgrid_resource(place: str, r: PlaceResource):
    """`r` as a labgrid resource on a target of its own (what labgrid's drivers bind to)."""
    target = Target(f"{place}/{r.name}")
    res = target_factory.make_resource(target, r.cls, r.name, r.args)
    res.extra = r.extra
    return target, res


def _endpoint(place: str, r: PlaceResource) -> tuple[str, int]:
    """host and port of a NetworkSerialPort, through labgrid's proxy manager (an isolated
    exporter is reached over SSH through it, as labgrid-client does)."""
    _, res = _labgrid_resource(place, r)
    host, port = proxymanager.get_host_and_port(res)
    return host, int(port)


def _pick(place: str, resources: list[PlaceResource], name: str, what: str, exclude=frozenset(),
          optional: bool = False) -> PlaceResource | None:
    """The resource named `name`, else the only one left (none named in `exclude`)."""
    named = [r for r in resources if r.name == name]
    if named:
        return named[0]
    left = [r for r in resources if r.name not in exclude]
    if len(left) == 1:
        return left[0]
    if not left and optional:
        return None
    if not left:
        raise PlaceError(f"place {place} has no {what}")
    raise PlaceError(f"place {place} has {len(left)} resources for {what} "
                     f"({', '.join(r.name for r in left)}): name one of them {name!r}")


def _loopback(address: str) -> bool:
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return address == "localhost"


class FrameTap:
    """The board's frames from a tap: a TCP stream of frames, each a 4-byte big-endian
    length and the frame (QEMU filter-mirror's format), stamped with the host wall clock as
    they arrive and written to a nanosecond pcap. Reconnects if the stream drops."""

    # An Ethernet frame with VLAN tags is under this; a longer "length" is a stream out of step.
    MAX_FRAME = 65536

    def __init__(self, host: str, port: int):
        self.host, self.port = host, port
        self.count = 0
        self.path: Path | None = None
        self._last_ns = 0
        self._writer: PcapWriter | None = None
        self._sock: socket.socket | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self, path: Path, timeout: float = 10.0) -> None:
        self.path = Path(path)
        self._sock = self._connect(time.monotonic() + timeout)
        if self._sock is None:
            raise BoardError(f"capture tap {self.host}:{self.port} refused the connection for {timeout:g} s")
        self._writer = PcapWriter(self.path)
        self._thread = threading.Thread(target=self._read, name=f"tap {self.host}:{self.port}", daemon=True)
        self._thread.start()

    def _connect(self, deadline: float) -> socket.socket | None:
        while not self._stop.is_set():
            try:
                sock = socket.create_connection((self.host, self.port), timeout=2)
                sock.settimeout(0.2)
                return sock
            except OSError:
                if time.monotonic() >= deadline:
                    return None
                time.sleep(0.05)
        return None

    def _read(self) -> None:
        buf = b""
        while not self._stop.is_set():
            try:
                data = self._sock.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                data = b""
            if not data:                     # the stream dropped: take it up again
                self._sock.close()
                self._sock = self._connect(float("inf"))
                buf = b""
                if self._sock is None:
                    return
                continue
            now = time.time_ns()
            buf += data
            while len(buf) >= 4:
                (n,) = struct.unpack(">I", buf[:4])
                if n > self.MAX_FRAME:
                    buf = b""                # out of step: drop what is buffered, take the next connection
                    self._sock.close()
                    break
                if len(buf) < 4 + n:
                    break
                # Frames read together are stamped apart, in the order they came: a frame
                # from the board and the peer's answer must not look simultaneous.
                self._last_ns = max(now, self._last_ns + 1)
                self._writer.write(self._last_ns, buf[4:4 + n])
                self.count += 1
                buf = buf[4 + n:]

    def stop(self, drain: float = 0.3) -> Path:
        time.sleep(drain)                    # frames already on their way
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2)
        if self._sock is not None:
            self._sock.close()
        if self._writer is not None:
            self._writer.close()
        return self.path


class LabgridBoard(Board):
    """A board reached through a labgrid place (`BoardSpec` of kind `labgrid`)."""

    def __init__(self, spec: BoardSpec, out_dir: Path, log=print, leave_powered: bool = False):
        if spec.kind != "labgrid":
            raise ValueError(f"{spec.source}: LabgridBoard needs kind: labgrid, got {spec.kind}")
        super().__init__(spec.name, out_dir, spec.firmware)
        self.spec = spec
        self.log = log
        self.lease = PlaceLease(spec.coordinator, spec.place, spec.place_tags, spec.wait_s, log=log)
        self._console: SerialConsole | None = None
        self._capture: LiveCapture | FrameTap | None = None
        self._power = self._link = None
        self._link_up = True
        self._powered_by_us = False
        self._leave_powered = leave_powered     # close() powers off what it powered on unless this
        # service name -> (guest port, host port on 127.0.0.1), when the place forwards them
        self.forwards: dict[str, tuple[int, int]] = {}
        try:
            self.lease.acquire()
            self.record("place_acquired", place=self.lease.place, coordinator=spec.coordinator,
                        holder=self.lease.identity)
            self._map(self.lease.resources)
            self._activated()     # the place is ours: the board may already be running
        except BaseException:
            self.lease.release()
            super().close()
            raise

    # -- the place's resources as verbs ----------------------------------------------
    def _map(self, resources: list[PlaceResource]) -> None:
        verbs = map_place(self.lease.place, resources, self.declared)
        self.console_url, self.baudrate, self.tap = verbs.console_url, verbs.baudrate, verbs.tap
        self._power_res, self._link_res = verbs.power, verbs.link
        ssh, o = verbs.ssh, self.spec.lab_ssh
        self._ssh = SSHConnection(ssh.args["address"], int(ssh.args.get("port", 22)),
                                  o.get("user", ssh.args.get("username", "root")),
                                  password=o.get("password", ssh.args.get("password")), key_file=o.get("key_file"),
                                  known_hosts=o.get("known_hosts", "strict"),
                                  known_hosts_file=o.get("known_hosts_file"))
        self.forwards = dict(verbs.forwards or {})

    def service_address(self, service: str, port: int) -> tuple[str, int]:
        """A place that forwards the board's services (an emulated board exported as a
        place) is reached through 127.0.0.1; one reached at its own address has no
        forwards and is connected to on the declared ports."""
        if self.forwards:
            return "127.0.0.1", self.host_port(service)
        return self.ssh.host, port

    def host_port(self, service: str) -> int:
        """The 127.0.0.1 port the place forwards to `service` (a service name or `port<N>`)."""
        forwards = self.forwards
        if service not in forwards:
            raise BoardError(f"place {self.lease.place} forwards no {service!r} (it forwards "
                             f"{', '.join(sorted(forwards)) or 'nothing'}): export it from the bench "
                             f"(--forward PORT)")
        return forwards[service][1]

    def _driver(self, r: PlaceResource):
        target, _ = _labgrid_resource(self.lease.place, r)
        name = POWER_DRIVERS.get(r.cls) or OUTPUT_DRIVERS[r.cls]
        driver = target_factory.make_driver(target, name, None, {})
        target.activate(driver)
        return driver

    def _drive(self, what: str, action) -> None:
        """Run a labgrid driver call; its failures become BoardErrors naming the resource."""
        try:
            action()
        except HarnessError:
            raise
        except Exception as exc:  # noqa: BLE001 - labgrid's drivers raise what their transport raises
            raise BoardError(f"place {self.lease.place}: {what} failed: {type(exc).__name__}: {exc}",
                             artifacts=self.out_dir) from exc

    # -- the verbs -------------------------------------------------------------------
    @property
    def console(self) -> SerialConsole:
        if self._console is None:
            self._open_console()
        return self._console

    def _open_console(self) -> None:
        self._console = SerialConsole(self.console_url, self.out_dir / "console.log", baudrate=self.baudrate)
        try:
            self._console.open()
        except BaseException:
            self._console = None
            raise

    @property
    def ssh(self) -> SSHConnection:
        return self._ssh

    def power_on(self) -> None:
        """Power on through the place's power resource, with a console of this boot open first."""
        if self._power_res is None:
            raise BoardError(f"place {self.lease.place} has no power resource (NetworkPowerPort or PDUDaemonPort)")
        if self._console is not None:        # a fresh console per boot, as the emulated board has
            self._console.close()
            self._console = None
        self._open_console()
        if self._power is None:
            self._power = self._driver(self._power_res)
        self._drive("power on", self._power.on)
        self._powered_by_us = True
        self.record("power_on")

    def power_off(self) -> None:
        if self._power_res is None:
            return                           # as a real board without an off command
        if self._power is None:
            self._power = self._driver(self._power_res)
        self._drive("power off", self._power.off)
        self._ssh.close()
        self.record("power_off")

    def reset(self) -> None:
        if self._power_res is None:
            raise BoardError(f"place {self.lease.place} has no power resource to reset the board with")
        if self._power is None:
            self._power = self._driver(self._power_res)
        self._drive("power cycle", self._power.cycle)
        self.record("reset")

    def set_link(self, up: bool) -> None:
        if self._link_res is None:
            raise BoardError(f"place {self.lease.place} has no link resource (a power port or digital output "
                             f"named link)")
        if self._link is None:
            self._link = self._driver(self._link_res)
        if self._link_res.cls in POWER_DRIVERS:
            self._drive("link " + ("up" if up else "down"), self._link.on if up else self._link.off)
        else:
            self._drive("link " + ("up" if up else "down"), lambda: self._link.set(up))
        self._link_up = up
        self.record("link_up" if up else "link_down")

    @property
    def link_up(self) -> bool:
        return self._link_up

    def check_alive(self) -> None:
        """BoardError if the place is no longer this run's (released, or taken over)."""
        self.lease.check()

    def capture_start(self, path: Path) -> None:
        if self._capture is not None:
            raise BoardError("a capture is already running")
        if self.spec.capture_interface:
            cap = LiveCapture(self.spec.capture_interface, self.spec.capture_filter)
        elif self.tap is not None:
            cap = FrameTap(*self.tap)
        else:
            raise BoardError(f"{self.spec.source}: no capture.interface in the board file, and place "
                             f"{self.lease.place} has no capture tap (a NetworkSerialPort named capture)")
        cap.start(Path(path))
        self._capture = cap
        self.record("capture_start", path=str(path))

    def capture_stop(self) -> Path:
        if self._capture is None:
            raise BoardError("no capture is running")
        cap, self._capture = self._capture, None
        path = cap.stop()
        self.record("capture_stop", files=[str(path)], packets=cap.count)
        return path

    def close(self) -> None:
        """Stop the capture, power off what this run powered on, release the place."""
        try:
            try:
                if self._capture is not None:
                    self.capture_stop()
            finally:
                self._ssh.close()
                if self._console is not None:
                    self._console.close()
                if self._powered_by_us and not self._leave_powered:
                    self._powered_by_us = False
                    try:
                        self.power_off()
                    except BoardError as exc:
                        self.log(f"{self.name}: could not power the board off: {exc}")
        finally:
            place = self.lease.place
            self.lease.release()
            if place is not None:
                self.record("place_released", place=place)
            super().close()

    def describe(self) -> str:
        return f"LabgridBoard({self.name!r}, place={self.lease.place!r} on {self.spec.coordinator})"


# -- the emulated bench -----------------------------------------------------------------------
class _ConsoleRelay:
    """The bench's serial line: the board's console (QEMU's, as the bench's QemuBoard reads
    it) served on a 127.0.0.1 port for ser2net's connector, one client at a time. What the
    client types goes to the board; output while no one is connected is lost, as on a UART
    nobody listens to. It outlives the board's power cycles, as a serial adapter does."""

    def __init__(self, console: SerialConsole):
        self._console = console
        self._server = socket.create_server(("127.0.0.1", 0))
        self.port = self._server.getsockname()[1]
        self._client: socket.socket | None = None
        self._lock = threading.Lock()
        console.add_raw_listener(self._to_client)
        threading.Thread(target=self._accept, name="console relay", daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._server.accept()
            except OSError:
                return                       # closed
            client.settimeout(1.0)
            client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)   # a console line goes at once
            with self._lock:
                old, self._client = self._client, client
            if old is not None:
                old.close()
            threading.Thread(target=self._from_client, args=(client,), daemon=True).start()

    def _to_client(self, data: bytes) -> None:
        with self._lock:
            client = self._client
        if client is None:
            return
        try:
            client.sendall(data)
        except OSError:
            with self._lock:
                if self._client is client:
                    self._client = None
            client.close()

    def _from_client(self, client: socket.socket) -> None:
        while True:
            try:
                data = client.recv(4096)
            except TimeoutError:
                continue
            except OSError:
                return
            if not data:
                return
            try:
                self._console.send(data.decode("utf-8", errors="replace"))
            except HarnessError:
                pass                         # the board is gone: typing into the void, as on a real line

    def close(self) -> None:
        self._server.close()
        with self._lock:
            client, self._client = self._client, None
        if client is not None:
            client.close()


class EmulatedBench:
    """An emulated AST2500 exported as the resources of a labgrid place, on 127.0.0.1 only.

    QEMU runs for the bench's whole life, started the way the emulated board starts it
    (`QemuBoard`): user networking with `restrict=on` and forwards on 127.0.0.1. Power is a
    PDU over HTTP (labgrid's `simplerest` model): on = system_reset and run, off = the CPU
    stopped. The link is an HttpDigitalOutput (QMP set_link, the link held down across
    resets as the emulated board holds it). The console goes through ser2net (raw TCP); the
    frames through a tap (QEMU filter-mirror on a 127.0.0.1 chardev). As a lab bench, the
    board's peer (slirp) stays up while the board is power-cycled.
    """

    def __init__(self, name: str, out_dir: Path, image_config=None, machine: str = "ast2500-evb",
                 forward_ports: tuple[int, ...] = (23, 81), log=print):
        self.name = name
        self.out_dir = Path(out_dir)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.image_config = image_config
        self.machine = machine
        self.forward_ports = tuple(forward_ports)
        self.log = log
        self.powered = False
        self.board = None
        self._lock = threading.Lock()
        self._relay: _ConsoleRelay | None = None
        self._ser2net: subprocess.Popen | None = None
        self._http: ThreadingHTTPServer | None = None
        self.ser2net_port = self.tap_port = self.http_port = None

    def start(self) -> None:
        from harness.board.qemu import NETDEV_ID, QemuBoard, free_port
        from harness.image import build_image

        if shutil.which("ser2net") is None:
            raise BoardError("ser2net not found on PATH; run `bmc-hil setup`")
        image = build_image(self.image_config, log=self.log)
        self.board = QemuBoard(image, self.out_dir / "qemu", machine=self.machine, name=self.name,
                               extra_forwards={f"port{p}": p for p in self.forward_ports})
        self.board.power_on()
        qmp = self.board.qmp
        qmp.execute("stop")                  # the bench starts with the board off
        self.tap_port = free_port()
        qmp.execute("chardev-add", {"id": "tap0", "backend": {"type": "socket", "data": {
            "addr": {"type": "inet", "data": {"host": "127.0.0.1", "port": str(self.tap_port)}},
            "server": True, "wait": False, "nodelay": True}}})
        qmp.execute("object-add", {"qom-type": "filter-mirror", "id": "mirror0", "netdev": NETDEV_ID,
                                   "queue": "all", "outdev": "tap0"})
        qmp.execute("system_reset")
        self._relay = _ConsoleRelay(self.board.console)
        self._start_ser2net(free_port())
        self._http = ThreadingHTTPServer(("127.0.0.1", 0), _PduHandler)
        self._http.bench = self
        self.http_port = self._http.server_address[1]
        threading.Thread(target=self._http.serve_forever, name="bench pdu", daemon=True).start()

    def _start_ser2net(self, port: int) -> None:
        config = self.out_dir / "ser2net.yaml"
        config.write_text("%YAML 1.1\n---\n"
                          "default:\n  name: mdns\n  value: false\n"
                          f"connection: &{self.name.replace('-', '_')}\n"
                          f"  accepter: tcp(nodelay=true),127.0.0.1,{port}\n"
                          f"  connector: tcp(nodelay=true),127.0.0.1,{self._relay.port}\n"
                          "  options:\n    kickolduser: true\n    mdns: false\n")
        log = open(self.out_dir / "ser2net.log", "ab")
        self._ser2net = subprocess.Popen(["ser2net", "-n", "-c", str(config), "-P", str(self.out_dir / "ser2net.pid")],
                                         stdin=subprocess.DEVNULL, stdout=log, stderr=log, preexec_fn=die_with_parent)
        log.close()
        deadline = time.monotonic() + 10
        while True:
            if self._ser2net.poll() is not None:
                raise BoardError(f"ser2net exited with status {self._ser2net.returncode} at start-up "
                                 f"(see {self.out_dir / 'ser2net.log'})")
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise BoardError(f"ser2net did not listen on 127.0.0.1:{port} within 10 s") from None
                time.sleep(0.05)
        self.ser2net_port = port

    # -- what the PDU and the link relay do -----------------------------------------
    def power(self, on: bool) -> None:
        with self._lock:
            if on == self.powered:
                return
            qmp = self.board.qmp
            if on:
                qmp.execute("system_reset")
                qmp.execute("cont")
            else:
                qmp.execute("stop")
            self.powered = on

    def set_link(self, up: bool) -> None:
        with self._lock:
            self.board.set_link(up)

    def check_alive(self) -> None:
        self.board.check_alive()
        if self._ser2net.poll() is not None:
            raise BoardError(f"ser2net exited with status {self._ser2net.returncode}")

    def exporter_config(self) -> dict:
        """The labgrid-exporter resource file for this bench: one group named after it."""
        pdu = f"http://127.0.0.1:{self.http_port}"
        group = {
            "console": {"cls": "NetworkSerialPort", "host": "127.0.0.1", "port": self.ser2net_port,
                        "speed": 115200, "protocol": "raw"},
            # QEMU's filter-mirror chardev on raw TCP: a tap, not a console (labgrid has no
            # frame-tap class, and a class it does not know breaks labgrid-client on the place)
            "capture": {"cls": "NetworkSerialPort", "host": "127.0.0.1", "port": self.tap_port,
                        "speed": 115200, "protocol": "raw"},
            "power": {"cls": "NetworkPowerPort", "model": "simplerest",
                      "host": pdu + "/power/{index}/{value}", "index": 0},
            "link": {"cls": "HttpDigitalOutput", "url": pdu + "/link", "body_asserted": "1",
                     "body_deasserted": "0", "method": "PUT"},
        }
        cred = self.board.image.credentials
        for name, (_, host_port) in sorted(self.board.forwards.items()):
            service = {"cls": "NetworkService", "address": "127.0.0.1", "port": host_port, "username": cred.user}
            if name == "ssh":
                service["password"] = cred.password
            group[name] = service
        return {self.name: group}

    def close(self) -> None:
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()
        if self._ser2net is not None and self._ser2net.poll() is None:
            self._ser2net.terminate()
            try:
                self._ser2net.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._ser2net.kill()
                self._ser2net.wait()
        if self._relay is not None:
            self._relay.close()
        if self.board is not None:
            self.board.close()


class _PduHandler(BaseHTTPRequestHandler):
    """GET /power/0 -> 1|0, GET /power/0/1|0 (labgrid's simplerest model); GET /link -> 1|0,
    PUT /link with body 1|0 (an HttpDigitalOutput)."""

    def _reply(self, status: int, text: str) -> None:
        body = text.encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _do(self, action) -> None:
        try:
            self._reply(200, action())
        except HarnessError as exc:
            self._reply(500, str(exc).splitlines()[0])

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        bench: EmulatedBench = self.server.bench
        parts = self.path.strip("/").split("/")
        if parts[:2] == ["power", "0"] and len(parts) <= 3:
            if len(parts) == 3 and parts[2] not in ("0", "1"):
                return self._reply(400, "expected /power/0/1 or /power/0/0")

            def power() -> str:
                if len(parts) == 3:
                    bench.power(parts[2] == "1")
                return "1" if bench.powered else "0"

            return self._do(power)
        if parts == ["link"]:
            return self._reply(200, "1" if bench.board.link_up else "0")
        return self._reply(404, "not here: /power/0[/0|1], /link")

    def do_PUT(self) -> None:  # noqa: N802 - http.server's name
        bench: EmulatedBench = self.server.bench
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0)).decode(errors="replace").strip()
        if self.path.strip("/") != "link" or body not in ("0", "1"):
            return self._reply(400, "expected PUT /link with 1 or 0")

        def link() -> str:
            bench.set_link(body == "1")
            return body

        return self._do(link)

    def log_message(self, fmt: str, *args) -> None:
        with open(self.server.bench.out_dir / "pdu.log", "a", encoding="utf-8") as fh:
            fh.write(f"{time.time():.6f} {fmt % args}\n")


def _resources_yaml(config: dict) -> str:
    """The exporter's resource file. JSON is YAML; every value is a plain scalar, and the
    exporter's templating leaves single braces alone."""
    return json.dumps(config, indent=2) + "\n"


def bench_main(args) -> int:
    from harness.board.boardfile import load_firmware_config

    image_config = load_firmware_config(args.firmware) if args.firmware else None
    out = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix=f"bmc-hil-bench-{args.name}-"))
    bench = EmulatedBench(args.name, out, image_config, machine=args.machine,
                          forward_ports=tuple(args.forward) if args.forward else (23, 81),
                          log=lambda m: print(m, file=sys.stderr))

    def stop(*_):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    try:
        bench.start()
        resources = Path(args.resources)
        part = resources.with_name(resources.name + ".part")
        part.write_text(_resources_yaml(bench.exporter_config()))
        part.replace(resources)                 # whole, or not there
        print(f"ready: {resources}", flush=True)
        print(f"bench {args.name}: board off; logs in {out}\n"
              f"  labgrid-exporter -c 127.0.0.1:{COORDINATOR_PORT} -n $(hostname) --hostname 127.0.0.1 {resources}\n"
              f"  labgrid-client -x 127.0.0.1:{COORDINATOR_PORT} -p {args.name} create\n"
              f"  labgrid-client -x 127.0.0.1:{COORDINATOR_PORT} -p {args.name} add-match '*/{args.name}/*'\n"
              "Ctrl-C ends the bench.", flush=True)
        while True:
            bench.check_alive()
            time.sleep(0.5)
    except KeyboardInterrupt:
        return 0
    except HarnessError as exc:
        print(f"bench {args.name}: {exc}", file=sys.stderr)
        return 2
    finally:
        bench.close()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m harness.board.labgrid",
                                 description="Export an emulated AST2500 as the resources of a labgrid place.")
    sub = ap.add_subparsers(dest="command", required=True)
    b = sub.add_parser("bench", help="run an emulated board as a lab bench (QEMU, ser2net, a PDU) on 127.0.0.1 "
                                     "and write its labgrid-exporter resource file",
                       description="Runs until Ctrl-C or SIGTERM; prints `ready: FILE` once the resource file "
                                   "is written. Every port is on 127.0.0.1.")
    b.add_argument("--name", default="bench0", help="the resource group (and the place's usual name)")
    b.add_argument("--resources", required=True, help="the labgrid-exporter resource file to write")
    b.add_argument("--firmware", help="the firmware config the image is built from (default: the built-in one)")
    b.add_argument("--forward", type=int, action="append", metavar="PORT",
                   help="a board port to forward besides its declared services (repeat; default: 23 and 81)")
    b.add_argument("--machine", default="ast2500-evb", choices=("ast2500-evb", "romulus-bmc"))
    b.add_argument("--out", help="folder for the bench's logs (default: a new one in the temp folder)")
    args = ap.parse_args(argv)
    return bench_main(args)


if __name__ == "__main__":
    sys.exit(main())
