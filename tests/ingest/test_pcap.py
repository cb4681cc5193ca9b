"""The fast pcap/pcapng reader: formats, decoded fields, bad input, and agreement with the
plain-Python reference and with tshark."""

from __future__ import annotations

import random
import shutil
import struct
import subprocess

import numpy as np
import pytest

from harness.ingest import pcapwrite as W
from harness.ingest.pcap import (
    CSUM_IP_BAD,
    CSUM_L4_BAD,
    CSUM_UNVERIFIED,
    TCPOPT_MSS,
    TCPOPT_NOP,
    TCPOPT_SACK_PERM,
    TCPOPT_TIMESTAMP,
    TCPOPT_WINDOW,
    Layer,
    PcapFault,
    PcapFormatError,
    TcpOpt,
    decode_buffer,
    option_kinds,
    read_capture,
    read_pcap,
)
from harness.ingest.pcap_reference import decode_bytes
from tests.ingest.frames import ipv4_offset, with_random_tos, with_tos

T0 = 1_700_000_000_123_456_789


def _both(data: bytes):
    fast = decode_buffer(np.frombuffer(data, np.uint8))
    slow = decode_bytes(data)
    return fast, slow


def _assert_same(fast, slow):
    (ft, ffault, foff), (st, sfault, soff) = fast, slow
    assert (ffault, foff) == (sfault, soff)
    for name, col in ft.columns().items():
        np.testing.assert_array_equal(col, st.columns()[name], err_msg=name)


def _one(tmp_path, frame: bytes, **kw):
    return read_pcap(W.write_pcap(tmp_path / "one.pcap", [(T0, frame)], nanosecond=True, **kw))


# --- formats ---------------------------------------------------------------------------


