"""The board model over timelines: console lines, link flaps, watchdog, real-frame conformance."""

from __future__ import annotations

import json

import pytest

from models.board import Board, BootTiming, predict
from models.clock import Window, ms, sec
from models.config import FirmwareConfig
from models.errors import ModelUsageError
from models.inputs import FrameArrived
from models.wire import EthernetRepr, Ipv4Repr, TcpRepr
from models.wire.tcp import TCPOPT_TIMESTAMP

LINK_UP = "ftgmac100 1e660000.ethernet eth0: Link is Up - 100Mbps/Full - flow control rx/tx"
LINK_DOWN = "ftgmac100 1e660000.ethernet eth0: Link is Down"
FAST_BOOT = BootTiming(Window(ms(500), ms(500)), Window(0, 0))
HOST_RMEM = "4096 131072 33554432"   # the capturing host's net.ipv4.tcp_rmem


def cfg(sysctls=None, **watchdog) -> FirmwareConfig:
    # the listener of frames/capture_host_frames.py is a plain socket: no IP_TOS, unlike dropbear
    data = {"interface": {"address": "10.0.2.15/24", "gateway": "10.0.2.2", "mac": "52:54:00:12:34:56"},
            "services": {"ssh": {"port": 22, "ip_tos": 0}}}
    if sysctls:
        data["sysctls"] = sysctls
    if watchdog:
        data["watchdog"] = watchdog
    return FirmwareConfig.from_dict(data)


def frame_in(t: int, raw: bytes) -> dict:
    return {"t": t, "kind": "frame", "hex": raw.hex()}


def lines(pred) -> list[tuple[int, str]]:
    return [(e.t, e.detail["text"]) for e in pred.of_kind("console")]


def test_link_up_line_comes_within_one_poll_of_ifup():
    pred = predict(cfg(), [], until=sec(5), boot=FAST_BOOT)
    ((t, text),) = lines(pred)
    assert text == LINK_UP and ms(500) <= t < ms(1500)
    assert pred.of_kind("console")[0].window == Window(ms(500), ms(1590))   # + the level-1 timer's slack


def test_link_flap_prints_down_then_up_each_within_a_second():
    pred = predict(cfg(), [{"t": sec(10), "kind": "link", "up": False},
                           {"t": sec(20), "kind": "link", "up": True}], until=sec(30), boot=FAST_BOOT)
    (_, up0), (t_down, down), (t_up, up) = lines(pred)
    assert (down, up) == (LINK_DOWN, LINK_UP)
    assert sec(10) <= t_down < sec(11) and sec(20) <= t_up < sec(21)


def test_link_down_gives_a_no_frames_constraint():
    pred = predict(cfg(), [{"t": sec(10), "kind": "link", "up": False},
                           {"t": sec(20), "kind": "link", "up": True}], until=sec(30), boot=FAST_BOOT)
    assert pred.constraints == [{"kind": "no_frames_between", "from": sec(10), "to": sec(20)}]


def test_frames_arriving_while_link_is_down_are_dropped(linux_frames):
    pred = predict(cfg(), [{"t": sec(10), "kind": "link", "up": False},
                           frame_in(sec(12), linux_frames["peer_arp_request"])], until=sec(15), boot=FAST_BOOT)
    assert pred.of_kind("frame") == [] and pred.of_kind("drop")


def test_arp_reply_to_real_request_is_linux_bytes_padded(linux_frames):
    pred = predict(cfg(), [frame_in(sec(2), linux_frames["peer_arp_request"])], until=sec(3), boot=FAST_BOOT)
    (reply,) = pred.of_kind("frame")
    raw = reply.frame
    assert raw[:42] == linux_frames["linux_arp_reply"] and raw[42:] == bytes(18) and reply.t == sec(2)


def test_rst_to_closed_port_is_byte_exact_linux(linux_frames):
    pred = predict(cfg(), [frame_in(sec(2), linux_frames["peer_arp_request"]),
                           frame_in(sec(3), linux_frames["peer_syn_closed_port"])], until=sec(4), boot=FAST_BOOT)
    rst = [e for e in pred.of_kind("frame") if e.detail["cause"] == "rst-no-socket"]
    assert rst[0].frame[:54] == linux_frames["linux_rst_ack"]


