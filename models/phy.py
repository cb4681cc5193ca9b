"""The MDIO PHY: an RTL8211E register file and phylib's polling state machine.

`Rtl8211e` holds the registers as QEMU 7.2's ftgmac100 emulates them (hw/net/ftgmac100.c
phy_reset/do_phy_read/do_phy_write); a real board's PHY can be given other link-partner
registers. `PhyDevice` is phylib: genphy_read_abilities at attach, genphy_config_aneg,
then every PHY_STATE_TIME (1 s) _phy_state_machine -> genphy_read_status ->
phy_check_link_status -> phy_link_up/down -> phy_link_change (netif_carrier_on/off) and
the MAC's adjust_link, which prints phy_print_status().
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .clock import HZ, JIFFY

__all__ = [
    "MII_BMCR", "MII_BMSR", "MII_PHYSID1", "MII_PHYSID2", "MII_ADVERTISE", "MII_LPA", "MII_CTRL1000",
    "MII_STAT1000", "MII_ESTATUS", "BMSR_LSTATUS", "BMSR_ANEGCOMPLETE", "Rtl8211e", "PhyDevice", "PhyStatus",
    "PHY_STATE_TIME", "phy_speed_to_str", "phy_duplex_to_str",
]

# include/uapi/linux/mii.h
MII_BMCR, MII_BMSR, MII_PHYSID1, MII_PHYSID2, MII_ADVERTISE, MII_LPA = 0x00, 0x01, 0x02, 0x03, 0x04, 0x05
MII_EXPANSION, MII_CTRL1000, MII_STAT1000, MII_ESTATUS = 0x06, 0x09, 0x0A, 0x0F
BMCR_SPEED1000, BMCR_FULLDPLX, BMCR_ANRESTART, BMCR_ANENABLE, BMCR_SPEED100, BMCR_RESET = (
    0x0040, 0x0100, 0x0200, 0x1000, 0x2000, 0x8000)
BMSR_ERCAP, BMSR_LSTATUS, BMSR_ANEGCAPABLE, BMSR_ANEGCOMPLETE, BMSR_ESTATEN = 0x0001, 0x0004, 0x0008, 0x0020, 0x0100
BMSR_10HALF, BMSR_10FULL, BMSR_100HALF, BMSR_100FULL = 0x0800, 0x1000, 0x2000, 0x4000
BMSR_MFPS = 0x0040   # preamble suppression (QEMU's MII_BMSR_MFPS)
ADVERTISE_CSMA, ADVERTISE_10HALF, ADVERTISE_10FULL, ADVERTISE_100HALF, ADVERTISE_100FULL = (
    0x0001, 0x0020, 0x0040, 0x0080, 0x0100)
ADVERTISE_PAUSE_CAP, ADVERTISE_PAUSE_ASYM, ADVERTISE_LPACK = 0x0400, 0x0800, 0x4000
LPA_10HALF, LPA_10FULL, LPA_100HALF, LPA_100FULL = 0x0020, 0x0040, 0x0080, 0x0100
LPA_PAUSE_CAP, LPA_PAUSE_ASYM, LPA_LPACK = 0x0400, 0x0800, 0x4000
ADVERTISE_1000HALF, ADVERTISE_1000FULL = 0x0100, 0x0200
LPA_1000HALF, LPA_1000FULL, LPA_1000MSFAIL = 0x0400, 0x0800, 0x8000
ESTATUS_1000_THALF, ESTATUS_1000_TFULL = 0x1000, 0x2000
EXPANSION_NWAY = 0x0001

PHY_STATE_TIME = HZ * JIFFY   # include/linux/phy.h: PHY_STATE_TIME HZ

RTL8211E_PHYID1 = 0x001C
RTL8211E_PHYID2 = 0xC915
# QEMU do_phy_write(): MII_ANAR_MASK
_QEMU_ANAR_MASK = 0x2D7F

SPEED_10, SPEED_100, SPEED_1000, SPEED_UNKNOWN = 10, 100, 1000, -1
DUPLEX_HALF, DUPLEX_FULL, DUPLEX_UNKNOWN = 0x00, 0x01, 0xFF


def phy_speed_to_str(speed: int) -> str:
    """drivers/net/phy/phy-core.c phy_speed_to_str() for the speeds a 10/100/1000 PHY has."""
    return {SPEED_10: "10Mbps", SPEED_100: "100Mbps", SPEED_1000: "1Gbps", SPEED_UNKNOWN: "Unknown"}.get(
        speed, "Unsupported (update phy-core.c)")


def phy_duplex_to_str(duplex: int) -> str:
    """phy_duplex_to_str()."""
    return {DUPLEX_HALF: "Half", DUPLEX_FULL: "Full", DUPLEX_UNKNOWN: "Unknown"}.get(
        duplex, "Unsupported (update phy-core.c)")


@dataclass
class Rtl8211e:
    """The PHY's registers over MDIO. `lpa`/`stat1000` are what the link partner offers."""

    link_up: bool = True
    lpa: int = LPA_LPACK | LPA_PAUSE_CAP | LPA_100FULL | LPA_100HALF | LPA_10FULL | LPA_10HALF | ADVERTISE_CSMA
    stat1000: int = LPA_1000FULL
    estatus: int = 0   # QEMU answers 0 for register 15: no 1000BASE-T abilities
    regs: dict[int, int] = field(default_factory=dict)

    def __post_init__(self):
        self.phy_reset()

    def phy_reset(self) -> None:
        """QEMU phy_reset(): also run by a MAC soft reset, and it sets the link bit back
        on whatever set_link said (EMULATION-FACTS: re-assert link-down after a reset)."""
        self.regs = {
            MII_BMCR: BMCR_ANENABLE | BMCR_FULLDPLX | BMCR_SPEED1000,
            MII_BMSR: (BMSR_100FULL | BMSR_100HALF | BMSR_10FULL | BMSR_10HALF | BMSR_ESTATEN | BMSR_MFPS
                       | BMSR_ANEGCOMPLETE | BMSR_ANEGCAPABLE | BMSR_LSTATUS | BMSR_ERCAP),
            MII_ADVERTISE: (ADVERTISE_PAUSE_ASYM | ADVERTISE_PAUSE_CAP | ADVERTISE_100FULL | ADVERTISE_100HALF
                            | ADVERTISE_10FULL | ADVERTISE_10HALF | ADVERTISE_CSMA),
        }
        self.link_up = True

    def set_link(self, up: bool) -> None:
        """QEMU phy_update_link(): autonegotiation status mirrors link status, no interrupt."""
        self.link_up = up
        bits = BMSR_LSTATUS | BMSR_ANEGCOMPLETE
        if up:
            self.regs[MII_BMSR] |= bits
        else:
            self.regs[MII_BMSR] &= ~bits

    def mdio_read(self, reg: int) -> int:
        if reg in (MII_BMCR, MII_BMSR, MII_ADVERTISE):
            return self.regs[reg]
        return {
            MII_PHYSID1: RTL8211E_PHYID1,
            MII_PHYSID2: RTL8211E_PHYID2,
            MII_LPA: self.lpa,
            MII_EXPANSION: EXPANSION_NWAY,
            MII_CTRL1000: ADVERTISE_1000HALF | ADVERTISE_1000FULL,
            MII_STAT1000: self.stat1000,
            MII_ESTATUS: self.estatus,
        }.get(reg, 0)

    def mdio_write(self, reg: int, value: int) -> None:
        if reg == MII_BMCR:
            if value & BMCR_RESET:
                self.phy_reset()
            else:
                self.regs[MII_BMCR] = value & (0x4000 | BMCR_SPEED100 | BMCR_SPEED1000 | BMCR_ANENABLE | 0x0800
                                               | BMCR_FULLDPLX | 0x0080)
                if value & BMCR_ANENABLE:
                    self.regs[MII_BMSR] |= BMSR_ANEGCOMPLETE   # "complete autonegotiation immediately"
        elif reg == MII_ADVERTISE:
            self.regs[MII_ADVERTISE] = (value & _QEMU_ANAR_MASK) | ADVERTISE_100HALF


