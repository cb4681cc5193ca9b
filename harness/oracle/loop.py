"""Stage 3 of the oracle: the model runs over its inputs.

A models.board.Board built from the declared firmware config is driven input by input
from the observed boot on. Linux picks each connection's ISN and timestamp offset at
random (secure_tcp_seq, secure_tcp_ts_off), so the peer's acknowledgements are moved from
the board's sequence space into the model's, as packetdrill does; both offsets are
learnt values. The model's own error (an input it refuses) ends the run as an error.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

from harness.oracle.bounds import APP_LATENCY_NS, BOOT_TO_IFUP_MAX_NS, BOOT_TO_SERVICES_NS, RESET_RESYNC_NS, Learnt
from harness.oracle.inputs import ModelInputs, TimedInput
from harness.oracle.observe import FrameView, Observation
from models.errors import ModelError
from models.inputs import FrameArrived


@dataclass
class _Flow:
    obs_isn: int | None = None
    model_isn: int | None = None
    obs_ts: int | None = None
    model_ts: int | None = None


@dataclass
class ModelRun:
    """The model's outputs on the common timeline, and what it was fed."""

    outputs: list = field(default_factory=list)        # models.board.Predicted, t on the common clock
    fed: list[tuple[int, bytes]] = field(default_factory=list)  # frames given to the model (translated)
    inputs: int = 0
    resolutions: list[int] = field(default_factory=list)   # neighbour resolutions begun (common t)
    carrier_losses: list[int] = field(default_factory=list)
    linkwatch_delays: dict[int, int] = field(default_factory=dict)
    learnt: list[Learnt] = field(default_factory=list)
    error: str | None = None


def _rewrite_acks(frame: bytes, flow: _Flow) -> bytes:
    """Move the peer's ack (and TSecr, SACK edges) from the board's sequence space into the model's."""
    from models.wire import IPPROTO_TCP, EthernetRepr, Ipv4Repr, TcpRepr
    from models.wire.tcp import TCPOPT_SACK, TCPOPT_TIMESTAMP

    eth, payload = EthernetRepr.parse(frame)
    ip, seg = Ipv4Repr.parse(payload, verify_checksum=False)
    tcp, data = TcpRepr.parse(seg, ip.src, ip.dst, verify_checksum=False)
    d_seq = (flow.model_isn - flow.obs_isn) if flow.obs_isn is not None and flow.model_isn is not None else 0
    d_ts = (flow.model_ts - flow.obs_ts) if flow.obs_ts is not None and flow.model_ts is not None else 0
    if not d_seq and not d_ts:
        return frame
    opts = []
    for kind, value in tcp.options:
        if kind == TCPOPT_TIMESTAMP and value is not None and value[1]:
            value = (value[0], (value[1] + d_ts) & 0xFFFFFFFF)
        elif kind == TCPOPT_SACK and value:
            value = tuple(((a + d_seq) & 0xFFFFFFFF, (b + d_seq) & 0xFFFFFFFF) for a, b in value)
        opts.append((kind, value))
    ack = (tcp.ack + d_seq) & 0xFFFFFFFF if tcp.flags & 0x10 else tcp.ack
    new = TcpRepr(tcp.src_port, tcp.dst_port, tcp.seq, ack, tcp.flags, tcp.window, tuple(opts), tcp.urgent)
    seg2 = new.emit(data, ip.src, ip.dst)
    ip2 = Ipv4Repr(ip.src, ip.dst, IPPROTO_TCP, len(seg2), ip.ttl, ip.ident, ip.df, ip.mf, ip.frag_offset, ip.tos,
                   ip.options)
    return EthernetRepr(eth.dst, eth.src, eth.ethertype, eth.vlan_tci).emit(ip2.emit(seg2))


# Queue entries besides inputs: (t, order, tag, payload)
_ISN, _PHY, _IFUP, _RESET = "isn", "phy", "ifup", "reset"


