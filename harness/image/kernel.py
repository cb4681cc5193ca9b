"""Linux 6.1 for the AST2500, built from Debian's kernel source with the kernel's own
`aspeed_g5_defconfig`. Built once per kernel recipe, cached under its hash."""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import tarfile
from dataclasses import dataclass
from pathlib import Path

from harness.errors import ImageBuildError
from harness.paths import cache_dir

SOURCE_PACKAGE = "linux-source-6.1"
SOURCE_TARBALL = Path("/usr/src/linux-source-6.1.tar.xz")
CROSS_COMPILE = "arm-linux-gnueabi-"
DEFCONFIG = "aspeed_g5_defconfig"
# In 6.1 the ASPEED device trees still sit flat in arch/arm/boot/dts/.
DTBS = {
    "ast2500-evb": "aspeed-ast2500-evb.dtb",   # MAC0 with an MDIO PHY (RTL8211E in QEMU)
    "romulus-bmc": "aspeed-bmc-opp-romulus.dtb",  # MAC0 on NC-SI
}
# Bump when the recipe below changes in a way that changes the output.
KERNEL_RECIPE_VERSION = 1


@dataclass(frozen=True)
class Kernel:
    """A built kernel: zImage, the device trees by QEMU machine name, and its .config."""

    directory: Path
    recipe_hash: str

    @property
    def zimage(self) -> Path:
        return self.directory / "zImage"

    @property
    def config(self) -> Path:
        return self.directory / "config"

    @property
    def uimage(self) -> Path:
        """What the emulated board boots: the same kernel, uncompressed, as a U-Boot legacy
        image (derived from the zImage once, kept beside it). See `boot_uimage`."""
        path = self.directory / "uImage"
        if not path.exists():
            try:
                zimage = self.zimage.read_bytes()
            except OSError as exc:
                raise ImageBuildError(f"{self.zimage}: cannot read the kernel ({exc.strerror}); "
                                      f"`bmc-hil image build` builds it") from exc
            tmp = path.with_name(f".uImage.{os.getpid()}")
            tmp.write_bytes(boot_uimage(zimage, str(self.zimage)))
            os.replace(tmp, path)   # atomic: another process may be deriving it too
        return path

    def dtb(self, machine: str) -> Path:
        if machine not in DTBS:
            raise KeyError(f"no device tree for machine {machine!r}; known: {', '.join(DTBS)}")
        return self.directory / DTBS[machine]

    def config_value(self, name: str) -> str | None:
        """A `CONFIG_*` value of the built kernel, e.g. `config_value('CONFIG_HZ')`."""
        for line in self.config.read_text().splitlines():
            if line.startswith(name + "="):
                return line.split("=", 1)[1].strip('"')
        return None


# The AST2500's SDRAM starts at 0x80000000 (aspeed-g5.dtsi memory@80000000) and an ARM
# kernel Image runs TEXT_OFFSET (0x8000, arch/arm/Makefile textofs-y) above it.
AST2500_RAM_BASE = 0x8000_0000
ARM_TEXT_OFFSET = 0x8000
IH_MAGIC, IH_OS_LINUX, IH_ARCH_ARM, IH_TYPE_KERNEL, IH_COMP_NONE = 0x27051956, 5, 2, 2, 0
XZ_MAGIC = b"\xfd7zXZ\x00"


def boot_uimage(zimage: bytes, source: str = "zImage") -> bytes:
    """The kernel Image out of a zImage, as a U-Boot legacy uImage that QEMU's loader puts
    at its load address and enters with the Linux boot protocol (r2: the device tree), as
    U-Boot does on a real BMC. It is the same kernel: under TCG the zImage's own xz
    decompressor takes seconds of every boot, which QEMU's loader does not.

    arch/arm/boot/compressed/Makefile builds piggy_data as the Image compressed with xz
    (CONFIG_KERNEL_XZ: cmd_xzkern) followed by its size (size_append: 4 bytes, little
    endian); the stream whose decompressed length is that size is the Image."""
    import lzma
    import struct
    import zlib

    at = zimage.find(XZ_MAGIC)
    while at >= 0:
        d = lzma.LZMADecompressor(format=lzma.FORMAT_XZ)
        try:
            image = d.decompress(zimage[at:])
        except lzma.LZMAError:
            image = b""
        end = len(zimage) - len(d.unused_data)
        if image and d.eof and zimage[end:end + 4] == struct.pack("<I", len(image)):
            break
        at = zimage.find(XZ_MAGIC, at + 1)
    else:
        raise ImageBuildError(f"{source}: no xz-compressed kernel Image followed by its size in it "
                              f"(expected CONFIG_KERNEL_XZ's piggy_data)")
    load = AST2500_RAM_BASE + ARM_TEXT_OFFSET
    name = b"Linux (bmc-hil)".ljust(32, b"\0")

    def header(hcrc: int) -> bytes:
        return struct.pack(">7I4B32s", IH_MAGIC, hcrc, 0, len(image), load, load, zlib.crc32(image),
                           IH_OS_LINUX, IH_ARCH_ARM, IH_TYPE_KERNEL, IH_COMP_NONE, name)

    return header(zlib.crc32(header(0))) + image