def test_synack_to_real_syn_is_linux_bytes_but_for_isn_and_tsval(linux_frames):
    pred = predict(cfg({"net.ipv4.tcp_rmem": HOST_RMEM}),
                   [frame_in(sec(2), linux_frames["peer_arp_request"]), frame_in(sec(3), linux_frames["peer_syn"])],
                   until=sec(3) + ms(1), boot=FAST_BOOT)
    (sa,) = [e for e in pred.of_kind("frame") if e.detail["cause"] == "synack"]
    real = linux_frames["linux_syn_ack"]
    eth, packet = EthernetRepr.parse(real)
    ip, seg = Ipv4Repr.parse(packet)
    real_tcp, _ = TcpRepr.parse(seg, ip.src, ip.dst)
    model_eth, model_packet = EthernetRepr.parse(sa.frame)
    model_ip, model_seg = Ipv4Repr.parse(model_packet)
    model_tcp, _ = TcpRepr.parse(model_seg, model_ip.src, model_ip.dst)
    # put the two random fields of the real frame into the model's, then compare bytes
    opts = tuple((k, (real_tcp.timestamp[0], v[1]) if k == TCPOPT_TIMESTAMP else v) for k, v in model_tcp.options)
    fixed = TcpRepr(model_tcp.src_port, model_tcp.dst_port, real_tcp.seq, model_tcp.ack, model_tcp.flags,
                    model_tcp.window, opts)
    assert model_eth.emit(model_ip.emit(fixed.emit(b"", model_ip.src, model_ip.dst)), pad=False) == real


def test_a_frame_as_a_dict_and_as_frame_arrived_give_the_same_outputs(linux_frames):
    # Board.handle takes a dict frame's bytes without building a FrameArrived
    names = ["peer_arp_request", "peer_echo_request", "peer_syn", "peer_syn_closed_port", "linux_arp_reply",
             "peer_echo_request"]
    bad = bytearray(linux_frames["peer_echo_request"])
    bad[24] ^= 0xFF
    frames = [linux_frames[name] for name in names] + [bytes(bad), linux_frames["peer_syn"][:20]]
    runs = []
    for typed in (False, True):
        board, out = Board(cfg(), boot=FAST_BOOT), []
        for k, raw in enumerate(frames):
            t = sec(2) + ms(300) * k
            while board.poll_at() is not None and board.poll_at() < t:
                out += board.on_timer(board.poll_at())
            out += board.handle(t, FrameArrived(raw) if typed else frame_in(t, raw))
        runs.append(out)
    assert runs[0] == runs[1] and len(runs[0]) > len(frames)


def test_silent_client_gets_synack_at_1_3_7_15_31_s(linux_frames):
    t0 = sec(3)
    pred = predict(cfg(), [frame_in(sec(2), linux_frames["peer_arp_request"]),
                           frame_in(t0, linux_frames["peer_syn"]),
                           # the peer keeps answering unicast ARP probes
                           *[frame_in(t0 + sec(k) + ms(1), linux_frames["peer_arp_request"]) for k in range(0, 70, 4)]],
                   until=sec(100), boot=FAST_BOOT)
    times = [e.t - t0 for e in pred.of_kind("frame") if e.detail["cause"].startswith("synack")]
    assert times == [sec(x) for x in (0, 1, 3, 7, 15, 31)]


def test_bad_ip_checksum_is_dropped_with_reason(linux_frames):
    raw = bytearray(linux_frames["peer_syn"])
    raw[24] ^= 0xFF
    pred = predict(cfg(), [frame_in(sec(2), bytes(raw))], until=sec(3), boot=FAST_BOOT)
    assert [e.detail["reason"] for e in pred.of_kind("drop")] == ["SKB_DROP_REASON_IP_CSUM"]


def test_watchdog_sigkill_prints_did_not_stop_and_resets_timeout_later():
    pred = predict(cfg(timeout=5, daemon=True, period=1), [{"t": sec(10) + ms(300), "kind": "watchdog_sigkill"}],
                   until=sec(20), boot=FAST_BOOT)
    assert (sec(10) + ms(300), "watchdog: watchdog0: watchdog did not stop!") in lines(pred)
    assert [e.t for e in pred.of_kind("reset")] == [sec(15) + ms(300)]


def test_watchdog_sigterm_stops_it_and_nothing_resets():
    pred = predict(cfg(timeout=5, daemon=True, period=1), [{"t": sec(10), "kind": "watchdog_sigterm"}],
                   until=sec(60), boot=FAST_BOOT)
    assert pred.of_kind("reset") == []