@pytest.mark.parametrize("nanosecond", [False, True])
@pytest.mark.parametrize("big_endian", [False, True])
def test_pcap_times_in_ns_for_each_byte_order_and_resolution(tmp_path, nanosecond, big_endian):
    times = [T0, T0 + 1_000, T0 + 2_000_000_001]
    path = W.write_pcap(tmp_path / "t.pcap", [(t, W.random_frame(random.Random(t))) for t in times],
                        nanosecond=nanosecond, big_endian=big_endian)
    table = read_pcap(path)
    unit = 1 if nanosecond else 1000
    assert table.time_ns.tolist() == [t // unit * unit for t in times]
    assert table.frame.tolist() == [1, 2, 3]


@pytest.mark.parametrize("tsresol", [0, 3, 6, 9, 0x80 | 10, 0x80 | 20, 0x80 | 30])
@pytest.mark.parametrize("big_endian", [False, True])
def test_pcapng_if_tsresol_converts_to_ns(tmp_path, tsresol, big_endian):
    times = [T0, T0 + 7, T0 + 1_500_000_000]
    path = W.write_pcapng(tmp_path / "t.pcapng", [(t, W.random_frame(random.Random(t))) for t in times],
                          tsresol=tsresol, big_endian=big_endian)
    got = read_pcap(path).time_ns
    # the file holds each time rounded down to its unit, and reading rounds down to a whole
    # ns: together they lose less than one unit plus one ns
    unit_ns = 10 ** (9 - tsresol) if tsresol < 0x80 else 1_000_000_000 / 2 ** (tsresol & 0x7F)
    err = np.asarray(times) - got
    assert np.all(err >= 0) and np.all(err < unit_ns + 1)


def test_pcapng_if_tsoffset_is_added(tmp_path):
    path = W.write_pcapng(tmp_path / "t.pcapng", [(T0, W.random_frame(random.Random(1)))], tsresol=9,
                          tsoffset_s=1_600_000_000)
    assert read_pcap(path).time_ns.tolist() == [T0]


def test_pcapng_sections_of_both_byte_orders_concatenate(tmp_path):
    rng = random.Random(2)
    a = W.random_records(rng, 5)
    b = W.random_records(rng, 7, start_ns=T0)
    data = W.pcapng_section(a, big_endian=False) + W.pcapng_section(b, big_endian=True, tsresol=9, interfaces=2)
    (tmp_path / "two.pcapng").write_bytes(data)
    table = read_pcap(tmp_path / "two.pcapng")
    assert len(table) == 12
    assert table.time_ns[5:].tolist() == [t for t, *_ in b]
    # interface indices run over the whole file: the second section's first IDB is #1
    assert table.iface.tolist() == [0] * 5 + [1] * 7


def test_pcapng_obsolete_packet_block_is_read(tmp_path):
    recs = W.random_records(random.Random(3), 4)
    path = W.write_pcapng(tmp_path / "pb.pcapng", recs, packet_block=2)
    assert read_pcap(path).cap_len.tolist() == [len(r[1]) for r in recs]


def test_pcapng_simple_packet_block_has_no_timestamp(tmp_path):
    frame = W.ether(1, 2, 0x0806, W.arp(1, 3, 4, 5, 6))
    data = W.pcapng_section([])
    body = struct.pack("<I", len(frame)) + frame
    data += struct.pack("<II", 3, len(body) + 12) + body + struct.pack("<I", len(body) + 12)
    (tmp_path / "spb.pcapng").write_bytes(data)
    table = read_pcap(tmp_path / "spb.pcapng")
    assert table.layers[0] & Layer.NO_TIMESTAMP and table.arp_op[0] == 1


# --- decoded fields --------------------------------------------------------------------


def test_vlan_tag_gives_outer_vid_and_inner_ethertype(tmp_path):
    frame = W.ether(1, 2, 0x0806, W.arp(2, 3, 4, 5, 6), vlans=[100, 200])
    table = _one(tmp_path, frame)
    assert (table.vlan[0], table.ethertype[0], table.arp_op[0]) == (100, 0x0806, 2)
    assert table.layers[0] & Layer.VLAN


def test_linux_syn_options_decode_with_their_order(tmp_path):
    seg = W.tcp(40000, 22, 1000, 0, 0x002, 64240, W.linux_syn_options(mss=1460, tsval=77, tsecr=0, wscale=7))
    table = _one(tmp_path, W.ether(1, 2, 0x0800, W.ipv4(W.BOARD_IP, W.PEER_IP, 6, seg)))
    assert (table.tcp_mss[0], table.tcp_wscale[0], table.tcp_tsval[0], table.tcp_tsecr[0]) == (1460, 7, 77, 0)
    assert TcpOpt(int(table.tcp_opts[0])) == TcpOpt.MSS | TcpOpt.SACK_PERM | TcpOpt.TIMESTAMP | TcpOpt.WSCALE
    kinds = option_kinds(table.tcp_opt_kinds[0], table.tcp_opt_count[0])
    assert kinds == [TCPOPT_MSS, TCPOPT_SACK_PERM, TCPOPT_TIMESTAMP, TCPOPT_NOP, TCPOPT_WINDOW]


def test_ethernet_padding_is_not_tcp_payload(tmp_path):
    seg = W.tcp(22, 40000, 5, 6, 0x010, 501)
    frame = W.ether(1, 2, 0x0800, W.ipv4(W.BOARD_IP, W.PEER_IP, 6, seg))
    assert len(frame) == 60  # padded by 6 bytes
    assert _one(tmp_path, frame).payload_len[0] == 0


def test_ipv4_df_ttl_id_and_addresses(tmp_path):
    dgram = W.ipv4(W.ip("10.0.2.15"), W.ip("10.0.2.2"), 17, W.udp(5353, 53, b"q"), ttl=63, ip_id=0xBEEF, df=True)
    table = _one(tmp_path, W.ether(1, 2, 0x0800, dgram))
    assert (table.ip_src[0], table.ip_dst[0]) == (W.ip("10.0.2.15"), W.ip("10.0.2.2"))
    assert (table.ip_ttl[0], table.ip_id[0], table.ip_df[0], table.ip_proto[0]) == (63, 0xBEEF, 1, 17)
    assert (table.sport[0], table.dport[0], table.payload_len[0]) == (5353, 53, 1)


@pytest.mark.parametrize("tos", [0x00, 0x02, 0xB8, 0xB9, 0xFF])  # none, ECT(0), EF, EF+ECT(1), all bits
def test_ipv4_tos_byte_keeps_dscp_and_ecn_in_both_readers(tmp_path, tos):
    frame = with_tos(W.ether(1, 2, 0x0800, W.ipv4(W.BOARD_IP, W.PEER_IP, 6, W.tcp(22, 40000, 1, 2, 0x012, 64240))),
                     tos)
    data = W.write_pcap(tmp_path / "tos.pcap", [(T0, frame)], nanosecond=True).read_bytes()
    fast, slow = _both(data)
    assert (fast[0].ip_tos[0], slow[0].ip_tos[0]) == (tos, tos)
    assert fast[0].ip_tos[0] >> 2 == tos >> 2 and fast[0].ip_tos[0] & 3 == tos & 3


def test_ip_tos_is_zero_for_arp_and_for_a_header_that_is_not_version_4(tmp_path):
    arp = W.ether(1, 2, 0x0806, W.arp(1, 3, 4, 5, 6))
    not_v4 = bytearray(with_tos(W.ether(1, 2, 0x0800, W.ipv4(1, 2, 17, W.udp(1, 2))), 0xB8))
    not_v4[14] = 0x65  # version 6 under an IPv4 ethertype: MALFORMED, no IPv4 fields
    data = W.write_pcap(tmp_path / "no.pcap", [(T0, arp), (T0 + 1, bytes(not_v4))], nanosecond=True).read_bytes()
    fast, slow = _both(data)
    assert fast[0].ip_tos.tolist() == slow[0].ip_tos.tolist() == [0, 0]
    assert fast[0].layers[1] & Layer.MALFORMED


def test_setting_the_tos_byte_keeps_the_header_checksum_valid():
    frame = with_tos(W.ether(1, 2, 0x0800, W.ipv4(W.BOARD_IP, W.PEER_IP, 6, W.tcp(1, 2, 3, 4, 0x10, 5)), vlans=[7]),
                     0xB9)
    q = ipv4_offset(frame)
    header = frame[q:q + 20]
    total = sum(struct.unpack(">10H", header))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    assert (q, header[1], total) == (18, 0xB9, 0xFFFF)


def test_non_first_fragment_has_no_l4(tmp_path):
    dgram = W.ipv4(1, 2, 6, W.tcp(1, 2, 3, 4, 0x10, 5), frag_offset=10, df=False)
    table = _one(tmp_path, W.ether(1, 2, 0x0800, dgram))
    assert table.layers[0] & Layer.FRAGMENT and not table.layers[0] & Layer.TCP and table.sport[0] == 0


def test_frame_cut_short_is_marked_truncated_and_keeps_what_it_has(tmp_path):
    frame = W.ether(1, 2, 0x0800, W.ipv4(7, 8, 6, W.tcp(1, 2, 3, 4, 0x10, 5)))
    path = W.write_pcap(tmp_path / "cut.pcap", [(T0, frame[:30], len(frame))])
    table = read_pcap(path)
    assert table.layers[0] & Layer.TRUNCATED and not table.layers[0] & Layer.IPV4
    assert (table.wire_len[0], table.cap_len[0], table.ethertype[0]) == (len(frame), 30, 0x0800)


def test_icmp_type_and_code(tmp_path):
    table = _one(tmp_path, W.ether(1, 2, 0x0800, W.ipv4(1, 2, 1, W.icmp(3, 3))))
    assert (table.icmp_type[0], table.icmp_code[0]) == (3, 3)


# --- bad input -------------------------------------------------------------------------


def test_truncated_pcap_raises_with_offset_and_keeps_frames_before_it(tmp_path):
    recs = W.random_records(random.Random(5), 10)
    data = W.write_pcap(tmp_path / "full.pcap", recs).read_bytes()
    cut = tmp_path / "cut.pcap"
    last = len(data) - (16 + len(recs[-1][1]))
    cut.write_bytes(data[:-3])
    with pytest.raises(PcapFormatError) as err:
        read_pcap(cut)
    assert err.value.fault == PcapFault.TRUNCATED_RECORD and err.value.offset == last
    assert str(cut) in str(err.value) and str(last) in str(err.value)
    assert len(err.value.partial) == 9


def test_strict_false_returns_partial_table_and_the_error(tmp_path):
    data = W.write_pcap(tmp_path / "full.pcap", W.random_records(random.Random(6), 4)).read_bytes()
    (tmp_path / "cut.pcap").write_bytes(data[:-1])
    cap = read_capture(tmp_path / "cut.pcap", strict=False)
    assert len(cap.packets) == 3 and cap.error is not None and cap.error.fault == PcapFault.TRUNCATED_RECORD


def test_garbage_file_raises_bad_magic(tmp_path):
    (tmp_path / "junk").write_bytes(b"this is not a capture")
    with pytest.raises(PcapFormatError) as err:
        read_pcap(tmp_path / "junk")
    assert err.value.fault == PcapFault.BAD_MAGIC and err.value.offset == 0


def test_empty_file_raises_truncated_header(tmp_path):
    (tmp_path / "empty.pcap").write_bytes(b"")
    with pytest.raises(PcapFormatError) as err:
        read_pcap(tmp_path / "empty.pcap")
    assert (err.value.fault, err.value.offset) == (PcapFault.TRUNCATED_HEADER, 0)


def test_pcap_header_cut_short_raises_truncated_header(tmp_path):
    data = W.write_pcap(tmp_path / "h.pcap", []).read_bytes()
    (tmp_path / "h.pcap").write_bytes(data[:20])
    with pytest.raises(PcapFormatError) as err:
        read_pcap(tmp_path / "h.pcap")
    assert err.value.fault == PcapFault.TRUNCATED_HEADER


def test_pcap_unknown_linktype_raises_at_header(tmp_path):
    path = W.write_pcap(tmp_path / "raw.pcap", [(T0, b"\x45" * 20)], linktype=101)
    with pytest.raises(PcapFormatError) as err:
        read_pcap(path)
    assert (err.value.fault, err.value.offset) == (PcapFault.UNKNOWN_LINKTYPE, 20)


def test_pcapng_unknown_linktype_raises_at_its_interface_block(tmp_path):
    good = W.pcapng_section(W.random_records(random.Random(7), 3))
    (tmp_path / "mixed.pcapng").write_bytes(good + W.pcapng_section([(T0, b"\x45" * 20)], linktype=101))
    with pytest.raises(PcapFormatError) as err:
        read_pcap(tmp_path / "mixed.pcapng")
    shb_len = 28
    assert (err.value.fault, err.value.offset) == (PcapFault.UNKNOWN_LINKTYPE, len(good) + shb_len)
    assert len(err.value.partial) == 3


def test_pcapng_bad_block_length_raises(tmp_path):
    data = bytearray(W.pcapng_section(W.random_records(random.Random(8), 3)))
    epb = 28 + 20  # SHB then IDB without options
    struct.pack_into("<I", data, epb + 4, 13)
    (tmp_path / "bad.pcapng").write_bytes(bytes(data))
    with pytest.raises(PcapFormatError) as err:
        read_pcap(tmp_path / "bad.pcapng")
    assert (err.value.fault, err.value.offset, len(err.value.partial)) == (PcapFault.BAD_BLOCK_LENGTH, epb, 0)


def test_pcapng_trailing_length_mismatch_raises(tmp_path):
    data = bytearray(W.pcapng_section(W.random_records(random.Random(9), 2)))
    data[-1] ^= 0x40
    (tmp_path / "bad.pcapng").write_bytes(bytes(data))
    with pytest.raises(PcapFormatError) as err:
        read_pcap(tmp_path / "bad.pcapng")
    assert err.value.fault == PcapFault.BLOCK_LENGTH_MISMATCH and len(err.value.partial) == 1


def test_pcapng_packet_on_undeclared_interface_raises(tmp_path):
    recs = [(T0, W.random_frame(random.Random(1)), None, 3)]
    path = W.write_pcapng(tmp_path / "if.pcapng", recs)
    with pytest.raises(PcapFormatError) as err:
        read_pcap(path)
    assert err.value.fault == PcapFault.BAD_INTERFACE


# --- agreement with the reference and with tshark ---------------------------------------


FORMATS = [
    ("pcap", {}), ("pcap", {"nanosecond": True, "big_endian": True}),
    ("pcapng", {}), ("pcapng", {"big_endian": True, "tsresol": 9}), ("pcapng", {"tsresol": 0x80 | 30}),
]


@pytest.mark.parametrize("fmt,kw", FORMATS)
def test_numba_reader_matches_reference_on_random_captures(tmp_path, fmt, kw):
    rng = random.Random(hash(fmt) % 1000 + len(kw))
    recs = with_random_tos(W.random_records(rng, 1500), rng)
    write = W.write_pcap if fmt == "pcap" else W.write_pcapng
    data = write(tmp_path / f"r.{fmt}", recs, **kw).read_bytes()
    fast, slow = _both(data)
    assert len(fast[0]) == 1500 and fast[1] == PcapFault.OK
    assert np.unique(fast[0].ip_tos).size > 200  # the TOS column was exercised, not all 0
    # and the checksum verdicts: right, a wrong header, a wrong segment, unchecked
    assert set(np.unique(fast[0].csum).tolist()) >= {0, CSUM_IP_BAD, CSUM_L4_BAD, CSUM_UNVERIFIED}
    assert np.count_nonzero(fast[0].icmp_seq) > 50 and np.unique(fast[0].l4_hash).size > 500
    _assert_same(fast, slow)


TSHARK_FIELDS = [
    "frame.number", "frame.time_epoch", "frame.len", "frame.cap_len", "eth.dst", "eth.src", "eth.type",
    "vlan.etype", "vlan.id", "ip.src", "ip.dst", "ip.dsfield", "ip.id", "ip.ttl", "ip.flags.df", "ip.proto",
    "tcp.srcport", "tcp.dstport", "tcp.seq_raw", "tcp.ack_raw", "tcp.flags", "tcp.window_size_value", "tcp.len",
    "tcp.options.mss_val", "tcp.options.wscale.shift", "tcp.options.timestamp.tsval",
    "tcp.options.timestamp.tsecr", "tcp.option_kind", "udp.srcport", "udp.dstport", "arp.opcode",
    "arp.src.hw_mac", "arp.src.proto_ipv4", "arp.dst.hw_mac", "arp.dst.proto_ipv4", "icmp.type", "icmp.code",
    "icmp.ident", "icmp.seq", "ip.checksum.status", "tcp.checksum.status", "udp.checksum.status",
    "icmp.checksum.status",
]
# tshark's checksum verdicts (proto_checksum_enum_e): 0 bad, 1 good, 2 unverified, 3 absent
TSHARK_CSUM_BAD = "0"


def _tshark_rows(path):
    cmd = ["tshark", "-r", str(path), "-T", "fields", "-E", "separator=|", "-E", "occurrence=a",
           "-o", "ip.check_checksum:TRUE", "-o", "tcp.check_checksum:TRUE", "-o", "udp.check_checksum:TRUE"]
    for f in TSHARK_FIELDS:
        cmd += ["-e", f]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return [dict(zip(TSHARK_FIELDS, line.split("|"), strict=True)) for line in out.splitlines()]


def _num(text: str) -> int:
    return int(text, 0)


def _mac_int(text: str) -> int:
    return int(text.replace(":", ""), 16)


@pytest.mark.skipif(shutil.which("tshark") is None, reason="tshark not installed")
@pytest.mark.parametrize("fmt", ["pcap", "pcapng"])
def test_fields_match_tshark_on_random_captures(tmp_path, fmt):
    rng = random.Random(11)
    recs = with_random_tos(W.random_records(rng, 600), rng)
    path = (W.write_pcap if fmt == "pcap" else W.write_pcapng)(tmp_path / f"x.{fmt}", recs, big_endian=True)
    table = read_pcap(path)
    rows = _tshark_rows(path)
    assert len(rows) == len(table)
    checked = {"ip": 0, "tcp": 0, "udp": 0, "arp": 0, "icmp": 0, "csum_bad": 0}
    for i, r in enumerate(rows):
        sec, frac = r["frame.time_epoch"].split(".")
        assert table.time_ns[i] == int(sec) * 10**9 + int(frac.ljust(9, "0")[:9])
        assert (table.frame[i], table.wire_len[i], table.cap_len[i]) == (
            _num(r["frame.number"]), _num(r["frame.len"]), _num(r["frame.cap_len"]))
        layers = Layer(int(table.layers[i]))
        if layers & (Layer.TRUNCATED | Layer.MALFORMED) or not layers & Layer.ETHERNET:
            continue
        assert (table.eth_dst[i], table.eth_src[i]) == (_mac_int(r["eth.dst"]), _mac_int(r["eth.src"]))
        ethertype = (r["vlan.etype"] or r["eth.type"]).split(",")[-1]
        assert table.ethertype[i] == _num(ethertype)
        assert table.vlan[i] == (_num(r["vlan.id"].split(",")[0]) if r["vlan.id"] else 0)
        if layers & Layer.IPV4 and not int(table.csum[i]) & CSUM_UNVERIFIED:
            # the checksums the reader found wrong are the ones tshark finds wrong
            l4_status = r["tcp.checksum.status"] or r["udp.checksum.status"] or r["icmp.checksum.status"]
            assert bool(table.csum[i] & CSUM_IP_BAD) == (r["ip.checksum.status"] == TSHARK_CSUM_BAD), r
            assert bool(table.csum[i] & CSUM_L4_BAD) == (l4_status.split(",")[0] == TSHARK_CSUM_BAD), r
            checked["csum_bad"] += bool(table.csum[i] & (CSUM_IP_BAD | CSUM_L4_BAD))
        if table.csum[i]:
            continue   # a changed byte (a length, a protocol) may stop tshark's dissection early
        if layers & Layer.IPV4:
            checked["ip"] += 1
            assert (table.ip_src[i], table.ip_dst[i]) == (W.ip(r["ip.src"]), W.ip(r["ip.dst"]))
            assert table.ip_tos[i] == _num(r["ip.dsfield"])
            assert (table.ip_id[i], table.ip_ttl[i], table.ip_df[i], table.ip_proto[i]) == (
                _num(r["ip.id"]), _num(r["ip.ttl"]), _num(r["ip.flags.df"]), _num(r["ip.proto"]))
        if layers & Layer.TCP:
            checked["tcp"] += 1
            assert (table.sport[i], table.dport[i], table.tcp_seq[i], table.tcp_ack[i]) == (
                _num(r["tcp.srcport"]), _num(r["tcp.dstport"]), _num(r["tcp.seq_raw"]), _num(r["tcp.ack_raw"]))
            assert (table.tcp_flags[i], table.tcp_window[i], table.payload_len[i]) == (
                _num(r["tcp.flags"]), _num(r["tcp.window_size_value"]), _num(r["tcp.len"]))
            opts = TcpOpt(int(table.tcp_opts[i]))
            assert table.tcp_mss[i] == (_num(r["tcp.options.mss_val"]) if opts & TcpOpt.MSS else 0)
            assert table.tcp_wscale[i] == (_num(r["tcp.options.wscale.shift"]) if opts & TcpOpt.WSCALE else 0)
            if opts & TcpOpt.TIMESTAMP:
                assert (table.tcp_tsval[i], table.tcp_tsecr[i]) == (
                    _num(r["tcp.options.timestamp.tsval"]), _num(r["tcp.options.timestamp.tsecr"]))
            # tshark lists every padding EOL; the reader stops at the first
            kinds = [_num(k) for k in r["tcp.option_kind"].split(",") if k]
            if 0 in kinds:
                kinds = kinds[: kinds.index(0) + 1]
            assert option_kinds(table.tcp_opt_kinds[i], table.tcp_opt_count[i]) == kinds[:8]
            assert table.tcp_opt_count[i] == len(kinds)
        if layers & Layer.UDP:
            checked["udp"] += 1
            assert (table.sport[i], table.dport[i]) == (_num(r["udp.srcport"]), _num(r["udp.dstport"]))
        if layers & Layer.ARP:
            checked["arp"] += 1
            assert table.arp_op[i] == _num(r["arp.opcode"])
            assert (table.arp_sha[i], table.arp_spa[i], table.arp_tha[i], table.arp_tpa[i]) == (
                _mac_int(r["arp.src.hw_mac"]), W.ip(r["arp.src.proto_ipv4"]),
                _mac_int(r["arp.dst.hw_mac"]), W.ip(r["arp.dst.proto_ipv4"]))
        if layers & Layer.ICMP:
            checked["icmp"] += 1
            assert (table.icmp_type[i], table.icmp_code[i]) == (_num(r["icmp.type"]), _num(r["icmp.code"]))
            if r["icmp.ident"]:   # an echo or echo reply whole to its sequence number
                assert (table.icmp_id[i], table.icmp_seq[i]) == (_num(r["icmp.ident"]), _num(r["icmp.seq"]))
    # the comparison must have covered every protocol, not skipped them all
    assert all(n >= 10 for n in checked.values()), checked
