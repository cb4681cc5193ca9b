"""`bmc-hil setup`: the system packages the harness needs, installed through apt.

Idempotent: when everything is present it only runs `dpkg-query` and returns in well under
a second. Without root it prints the exact commands to run instead.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
from dataclasses import dataclass

from harness.errors import SetupError

# Host packages, with why each is needed.
HOST_PACKAGES: dict[str, str] = {
    "qemu-system-arm": "the emulated AST2500 (machines ast2500-evb, romulus-bmc)",
    "tshark": "capture dissection and the cross-check of the pcap reader",
    "gcc-arm-linux-gnueabi": "cross compiler for the board's kernel and the pkt syscall agent",
    "libc6-dev-armel-cross": "the C library the pkt syscall agent is linked against (statically)",
    "linux-source-6.1": "Debian's Linux 6.1 source, built for the emulated board",
    "gcc": "the kernel build's host tools, and the pkt agent built natively for its tests",
    "make": "kernel build",
    "bc": "kernel build",
    "flex": "kernel build",
    "bison": "kernel build",
    "libssl-dev": "kernel build (certificate tools)",
    "cpio": "packing the initramfs",
    "xz-utils": "unpacking the kernel source",
    "openssl": "hashing the board's root password for /etc/shadow",
    "iproute2": "network namespaces for host-kernel conformance tests",
    "chromium": "headless rendering of the HTML reports in their tests (screenshot, links)",
    "ser2net": "the console server of a lab bench: an emulated board exported as a labgrid place",
}
# Debian armel packages unpacked into the board's initramfs (never installed on the host).
BOARD_ARCH = "armel"
BOARD_PACKAGES: tuple[str, ...] = (
    "busybox-static", "dropbear-bin", "libc6", "zlib1g", "libcrypt1",
    "libtomcrypt1", "libtommath1", "libgmp10",
)


@dataclass(frozen=True)
class Plan:
    """What setup would do: missing host packages and whether armel must be enabled."""

    missing: tuple[str, ...]
    add_arch: bool

    @property
    def empty(self) -> bool:
        return not self.missing and not self.add_arch

    def commands(self) -> list[list[str]]:
        cmds: list[list[str]] = []
        if self.add_arch:
            cmds.append(["dpkg", "--add-architecture", BOARD_ARCH])
        if self.missing or self.add_arch:
            cmds.append(["apt-get", "update"])
        if self.missing:
            cmds.append(["apt-get", "install", "-y", "--no-install-recommends", *self.missing])
        return cmds


def installed_packages(names) -> set[str]:
    """The subset of `names` that dpkg reports as installed."""
    if shutil.which("dpkg-query") is None:
        raise SetupError("dpkg-query not found: bmc-hil setup supports Debian-based machines only")
    proc = subprocess.run(["dpkg-query", "-W", "-f=${Package} ${db:Status-Status}\n", *names],
                          capture_output=True, text=True)
    ok = set()
    for line in proc.stdout.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1] == "installed":
            ok.add(parts[0])
    return ok


def foreign_architectures() -> set[str]:
    proc = subprocess.run(["dpkg", "--print-foreign-architectures"], capture_output=True, text=True)
    return set(proc.stdout.split())


def plan() -> Plan:
    have = installed_packages(HOST_PACKAGES)
    missing = tuple(p for p in HOST_PACKAGES if p not in have)
    return Plan(missing=missing, add_arch=BOARD_ARCH not in foreign_architectures())


def run_setup(log=print, dry_run: bool = False) -> Plan:
    """Install what is missing (as root), or raise SetupError with the commands to run."""
    todo = plan()
    if todo.empty:
        log("setup: all system packages present")
        return todo
    cmds = todo.commands()
    text = "\n".join("  " + shlex.join(c) for c in cmds)
    if dry_run:
        log("setup would run:\n" + text)
        return todo
    if os.geteuid() != 0:
        raise SetupError("bmc-hil setup needs root to install system packages; run these as root:\n"
                         + "\n".join("  sudo " + shlex.join(c) for c in cmds))
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    for cmd in cmds:
        log("setup: " + shlex.join(cmd))
        proc = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        if proc.returncode != 0:
            tail = "\n".join(proc.stdout.splitlines()[-20:])
            raise SetupError(f"`{shlex.join(cmd)}` failed (exit {proc.returncode}):\n{tail}")
    after = plan()
    if not after.empty:
        raise SetupError(f"setup finished but still missing: {', '.join(after.missing) or 'armel architecture'}")
    return todo