def test_hung_watchdog_daemon_resets_timeout_after_its_last_kick():
    pred = predict(cfg(timeout=5, daemon=True, period=1), [{"t": sec(10) + ms(300), "kind": "watchdog_hang"}],
                   until=sec(20), boot=FAST_BOOT)
    assert [e.t for e in pred.of_kind("reset")] == [sec(14) + ms(500)]   # last kick 9.5 s (ifup 0.5 s + n s)


def test_boot_watchdog_daemon_starts_with_the_services_and_a_kill_resets_at_kill_plus_timeout():
    # /init starts `watchdog` after dropbear and httpd: its kicks are in phase with the
    # services (ifup 0.5 s + 0.3 s), not with ifup. A hang shows the phase; a SIGKILL does
    # not (watchdog_release pings the WDT at the kill).
    boot = BootTiming(Window(ms(500), ms(500)), Window(ms(300), ms(300)))
    wd = cfg(timeout=5, daemon=True, period=1)
    hang = predict(wd, [{"t": sec(10) + ms(500), "kind": "watchdog_hang"}], until=sec(20), boot=boot)
    assert [e.t for e in hang.of_kind("reset")] == [sec(14) + ms(800)]   # last kick 9.8 s
    kill = predict(wd, [{"t": sec(10) + ms(500), "kind": "watchdog_sigkill"}], until=sec(20), boot=boot)
    assert [e.t for e in kill.of_kind("reset")] == [sec(15) + ms(500)]


def test_services_listen_again_after_a_watchdog_reset(linux_frames):
    pred = predict(cfg(timeout=5, daemon=True, period=1),
                   [{"t": sec(10), "kind": "watchdog_sigkill"},
                    frame_in(sec(17), linux_frames["peer_arp_request"]),
                    frame_in(sec(18), linux_frames["peer_syn"])], until=sec(19), boot=FAST_BOOT)
    causes = [e.detail["cause"] for e in pred.of_kind("frame")]
    assert "synack" in causes


def test_reboot_prints_restarting_and_resets_128_ms_later():
    pred = predict(cfg(), [{"t": sec(5), "kind": "reboot"}], until=sec(6), boot=FAST_BOOT)
    assert (sec(5), "reboot: Restarting system") in lines(pred)
    assert [e.t for e in pred.of_kind("reset")] == [sec(5) + ms(128)]


def test_tx_stall_ends_with_netdev_watchdog_line(linux_frames):
    echo = linux_frames["peer_echo_request"]
    inputs = [frame_in(sec(2), linux_frames["peer_arp_request"]), {"t": sec(3), "kind": "tx_stall"}]
    inputs += [frame_in(sec(3) + ms(i), echo) for i in range(1, 130)]
    pred = predict(cfg(), inputs, until=sec(20), boot=FAST_BOOT)
    watchdog = [(t, x) for t, x in lines(pred) if "NETDEV WATCHDOG" in x]
    assert len(watchdog) == 1
    t, text = watchdog[0]
    assert text.startswith("ftgmac100 1e660000.ethernet eth0: NETDEV WATCHDOG: CPU: 0: transmit queue 0 timed out ")
    assert sec(8) < t <= sec(14)


def test_send_on_a_never_connected_socket_names_the_step():
    with pytest.raises(ModelUsageError) as err:
        predict(cfg(), [{"t": sec(2), "kind": "send", "fd": "nope", "data": "x"}], boot=FAST_BOOT)
    assert "'nope'" in str(err.value) and "send" in str(err.value)


def test_unknown_input_kind_is_a_usage_error():
    with pytest.raises(ModelUsageError):
        Board(cfg()).handle(0, {"kind": "teleport"})


def test_prediction_json_has_every_event_with_a_window(linux_frames):
    pred = predict(cfg(), [frame_in(sec(2), linux_frames["peer_arp_request"])], until=sec(3), boot=FAST_BOOT)
    data = json.loads(pred.to_json())
    assert len(data["events"]) == len(pred.events) == 2
    assert all(e["earliest"] <= e["t"] <= e["latest"] for e in data["events"])


def test_qemu_reboot_with_link_off_still_prints_link_up_but_frames_are_lost(linux_frames):
    # EMULATION-FACTS: QEMU's reset turns the PHY link bit back on whatever set_link said.
    pred = predict(cfg(), [{"t": sec(5), "kind": "link", "up": False}, {"t": sec(10), "kind": "reboot"},
                           frame_in(sec(15), linux_frames["peer_arp_request"])], until=sec(16), boot=FAST_BOOT)
    texts = [x for t, x in lines(pred) if t > sec(10)]
    assert LINK_UP in texts and pred.of_kind("frame") == []


