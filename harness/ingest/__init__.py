"""Ingest: captures and logs from a board run -> columnar NumPy tables on one timeline."""

from harness.ingest.pcap import Capture, PacketTable, PcapFault, PcapFormatError, read_capture, read_pcap

__all__ = ["Capture", "PacketTable", "PcapFault", "PcapFormatError", "read_capture", "read_pcap"]