@dataclass(frozen=True)
class PhyStatus:
    """What genphy_read_status() left in struct phy_device."""

    link: bool
    speed: int = SPEED_UNKNOWN
    duplex: int = DUPLEX_UNKNOWN
    pause: bool = False
    asym_pause: bool = False


# (speed, duplex, our ADVERTISE/CTRL1000 bit, partner LPA/STAT1000 bit), best first:
# phy_resolve_aneg_linkmode() picks the fastest common mode from the settings table.
_MODES = (
    (SPEED_1000, DUPLEX_FULL, ("ctrl1000", ADVERTISE_1000FULL), ("stat1000", LPA_1000FULL)),
    (SPEED_1000, DUPLEX_HALF, ("ctrl1000", ADVERTISE_1000HALF), ("stat1000", LPA_1000HALF)),
    (SPEED_100, DUPLEX_FULL, ("adv", ADVERTISE_100FULL), ("lpa", LPA_100FULL)),
    (SPEED_100, DUPLEX_HALF, ("adv", ADVERTISE_100HALF), ("lpa", LPA_100HALF)),
    (SPEED_10, DUPLEX_FULL, ("adv", ADVERTISE_10FULL), ("lpa", LPA_10FULL)),
    (SPEED_10, DUPLEX_HALF, ("adv", ADVERTISE_10HALF), ("lpa", LPA_10HALF)),
)


