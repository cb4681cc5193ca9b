"""The emulated firmware image recipe and its cache."""

from __future__ import annotations

import gzip
import subprocess
import time

import pytest

from harness.image import build_image
from harness.image.initramfs import MARK_READY, render_init
from models.config import DEFAULT_CONFIG, FirmwareConfig


def config(**over) -> FirmwareConfig:
    return FirmwareConfig.from_dict({**DEFAULT_CONFIG, **over}, source="<test>")


def test_cache_hit_returns_in_under_a_second(emulated_image):
    start = time.monotonic()
    again = build_image(log=lambda m: None)
    assert time.monotonic() - start < 1.0
    assert again.initramfs == emulated_image.initramfs and again.kernel == emulated_image.kernel


def test_config_only_change_rebuilds_only_the_initramfs(emulated_image):
    start = time.monotonic()
    other = build_image(config(sysctls={"net.ipv4.tcp_synack_retries": 2}), log=lambda m: None)
    assert time.monotonic() - start < 60
    assert other.kernel.directory == emulated_image.kernel.directory
    assert other.initramfs != emulated_image.initramfs


def test_kernel_is_aspeed_g5_defconfig_with_the_drivers_the_board_needs(emulated_image):
    k = emulated_image.kernel
    for option in ("CONFIG_FTGMAC100", "CONFIG_ASPEED_WATCHDOG", "CONFIG_REALTEK_PHY", "CONFIG_NET_NCSI",
                   "CONFIG_DEVTMPFS"):
        assert k.config_value(option) == "y", option
    assert k.config_value("CONFIG_HZ") == "100"
    assert k.zimage.stat().st_size > 1_000_000
    assert k.dtb("ast2500-evb").exists() and k.dtb("romulus-bmc").exists()


def test_the_board_boots_the_zimages_own_image_as_a_uimage_at_the_ast2500s_text_address(emulated_image):
    """The uImage's payload is the xz stream of the zImage's piggy_data that decompresses
    to the size size_append wrote after it; the header is U-Boot's, its CRCs hold."""
    import lzma
    import struct
    import zlib

    k = emulated_image.kernel
    data = k.uimage.read_bytes()
    magic, hcrc, _, size, load, entry, dcrc, os_, arch, kind, comp = struct.unpack(">7I4B", data[:32])
    assert (magic, os_, arch, kind, comp) == (0x27051956, 5, 2, 2, 0)
    assert load == entry == 0x8000_8000 and size == len(data) - 64
    assert hcrc == zlib.crc32(data[:4] + bytes(4) + data[8:64]) and dcrc == zlib.crc32(data[64:])
    zimage = k.zimage.read_bytes()
    pos = zimage.rindex(struct.pack("<I", size))                 # size_append's word
    assert zimage[pos - 2:pos] == b"YZ"                          # right after an xz stream's footer
    start = zimage.rindex(b"\xfd7zXZ\x00", 0, pos)
    assert lzma.decompress(zimage[start:pos], format=lzma.FORMAT_XZ) == data[64:]
    assert size > 2 * len(zimage)                                # the Image, uncompressed


def test_a_zimage_without_an_xz_kernel_or_none_at_all_is_named(tmp_path):
    from harness.errors import ImageBuildError
    from harness.image.kernel import Kernel, boot_uimage

    with pytest.raises(ImageBuildError, match=r"kernel-x/zImage: no xz-compressed kernel Image"):
        boot_uimage(b"\0" * 4096 + b"\xfd7zXZ\x00 not xz at all", "kernel-x/zImage")
    with pytest.raises(ImageBuildError, match=r"nokernel/zImage: cannot read the kernel"):
        _ = Kernel(tmp_path / "nokernel", "x").uimage


def test_initramfs_holds_init_busybox_dropbear_and_the_harness_key(emulated_image):
    data = gzip.decompress(emulated_image.initramfs.read_bytes())
    names = subprocess.run(["cpio", "-t", "--quiet"], input=data, capture_output=True, check=True).stdout.decode().split()
    for path in ("init", "bin/busybox", "usr/sbin/dropbear", "root/.ssh/authorized_keys",
                 "lib/ld-linux.so.3", "etc/shadow", "etc/bmc-hil/firmware.yaml"):
        assert path in names, path
    assert not any(n.startswith("usr/share/doc/") for n in names)


def test_init_applies_sysctls_to_eth0_too_and_leaves_out_disabled_services():
    init = render_init(config(sysctls={"net.ipv4.tcp_syn_retries": 3,
                                       "net.ipv4.neigh.default.base_reachable_time_ms": 10000},
                              services={"ssh": {"port": 2222}, "http": {"enabled": False}},
                              watchdog={"timeout": 7, "daemon": True, "period": 2}))
    assert "echo 3 > /proc/sys/net/ipv4/tcp_syn_retries" in init
    assert "echo 10000 > /proc/sys/net/ipv4/neigh/default/base_reachable_time_ms" in init
    assert "echo 10000 > /proc/sys/net/ipv4/neigh/eth0/base_reachable_time_ms" in init
    assert "dropbear -R -E -p 2222" in init and "httpd" not in init
    assert "watchdog -T 7 -t 2 /dev/watchdog" in init
    assert f"{MARK_READY}' ports=2222" in init


@pytest.mark.parametrize("over", [{"hostname": "bmc-a"}, {"routes": [{"destination": "192.168.9.0/24",
                                                                      "gateway": "10.0.2.3"}]}])
def test_every_config_field_changes_the_init(over):
    assert render_init(config(**over)) != render_init(config())
