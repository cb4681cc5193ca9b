"""The emulated board's initramfs: Debian armel busybox + dropbear, and an /init that
applies the firmware config at boot (addresses, MAC, MTU, routes, sysctls, services,
watchdog). Cached under a hash of the recipe, the config and the package versions, so a
config-only change rebuilds in seconds and never touches the kernel."""

from __future__ import annotations

import fcntl
import gzip
import hashlib
import io
import json
import os
import shlex
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import yaml

from harness.errors import ImageBuildError
from harness.image.agent import AGENT_BOARD_PATH, agent_key, build_agent
from harness.paths import cache_dir
from harness.sysdeps import BOARD_ARCH, BOARD_PACKAGES
from models.config import SERVICE_IP_TOS_DEFAULTS, SERVICE_KEEPALIVE_DEFAULTS, ConfigError, FirmwareConfig

INITRAMFS_RECIPE_VERSION = 1
# Printed by /init so the harness can follow the boot; a real firmware prints its own
# lines and the strategy never depends on these (it asks the shell).
MARK_CONFIG = "bmc-hil: firmware config"
MARK_READY = "bmc-hil: services started"
# What Debian 12's dropbear (2022.83) sets with IP_TOS on its listening sockets
# (set_sock_priority(DROPBEAR_PRIO_LOWDELAY): IPTOS_DSCP_AF21); models.config's default.
DROPBEAR_IP_TOS = SERVICE_IP_TOS_DEFAULTS["ssh"]


@dataclass(frozen=True)
class Credentials:
    """How the harness logs in to the emulated board. Never logged or reported."""

    user: str
    password: str
    key_file: Path

    def __repr__(self) -> str:  # keep secrets out of tracebacks and reports
        return f"Credentials(user={self.user!r}, password='***', key_file={str(self.key_file)!r})"


DEFAULT_USER = "root"
# OpenBMC's well-known default; the emulated board is reachable only through loopback.
DEFAULT_PASSWORD = "0penBmc"


def harness_key() -> tuple[Path, str]:
    """The harness's own SSH key pair for the emulated board (made once, cached)."""
    keydir = cache_dir() / "keys"
    keydir.mkdir(exist_ok=True, mode=0o700)
    private = keydir / "id_ed25519"
    public = keydir / "id_ed25519.pub"
    with open(keydir / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)    # two builds at once must not pair one's key with the other's
        if not private.exists() or not public.exists():
            _new_key(private, public)
    return private, public.read_text().strip()


def _new_key(private: Path, public: Path) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
                            serialization.NoEncryption())
    pub = key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    tmp = private.with_suffix(".tmp")
    tmp.write_bytes(pem)
    os.chmod(tmp, 0o600)
    tmp.rename(private)
    public.write_text(pub.decode() + " bmc-hil\n")


def fetch_board_debs(log=print, refresh: bool = False) -> list[Path]:
    """The armel .debs the initramfs is made of, downloaded once and pinned.

    The pinned set is recorded in `debs/manifest.json`, so a cache hit runs no apt
    command; `refresh=True` resolves the current candidates again.
    """
    debdir = cache_dir() / "debs"
    debdir.mkdir(exist_ok=True)
    manifest = debdir / "manifest.json"
    if not refresh and manifest.exists():
        names = json.loads(manifest.read_text())
        paths = [debdir / n for n in names]
        if len(paths) == len(BOARD_PACKAGES) and all(p.exists() for p in paths):
            return paths
    versions = _candidate_versions(BOARD_PACKAGES)
    wanted = [f"{pkg}:{BOARD_ARCH}={versions[pkg]}" for pkg in BOARD_PACKAGES]
    log("initramfs: downloading " + " ".join(wanted))
    with tempfile.TemporaryDirectory(dir=debdir) as tmp:
        proc = subprocess.run(["apt-get", "download", *wanted], cwd=tmp, capture_output=True, text=True)
        if proc.returncode != 0:
            raise ImageBuildError("apt-get download of the board packages failed: "
                                  + proc.stderr.strip()[-2000:]
                                  + f"\n(run `bmc-hil setup`: it enables the {BOARD_ARCH} architecture)")
        names = []
        for deb in sorted(Path(tmp).glob("*.deb")):
            shutil.move(str(deb), debdir / deb.name)
            names.append(deb.name)
    if len(names) != len(BOARD_PACKAGES):
        raise ImageBuildError(f"expected {len(BOARD_PACKAGES)} board packages, apt-get gave {names}")
    manifest.write_text(json.dumps(sorted(names), indent=1) + "\n")
    return [debdir / n for n in sorted(names)]


