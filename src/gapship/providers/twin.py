"""The twin provider: the target's OS release in a rootfs, and the Python it ships.

This is the manual method automated: the interpreter and its libraries come from the same
distribution release as the target, so its glibc needs are the target's by construction.
Debian and Ubuntu releases are debootstrapped once and cached; a rootfs the user already has
(``--twin-root``) works the same.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from gapship import ui, versions
from gapship.compat import load as load_compat
from gapship.errors import ReplicaError, StageError
from gapship.probe import TargetInfo
from gapship.providers.python import OLDEST_PYTHON, PythonInstall, first_python, query_python
from gapship.replica import ensure_rootfs, replica, rootfs_dir

_DEBOOTSTRAP_SCRIPTS = Path(os.environ.get("DEBOOTSTRAP_DIR", "/usr/share/debootstrap"),
                            "scripts")
# the script debootstrap runs for a release it does not know by name
_FALLBACK_SCRIPT = {"debian": "sid", "ubuntu": "gutsy"}


@dataclass(frozen=True)
class TwinRelease:
    """One distribution release gapship can build a twin of (twin_releases.json)."""

    os: str
    version: str
    codename: str
    python: str
    glibc: str  # from the compat data's OS table
    mirror_kind: str
    packages: tuple[str, ...]

    def describe(self) -> str:
        return f"{self.os.capitalize()} {self.version} ({self.codename})"

    @property
    def mirror(self) -> str | None:
        """The archive to debootstrap from; None: the replica's Debian mirror."""
        if self.mirror_kind == "debian":
            return None
        setting = _mirrors()[self.mirror_kind]
        return os.environ.get(setting["env"], setting["default"])

    @property
    def mirror_setting(self) -> str:
        return ("GAPSHIP_DEBIAN_MIRROR" if self.mirror_kind == "debian"
                else _mirrors()[self.mirror_kind]["env"])


def _data() -> dict[str, object]:
    text = resources.files(__package__).joinpath("twin_releases.json").read_text("utf-8")
    data: dict[str, object] = json.loads(text)
    return data


def _mirrors() -> dict[str, dict[str, str]]:
    mirrors = _data()["mirrors"]
    assert isinstance(mirrors, dict)
    return mirrors


@functools.cache
def releases() -> tuple[TwinRelease, ...]:
    """Every known release, checked on load."""
    raw = _data()["releases"]
    assert isinstance(raw, list)
    out = []
    kinds = {"debian", *_mirrors()}
    for entry in raw:
        os_glibc = load_compat().glibc_of_os(entry["os"], entry["version"])
        release = TwinRelease(os=entry["os"], version=entry["version"],
                              codename=entry["codename"], python=entry["python"],
                              glibc=versions.dotted(os_glibc.glibc) if os_glibc else "",
                              mirror_kind=entry["mirror"], packages=tuple(entry["packages"]))
        if (release.mirror_kind not in kinds or "python3" not in release.packages
                or os_glibc is None):
            raise ValueError(f"twin_releases.json: bad entry for {release.describe()} (its "
                             "glibc must be in compat/data/platforms.json)")
        out.append(release)
    return tuple(out)


def release_for(target: TargetInfo) -> TwinRelease | None:
    """The release the probe found on the target, when gapship knows it."""
    os_id = (target.os_id or "").lower()
    version = target.os_version or ""
    for release in releases():
        if release.os == os_id and versions.matches(version, release.version):
            return release
    return None


def unavailable(target: TargetInfo, minor: str | None, twin_root: Path | None) -> str | None:
    """Why a twin cannot serve this target (None: it can), in a few words."""
    if twin_root is not None:
        return None
    release = release_for(target)
    if release is None:
        os_name = f"{target.os_id or 'an unknown OS'} {target.os_version or ''}".strip()
        return (f"a twin needs a known Debian or Ubuntu release; the target runs {os_name} "
                "(--twin-root DIR takes a rootfs of it)")
    if minor is not None and release.python != minor:
        return f"{release.describe()} ships Python {release.python}, not {minor}"
    if versions.release(release.python) < OLDEST_PYTHON:
        return (f"{release.describe()} ships Python {release.python}; gapship environments "
                "need 3.6 or newer")
    return build_blocker(release)


def build_blocker(release: TwinRelease) -> str | None:
    """What stops this builder from making the twin rootfs (None: it is cached or can be)."""
    if (rootfs_dir(release.codename, "python") / "bin" / "sh").exists():
        return None
    if shutil.which("debootstrap") is None:
        return f"building a {release.codename} twin needs debootstrap on this builder"
    if os.geteuid() != 0:
        return f"building a {release.codename} twin needs root once (debootstrap)"
    return None


def twin_rootfs(release: TwinRelease) -> Path:
    """The cached rootfs of ``release`` with its Python installed (debootstrapped once)."""
    script = None
    if not (_DEBOOTSTRAP_SCRIPTS / release.codename).exists():
        script = str(_DEBOOTSTRAP_SCRIPTS / _FALLBACK_SCRIPT[release.os])
    try:
        return ensure_rootfs(release.codename, include=release.packages, flavour="python",
                             mirror=release.mirror, script=script)
    except ReplicaError as exc:
        raise StageError(
            f"cannot build the {release.describe()} twin: {exc.message}",
            f"Check that the archive is reachable ({release.mirror_setting} sets another), or "
            "pass a rootfs of that release with --twin-root DIR.") from None


def twin_python(rootfs: Path, minor: str | None) -> PythonInstall:
    """The Python of a rootfs, asked by running it inside that rootfs."""
    wanted = f"python{minor}" if minor else "python3"

    def ask(exe: Path) -> PythonInstall | None:
        inside = Path("/", exe.relative_to(rootfs))
        ui.step(f"asking {inside} inside {rootfs} to describe itself")
        with replica("twin", rootfs=rootfs) as rep:
            return query_python(inside, runner=rep.command([]), sysroot=rootfs)

    found = first_python((rootfs / d / wanted for d in ("usr/local/bin", "usr/bin", "bin")),
                         minor, ask)
    if found is not None:
        return found
    raise StageError(f"the rootfs {rootfs} has no working {wanted} in /usr/bin or /usr/local/bin.",
                     "Install it there (apt-get install python3 in the rootfs) or choose "
                     "another --python source.")