def source_version() -> str:
    """The Debian version of the installed kernel source package."""
    try:
        out = subprocess.run(["dpkg-query", "-W", "-f=${Version}", SOURCE_PACKAGE],
                             capture_output=True, text=True, check=False)
    except FileNotFoundError as exc:
        raise ImageBuildError("dpkg-query not found: the image recipe needs Debian's packages") from exc
    if out.returncode != 0 or not out.stdout.strip() or not SOURCE_TARBALL.exists():
        raise ImageBuildError(f"{SOURCE_PACKAGE} is not installed ({SOURCE_TARBALL} missing); "
                              "run `bmc-hil setup` first")
    return out.stdout.strip()


def kernel_recipe() -> dict:
    """Everything that decides the kernel's bytes; its hash names the cache entry."""
    return {
        "recipe": KERNEL_RECIPE_VERSION,
        "source": SOURCE_PACKAGE,
        "source_version": source_version(),
        "defconfig": DEFCONFIG,
        "cross_compile": CROSS_COMPILE,
        "targets": ["zImage", *sorted(DTBS.values())],
    }


def recipe_hash(recipe: dict) -> str:
    return hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:16]


def cached_kernel() -> Kernel | None:
    """The cached kernel for the current recipe, or None (never builds)."""
    key = recipe_hash(kernel_recipe())
    directory = cache_dir() / f"kernel-{key}"
    if (directory / "recipe.json").exists():
        return Kernel(directory, key)
    return None


def build_kernel(log=print, jobs: int | None = None) -> Kernel:
    """Return the cached kernel for the current recipe, building it on a miss."""
    recipe = kernel_recipe()
    key = recipe_hash(recipe)
    final = cache_dir() / f"kernel-{key}"
    if (final / "recipe.json").exists():
        return Kernel(final, key)
    cache_dir().mkdir(parents=True, exist_ok=True)
    # Two builds of one recipe at once (two terminals, two test sessions) would share and
    # delete each other's build tree: the second waits for the first, then takes its result.
    with open(cache_dir() / f"kernel-{key}.lock", "w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log(f"kernel: another build of recipe {key} is running; waiting for it")
            fcntl.flock(lock, fcntl.LOCK_EX)
        if (final / "recipe.json").exists():
            return Kernel(final, key)
        return _build_locked(recipe, key, final, log, jobs)


def _build_locked(recipe: dict, key: str, final: Path, log, jobs: int | None) -> Kernel:
    work = cache_dir() / f"kernel-{key}.build"
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    build_log = cache_dir() / f"kernel-{key}.log"
    src = work / "src"
    log(f"kernel: extracting {SOURCE_TARBALL.name} (recipe {key})")
    with tarfile.open(SOURCE_TARBALL) as tar:
        members = []
        for m in tar.getmembers():
            # Strip the top folder; the tarball is Debian's own but filter anyway.
            parts = m.name.split("/", 1)
            if len(parts) < 2 or not parts[1]:
                continue
            m.name = parts[1]
            members.append(m)
        tar.extractall(src, members=members, filter="data")

    jobs = jobs or os.cpu_count() or 2
    env = dict(os.environ, ARCH="arm", CROSS_COMPILE=CROSS_COMPILE,
               KBUILD_BUILD_USER="bmc-hil", KBUILD_BUILD_HOST="bmc-hil",
               KBUILD_BUILD_TIMESTAMP="2023-01-01")
    steps = [
        ["make", DEFCONFIG],
        ["make", f"-j{jobs}", "zImage", *sorted(DTBS.values())],
    ]
    with open(build_log, "w") as out:
        for step in steps:
            log(f"kernel: {' '.join(step)} (log: {build_log})")
            try:
                proc = subprocess.run(step, cwd=src, env=env, stdout=out, stderr=subprocess.STDOUT)
            except FileNotFoundError as exc:
                raise ImageBuildError(f"{step[0]} not found; run `bmc-hil setup` first", build_log) from exc
            if proc.returncode != 0:
                out.flush()
                raise ImageBuildError(f"kernel build step `{' '.join(step)}` failed "
                                      f"(exit {proc.returncode})", build_log, _tail(build_log))

    out_dir = work / "out"
    out_dir.mkdir()
    shutil.copy2(src / "arch/arm/boot/zImage", out_dir / "zImage")
    for dtb in DTBS.values():
        shutil.copy2(src / "arch/arm/boot/dts" / dtb, out_dir / dtb)
    shutil.copy2(src / ".config", out_dir / "config")
    shutil.copy2(build_log, out_dir / "build.log")
    (out_dir / "recipe.json").write_text(json.dumps(recipe, indent=2, sort_keys=True) + "\n")
    if final.exists():
        shutil.rmtree(final)
    out_dir.rename(final)
    shutil.rmtree(work, ignore_errors=True)
    build_log.unlink(missing_ok=True)
    log(f"kernel: built {final}")
    return Kernel(final, key)


def _tail(path: Path, lines: int = 25) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""
