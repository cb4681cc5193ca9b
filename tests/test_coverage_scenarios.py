"""Built-in scenarios that make firmware faults visible which the others let pass: seeded
faults on the emulated board (one boot each), the deaf peer they stand on, and the
link-flap phases checked against a player whose phylib polls every 2 s."""

from __future__ import annotations

import json

import pytest

from harness.board.boardfile import parse_board
from harness.oracle import Tolerance
from harness.runner import check_scenario, run_scenario
from harness.scenario import MODEL_SCENARIO_START_NS, load_scenario, model_inputs
from models.config import DEFAULT_CONFIG, FirmwareConfig


def seeded(**image_over):
    """An emulated board declared as the default firmware, its image built from another."""
    return parse_board({"kind": "emulated", "image": {**DEFAULT_CONFIG, **image_over}}, "<seeded fault>")


def verdict_of(spec, name: str, tmp_path):
    run = run_scenario(spec, load_scenario(name), tmp_path, log=lambda m: None)
    return check_scenario(spec, run, Tolerance())


def rel_s(v, row) -> float:
    t = row["pred_ns"] if row["pred_ns"] is not None else row["obs_ns"]
    return (t - v.start_ns) / 1e9


def test_deaf_peer_asks_for_the_board_once_as_the_model_is_told_and_listens_to_nothing():
    from types import SimpleNamespace

    from harness.board.wire import DeafPeer

    cfg = FirmwareConfig.default()
    sent: list[bytes] = []
    # a wire with no on_frame: a peer that wanted to hear the board would fail here
    DeafPeer(SimpleNamespace(inject=sent.append), "10.0.2.2", "10.0.2.15")
    (frame,) = sent
    sc = load_scenario("arp-unanswered")
    first = model_inputs(sc, cfg)[0]
    assert first["t"] < MODEL_SCENARIO_START_NS and frame == bytes.fromhex(first["hex"])
    assert len(frame) == 60 and frame[:6] == b"\xff" * 6 and frame[20:22] == b"\x00\x01"   # a broadcast request
    assert frame[28:32] == bytes([10, 0, 2, 2]) and frame[38:42] == bytes([10, 0, 2, 15])


@pytest.mark.board
def test_seeded_ucast_solicit_5_sends_the_9_5_s_syn_to_the_cached_address(tmp_path):
    """arp-unanswered: with ucast_solicit 5 the entry stays NUD_PROBE (unicast probes 5..9 s
    after the first SYN) until about 10 s, so the second connect's retransmission at 9.5 s
    goes to the cached address instead of starting a resolution: the SYN is extra, the
    broadcast requests the model sends from 10 s are missing (or, the first, paired with a
    unicast probe: EARLY with its eth_dst the peer's), and the unicast probes past the
    model's three are extra (unicast probes are compared)."""
    v = verdict_of(seeded(sysctls={"net.ipv4.neigh.default.ucast_solicit": 5}), "arp-unanswered", tmp_path)
    dump = json.dumps(v.rows, indent=1, default=int)
    assert v.error is None
    (syn,) = [r for r in v.rows if r["stream_name"] == "TCP_SYN"]
    assert syn["kind"] == "EXTRA" and 9.4 < rel_s(v, syn) < 10.2, dump
    arp = [r for r in v.rows if r["stream_name"] == "ARP_REQUEST"]
    assert len(arp) == len(v.rows) - 1, dump
    assert sorted(round(rel_s(v, r)) for r in arp if r["kind"] == "MISSING")[-2:] == [11, 12], dump
    assert any(r["kind"] == "EXTRA" and 5 < rel_s(v, r) < 10 for r in arp), dump       # a probe past the third
    mism = [r for r in arp if r["kind"] == "FIELD_MISMATCH"]
    assert all(r["field"] == "eth_dst" and r["pred_value"] == 0xFFFFFFFFFFFF for r in mism), dump


