"""ftgmac100: carrier gating of TX, the TX ring threshold, the netdev watchdog, RX filtering, NAPI."""

from __future__ import annotations

from models.clock import sec
from models.ftgmac100 import DEF_TX_QUEUE_ENTRIES, TX_THRESHOLD, Ftgmac100
from models.wire import mac_bytes

MAC = mac_bytes("52:54:00:12:34:56")
FRAME = b"\xff" * 6 + MAC + b"\x08\x06" + bytes(46)


def up_mac() -> Ftgmac100:
    mac = Ftgmac100(MAC)
    mac.open(0)
    mac.carrier_on(0)
    return mac


def test_ring_sizes_are_the_driver_defaults():
    assert (DEF_TX_QUEUE_ENTRIES, TX_THRESHOLD) == (128, 18)


def test_tx_goes_to_wire_with_carrier():
    assert up_mac().dev_queue_xmit(0, FRAME) == [FRAME]


def test_tx_is_dropped_while_carrier_is_off():
    mac = up_mac()
    mac.carrier_off(sec(1))
    assert mac.dev_queue_xmit(sec(1), FRAME) == []
    assert mac.drops[-1][1] == "SKB_DROP_REASON_QDISC_DROP"


def test_stalled_tx_dma_stops_the_queue_below_threshold():
    mac = up_mac()
    mac.tx_dma_enabled = False
    for _ in range(DEF_TX_QUEUE_ENTRIES - TX_THRESHOLD):
        mac.dev_queue_xmit(0, FRAME)
    assert mac.queue_stopped and len(mac.tx_ring) == DEF_TX_QUEUE_ENTRIES - TX_THRESHOLD


def test_netdev_watchdog_times_out_a_queue_stopped_over_5_s():
    mac = up_mac()
    mac.tx_dma_enabled = False
    for _ in range(120):
        mac.dev_queue_xmit(sec(1), FRAME)
    lines = []
    while not lines:
        lines = mac.dev_watchdog(mac.poll_at())
    (line,) = lines
    assert line.text.startswith("ftgmac100 1e660000.ethernet eth0: NETDEV WATCHDOG: CPU: 0: transmit queue 0 timed out ")
    assert line.text.endswith(f" {(line.at - sec(1)) // 1_000_000} ms") and line.at - sec(1) > sec(5)
    assert not mac.queue_stopped and mac.tx_dma_enabled and mac.tx_ring == []


def test_watchdog_is_silent_while_the_queue_runs():
    mac = up_mac()
    mac.dev_queue_xmit(0, FRAME)
    assert mac.dev_watchdog(mac.poll_at()) == []


def test_rx_filter_drops_unicast_for_another_host():
    mac = up_mac()
    assert not mac.rx_frame(0, mac_bytes("52:54:00:00:00:01") + FRAME[6:])
    assert mac.drops[-1][1] == "SKB_DROP_REASON_OTHERHOST"


def test_rx_is_lost_while_carrier_is_off():
    mac = up_mac()
    mac.carrier_off(0)
    assert not mac.rx_frame(0, FRAME)


def test_napi_poll_takes_at_most_the_budget():
    mac = up_mac()
    for _ in range(100):
        mac.rx_frame(0, FRAME)
    assert len(mac.ftgmac100_poll()) == 64 and len(mac.ftgmac100_poll()) == 36


def test_rx_ring_overflow_drops():
    mac = up_mac()
    accepted = sum(mac.rx_frame(0, FRAME) for _ in range(130))
    assert accepted == 128