def _candidate_versions(pkgs) -> dict[str, str]:
    names = [f"{p}:{BOARD_ARCH}" for p in pkgs]
    proc = subprocess.run(["apt-cache", "policy", *names], capture_output=True, text=True)
    versions: dict[str, str] = {}
    current = None
    for line in proc.stdout.splitlines():
        if not line.startswith(" "):
            current = line.rstrip(":").split(":")[0]
        elif line.strip().startswith("Candidate:") and current:
            cand = line.split(":", 1)[1].strip()
            if cand != "(none)":
                versions[current] = cand
    absent = [p for p in pkgs if p not in versions]
    if absent:
        raise ImageBuildError(f"no {BOARD_ARCH} candidate for {', '.join(absent)}; run `bmc-hil setup` "
                              f"(it enables the {BOARD_ARCH} architecture and updates the package lists)")
    return versions


def initramfs_recipe(config: FirmwareConfig, debs: list[Path], pubkey: str, password: str) -> dict:
    return {
        "recipe": INITRAMFS_RECIPE_VERSION,
        # Any change to this recipe's code makes a new image (a rebuild takes seconds).
        "code": hashlib.sha256(Path(__file__).read_bytes()).hexdigest(),
        "init": render_init(config),
        "debs": sorted(p.name for p in debs),
        "authorized_key": pubkey,
        "password_sha256": hashlib.sha256(password.encode()).hexdigest(),
        "agent": agent_key(),
    }


def build_initramfs(config: FirmwareConfig, password: str = DEFAULT_PASSWORD, log=print) -> Path:
    """Return the cached initramfs for `config`, building it (seconds) on a miss."""
    debs = fetch_board_debs(log)
    _, pubkey = harness_key()
    recipe = initramfs_recipe(config, debs, pubkey, password)
    key = hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:16]
    out = cache_dir() / "initramfs" / f"initramfs-{key}.cpio.gz"
    if out.exists():
        return out
    out.parent.mkdir(exist_ok=True)
    log(f"initramfs: building {out.name}")
    with tempfile.TemporaryDirectory(prefix="bmc-hil-rootfs-") as tmp:
        root = Path(tmp) / "root"
        root.mkdir()
        for deb in debs:
            proc = subprocess.run(["dpkg-deb", "-x", str(deb), str(root)], capture_output=True, text=True)
            if proc.returncode != 0:
                raise ImageBuildError(f"dpkg-deb -x {deb.name} failed: {proc.stderr.strip()}")
        _populate(root, config, pubkey, password)
        agent = root / AGENT_BOARD_PATH.lstrip("/")
        shutil.copyfile(build_agent(log), agent)
        agent.chmod(0o755)
        data = _cpio_newc(root)
        tmp_out = out.with_suffix(f".{os.getpid()}.tmp")   # two builds at once each write their own
        with open(tmp_out, "wb") as fh, gzip.GzipFile(fileobj=fh, mode="wb", mtime=0) as gz:
            gz.write(data)
        tmp_out.rename(out)
    return out