@pytest.mark.board
def test_seeded_tcp_sack_and_window_scaling_off_are_field_mismatches_on_every_synack(tmp_path):
    """synack-retransmit: the silent peer's SYN offers Linux's options, so a listener whose
    tcp_sack and tcp_window_scaling are 0 (tcp_parse_options ignores SACK_PERM and WS)
    answers without them, and so does each retransmission (the slirp peer's SYN offers
    neither, which is why handshake cannot tell)."""
    v = verdict_of(seeded(sysctls={"net.ipv4.tcp_sack": 0, "net.ipv4.tcp_window_scaling": 0}), "synack-retransmit",
                   tmp_path)
    assert v.error is None and v.rows, json.dumps(v.rows, indent=1, default=int)
    assert {(r["kind"], r["stream_name"]) for r in v.rows} == {("FIELD_MISMATCH", "TCP_SYNACK")}
    by_field: dict[str, set] = {}
    for r in v.rows:
        by_field.setdefault(r["field"], set()).add((r["pred_value"], r["obs_value"]))
    assert set(by_field) == {"tcp_sack_perm", "tcp_wscale", "tcp_opt_order"}
    assert by_field["tcp_sack_perm"] == {(1, 0)}
    assert {obs for _, obs in by_field["tcp_wscale"]} == {-1}
    synacks = [t for kind, t in v.series["observed"] if kind == "TCP_SYNACK"]
    assert len(synacks) == 5 and sum(r["field"] == "tcp_sack_perm" for r in v.rows) == 5


def test_late_peer_answers_the_boards_arp_from_its_second_request_on():
    from types import SimpleNamespace

    from harness.board.wire import LatePeer
    from models.wire import ARPOP_REQUEST, ETH_P_ARP, ArpRepr, EthernetRepr, ip4, mac_bytes

    board_mac, hear = mac_bytes("52:54:00:12:34:56"), []
    sent: list[bytes] = []
    peer = LatePeer(SimpleNamespace(inject=sent.append, on_frame=hear.append), "10.0.2.2")

    def ask(tip: str) -> bytes:
        arp = ArpRepr(op=ARPOP_REQUEST, sha=board_mac, sip=ip4("10.0.2.15"), tha=bytes(6), tip=ip4(tip))
        return EthernetRepr(b"\xff" * 6, board_mac, ETH_P_ARP).emit(arp.emit())

    (on_frame,) = hear
    on_frame(ask("10.0.2.9"))    # for another address: neither counted nor answered
    on_frame(ask("10.0.2.2"))
    assert sent == [] and peer.requests == 1
    on_frame(ask("10.0.2.2"))
    on_frame(ask("10.0.2.2"))
    assert len(sent) == 2 and all(f[:6] == board_mac and f[20:22] == b"\x00\x02" for f in sent)


@pytest.mark.board
def test_seeded_unres_qlen_bytes_1000_sends_only_the_second_of_two_queued_replies(tmp_path):
    """arp-queue: both echo replies wait in the arp_queue of the INCOMPLETE entry until the
    late peer answers the second broadcast; with unres_qlen_bytes 1000 __neigh_event_send
    dropped the first to queue the second (two replies' truesize is at least 1064), so only
    the second goes out: the first is missing, the rest matches."""
    v = verdict_of(seeded(sysctls={"net.ipv4.neigh.default.unres_qlen_bytes": 1000}), "arp-queue", tmp_path)
    dump = json.dumps(v.rows, indent=1, default=int)
    assert v.error is None, v.error
    (row,) = v.rows
    assert (row["kind"], row["stream_name"]) == ("MISSING", "ICMP_ECHO_REPLY"), dump
    assert 0.9 < rel_s(v, row) < 1.6, dump
    assert [kind for kind, _ in v.series["observed"]].count("ICMP_ECHO_REPLY") == 1, dump


@pytest.mark.parametrize("seed", [1, 2, 3, 4, 5])
def test_link_flap_phases_catches_a_player_polling_the_phy_every_2_s(tmp_path, seed):
    """The model as the board, its phylib poll (PHY_STATE_TIME) seeded to 2 s: whatever the
    player's poll phase, some Link line comes more than one poll after its change."""
    spec = parse_board({"kind": "model", "seed": seed, "constants": {"PHY_STATE_TIME": "2s"}}, "<2 s phylib>")
    v = verdict_of(spec, "link-flap-phases", tmp_path)
    assert v.error is None
    assert v.rows and {(r["kind"], r["stream_name"]) for r in v.rows} <= {("LATE", "LINK_DOWN"), ("LATE", "LINK_UP")}


def test_link_flap_phases_passes_a_player_polling_every_second(tmp_path):
    v = verdict_of(parse_board({"kind": "model", "seed": 3}, "<model>"), "link-flap-phases", tmp_path)
    assert v.error is None and v.rows == [] and v.predicted == v.observed == 6