def test_real_board_reboot_with_cable_out_stays_down():
    pred = predict(cfg(), [{"t": sec(5), "kind": "link", "up": False}, {"t": sec(10), "kind": "reboot"}],
                   until=sec(16), boot=FAST_BOOT, qemu=False)
    assert [x for t, x in lines(pred) if t > sec(10)] == []


def test_after_a_link_flap_the_synack_waits_for_a_broadcast_arp(linux_frames):
    # the peer's entry is STALE (from its request) before the flap; Linux flushes it on
    # carrier down, so the SYN-ACK after the flap needs a fresh resolution
    pred = predict(cfg(), [frame_in(sec(2), linux_frames["peer_arp_request"]),
                           {"t": sec(10), "kind": "link", "up": False},
                           {"t": sec(20), "kind": "link", "up": True},
                           frame_in(sec(25), linux_frames["peer_syn"])], until=sec(25) + ms(1), boot=FAST_BOOT)
    after = [e for e in pred.of_kind("frame") if e.t >= sec(25)]
    assert [(e.detail["proto"], e.detail["dst"]) for e in after] == [("arp", "ff:ff:ff:ff:ff:ff")]


def test_after_a_link_flap_the_synack_goes_once_the_peer_replies(linux_frames):
    pred = predict(cfg(), [frame_in(sec(2), linux_frames["peer_arp_request"]),
                           {"t": sec(10), "kind": "link", "up": False},
                           {"t": sec(20), "kind": "link", "up": True},
                           frame_in(sec(25), linux_frames["peer_syn"]),
                           frame_in(sec(25) + ms(2), linux_frames["peer_arp_request"])],
                   until=sec(25) + ms(3), boot=FAST_BOOT)
    after = [(e.t, e.detail["cause"], e.detail.get("flags")) for e in pred.of_kind("frame") if e.t >= sec(25)]
    # arp_process: neigh_event_ns releases the arp_queue before arp_send_dst sends the reply
    assert after == [(sec(25), "arp-request", None), (sec(25) + ms(2), "arp-queue-release", "S."),
                     (sec(25) + ms(2), "arp-reply", None)]


def test_observed_phy_poll_sets_the_phase_of_later_polls():
    board = Board(FirmwareConfig.default(), boot=BootTiming(Window(sec(1), sec(1)), Window(0, 0)), phy_phase=0)
    board.on_timer(sec(1))                      # ifup, first poll: Link is Up
    board.handle(sec(3), {"kind": "link", "up": False})
    out = board.phy_poll_observed(sec(3) + ms(400))  # the board's line came 400 ms after the cut
    assert [p.detail["text"] for p in out if p.kind == "console"] == \
        ["ftgmac100 1e660000.ethernet eth0: Link is Down"]
    assert out[0].t == sec(3) + ms(400)
    assert board.poll_at() <= board.next_phy_poll == sec(4) + ms(400)


def test_board_connect_with_an_observed_source_port_binds_it():
    from models.wire import ARPOP_REPLY, ETH_P_ARP, ArpRepr, ip4, mac_bytes

    board = Board(FirmwareConfig.default(), boot=BootTiming(Window(0, 0), Window(0, 0)), phy_phase=0)
    board.on_timer(0)  # eth0 up, carrier on, services listening
    out = board.handle(sec(1), {"kind": "connect", "fd": "c", "addr": "10.0.2.2", "port": 9, "sport": 36662})
    assert len([p for p in out if p.kind == "frame"]) == 1  # the ARP request for the peer
    peer = mac_bytes("52:55:0a:00:02:02")
    reply = ArpRepr(ARPOP_REPLY, peer, ip4("10.0.2.2"), mac_bytes("52:54:00:12:34:56"), ip4("10.0.2.15"))
    out = board.handle(sec(1) + ms(1), {"kind": "frame", "raw": EthernetRepr(mac_bytes("52:54:00:12:34:56"), peer,
                                                                              ETH_P_ARP).emit(reply.emit())})
    syns = []
    for p in out:
        if p.kind != "frame":
            continue
        eth, payload = EthernetRepr.parse(p.frame)
        if eth.ethertype == 0x0800:
            ip, seg = Ipv4Repr.parse(payload)
            syns.append(TcpRepr.parse(seg, ip.src, ip.dst)[0])
    assert [(t.src_port, t.dst_port, t.flags) for t in syns] == [(36662, 9, 0x02)]
