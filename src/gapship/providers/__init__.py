"""Which interpreter ships: the choice among the providers, and why.

Sources, and what each gives:
- ``host``: the builder's own interpreter (when its glibc needs are within the target's);
- ``standalone``: python-build-standalone (glibc 2.17 baseline), from ``--python-archive``
  or ``uv python install``;
- ``target``: the Python the probe found on the target; only the packages ship;
- ``twin``: the target's OS release in a rootfs, and the Python that release ships;
- ``build``: CPython compiled from source with zig for the target's glibc (2.17 at the
  oldest): any version whose source gapship pins or the user gives; the slowest, once;
- a path: any Python prefix or archive.
``auto`` takes the first of host, standalone, target, twin, build that can serve the target
and says why; when none can, one message says what each would need.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path, PurePosixPath

from gapship import ui, versions
from gapship.compat import is_system_library
from gapship.errors import GapshipError, StageError
from gapship.files import sha256_file
from gapship.node.elf import GLIBC, VersionNeeds, iter_elf_paths, version_needs
from gapship.node.loader import Loader
from gapship.probe import TargetInfo
from gapship.providers import build, twin
from gapship.providers.python import (
    OLDEST_PYTHON,
    Interpreter,
    PythonInstall,
    TargetPython,
    find_host_python,
)
from gapship.providers.standalone import from_archive, from_path, from_uv, uv_downloadable
from gapship.spec import PythonSpec

AUTO_ORDER = ("host", "standalone", "target", "twin", "build")


@dataclass(frozen=True)
class PythonLocator:
    """Where a chosen interpreter was found, so that a lock finds the same one again.

    ``source`` is host, standalone, target, twin or a path; what each needs besides the
    version: standalone from a file its ``archive`` (absolute) and ``archive_sha256``; twin
    its ``twin_root`` (--twin-root, absolute) or the ``twin_release`` (codename) that was
    debootstrapped; a path source its absolute ``path``.
    """

    source: str
    version: str
    archive: str | None = None
    archive_sha256: str | None = None
    twin_root: str | None = None
    twin_release: str | None = None
    path: str | None = None

    def without_paths(self) -> PythonLocator:
        """What stays true away from this builder: the source, version, archive sha256 and
        twin release, without the builder's paths."""
        return PythonLocator(self.source, self.version, archive_sha256=self.archive_sha256,
                             twin_release=self.twin_release)

    def describe(self) -> str:
        """A few words for messages: `twin (--twin-root /srv/bionic)`."""
        where = (f"--python-archive {self.archive}" if self.archive else
                 f"--twin-root {self.twin_root}" if self.twin_root else
                 f"the {self.twin_release} twin" if self.twin_release else self.path)
        return f"{self.source} ({where})" if where and where != self.source else self.source


@dataclass(frozen=True)
class PythonChoice:
    """The interpreter that ships (or, for ``target``, that the environment is tied to)."""

    source: str
    interpreter: Interpreter
    reason: str
    locator: PythonLocator | None = None

    @property
    def version(self) -> str:
        return self.interpreter.version


class Unavailable(StageError):
    """One source cannot serve this target; ``message`` says why, in a few words."""


def interpreter_needs(python: PythonInstall) -> VersionNeeds:
    """The GLIBC_/GLIBCXX_ needs of an interpreter and the libraries it would graft."""
    elf_files = [python.executable]
    for libdir in {python.stdlib, python.platstdlib}:
        elf_files += sorted(Path(p) for p in iter_elf_paths(libdir / "lib-dynload"))
    elf_files += sorted((python.prefix / "lib").glob("libpython3*.so*"))
    real = list(dict.fromkeys(p.resolve() for p in elf_files if p.exists()))
    closure = Loader("", sysroot=python.sysroot).closure(real, skip=is_system_library)
    return version_needs({p: p.name for p in [*real, *map(Path, closure)]}, is_system_library)


