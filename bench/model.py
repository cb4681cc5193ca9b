"""Benchmark: predicted events per second of the stack model on a long scenario.

Ten minutes of board time: a peer pings the board every 2 ms (ICMP echo through
ip_rcv/icmp_echo/neigh/ftgmac100), answers its ARP probes, and the link flaps down for
5 s every minute. Events = inputs applied + outputs predicted. Prints one JSON object.

    python bench/model.py [--minutes 10] [--interval-ms 2] [--describe]
"""

from __future__ import annotations

import argparse
import json
import struct
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from models.board import predict  # noqa: E402
from models.clock import NSEC_PER_MSEC, NSEC_PER_SEC  # noqa: E402
from models.config import FirmwareConfig  # noqa: E402
from models.wire import ArpRepr, EthernetRepr, IcmpRepr, Ipv4Repr, ip4, mac_bytes  # noqa: E402
from models.wire.arp import ARPOP_REPLY, ARPOP_REQUEST  # noqa: E402

PEER_MAC = mac_bytes("52:54:00:12:35:02")
PEER = ip4("10.0.2.2")


def scenario(config: FirmwareConfig, minutes: int, interval_ms: float) -> list[dict]:
    board_mac = mac_bytes(config.interface.mac)
    board = int(config.interface.address.ip)
    arp_req = EthernetRepr(b"\xff" * 6, PEER_MAC, 0x0806).emit(
        ArpRepr(ARPOP_REQUEST, PEER_MAC, PEER, bytes(6), board).emit()).hex()
    arp_rep = EthernetRepr(board_mac, PEER_MAC, 0x0806).emit(
        ArpRepr(ARPOP_REPLY, PEER_MAC, PEER, board_mac, board).emit()).hex()
    inputs: list[dict] = [{"t": 2 * NSEC_PER_SEC, "kind": "frame", "hex": arp_req}]
    end = minutes * 60 * NSEC_PER_SEC
    step = int(interval_ms * NSEC_PER_MSEC)
    t, seq = 3 * NSEC_PER_SEC, 0
    while t < end:
        seq = (seq + 1) & 0xFFFF
        echo = IcmpRepr(8, 0, 0x1234, seq, struct.pack("!Q", t) * 7).emit()
        packet = Ipv4Repr(PEER, board, 1, len(echo), ident=seq, df=False).emit(echo)
        inputs.append({"t": t, "kind": "frame", "hex": EthernetRepr(board_mac, PEER_MAC, 0x0800).emit(packet).hex()})
        t += step
    # the peer answers unicast ARP probes (sent a second or so before; answering often is harmless)
    inputs += [{"t": s * NSEC_PER_SEC + 500 * NSEC_PER_MSEC, "kind": "frame", "hex": arp_rep}
               for s in range(3, minutes * 60)]
    for m in range(1, minutes):
        inputs.append({"t": m * 60 * NSEC_PER_SEC, "kind": "link", "up": False})
        inputs.append({"t": m * 60 * NSEC_PER_SEC + 5 * NSEC_PER_SEC, "kind": "link", "up": True})
    return inputs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=int, default=10)
    ap.add_argument("--interval-ms", type=float, default=2.0)
    ap.add_argument("--describe", action="store_true", help="also decode every predicted frame (slower)")
    args = ap.parse_args()
    config = FirmwareConfig.default()
    inputs = scenario(config, args.minutes, args.interval_ms)
    start = time.perf_counter()
    pred = predict(config, inputs, until=args.minutes * 60 * NSEC_PER_SEC, describe_frames=args.describe)
    wall = time.perf_counter() - start
    events = pred.inputs_processed + len(pred.events)
    kinds: dict[str, int] = {}
    for e in pred.events:
        kinds[e.kind] = kinds.get(e.kind, 0) + 1
    print(json.dumps({
        "benchmark": "models.board.predict",
        "scenario": f"{args.minutes} min, ICMP echo every {args.interval_ms} ms, link down 5 s every minute",
        "board_seconds": args.minutes * 60,
        "inputs": pred.inputs_processed,
        "predicted": kinds,
        "events": events,
        "wall_seconds": round(wall, 3),
        "events_per_second": round(events / wall),
        "target_events_per_second": 200_000,
        "describe_frames": args.describe,
    }, indent=1))


if __name__ == "__main__":
    main()
