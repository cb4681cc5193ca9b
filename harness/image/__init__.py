"""The emulated firmware image: a cached kernel plus a per-config initramfs."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from harness.image.initramfs import DEFAULT_PASSWORD, DEFAULT_USER, Credentials, build_initramfs, harness_key
from harness.image.kernel import Kernel, build_kernel
from models.config import FirmwareConfig

__all__ = ["FirmwareImage", "Credentials", "build_image"]


@dataclass(frozen=True)
class FirmwareImage:
    """What QEMU boots: kernel, device trees, initramfs, and the config the image applies."""

    kernel: Kernel
    initramfs: Path
    config: FirmwareConfig
    credentials: Credentials


def build_image(config: FirmwareConfig | None = None, log=print) -> FirmwareImage:
    """Build (or fetch from the cache) the image for `config` (the built-in default if None)."""
    config = config or FirmwareConfig.default()
    kernel = build_kernel(log=log)
    initramfs = build_initramfs(config, DEFAULT_PASSWORD, log=log)
    key_file, _ = harness_key()
    return FirmwareImage(kernel, initramfs, config, Credentials(DEFAULT_USER, DEFAULT_PASSWORD, key_file))
