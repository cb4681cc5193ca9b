"""Ethernet II frames, with an optional 802.1Q tag on parse (include/uapi/linux/if_ether.h)."""

from __future__ import annotations

from dataclasses import dataclass

from ._header import HeaderTable, mac_str, need

__all__ = ["ETH_P_IP", "ETH_P_ARP", "ETH_P_8021Q", "ETH_ZLEN", "ETH_HLEN", "BROADCAST",
           "EthernetRepr", "ETHERNET_HEADER", "eth_type_trans", "ethernet_frame"]

ETH_P_IP = 0x0800
ETH_P_ARP = 0x0806
ETH_P_8021Q = 0x8100
ETH_HLEN = 14
ETH_ZLEN = 60  # eth_skb_pad(): ftgmac100 pads short frames because "the HW doesn't pad"
BROADCAST = b"\xff" * 6

ETHERNET_HEADER = HeaderTable(("dst", "6s"), ("src", "6s"), ("ethertype", "H"))
_VLAN_TAG = HeaderTable(("tci", "H"), ("ethertype", "H"))


@dataclass(slots=True)  # not frozen: frozen __init__ costs ~0.7 us per packet; treat as immutable
class EthernetRepr:
    """An Ethernet II header. `vlan_tci` is the 802.1Q tag control field, if tagged."""

    dst: bytes
    src: bytes
    ethertype: int
    vlan_tci: int | None = None

    @classmethod
    def parse(cls, frame: bytes) -> tuple[EthernetRepr, bytes]:
        """Split a frame into its header and payload; the payload keeps any padding."""
        if len(frame) < ETH_HLEN:
            need(frame, ETH_HLEN, "ethernet header")
        dst, src, ethertype = ETHERNET_HEADER.unpack(frame)
        if ethertype == ETH_P_8021Q:
            need(frame, ETH_HLEN + 4, "802.1Q tag")
            tci, ethertype = _VLAN_TAG.unpack(frame, ETH_HLEN)
            return cls(dst, src, ethertype, tci), bytes(frame[ETH_HLEN + 4:])
        return cls(dst, src, ethertype), bytes(frame[ETH_HLEN:])

    @property
    def buffer_len(self) -> int:
        return ETH_HLEN + (4 if self.vlan_tci is not None else 0)

    def emit(self, payload: bytes, pad: bool = True) -> bytes:
        """Header + payload, zero-padded to ETH_ZLEN as the ftgmac100 driver does."""
        if self.vlan_tci is None:
            return ethernet_frame(self.dst, self.src, self.ethertype, payload, pad)
        # the tag sits where the ethertype was; the frame's ethertype is then 802.1Q's
        return ethernet_frame(self.dst, self.src, ETH_P_8021Q, _VLAN_TAG.pack(self.vlan_tci, self.ethertype) + payload,
                              pad)

    def describe(self) -> str:
        return f"{mac_str(self.src)} > {mac_str(self.dst)} type 0x{self.ethertype:04x}"


# The checked view beside EthernetRepr, for the model's per-frame path: the same checks and
# bytes without building a Repr (tests/models/test_wire.py holds them equal).
def eth_type_trans(frame: bytes) -> tuple[int, bytes]:
    """What eth_type_trans() leaves in skb->protocol and skb->data: the ethertype (an
    802.1Q tag's inner one) and the payload, padding kept. Raises WireError like
    EthernetRepr.parse."""
    if len(frame) < ETH_HLEN:
        need(frame, ETH_HLEN, "ethernet header")
    ethertype = frame[12] << 8 | frame[13]
    if ethertype == ETH_P_8021Q:
        need(frame, ETH_HLEN + 4, "802.1Q tag")
        return frame[16] << 8 | frame[17], bytes(frame[ETH_HLEN + 4:])
    return ethertype, bytes(frame[ETH_HLEN:])


def ethernet_frame(dst: bytes, src: bytes, ethertype: int, payload: bytes, pad: bool = True) -> bytes:
    """EthernetRepr(dst, src, ethertype).emit(payload, pad): an untagged frame, zero-padded
    to ETH_ZLEN as the ftgmac100 driver does (eth_skb_pad)."""
    frame = ETHERNET_HEADER.pack(dst, src, ethertype) + payload
    if pad and len(frame) < ETH_ZLEN:
        frame += bytes(ETH_ZLEN - len(frame))
    return frame
