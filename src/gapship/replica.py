"""Offline replicas: a stand-in for the offline target, entered with bubblewrap.

A replica is a root filesystem mounted read-only, a tmpfs /tmp, a writable home owned by the
user (uid 1000), no network, /bin/sh = dash, and none of the builder's files. Debian releases
are debootstrapped (minbase) once and cached outside any project; ``host`` uses this
machine's own root filesystem with the builder's files hidden, and needs no root.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from gapship import ui
from gapship.cache import cache_dir
from gapship.errors import ReplicaError, ToolMissing
from gapship.node import layout
from gapship.tools import tool_path

# the Debian releases (11, 12, 13) a replica is debootstrapped from without naming a mirror
RELEASES = ("bullseye", "bookworm", "trixie")
USER = "user"
UID = 1000
HOME = f"/home/{USER}"
_HIDDEN_ON_HOST = ("/root", "/home", "/tmp", "/var/tmp", "/opt", "/srv", "/mnt", "/media")


def debian_mirror() -> str:
    return os.environ.get("GAPSHIP_DEBIAN_MIRROR", "http://deb.debian.org/debian")


def rootfs_dir(release: str, flavour: str = "") -> Path:
    """Where the rootfs of ``release`` is cached; a ``flavour`` names one with extra packages."""
    return cache_dir() / "rootfs" / (f"{release}-{flavour}" if flavour else release)


def ensure_rootfs(release: str, *, include: tuple[str, ...] = (), flavour: str = "",
                  mirror: str | None = None, script: str | None = None) -> Path:
    """The cached minbase rootfs of a release, debootstrapped on first use (root only).

    ``include`` adds packages (cached apart, under ``flavour``); ``mirror`` is the archive
    for releases other than the Debian ones in RELEASES (Ubuntu); ``script`` the
    debootstrap script to use for a release this debootstrap does not know by name.
    """
    if release not in RELEASES and mirror is None:
        raise ReplicaError(f"unknown replica OS {release!r}.",
                           f"Choose host or one of: {', '.join(RELEASES)}.")
    archive = mirror or debian_mirror()
    dest = rootfs_dir(release, flavour)
    if (dest / "bin" / "sh").exists():
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    with (dest.parent / f".{dest.name}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (dest / "bin" / "sh").exists():
            return dest
        if shutil.which("debootstrap") is None:
            raise ToolMissing(f"debootstrap is needed to build the {release} rootfs.",
                              "Install it (apt-get install debootstrap) or use --os host.")
        if os.geteuid() != 0:
            raise ReplicaError(f"building the {release} rootfs needs root (debootstrap).",
                               f"Run once as root, or use --os host. It is cached in {dest}.")
        tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}-", dir=dest.parent))
        extra = f" with {', '.join(include)}" if include else ""
        ui.step(f"building the {release} rootfs{extra} with debootstrap (once; cached in {dest})")
        cmd = ["debootstrap", "--variant=minbase"]
        if include:
            cmd.append("--include=" + ",".join(include))
        try:
            proc = subprocess.Popen([*cmd, release, str(tmp), archive,
                                     *([script] if script else [])],
                                    stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            assert proc.stdout is not None
            last = ""
            for line in proc.stdout:
                last = line.strip()
                if last.startswith("I: Retrieving") or last.startswith("I: Installing"):
                    ui.err.print(f"    {last[3:]}", end="\r")
            if proc.wait() != 0:
                raise ReplicaError(f"debootstrap of {release} from {archive} failed: {last}",
                                   f"Check that {archive} is reachable (GAPSHIP_DEBIAN_MIRROR "
                                   "or GAPSHIP_UBUNTU_MIRROR sets another).")
            os.replace(tmp, dest)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
    return dest


def describe_rootfs(rootfs: Path) -> str:
    """The OS of a root filesystem as its os-release names it ("Debian GNU/Linux 11
    (bullseye)"), else the directory's name."""
    for rel in ("etc/os-release", "usr/lib/os-release"):
        try:
            text = (rootfs / rel).read_text(encoding="utf-8", errors="replace")
        except OSError:
            continue
        for line in text.splitlines():
            key, _, value = line.partition("=")
            if key == "PRETTY_NAME" and value.strip().strip('"'):
                return value.strip().strip('"')
    return rootfs.name


def _passwd_files(rootfs: Path, scratch: Path) -> tuple[Path, Path]:
    passwd = (rootfs / "etc" / "passwd").read_text(encoding="utf-8")
    group = (rootfs / "etc" / "group").read_text(encoding="utf-8")
    lines = [ln for ln in passwd.splitlines() if ln.split(":")[2:3] != [str(UID)]]
    glines = [ln for ln in group.splitlines() if ln.split(":")[2:3] != [str(UID)]]
    p, g = scratch / "passwd", scratch / "group"
    p.write_text("\n".join([*lines, f"{USER}:x:{UID}:{UID}::{HOME}:/bin/sh"]) + "\n")
    g.write_text("\n".join([*glines, f"{USER}:x:{UID}:"]) + "\n")
    return p, g


@dataclass(frozen=True)
class Replica:
    """An offline stand-in for the target: ``os`` is ``host`` or a Debian release."""

    os: str
    rootfs: Path
    home: Path

    def command(self, argv: Sequence[str], binds: Sequence[tuple[Path, str]] = (),
                env: dict[str, str] | None = None) -> list[str]:
        """The bwrap command line that runs ``argv`` inside this replica as uid 1000."""
        bwrap = shutil.which("bwrap")
        if bwrap is None:
            raise ToolMissing("bubblewrap (bwrap) is needed to enter a replica.",
                              "Install it: apt-get install bubblewrap.")
        scratch = self.home.parent
        passwd, group = _passwd_files(self.rootfs, scratch)
        cmd = [bwrap, "--ro-bind", str(self.rootfs), "/", "--dev", "/dev", "--proc", "/proc"]
        if self.os == "host":
            hidden = [Path(p) for p in _HIDDEN_ON_HOST]
            extra = [Path.home(), cache_dir(), Path.cwd()]
            for path in [*hidden, *extra]:
                if path.is_dir() and str(path) != "/" and not any(
                        path != h and path.is_relative_to(h) for h in hidden):
                    cmd += ["--tmpfs", str(path)]
                    hidden.append(path)
        else:
            cmd += ["--tmpfs", "/tmp", "--tmpfs", "/home"]
        cmd += ["--tmpfs", "/run", "--dir", "/home", "--bind", str(self.home), HOME,
                "--ro-bind", str(passwd), "/etc/passwd", "--ro-bind", str(group), "/etc/group"]
        for src, dest in binds:
            cmd += ["--ro-bind", str(src), dest]
        base_env = {"HOME": HOME, "USER": USER, "LOGNAME": USER, "SHELL": "/bin/sh",
                    "PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8", "TERM": "dumb"}
        base_env.update(env or {})
        cmd += ["--unshare-all", "--unshare-user", "--uid", str(UID), "--gid", str(UID),
                "--hostname", "offline-replica", "--die-with-parent", "--new-session",
                "--cap-drop", "ALL", "--chdir", HOME, "--clearenv"]
        for key, value in base_env.items():
            cmd += ["--setenv", key, value]
        return [*cmd, *argv]

    def run(self, script: str, binds: Sequence[tuple[Path, str]] = (), *, shell: str = "/bin/sh",
            env: dict[str, str] | None = None, timeout: float | None = None,
            capture: bool = True) -> subprocess.CompletedProcess[str]:
        """Run a shell script inside the replica."""
        return subprocess.run(self.command([shell, "-c", script], binds, env), text=True,
                              capture_output=capture, timeout=timeout, check=False,
                              stdin=subprocess.DEVNULL)


@contextmanager
def replica(os_name: str = "host", keep: bool = False, rootfs: Path | None = None
            ) -> Iterator[Replica]:
    """A fresh replica with an empty home; removed afterwards unless ``keep``.

    ``rootfs`` enters a root filesystem that is already there (a twin's, a user's).
    """
    if rootfs is None:
        rootfs = Path("/") if os_name == "host" else ensure_rootfs(os_name)
    scratch = Path(tempfile.mkdtemp(prefix="gapship-replica-"))
    home = scratch / "home"
    home.mkdir(mode=0o755)
    try:
        yield Replica(os=os_name, rootfs=rootfs, home=home)
    finally:
        if keep:
            ui.step(f"the replica's home is kept at {home}")
        else:
            shutil.rmtree(scratch, ignore_errors=True)


@dataclass(frozen=True)
class TryResult:
    """What happened when a bundle was installed and checked inside a replica."""

    os: str
    prefix: str
    install_rc: int
    install_log: str
    doctor_rc: int | None
    doctor_report: dict[str, object] | None
    doctor_text: str

    @property
    def ok(self) -> bool:
        return self.install_rc == 0 and self.doctor_rc == 0


@contextmanager
def _image_mounted(prefix: Path) -> Iterator[list[tuple[Path, str]]]:
    """An image environment (--format squashfs) installed at ``prefix`` in a replica's home:
    bubblewrap's user namespace allows no FUSE mount, so the image is mounted here with
    squashfuse and bound read-only at its mount point in the replica. Nothing for a directory
    environment."""
    image, conf = prefix / layout.IMAGE, prefix / layout.IMAGE_CONF
    if not image.is_file() or not conf.is_file():
        yield []
        return
    mount = next((line.split("=", 1)[1] for line in conf.read_text().splitlines()
                  if line.startswith("mount=")), "")
    fuse = tool_path("squashfuse_ll") or tool_path("squashfuse")
    if not mount or fuse is None:
        raise ReplicaError("cannot try an image bundle here: squashfuse is not installed on "
                           "this builder.", "Install it (apt-get install squashfuse fuse3), "
                           "or try the directory form (pack without --format squashfs).")
    ui.step(f"the image is mounted with squashfuse on this builder (as uid {os.getuid()}) and "
            f"bound at {mount} in the replica: its user namespace allows no FUSE mount")
    here = Path(tempfile.mkdtemp(prefix="gapship-image-"))
    proc = subprocess.run([fuse, str(image), str(here)], capture_output=True, text=True,
                          check=False)
    if proc.returncode != 0:
        here.rmdir()
        raise ReplicaError(f"squashfuse cannot mount {image.name} on this builder: "
                           f"{proc.stderr.strip() or proc.returncode}",
                           "FUSE needs /dev/fuse (as root here), or try the directory form.")
    try:
        yield [(here, mount)]
    finally:
        for umount in ("fusermount3", "fusermount"):
            found = tool_path(umount)
            if found and subprocess.run([found, "-u", str(here)], capture_output=True,
                                        check=False).returncode == 0:
                break
        shutil.rmtree(here, ignore_errors=True)


def try_bundle(bundle: Path, os_name: str = "host", keep: bool = False,
               timeout: float = 1800) -> TryResult:
    """Install ``bundle`` in a fresh offline replica as uid 1000, activate it, run the doctor."""
    bundle = bundle.resolve()
    if not bundle.is_file():
        raise ReplicaError(f"{bundle}: no such bundle.", "Write one with `gapship pack`.")
    name = bundle.name
    env_name = name[:-4] if name.endswith(".run") else name
    prefix = f"{HOME}/envs/{env_name}"
    with replica(os_name, keep=keep) as rep:
        binds = [(bundle, f"{HOME}/{name}")]
        ui.step(f"installing {name} in the {os_name} replica (offline, uid {UID}, / read-only)")
        installed = rep.run(f'sh "$HOME/{name}" --prefix "{prefix}"', binds, timeout=timeout)
        if installed.returncode != 0:
            return TryResult(os_name, prefix, installed.returncode, installed.stderr, None,
                             None, "")
        ui.step("activating it and running gapship-doctor")
        with _image_mounted(rep.home / "envs" / env_name) as mounted:
            doctored = rep.run(f'. "{prefix}/activate" && gapship-doctor --report doctor.json',
                               [*binds, *mounted], timeout=timeout)
        try:
            report = json.loads((rep.home / "doctor.json").read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            report = None
        text = doctored.stdout
        return TryResult(os_name, prefix, 0, installed.stderr, doctored.returncode, report,
                         text + doctored.stderr)