def glibc_misfit(python: PythonInstall, target: TargetInfo) -> str | None:
    """Why ``python`` cannot run on the target (glibc, libstdc++), or None when it can."""
    needs = interpreter_needs(python)
    for misfit in needs.misfits(target.glibc_version, target.glibcxx_version):
        needed = f"Python {python.version} needs {misfit.family}_{versions.dotted(misfit.newest)}"
        if misfit.family == GLIBC:
            return f"{needed}; the target has {target.glibc}"
        return f"{needed}; the target's libstdc++ has {target.glibcxx}"
    return None


def _fitting(python: PythonInstall, target: TargetInfo) -> PythonInstall:
    if target.libc_family != "glibc":
        raise Unavailable(f"the target's C library is {target.libc_family or 'unknown'}; this "
                          "interpreter is built for glibc")
    misfit = glibc_misfit(python, target)
    if misfit:
        raise Unavailable(misfit)
    return python


def target_python(target: TargetInfo, minor: str | None) -> TargetPython:
    """The probe's Python of version ``minor`` (else the newest 3.6+) on the target."""
    found = [(p.version, p.path) for p in target.pythons
             if p.version[:2] >= OLDEST_PYTHON and minor in (None, p.minor)]
    if not found:
        listed = ", ".join(f"{p.version_text} ({p.path})" for p in target.pythons)
        wanted = f"Python {minor}" if minor else "Python 3.6 or newer"
        raise Unavailable(f"the probe found no {wanted} on the target"
                          + (f" (it has {listed})" if listed else ""))
    newest = max(key for key, _ in found)

    def preference(path: str) -> tuple[bool, int, str]:
        # python3.9 names one interpreter for good; python3 may change with the OS
        name = PurePosixPath(path).name
        return (name != f"python{versions.dotted(newest[:2])}", len(path), path)

    path = min((p for key, p in found if key == newest), key=preference)
    return TargetPython(version=versions.dotted(newest), executable=PurePosixPath(path))


def _standalone(want: PythonSpec, target: TargetInfo, auto: bool) -> PythonInstall:
    if want.archive:
        return _fitting(from_archive(Path(want.archive).expanduser(), want.version), target)
    minor = want.version or (find_host_python(None).minor if auto else None)
    if minor is None:
        raise Unavailable("say which version: --python standalone:3.X, or give "
                          "--python-archive FILE")
    if not uv_downloadable(minor):
        raise Unavailable(f"python-build-standalone has no {minor} build for this uv; give "
                          "--python-archive FILE")
    return _fitting(from_uv(minor), target)


def _twin(want: PythonSpec, target: TargetInfo) -> PythonInstall:
    root = Path(want.twin_root).expanduser() if want.twin_root else None
    if root is None and target.libc_family != "glibc":
        raise Unavailable(f"the target's C library is {target.libc_family or 'unknown'}; twins "
                          "are Debian and Ubuntu releases")
    why = twin.unavailable(target, want.version, root)
    if why:
        raise Unavailable(why)
    if root is None:
        release = twin.release_for(target)
        assert release is not None
        ui.step(f"twin: {release.describe()} with its python3 (Python {release.python}, "
                f"glibc {release.glibc})")
        root = twin.twin_rootfs(release)
    elif not (root / "usr").is_dir():
        raise StageError(f"--twin-root {root} is not a root filesystem (no usr/ in it).",
                         "Give the directory that holds the rootfs of the target's release.")
    return twin.twin_python(root, want.version)


def _host(want: PythonSpec, target: TargetInfo, auto: bool) -> PythonInstall:
    try:
        python = find_host_python(want.version)
    except StageError as exc:
        raise Unavailable(exc.message) from None
    return _fitting(python, target) if auto else python


def _build_release(want: PythonSpec, usable: tuple[str, ...] | None) -> str | None:
    """The release a build would give: the one asked for, else the newest pinned release of
    the version asked (or of the newest version the framework runs on)."""
    if want.release or want.tarball:
        return want.release or want.version
    minors = [want.version] if want.version else list(reversed(usable or ()))
    for minor in minors:
        pinned = build.pinned_python(minor)
        if pinned is not None:
            return pinned.version
    if not minors:  # any version: the newest pinned
        newest = max(build.python_sources(), key=versions.release, default=None)
        return newest
    return want.version