def run_model(obs: Observation, mi: ModelInputs, start_ns: int, end_ns: int, seed: int = 0,
              linkwatch_delays: dict[int, int] | None = None, accept_latency_ns: int = APP_LATENCY_NS) -> ModelRun:
    """Drive a model board with `mi` from the observed boot to `end_ns`.

    Model time 0 is the observed boot; eth0 comes up in the model when it came up on the
    board (boot_to_ifup, learnt), so what the board learnt before the scenario (ARP
    entries from the harness's own SSH login) the model learns too. `accept_latency_ns`:
    how long a daemon may take to accept() a connection (the app-latency bound), which
    delays the keepalive timer it starts there (models.board.Board.accept_latency)."""
    from models.board import Board, BootTiming
    from models.clock import Window

    cfg = obs.declared
    board_ip = int(cfg.interface.address.ip)
    shift = obs.boot_ns
    services = Window(BOOT_TO_SERVICES_NS, BOOT_TO_SERVICES_NS)
    # After a reset the model's eth0 comes up when the board's did (ifups_seen, learnt as
    # boot_to_ifup), or at the bound's end if the board never showed it.
    model = Board(cfg, seed=seed, boot=BootTiming(Window(mi.to_ifup_ns, mi.to_ifup_ns), services),
                  reboot=BootTiming(Window(BOOT_TO_IFUP_MAX_NS, BOOT_TO_IFUP_MAX_NS), services), phy_phase=0,
                  describe_frames=False, linkwatch_delays=linkwatch_delays, judging=True,
                  accept_latency=accept_latency_ns)
    run = ModelRun(linkwatch_delays=dict(linkwatch_delays or {}))
    queue: list[tuple[int, int, str, object]] = [(ti.t, ti.order, "input", ti) for ti in mi.inputs]
    queue += [(t, 3, _ISN, raw) for t, raw in mi.isn_frames]
    queue += [(t, 3, _PHY, None) for t in mi.phy_seen]
    queue += [(t, 3, _IFUP, None) for t in mi.ifups_seen]
    queue += [(t, 4, _RESET, None) for t in mi.resets_seen]
    queue.sort(key=lambda x: (x[0], x[1]))
    model.timer_hints([(t - shift, what) for t, what in mi.timer_hints])
    flows: dict[tuple, _Flow] = {}
    qi = 0
    while True:
        t_in = queue[qi][0] - shift if qi < len(queue) else None
        t_timer = model.poll_at()
        cands = [x for x in (t_in, t_timer) if x is not None]
        if not cands:
            break
        now = min(cands)
        if now + shift > end_ns:
            break
        what = "a timer"
        try:
            if t_in is not None and t_in == now:
                _, _, tag, item = queue[qi]
                qi += 1
                what = f"input {type(item.input).__name__}" if isinstance(item, TimedInput) else tag
                if tag == _ISN:
                    _learn_isn(flows, item, board_ip, now + shift, run)
                    continue
                if tag == _RESET:
                    out = _resync_at_reset(model, now, end_ns - shift, RESET_RESYNC_NS)
                elif tag == _PHY:
                    out = model.phy_poll_observed(now) if model.up else []
                elif tag == _IFUP:
                    out = model.ifup_observed(now)
                else:
                    ev = item.input
                    if isinstance(ev, FrameArrived):
                        v = FrameView.parse(ev.raw)
                        key = v.flow(board_ip) if v is not None else None
                        if key is not None and key in flows:
                            ev = FrameArrived(_rewrite_acks(ev.raw, flows[key]))
                        run.fed.append((now + shift, ev.raw))
                    out = model.handle(now, ev)
                    run.inputs += 1
            else:
                out = model.on_timer(now)
        except ModelError as exc:
            run.error = f"the model failed at {now + shift} ns ({what}): {type(exc).__name__}: {exc}"
            break
        for p in out:
            p.t += shift
            if p.window is not None:
                p.window = Window(p.window.earliest + shift, p.window.latest + shift)
            if p.kind == "frame":
                v = FrameView.parse(p.frame)
                if v is not None and v.is_tcp and v.flags & 0x02:  # SYN or SYN-ACK: the model's ISN
                    flow = flows.setdefault(v.flow(board_ip), _Flow())
                    if flow.model_isn is None:
                        flow.model_isn, flow.model_ts = v.seq, v.tsval
            run.outputs.append(p)
    run.resolutions = [t + shift for t in model.resolutions]
    run.carrier_losses = [t + shift for t in model.carrier_losses]
    return run


def _learn_isn(flows: dict, raw: bytes, board_ip: int, t: int, run: ModelRun) -> None:
    v = FrameView.parse(raw)
    key = v.flow(board_ip) if v is not None else None
    if key is None:
        return
    flow = flows.setdefault(key, _Flow())
    if flow.obs_isn is None:
        flow.obs_isn, flow.obs_ts = v.seq, v.tsval
        where = f"flow {key[0] >> 24 & 255}.{key[0] >> 16 & 255}.{key[0] >> 8 & 255}.{key[0] & 255}:{key[1]} " \
                f"<-> :{key[2]}"
        run.learnt.append(Learnt("isn", v.seq, 0, 0xFFFFFFFF, where, t))
        if v.tsval is not None:
            run.learnt.append(Learnt("ts_offset", v.tsval, 0, 0xFFFFFFFF, where, t))


def _resync_at_reset(model, now: int, until: int, near_ns: int) -> list:
    """The board reset at `now`. If the model reset within `near_ns` before, or will within
    `near_ns` after, nothing changes (the comparison measures the difference). Otherwise a
    copy of the model runs on to find the reset it would have made (returned, to be
    compared: a MISSING row if the board never made it), and the model restarts at `now`,
    so the reboot that followed is compared with a rebooted model rather than shifted.
    The board's reset itself is never predicted: it is an EXTRA row."""
    if any(now - near_ns <= r <= now for r in model.resets):
        return []
    due = model.wdt.expires_at
    if due is not None and due <= now + near_ns:
        return []
    ahead, own = copy.deepcopy(model), []
    while (t := ahead.poll_at()) is not None and t <= until and not own:
        own = [p for p in ahead.on_timer(t) if p.kind == "reset"]
    model.resync_reset(now)
    return own