@pytest.mark.board
def test_seeded_tcp_syncookies_0_drops_the_syns_past_httpds_backlog_and_says_so(tmp_path):
    """syn-flood: httpd listens with a backlog of 9 (openServer's xlisten), so its 11th and
    12th SYNs find the SYN queue full (inet_csk_reqsk_queue_is_full). The declared board
    (tcp_syncookies 1) answers them with cookie SYN-ACKs and prints "Sending cookies"; with
    tcp_syncookies 0 tcp_conn_request drops them and tcp_syn_flood_action says "Dropping
    request": two missing SYN-ACKs 0.2 s in, and the line's action is a field mismatch. The
    queued requests and ssh's (dropbear's backlog of 1000) match."""
    v = verdict_of(seeded(sysctls={"net.ipv4.tcp_syncookies": 0}), "syn-flood", tmp_path)
    dump = json.dumps(v.rows, indent=1, default=int)
    assert v.error is None, v.error
    missing = [r for r in v.rows if (r["kind"], r["stream_name"]) == ("MISSING", "TCP_SYNACK")]
    assert len(missing) == 2 and all(0.15 < rel_s(v, r) < 0.4 for r in missing), dump
    (line,) = [r for r in v.rows if r["stream_name"] == "SYN_FLOOD"]
    assert (line["kind"], line["field"], line["pred_value"], line["obs_value"]) == ("FIELD_MISMATCH", "detail1", 1, 0), \
        dump
    assert len(v.rows) == 3, dump


def test_idle_peer_completes_the_handshake_it_opened_and_then_says_nothing():
    from types import SimpleNamespace

    from harness.board.wire import IdlePeer
    from harness.scenario import peer_syn_frame
    from models.wire import ACK, SYN, EthernetRepr, Ipv4Repr, TcpRepr, linux_options

    cfg = FirmwareConfig.default()
    sent: list[bytes] = []
    heard = []
    peer = IdlePeer(SimpleNamespace(inject=sent.append, on_frame=heard.append), "10.0.2.2")
    syn_eth, syn_ip = EthernetRepr.parse(peer_syn_frame(cfg, 0, 80))
    ip, seg = Ipv4Repr.parse(syn_ip)
    syn, _ = TcpRepr.parse(seg, ip.src, ip.dst)
    synack = TcpRepr(80, syn.src_port, 5000, syn.seq + 1, SYN | ACK, 65160,
                     linux_options(mss=1460, ts=(777, syn.timestamp[0]), sack_perm=True, wscale=7))
    out = synack.emit(b"", ip.dst, ip.src)
    frame = EthernetRepr(syn_eth.src, syn_eth.dst, 0x0800).emit(Ipv4Repr(ip.dst, ip.src, 6, len(out)).emit(out))
    heard[0](frame)
    (ack_frame,) = sent
    _, p = EthernetRepr.parse(ack_frame)
    aip, aseg = Ipv4Repr.parse(p)
    ack, data = TcpRepr.parse(aseg, aip.src, aip.dst)
    assert ack.flags == ACK and data == b"" and (ack.seq, ack.ack) == (syn.seq + 1, 5001)
    # the TSval is not behind the SYN's (the board's PAWS check on the third ACK)
    assert ack.timestamp == (syn.timestamp[0] + 1, 777)
    # a keepalive probe (seq snd_una - 1, no data) gets no answer
    probe = TcpRepr(80, syn.src_port, 5000, syn.seq + 1, ACK, 502, linux_options(ts=(2777, ack.timestamp[0])))
    out = probe.emit(b"", ip.dst, ip.src)
    heard[0](EthernetRepr(syn_eth.src, syn_eth.dst, 0x0800).emit(Ipv4Repr(ip.dst, ip.src, 6, len(out)).emit(out)))
    assert len(sent) == 1 and peer.acks == 1