def _build(want: PythonSpec, target: TargetInfo, usable: tuple[str, ...] | None
           ) -> PythonInstall:
    if target.libc_family != "glibc":
        raise Unavailable(f"the target's C library is {target.libc_family or 'unknown'}; builds "
                          "are for glibc")
    release = _build_release(want, usable)
    tarball = Path(want.tarball).expanduser() if want.tarball else None
    deps = Path(want.deps_source).expanduser() if want.deps_source else None
    try:
        python = build.build_python(release, target.glibc_version, python_tarball=tarball,
                                    deps_source=deps, offline=deps is not None)
    except build.BuildError as exc:
        raise Unavailable(exc.message) from None
    return _fitting(python, target)


def _provide(source: str, want: PythonSpec, target: TargetInfo, auto: bool,
             usable: tuple[str, ...] | None = None) -> Interpreter:
    if source == "host":
        return _host(want, target, auto)
    if source == "standalone":
        return _standalone(want, target, auto)
    if source == "target":
        return target_python(target, want.version)
    if source == "twin":
        return _twin(want, target)
    if source == "build":
        return _build(want, target, usable)
    return from_path(Path(source).expanduser(), want.version)


def _locator(source: str, want: PythonSpec, target: TargetInfo, interpreter: Interpreter
             ) -> PythonLocator:
    """What finds ``interpreter`` again from ``source``, wherever the next command runs."""
    if source == "standalone" and want.archive:
        archive = Path(want.archive).expanduser().resolve()
        return PythonLocator(source, interpreter.version, archive=str(archive),
                             archive_sha256=sha256_file(archive))
    if source == "twin":
        if want.twin_root:
            return PythonLocator(source, interpreter.version,
                                 twin_root=str(Path(want.twin_root).expanduser().resolve()))
        release = twin.release_for(target)
        return PythonLocator(source, interpreter.version,
                             twin_release=release.codename if release else None)
    if source not in AUTO_ORDER:
        return PythonLocator(source, interpreter.version,
                             path=str(Path(source).expanduser().resolve()))
    return PythonLocator(source, interpreter.version)


_REASONS = {
    "host": "this builder's Python; its glibc needs are within the target's",
    "standalone": "python-build-standalone (built for glibc 2.17)",
    "target": "the target's own Python: only the packages ship",
    "twin": "the Python of the target's OS release, from a rootfs of it",
    "build": "CPython compiled from source with zig for the target's glibc",
}


def choose_python(want: PythonSpec, target: TargetInfo,
                  pythons: tuple[str, ...] | None = None) -> PythonChoice:
    """Find the interpreter for ``target`` from ``want.source`` (auto: the first that fits).

    ``pythons``: the versions ("3.X") the environment can use (its framework's), None for
    any. With no version asked, auto passes over a source that gives another (before it
    fetches or builds anything when the version is known beforehand); a refusal suggests
    only those versions.
    """
    if want.source != "auto":
        try:
            interpreter = _provide(want.source, want, target, auto=False)
        except Unavailable as exc:
            raise StageError(f"--python {want.source}: {exc.message}.",
                             "Choose another source with --python (auto, host, standalone:3.X, "
                             "target, twin, build:3.X, or a path)"
                             + (f", or {ways}" if (ways := ways_out(want, target, pythons))
                                else "") + ".") from None
        # a path stays the source's name: a lock planned with it finds it again
        reason = _REASONS.get(want.source, f"the Python at {want.source}")
        return PythonChoice(source=want.source, interpreter=interpreter, reason=reason,
                            locator=_locator(want.source, want, target, interpreter))
    skipped: list[str] = []
    usable = pythons if want.version is None else None
    for source in AUTO_ORDER:
        other = f"it gives Python {{}}; the framework runs on {', '.join(usable or ())}"
        known = _version_beforehand(source, want, target) if usable is not None else None
        if usable is not None and known is not None and known not in usable:
            skipped.append(f"{source}: {other.format(known)}")
            continue
        try:
            interpreter = _provide(source, want, target, auto=True, usable=usable)
        except GapshipError as exc:
            skipped.append(f"{source}: {exc.message.rstrip('.')}")
            continue
        if usable is not None and interpreter.minor not in usable:
            skipped.append(f"{source}: {other.format(interpreter.version)}")
            continue
        reason = _REASONS[source] + (f" (not {'; not '.join(skipped)})" if skipped else "")
        return PythonChoice(source=source, interpreter=interpreter, reason=reason,
                            locator=_locator(source, want, target, interpreter))
    if usable:  # what the framework runs on: its newest is the version to look for
        want = replace(want, version=usable[-1])
    wanted = f"Python {want.version}" if want.version else "a Python"
    ways = ways_out(want, target, pythons)
    raise StageError(
        f"no interpreter source can give {wanted} for {target.describe()}: "
        + "; ".join(skipped) + ".",
        f"Give {ways}." if ways else "No source gapship knows can serve this target.")