def _populate(root: Path, config: FirmwareConfig, pubkey: str, password: str) -> None:
    for d in ("proc", "sys", "dev", "tmp", "run", "root/.ssh", "etc/dropbear", "var/log", "www",
              "bin", "sbin", "usr/bin", "usr/sbin", "etc/bmc-hil"):
        (root / d).mkdir(parents=True, exist_ok=True)
    # Debian's armel libc lives in /lib/arm-linux-gnueabi with the loader at /lib/ld-linux.so.3,
    # which dpkg -x already placed (merged /usr: check both).
    if not (root / "lib").exists() and (root / "usr/lib").exists():
        (root / "lib").symlink_to("usr/lib")
    # Documentation, locales and charset converters: not needed on a BMC, 40% of the size.
    for d in ("usr/share/doc", "usr/share/man", "usr/share/locale", "usr/share/lintian",
              "usr/lib/arm-linux-gnueabi/gconv"):
        shutil.rmtree(root / d, ignore_errors=True)
    init = root / "init"
    init.write_text(render_init(config))
    init.chmod(0o755)
    (root / "etc/passwd").write_text("root:x:0:0:root:/root:/bin/sh\nsshd:x:74:74::/var/empty:/bin/false\n")
    (root / "etc/group").write_text("root:x:0:\n")
    (root / "etc/shadow").write_text(f"root:{_sha512_crypt(password)}:19000:0:99999:7:::\n")
    (root / "etc/shadow").chmod(0o600)
    (root / "etc/shells").write_text("/bin/sh\n")
    (root / "etc/hostname").write_text(config.hostname + "\n")
    (root / "etc/inittab").write_text("::respawn:/bin/cttyhack /bin/sh -l\n::ctrlaltdel:/bin/reboot\n"
                                     "::shutdown:/bin/sync\n")
    (root / "etc/profile").write_text("export PATH=/bin:/sbin:/usr/bin:/usr/sbin\nexport PS1='# '\n")
    (root / "root/.ssh/authorized_keys").write_text(pubkey + "\n")
    (root / "root/.ssh").chmod(0o700)
    (root / "root").chmod(0o700)
    (root / "www/index.html").write_text(f"<html><body>bmc-hil emulated BMC {config.hostname}</body></html>\n")
    (root / "etc/bmc-hil/firmware.yaml").write_text(yaml.safe_dump(config.to_dict(), sort_keys=True))


def _sha512_crypt(password: str) -> str:
    # A fixed salt keeps the image reproducible (the cache key already covers the password).
    salt = hashlib.sha256(b"bmc-hil" + password.encode()).hexdigest()[:16]
    proc = subprocess.run(["openssl", "passwd", "-6", "-salt", salt, "-stdin"], input=password,
                          capture_output=True, text=True)
    if proc.returncode != 0:
        raise ImageBuildError("openssl passwd failed: " + proc.stderr.strip())
    return proc.stdout.strip()


def _cpio_newc(root: Path) -> bytes:
    """Pack `root` as a newc cpio archive owned by root, entries sorted (reproducible)."""
    buf = io.BytesIO()
    ino = 1
    entries = sorted(root.rglob("*"), key=lambda p: str(p.relative_to(root)))
    for path in [root, *entries]:
        rel = "." if path == root else str(path.relative_to(root))
        st = path.lstat()
        if path.is_symlink():
            data = os.readlink(path).encode()
        elif path.is_file():
            data = path.read_bytes()
        else:
            data = b""
        _cpio_entry(buf, rel, st.st_mode, ino, data)
        ino += 1
    _cpio_entry(buf, "TRAILER!!!", 0, 0, b"")
    pad = (-buf.tell()) % 512
    buf.write(b"\0" * pad)
    return buf.getvalue()


def _cpio_entry(buf: io.BytesIO, name: str, mode: int, ino: int, data: bytes) -> None:
    namez = name.encode() + b"\0"
    nlink = 2 if (mode & 0o170000) == 0o040000 else 1
    fields = [ino, mode, 0, 0, nlink, 0, len(data), 0, 0, 0, 0, len(namez), 0]
    buf.write(b"070701" + b"".join(f"{f:08x}".encode() for f in fields))
    buf.write(namez)
    buf.write(b"\0" * ((-buf.tell()) % 4))
    buf.write(data)
    buf.write(b"\0" * ((-buf.tell()) % 4))