@pytest.mark.board
def test_keepalive_idle_shows_a_seeded_keepalive_time_as_an_extra_probe(tmp_path):
    """keepalive-idle: busybox httpd sets SO_KEEPALIVE on the connection it accepts
    (mini_httpd -> setsockopt_keepalive) and the idle peer answers nothing. Declared
    7200 s, nothing follows the handshake within the run; an image with
    tcp_keepalive_time 1 probes about 1 s after its accept (tcp_keepalive_timer ->
    tcp_write_wakeup: seq snd_una - 1, no data); the next would come 75 s later."""
    v = verdict_of(seeded(sysctls={"net.ipv4.tcp_keepalive_time": 1}), "keepalive-idle", tmp_path)
    dump = json.dumps(v.rows, indent=1, default=int)
    assert v.error is None and [(r["kind"], r["stream_name"]) for r in v.rows] == [("EXTRA", "TCP_PROBE")], dump
    assert 0.9 < rel_s(v, v.rows[0]) < 1.6, dump


def test_closing_peer_acknowledges_the_boards_data_and_fin_and_sends_its_own_fin_when_told():
    from types import SimpleNamespace

    from harness.board.wire import ClosingPeer
    from models.wire import ACK, FIN, PSH, SYN, EthernetRepr, Ipv4Repr, TcpRepr, linux_options

    sent: list[bytes] = []
    heard = []
    peer = ClosingPeer(SimpleNamespace(inject=sent.append, on_frame=heard.append), "10.0.2.2", clock=lambda: 5_000_000)
    board_mac, board_ip, peer_ip = bytes.fromhex("525400123456"), 0x0A00020F, 0x0A000202

    def board_sends(seg: TcpRepr, data: bytes = b"") -> TcpRepr | None:
        out = seg.emit(data, board_ip, peer_ip)
        n = len(sent)
        heard[0](EthernetRepr(bytes.fromhex(peer.mac.hex()), board_mac, 0x0800).emit(
            Ipv4Repr(board_ip, peer_ip, 6, len(out)).emit(out)))
        if len(sent) == n:
            return None
        _, p = EthernetRepr.parse(sent[-1])
        ip, raw = Ipv4Repr.parse(p)
        return TcpRepr.parse(raw, ip.src, ip.dst)[0]

    synack = board_sends(TcpRepr(40000, 7, 100, 0, SYN, 64240, linux_options(mss=1460, ts=(1000, 0), sack_perm=True,
                                                                           wscale=6)))
    assert synack.flags == SYN | ACK and synack.ack == 101
    isn = synack.seq
    assert board_sends(TcpRepr(40000, 7, 101, isn + 1, ACK, 1004, linux_options(ts=(1001, 0)))) is None
    ack = board_sends(TcpRepr(40000, 7, 101, isn + 1, ACK | PSH, 1004, linux_options(ts=(1002, 0))), b"hello")
    assert (ack.flags, ack.seq, ack.ack, ack.window, ack.timestamp[1]) == (ACK, isn + 1, 106, 65160 >> 7, 1002)
    ack = board_sends(TcpRepr(40000, 7, 106, isn + 1, ACK | FIN, 1004, linux_options(ts=(1003, 0))))
    assert (ack.flags, ack.ack) == (ACK, 107) and peer.acks == 2
    assert peer.fin() == 1
    _, p = EthernetRepr.parse(sent[-1])
    ip, raw = Ipv4Repr.parse(p)
    fin = TcpRepr.parse(raw, ip.src, ip.dst)[0]
    assert (fin.flags, fin.seq, fin.ack, fin.timestamp[1]) == (FIN | ACK, isn + 1, 107, 1003)


@pytest.mark.board
def test_fin_wait2_orphan_shows_a_seeded_tcp_fin_timeout_as_a_reset_instead_of_the_timewait_ack(tmp_path):
    """fin-wait2-orphan: nc wrote, shut its side and was killed in FIN_WAIT2 2 s in; the
    peer's FIN at 10 s finds, declared 60 s, the FIN_WAIT2 timewait sock (its ACK from the
    control socket); an image with tcp_fin_timeout 5 dropped it by 9 s at the latest, so
    the FIN is answered by tcp_v4_send_reset."""
    v = verdict_of(seeded(sysctls={"net.ipv4.tcp_fin_timeout": 5}), "fin-wait2-orphan", tmp_path)
    dump = json.dumps(v.rows, indent=1, default=int)
    assert v.error is None, dump
    assert sorted((r["kind"], r["stream_name"]) for r in v.rows) == [("EXTRA", "TCP_RST"), ("MISSING", "TCP_ACK")], dump
    assert all(9.9 < rel_s(v, r) < 11.5 for r in v.rows), dump
