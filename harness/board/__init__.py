"""Board drivers: one interface (`Board`) for emulated, real and labgrid-lab AST2500 boards."""

from __future__ import annotations

from pathlib import Path

from harness.board.base import Board
from harness.board.boardfile import BoardSpec, emulated_spec, load_board_file
from harness.board.strategy import BoardState, BoardStrategy, Timeouts

__all__ = ["Board", "BoardSpec", "BoardState", "BoardStrategy", "Timeouts", "emulated_spec",
           "load_board_file", "open_board"]


def open_board(spec: BoardSpec, out_dir: Path, log=print, leave_powered: bool = False) -> Board:
    """A driver for `spec`: builds (or takes from the cache) the image of an emulated board,
    acquires the place of a labgrid board (released by the driver's `close()`, which also
    powers off what it powered on unless `leave_powered`: a `bmc-hil power on`)."""
    if spec.kind == "emulated":
        from harness.board.qemu import QemuBoard
        from harness.image import build_image

        image = build_image(spec.image_config or spec.firmware, log=log)
        return QemuBoard(image, out_dir, machine=spec.machine, network=spec.network,
                         declared=spec.firmware, name=spec.name)
    if spec.kind == "labgrid":
        from harness.board.labgrid import LabgridBoard

        return LabgridBoard(spec, out_dir, log=log, leave_powered=leave_powered)
    from harness.board.real import RealBoard

    return RealBoard(spec, out_dir)


def timeouts_for(spec: BoardSpec) -> Timeouts:
    return Timeouts(**spec.timeouts)
