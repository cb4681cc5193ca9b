"""RTL8211E register file over MDIO and phylib's status resolution and console strings."""

from __future__ import annotations

from models.phy import (
    BMSR_ANEGCOMPLETE,
    BMSR_LSTATUS,
    LPA_100FULL,
    LPA_100HALF,
    LPA_LPACK,
    LPA_PAUSE_ASYM,
    LPA_PAUSE_CAP,
    MII_ADVERTISE,
    MII_BMSR,
    MII_PHYSID1,
    MII_PHYSID2,
    PhyDevice,
    Rtl8211e,
)


def attached(phy: Rtl8211e | None = None) -> PhyDevice:
    dev = PhyDevice(phy or Rtl8211e())
    dev.attach()
    return dev


def test_phy_ids_are_rtl8211e():
    phy = Rtl8211e()
    assert (phy.mdio_read(MII_PHYSID1), phy.mdio_read(MII_PHYSID2)) == (0x001C, 0xC915)


def test_set_link_down_clears_link_and_autoneg_complete():
    phy = Rtl8211e()
    phy.set_link(False)
    assert phy.mdio_read(MII_BMSR) & (BMSR_LSTATUS | BMSR_ANEGCOMPLETE) == 0


def test_qemu_phy_reset_sets_link_back_on():
    phy = Rtl8211e()
    phy.set_link(False)
    phy.phy_reset()
    assert phy.mdio_read(MII_BMSR) & BMSR_LSTATUS


def test_attach_advertises_pause_and_asym_pause():
    dev = attached()
    assert dev.phy.mdio_read(MII_ADVERTISE) & 0x0C00 == 0x0C00


def test_emulated_phy_resolves_to_100_full_with_rx_tx_flow_control():
    dev = attached()
    assert dev.state_machine() is True
    assert dev.print_status() == "Link is Up - 100Mbps/Full - flow control rx/tx"


def test_no_gigabit_without_extended_status_abilities():
    # QEMU answers 0 for ESTATUS, so the partner's 1000FD in STAT1000 is never read.
    dev = attached()
    dev.state_machine()
    assert dev.status.speed == 100


def test_gigabit_when_estatus_offers_1000_full():
    dev = attached(Rtl8211e(estatus=0x2000))
    dev.state_machine()
    assert dev.print_status() == "Link is Up - 1Gbps/Full - flow control rx/tx"


def test_half_duplex_partner_gives_half_and_no_pause():
    dev = attached(Rtl8211e(lpa=LPA_LPACK | LPA_100HALF | LPA_PAUSE_CAP))
    dev.state_machine()
    assert dev.print_status() == "Link is Up - 100Mbps/Half - flow control off"


def test_partner_with_asym_pause_only_gives_rx():
    dev = attached(Rtl8211e(lpa=LPA_LPACK | LPA_100FULL | LPA_PAUSE_ASYM))
    dev.state_machine()
    assert dev.pause_str() == "rx"


def test_link_loss_is_reported_once_as_down():
    dev = attached()
    dev.state_machine()
    dev.phy.set_link(False)
    assert dev.state_machine() is False and dev.print_status() == "Link is Down"
    assert dev.state_machine() is None


def test_unchanged_link_reports_nothing():
    dev = attached()
    dev.state_machine()
    assert dev.state_machine() is None