def render_init(config: FirmwareConfig) -> str:
    """The board's /init (busybox sh), applying `config`. Part of the cache key.

    Every value from the config is validated again here (a FirmwareConfig may have been
    built by hand, not read by `from_dict`) and shell-quoted where it is written."""
    try:
        FirmwareConfig.from_dict(config.to_dict(), source="firmware config")
    except ConfigError as exc:
        raise ImageBuildError(f"refusing to build an image from an invalid config: {exc}") from exc
    q = shlex.quote
    iface = config.interface
    dev = q(iface.name)
    lines = [
        "#!/bin/busybox sh",
        "# Generated by bmc-hil from the firmware config; see /etc/bmc-hil/firmware.yaml.",
        "/bin/busybox --install -s /bin",
        "export PATH=/bin:/sbin:/usr/bin:/usr/sbin",
        "mount -t proc proc /proc",
        "mount -t sysfs sysfs /sys",
        "mount -t devtmpfs devtmpfs /dev 2>/dev/null",
        "mkdir -p /dev/pts && mount -t devpts devpts /dev/pts",
        "mount -t tmpfs tmpfs /tmp",
        f"hostname {q(config.hostname)}",
        "ip link set lo up",
        f"echo {q(MARK_CONFIG)} {q(f'mac={iface.mac}')} {q(f'address={iface.address}')} {q(f'mtu={iface.mtu}')}",
    ]
    for name, value in sorted(config.sysctls.items()):
        path = "/proc/sys/" + name.replace(".", "/")
        lines.append(f"echo {q(str(value))} > {q(path)}")
        if name.startswith("net.ipv4.neigh.default."):
            # eth0 already exists, so the default template alone would not reach it.
            lines.append(f"echo {q(str(value))} > {q(path.replace('/default/', '/' + iface.name + '/'))}")
    lines += [
        f"ip link set {dev} address {q(iface.mac)}",
        f"ip link set {dev} mtu {q(str(iface.mtu))}",
        f"ip addr add {q(str(iface.address))} dev {dev}",
        f"ip link set {dev} up",
    ]
    if iface.gateway is not None:
        lines.append(f"ip route add default via {q(str(iface.gateway))} dev {dev}")
    for rt in config.routes:
        via = f" via {q(str(rt.gateway))}" if rt.gateway is not None else ""
        lines.append(f"ip route add {q(str(rt.destination))}{via} dev {dev} metric {q(str(rt.metric))}")
    for svc in config.services:
        if not svc.enabled:
            continue
        if svc.keepalive != SERVICE_KEEPALIVE_DEFAULTS[svc.name]:
            # busybox httpd always sets SO_KEEPALIVE on what it accepts, dropbear never: no
            # option of either changes that
            raise ImageBuildError(f"services.{svc.name}.keepalive: the emulated image's "
                                  f"{'httpd' if svc.name == 'http' else 'dropbear'} "
                                  f"{'always' if SERVICE_KEEPALIVE_DEFAULTS[svc.name] else 'never'} sets SO_KEEPALIVE "
                                  f"on the connections it accepts; it cannot be {str(svc.keepalive).lower()}")
        if svc.name == "ssh":
            # -R: make host keys on first use; -E: log to stderr (kept off the console).
            # dropbear sets IP_TOS 0x48 on its listening sockets; -z: none (it stays 0).
            qos = {DROPBEAR_IP_TOS: "", 0: " -z"}.get(svc.ip_tos)
            if qos is None:
                raise ImageBuildError(f"services.ssh.ip_tos: the emulated image's dropbear sets 0x{DROPBEAR_IP_TOS:02x}, "
                                      f"or 0 with -z; it cannot set 0x{svc.ip_tos:02x}")
            lines.append(f"dropbear -R -E{qos} -p {q(str(svc.port))} 2>/var/log/dropbear.log")
        elif svc.name == "http":
            if svc.ip_tos != 0:
                raise ImageBuildError(f"services.http.ip_tos: busybox httpd sets no IP_TOS (0); the emulated image "
                                      f"cannot set 0x{svc.ip_tos:02x}")
            lines.append(f"httpd -p {q(str(svc.port))} -h /www")
    wd = config.watchdog
    if wd.daemon:
        lines.append(f"watchdog -T {q(str(wd.timeout))} -t {q(str(wd.period))} /dev/watchdog")
    ports = ",".join(str(p) for p in config.listening_ports) or "none"
    lines += [
        f"echo {q(MARK_READY)} {q('ports=' + ports)}",
        # busybox init takes over as PID 1: it respawns the console shell and carries out
        # `reboot` / `poweroff` (SIGTERM to a shell as PID 1 would be ignored).
        "exec /bin/busybox init",
        "",
    ]
    return "\n".join(lines)
