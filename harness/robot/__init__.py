"""Robot Framework library for bmc-hil: `Library    harness.robot.BmcHil    board=emulated`."""

from harness.robot.library import BmcHil

__all__ = ["BmcHil"]