class PhyDevice:
    """phylib over one PHY in polling mode (QEMU raises no PHY interrupt)."""

    def __init__(self, phy: Rtl8211e):
        self.phy = phy
        self.link = False
        self.running = False   # PHY_RUNNING vs PHY_NOLINK
        self.status = PhyStatus(False)
        self.gigabit = False
        self.advertise = 0
        self.ctrl1000 = 0

    def attach(self) -> None:
        """phy_attach + genphy_read_abilities + genphy_config_aneg (with phy_support_asym_pause)."""
        bmsr = self.phy.mdio_read(MII_BMSR)
        adv = ADVERTISE_CSMA
        for bit_bmsr, bit_adv in ((BMSR_10HALF, ADVERTISE_10HALF), (BMSR_10FULL, ADVERTISE_10FULL),
                                  (BMSR_100HALF, ADVERTISE_100HALF), (BMSR_100FULL, ADVERTISE_100FULL)):
            if bmsr & bit_bmsr:
                adv |= bit_adv
        self.advertise = adv | ADVERTISE_PAUSE_CAP | ADVERTISE_PAUSE_ASYM
        self.ctrl1000 = 0
        if bmsr & BMSR_ESTATEN:
            est = self.phy.mdio_read(MII_ESTATUS)
            if est & ESTATUS_1000_TFULL:
                self.ctrl1000 |= ADVERTISE_1000FULL
            if est & ESTATUS_1000_THALF:
                self.ctrl1000 |= ADVERTISE_1000HALF
        self.gigabit = bool(self.ctrl1000)
        self.phy.mdio_write(MII_ADVERTISE, self.advertise)
        self.phy.mdio_write(MII_BMCR, self.phy.mdio_read(MII_BMCR) | BMCR_ANENABLE | BMCR_ANRESTART)
        self.link = False
        self.running = False

    def read_status(self) -> PhyStatus:
        """genphy_update_link() + genphy_read_lpa() + phy_resolve_aneg_linkmode/pause."""
        old_link = self.link
        bmsr = self.phy.mdio_read(MII_BMSR)
        link = bool(bmsr & BMSR_LSTATUS) and bool(bmsr & BMSR_ANEGCOMPLETE)
        self.link = link
        if old_link and link:
            return self.status   # "why bother the PHY if nothing can have changed"
        if not link:
            self.status = PhyStatus(False)
            return self.status
        regs = {"adv": self.advertise, "ctrl1000": self.ctrl1000,
                "lpa": self.phy.mdio_read(MII_LPA),
                "stat1000": self.phy.mdio_read(MII_STAT1000) if self.gigabit else 0}
        speed, duplex = SPEED_UNKNOWN, DUPLEX_UNKNOWN
        for sp, dx, (ours, obit), (theirs, tbit) in _MODES:
            if regs[ours] & obit and regs[theirs] & tbit:
                speed, duplex = sp, dx
                break
        pause = duplex == DUPLEX_FULL and bool(regs["lpa"] & LPA_PAUSE_CAP)
        asym = duplex == DUPLEX_FULL and bool(regs["lpa"] & LPA_PAUSE_ASYM)
        self.status = PhyStatus(True, speed, duplex, pause, asym)
        return self.status

    def pause_str(self) -> str:
        """phy_pause_str() (drivers/net/phy/phy.c)."""
        local_pause = bool(self.advertise & ADVERTISE_PAUSE_CAP)
        local_asym = bool(self.advertise & ADVERTISE_PAUSE_ASYM)
        st = self.status
        if local_pause and st.pause:
            return "rx/tx"
        if local_asym and st.asym_pause:
            if local_pause:
                return "rx"
            if st.pause:
                return "tx"
        return "off"

    def print_status(self) -> str:
        """phy_print_status(): the message after the netdev prefix."""
        if self.status.link:
            return (f"Link is Up - {phy_speed_to_str(self.status.speed)}/{phy_duplex_to_str(self.status.duplex)} "
                    f"- flow control {self.pause_str()}")
        return "Link is Down"

    def state_machine(self) -> bool | None:
        """One _phy_state_machine() poll: True = phy_link_up, False = phy_link_down, None = no change."""
        self.read_status()
        if self.link and not self.running:
            self.running = True
            return True
        if not self.link and self.running:
            self.running = False
            return False
        return None
