"""Wire formats: checked views (header tables with named offsets) and semantic Reprs.

Each Repr has `parse` (raises `WireError` with the kernel's drop reason), `emit` and a
buffer length; a parse that passed its length check does not fail on length later.
"""

from ._header import internet_checksum, ip4, ip4_str, mac_bytes, mac_str
from .arp import ARPOP_REPLY, ARPOP_REQUEST, ArpRepr
from .ethernet import BROADCAST, ETH_P_ARP, ETH_P_IP, EthernetRepr
from .icmp import ICMP_ECHO, ICMP_ECHOREPLY, IcmpRepr
from .ipv4 import IPPROTO_ICMP, IPPROTO_TCP, IPPROTO_UDP, Ipv4Repr
from .tcp import ACK, FIN, PSH, RST, SYN, TcpRepr, linux_options
from .udp import UdpRepr

__all__ = [
    "internet_checksum", "ip4", "ip4_str", "mac_bytes", "mac_str",
    "ARPOP_REPLY", "ARPOP_REQUEST", "ArpRepr",
    "BROADCAST", "ETH_P_ARP", "ETH_P_IP", "EthernetRepr",
    "ICMP_ECHO", "ICMP_ECHOREPLY", "IcmpRepr",
    "IPPROTO_ICMP", "IPPROTO_TCP", "IPPROTO_UDP", "Ipv4Repr",
    "ACK", "FIN", "PSH", "RST", "SYN", "TcpRepr", "linux_options",
    "UdpRepr",
]