def _version_beforehand(source: str, want: PythonSpec, target: TargetInfo) -> str | None:
    """The Python version ("3.X") a source would give, when known before it fetches or builds
    anything: a standalone download's, a twin release's; None otherwise."""
    if source == "standalone" and not want.archive:
        try:
            return find_host_python(None).minor
        except StageError:
            return None
    if source == "twin" and not want.twin_root:
        release = twin.release_for(target)
        return release.python if release else None
    return None


def ways_out(want: PythonSpec, target: TargetInfo, pythons: tuple[str, ...] | None = None
             ) -> str:
    """The ways to an interpreter that can work for this target, or "" when none: an
    install_only archive built for the target's glibc, a rootfs of a release that ships the
    version with a glibc the target has, or another version that a source has."""
    if target.libc_family != "glibc" or not target.glibc_version:
        return ""
    minor = want.version
    ways = [f"--python-archive FILE (an install_only archive of Python {minor or '3.X'}, "
            "python-build-standalone's or a prefix of your own tarred as python/, built for "
            f"glibc <= {target.glibc})"]
    glibc = versions.dotted(build.build_glibc(target.glibc_version))
    ways.append(f"--python build:{minor or '3.X'} --python-source FILE (the CPython "
                f"{minor or '3.X'} source tarball, Python-{minor or '3.X'}.Y.tgz from python.org: "
                f"gapship compiles it for glibc {glibc})")
    own = twin.release_for(target)
    if minor is None:
        if own is None or versions.release(own.python) >= OLDEST_PYTHON:
            ways.append("--twin-root DIR (a rootfs of the target's OS release)")
    else:
        shipping = [r for r in twin.releases() if r.python == minor
                    and versions.release(r.glibc) <= target.glibc_version]
        if shipping:
            glibcs = sorted({r.glibc for r in shipping}, key=versions.release)
            first = shipping[0]
            make = (f"; `debootstrap --include={','.join(first.packages)} {first.codename} DIR "
                    f"{first.mirror}` makes one" if first.mirror else "")
            names = " or ".join(r.describe() for r in shipping)
            ways.append(f"--twin-root DIR (a rootfs of {names}, which ship Python {minor} with "
                        f"glibc {' or '.join(glibcs)}, not newer than the target's "
                        f"{target.glibc}{make})")
        others = _other_versions(minor, target, own)
        usable = [(v, why) for v, why in others if pythons is None or v in pythons]
        if usable:
            ways.append(" or ".join(f"python = \"{v}\" in env.toml ({why})" for v, why in usable))
    return ", or ".join(ways)


def _other_versions(minor: str, target: TargetInfo, own: twin.TwinRelease | None
                    ) -> list[tuple[str, str]]:
    """Versions other than ``minor`` that a source has for this target, and which source."""
    found: dict[str, str] = {}
    for python in target.pythons:
        if python.version[:2] >= OLDEST_PYTHON and python.minor != minor:
            path = target_python(target, python.minor).executable
            found.setdefault(python.minor, f"the target's own {path}, --python target")
    if own is not None and own.python != minor and versions.release(own.python) >= OLDEST_PYTHON:
        found.setdefault(own.python, f"what {own.describe()} ships, --python twin")
    return sorted(found.items(), key=lambda item: versions.release(item[0]), reverse=True)
