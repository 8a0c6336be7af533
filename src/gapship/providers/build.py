"""CPython built from source for the target's glibc: the interpreter source that always works.

``zig cc -target x86_64-linux-gnu.<glibc>`` (the ``ziglang`` package) links against glibc
symbol-version stubs as old as 2.17, so what it builds here runs on any glibc at least that
old. The libraries the standard library needs (zlib, bzip2, xz, libffi, OpenSSL, SQLite,
ncurses, readline) are built first the same way, as static position-independent archives in
a private prefix, and end up inside the extension modules. CPython installs with the layout
of a python-build-standalone install_only archive (``bin/python3.X``, ``lib/python3.X/``,
``include/``), so staging takes it like any other prefix.

Sources and their sha256 are pinned in ``build_sources.json``; the build steps are
``build_libraries.sh`` and ``build_cpython.sh``. Everything is cached under gapship's cache:
the sources by sha256, the libraries by (glibc, their sources, the recipes, zig), the
interpreter by (version, glibc, its source, the libraries'): a second pack builds nothing,
and a cached build for an older glibc serves a newer target (what runs on 2.17 runs on 2.41),
so that one build serves every target, as python-build-standalone's 2.17 build does.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import re
import shutil
import subprocess
import tarfile
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from gapship import ui, versions
from gapship.cache import cache_dir
from gapship.errors import StageError, ToolMissing
from gapship.files import sha256_file
from gapship.providers.python import PythonInstall
from gapship.providers.standalone import from_prefix

# the oldest glibc zig's stubs reach, and python-build-standalone's baseline
OLDEST_GLIBC = (2, 17)
_TAIL_LINES = 6
_ERROR = re.compile(r"\berror: |\*\*\* |: not found|configure: error")


class BuildError(StageError):
    """A step of building the interpreter failed; the message names it and its log."""


@dataclass(frozen=True)
class Source:
    """One pinned source tarball: the names it goes by, its sha256, where it comes from."""

    name: str
    version: str
    names: tuple[str, ...]
    sha256: str
    urls: tuple[str, ...]
    needs: tuple[str, ...] = ()

    @property
    def filename(self) -> str:
        return self.names[0]


def _data() -> dict[str, object]:
    text = resources.files(__package__).joinpath("build_sources.json").read_text("utf-8")
    data: dict[str, object] = json.loads(text)
    return data


def _source(name: str, version: str, entry: dict[str, object]) -> Source:
    def strings(key: str) -> tuple[str, ...]:
        value = entry.get(key, [])
        assert isinstance(value, list)
        return tuple(str(v) for v in value)

    return Source(name=name, version=version, names=strings("names"),
                  sha256=str(entry["sha256"]), urls=strings("urls"), needs=strings("needs"))


def python_sources() -> dict[str, Source]:
    """The pinned CPython releases, by version ("3.11.2")."""
    pythons = _data()["pythons"]
    assert isinstance(pythons, dict)
    return {v: _source("python", v, e) for v, e in pythons.items()}


def library_sources() -> list[Source]:
    """The libraries the standard library needs, in build order."""
    libraries = _data()["libraries"]
    assert isinstance(libraries, list)
    return [_source(str(e["name"]), str(e["version"]), e) for e in libraries]


def pinned_python(version: str) -> Source | None:
    """The newest pinned release of ``version`` ("3.11" or "3.11.2"), or None."""
    found = [s for v, s in python_sources().items() if v == version or versions.minor(v) == version]
    return max(found, key=lambda s: versions.release(s.version), default=None)


def build_glibc(target_glibc: tuple[int, ...] | None) -> tuple[int, int]:
    """The glibc to build for: the target's, but never older than zig's 2.17."""
    glibc = tuple(target_glibc[:2]) if target_glibc else OLDEST_GLIBC
    best = max(glibc, OLDEST_GLIBC)
    return (best[0], best[1])


def zig_binary() -> Path:
    """The zig of the ``ziglang`` package."""
    spec = importlib.util.find_spec("ziglang")
    if spec is None or not spec.submodule_search_locations:
        raise ToolMissing("building CPython needs zig, from the ziglang package, which is not "
                          "installed.", "Install it: pip install ziglang.")
    zig = Path(next(iter(spec.submodule_search_locations))) / "zig"
    if not zig.is_file():
        raise ToolMissing(f"the ziglang package has no zig binary ({zig}).",
                          "Reinstall it: pip install --force-reinstall ziglang.")
    return zig


def build_root() -> Path:
    return cache_dir() / "build"


def source_cache() -> Path:
    return cache_dir() / "sources"


def _cached_source(source: Source) -> Path:
    return source_cache() / source.sha256[:2] / source.sha256 / source.filename


def _mismatch(path: Path, source: Source, digest: str) -> BuildError:
    return BuildError(f"{path}: sha256 {digest} does not match the pinned {source.sha256} of "
                      f"{source.name} {source.version}.",
                      "The file is damaged or not that release; get it again from "
                      f"{source.urls[0] if source.urls else 'its upstream'}.")


def _store(path: Path, source: Source) -> Path:
    """Copy a verified file into the content-addressed source cache."""
    digest = sha256_file(path)
    if digest != source.sha256:
        raise _mismatch(path, source, digest)
    dest = _cached_source(source)
    if not dest.is_file():
        dest.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=".part-")
        os.close(fd)
        try:
            shutil.copyfile(path, tmp)
            os.replace(tmp, dest)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
    return dest


def _download(url: str, source: Source) -> Path:
    dest = _cached_source(source)
    dest.parent.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256()
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=".part-")
    try:
        with os.fdopen(fd, "wb") as out:
            if url.startswith("file://"):
                src = open(url.removeprefix("file://"), "rb")  # noqa: SIM115
            else:
                req = urllib.request.Request(url, headers={"User-Agent": "gapship"})
                src = urllib.request.urlopen(req, timeout=60)
            with src:
                while chunk := src.read(1 << 20):
                    out.write(chunk)
                    digest.update(chunk)
        if digest.hexdigest() != source.sha256:
            raise _mismatch(Path(url), source, digest.hexdigest())
        os.replace(tmp, dest)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return dest


def obtain(source: Source, given: Path | None, *, offline: bool) -> Path:
    """The verified tarball of ``source``: from the cache, ``given`` (a file, or a directory
    that holds it under one of its names), else downloaded. A mismatch is fatal."""
    if given is not None:
        if given.is_dir():
            for name in source.names:
                if (given / name).is_file():
                    return _store(given / name, source)
        elif given.is_file():
            return _store(given, source)
    cached = _cached_source(source)
    if cached.is_file():
        return cached
    where = f" in {given}" if given is not None else ""
    if offline or not source.urls:
        raise BuildError(
            f"the source of {source.name} {source.version} is not here (looked for "
            f"{' or '.join(source.names)}{where}).",
            f"Put it in the directory given with --deps-source (get it from {source.urls[0]})"
            if source.urls else "Give it with --deps-source DIR.")
    errors = []
    for url in source.urls:
        ui.step(f"build: downloading {source.name} {source.version} from {url}")
        try:
            return _download(url, source)
        except (urllib.error.URLError, OSError) as exc:
            errors.append(f"{url}: {exc}")
    raise BuildError(f"{source.name} {source.version} could not be downloaded ({errors[-1]}).",
                     f"Download {source.filename} elsewhere and give its directory with "
                     "--deps-source DIR (--python-source FILE for CPython).")


_PYTHON_DIR = re.compile(r"^(?:\./)?Python-(\d+\.\d+\.\d+)(?:/|$)")


def tarball_version(tarball: Path) -> str:
    """The CPython version of a source tarball, from its top directory (Python-3.X.Y/)."""
    try:
        with tarfile.open(tarball, "r:*") as tar:
            first = tar.next()
    except (tarfile.TarError, OSError) as exc:
        raise BuildError(f"{tarball}: not a readable tar archive ({exc}).",
                         "Give a CPython source tarball (Python-3.X.Y.tgz).") from None
    match = _PYTHON_DIR.match(first.name) if first else None
    if match is None:
        raise BuildError(f"{tarball} is not a CPython source tarball (its top directory is "
                         f"{first.name if first else 'missing'!r}, not Python-3.X.Y).",
                         "Give a release tarball from python.org (Python-3.X.Y.tgz).")
    return match.group(1)


def python_source(version: str | None, given: Path | None, *, offline: bool) -> Source:
    """The CPython source to build: ``given`` (checked against its pin when there is one), or
    the newest pinned release of ``version``."""
    if given is not None:
        if not given.is_file():
            raise BuildError(f"--python-source {given}: no such file.",
                             "Give a CPython source tarball (Python-3.X.Y.tgz).")
        found = tarball_version(given)
        if version and version not in (found, versions.minor(found)):
            raise BuildError(f"--python-source {given} holds Python {found}, not {version}.",
                             f"Give a Python {version} source tarball, or ask for "
                             f"build:{versions.minor(found)}.")
        pinned = python_sources().get(found)
        if pinned is not None:
            obtain(pinned, given, offline=offline)
            return pinned
        digest = sha256_file(given)  # not pinned: the file given is the source of truth
        source = Source("python", found, (given.name,), digest, ())
        _store(given, source)
        return source
    pinned = pinned_python(version) if version else None
    if pinned is None:
        known = ", ".join(sorted(python_sources(), key=versions.release))
        raise BuildError(f"gapship pins no CPython {version or ''} source to build (it pins "
                         f"{known}).".replace("  ", " "),
                         "Give the release tarball with --python-source FILE.")
    obtain(pinned, None, offline=offline)
    return pinned


def _key(*parts: str) -> str:
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:20]


def _script(name: str) -> Path:
    return Path(str(resources.files(__package__).joinpath(name)))


def _zig_tool() -> Path:
    return _script("zig_tool.sh")


def _tools(glibc: tuple[int, int]) -> tuple[Path, dict[str, str]]:
    """A directory of compiler wrappers (cc, c++, ar, ranlib) for zig targeting ``glibc``, and
    the environment the recipes run in."""
    zig = zig_binary()
    tools = build_root() / "tools"
    tools.mkdir(parents=True, exist_ok=True)
    for name in ("cc", "gcc", "c++", "ar", "ranlib", "dpkg-architecture"):
        link = tools / name
        if not link.is_symlink() or os.readlink(link) != str(_zig_tool()):
            tmp = tools / f".{name}.tmp"
            tmp.unlink(missing_ok=True)
            tmp.symlink_to(_zig_tool())
            os.replace(tmp, link)
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PYTHON", "CFLAGS", "CPPFLAGS", "LDFLAGS", "PKG_CONFIG",
                                "MAKEFLAGS", "_PYTHON"))}
    env.update(
        PATH=f"{tools}:{env.get('PATH', '/usr/bin:/bin')}", ZIG=str(zig),
        ZIG_TARGET=f"x86_64-linux-gnu.{glibc[0]}.{glibc[1]}",
        CC=str(tools / "cc"), CXX=str(tools / "c++"), AR=str(tools / "ar"),
        RANLIB=str(tools / "ranlib"), JOBS=str(os.cpu_count() or 2), LC_ALL="C",
    )
    return tools, env


def zig_version() -> str:
    proc = subprocess.run([str(zig_binary()), "version"], capture_output=True, text=True,
                          check=False)
    return proc.stdout.strip() or "unknown"


def _unpack(tarball: Path, into: Path) -> Path:
    """Unpack a source tarball into ``into``; return its top directory."""
    into.mkdir(parents=True, exist_ok=True)
    with tarfile.open(tarball, "r:*") as tar:
        extra = {"filter": "tar"} if hasattr(tarfile, "tar_filter") else {}
        tar.extractall(into, **extra)  # type: ignore[arg-type]
    tops = [p for p in into.iterdir() if p.is_dir()]
    return tops[0] if len(tops) == 1 else into


def _run_step(script: str, step: str, label: str, cwd: Path, env: dict[str, str], logs: Path,
              args: Sequence[str] = ()) -> None:
    """Run one recipe step, its output into ``logs/<step>.log``; fail with its last lines."""
    logs.mkdir(parents=True, exist_ok=True)
    log = logs / f"{step}.log"
    ui.step(f"build: {label}")
    started = time.monotonic()
    with open(log, "wb") as out:
        proc = subprocess.run(["sh", str(_script(script)), step.removeprefix("python-"), *args],
                              cwd=cwd, env=env,
                              stdout=out, stderr=subprocess.STDOUT, check=False)
    if proc.returncode != 0:
        lines = [ln.strip() for ln in log.read_text("utf-8", "replace").splitlines()
                 if ln.strip()]
        # the first error a compiler reported (make -j prints more after it), then the end
        first = [ln for ln in lines if _ERROR.search(ln)][:1]
        tail = " | ".join(first + [ln for ln in lines[-_TAIL_LINES:] if ln not in first])
        raise BuildError(f"building CPython: step {step} failed (exit {proc.returncode}; log "
                         f"{log}): {tail}",
                         "Read the log; the step reruns with the next pack.")
    ui.err.print(f"    {label}: done in {time.monotonic() - started:.0f} s")


def scrub(prefix: Path, root: Path) -> int:
    """Take the builder's paths under ``root`` (the compiler wrappers, the libraries' prefix,
    the source tree) out of an install; return how many files changed.

    Text (sysconfig data, Makefile, python-config, .pc) names the wrappers by their bare name
    (``cc``) and the rest under ``/build``; binaries keep every string's length: the path
    becomes ``/gapship-build//...`` padded with slashes (OpenSSL's compiled-in module
    directory, for one)."""
    old = str(root.resolve()).encode()
    tools = old + b"/tools/"
    head = b"/gapship-build"
    same_length = head + b"/" * max(len(old) - len(head), 0) if len(old) >= len(head) else old
    changed = 0
    for path in sorted(prefix.rglob("*")):
        if path.is_symlink() or not path.is_file():
            continue
        data = path.read_bytes()
        if old not in data:
            continue
        if b"\0" in data:
            new = data.replace(old, same_length)
        else:
            new = data.replace(tools, b"").replace(old, b"/build")
        tmp = path.with_name(path.name + ".gapship-tmp")
        tmp.write_bytes(new)
        os.chmod(tmp, path.stat().st_mode)
        os.replace(tmp, path)
        changed += 1
    return changed


def _complete(path: Path) -> bool:
    return (path / ".gapship-complete").is_file()


def _finish(tmp: Path, dest: Path, what: str) -> None:
    (tmp / ".gapship-complete").write_text(what + "\n", encoding="utf-8")
    if _complete(dest):  # another build finished first
        shutil.rmtree(tmp, ignore_errors=True)
        return
    shutil.rmtree(dest, ignore_errors=True)
    os.replace(tmp, dest)


def _retarget(built: Path, final: Path) -> None:
    """Make the libraries' pkg-config and libtool files name the prefix they move to."""
    for path in [*built.glob("lib/pkgconfig/*.pc"), *built.glob("lib/*.la")]:
        text = path.read_text("utf-8", "replace")
        path.write_text(text.replace(str(built), str(final)), encoding="utf-8")


def _deps_key(glibc: tuple[int, int]) -> str:
    """The libraries' cache key for ``glibc``: it, zig, the recipes and the sources' hashes."""
    recipes = sha256_file(_script("build_libraries.sh")) + sha256_file(_zig_tool())
    return _key("deps", *map(str, glibc), zig_version(), recipes,
                *(lib.sha256 for lib in library_sources()))


def _python_dest(source: Source, glibc: tuple[int, int]) -> Path:
    """Where CPython ``source`` built for ``glibc`` is cached (complete or not)."""
    key = _key("python", source.version, source.sha256, *map(str, glibc), _deps_key(glibc),
               sha256_file(_script("build_cpython.sh")))
    return build_root() / f"python-{source.version}-glibc{glibc[0]}.{glibc[1]}-{key}"


def _cached_older(source: Source, glibc: tuple[int, int]) -> Path | None:
    """A complete build of ``source`` for an older glibc than ``glibc`` (2.17 at the oldest),
    the newest such: what runs on an older glibc runs on this one, as python-build-standalone's
    one 2.17 build runs everywhere; so a second target does not build CPython again."""
    found = []
    for path in build_root().glob(f"python-{source.version}-glibc*-*"):
        match = re.fullmatch(rf"python-{re.escape(source.version)}-glibc(\d+)\.(\d+)-\w+",
                             path.name)
        if match is None:
            continue
        older = (int(match.group(1)), int(match.group(2)))
        if OLDEST_GLIBC <= older < glibc and _python_dest(source, older) == path \
                and _complete(path):
            found.append((older, path))
    return max(found)[1] if found else None


def build_libraries(glibc: tuple[int, int], deps_source: Path | None, *, offline: bool
                    ) -> tuple[Path, str]:
    """The private prefix of the static libraries for ``glibc`` (built once); and its key."""
    libraries = library_sources()
    tarballs = [obtain(lib, deps_source, offline=offline) for lib in libraries]
    key = _deps_key(glibc)
    dest = build_root() / f"deps-glibc{glibc[0]}.{glibc[1]}-{key}"
    if _complete(dest):
        ui.step(f"build: the libraries for glibc {glibc[0]}.{glibc[1]} (cached in {dest})")
        return dest, key
    for lib in libraries:
        for tool in lib.needs:
            if shutil.which(tool) is None:
                raise ToolMissing(f"building {lib.name} needs {tool}, which is not installed.",
                                  f"Install {tool} on this builder.")
    build_root().mkdir(parents=True, exist_ok=True)
    # a failed build resumes after the libraries it finished (each leaves a stamp)
    tmp = build_root() / f".partial-{dest.name}"
    tmp.mkdir(exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=".work-", dir=build_root()))
    _, env = _tools(glibc)
    env["DEPS"] = str(tmp)
    logs = build_root() / "logs" / key
    try:
        for n, (lib, tarball) in enumerate(zip(libraries, tarballs, strict=True), 1):
            label = f"[{n}/{len(libraries)}] {lib.name} {lib.version} for glibc " \
                    f"{glibc[0]}.{glibc[1]}"
            stamp = tmp / f".built-{lib.name}"
            if stamp.exists():
                ui.step(f"build: {label} (built before)")
                continue
            src = _unpack(tarball, work / lib.name)
            _run_step("build_libraries.sh", lib.name, label, src, env, logs)
            stamp.touch()
        for stamp in tmp.glob(".built-*"):
            stamp.unlink()
        _retarget(tmp, dest)
        _finish(tmp, dest, "libraries")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return dest, key


def build_python(version: str | None, target_glibc: tuple[int, ...] | None, *,
                 python_tarball: Path | None = None, deps_source: Path | None = None,
                 offline: bool = False) -> PythonInstall:
    """CPython ``version`` ("3.X" or "3.X.Y") built for the target's glibc (2.17 at the
    oldest), with the install_only layout; built once, then taken from the cache."""
    glibc = build_glibc(target_glibc)
    source = python_source(version, python_tarball, offline=offline)
    tarball = _cached_source(source)
    minor = versions.minor(source.version)
    dest = _python_dest(source, glibc)
    if not _complete(dest):
        dest = _cached_older(source, glibc) or dest
    if _complete(dest):
        ui.step(f"build: CPython {source.version} for "
                f"{dest.name.split('-')[2].replace('glibc', 'glibc ')} (cached in {dest})")
        return from_prefix(dest / "python", minor)
    deps, _ = build_libraries(glibc, deps_source, offline=offline)
    key = dest.name.rsplit("-", 1)[1]
    tmp = Path(tempfile.mkdtemp(prefix=".python-", dir=build_root()))
    work = Path(tempfile.mkdtemp(prefix=".work-", dir=build_root()))
    _, env = _tools(glibc)
    env.update(DEPS=str(deps), DEST=str(tmp / "destdir"))
    logs = build_root() / "logs" / key
    label = f"CPython {source.version} for glibc {glibc[0]}.{glibc[1]}"
    try:
        src = _unpack(tarball, work)
        for n, (step, what) in enumerate((("python-configure", "configure"),
                                          ("python-make", "make"),
                                          ("python-install", "install")), 1):
            _run_step("build_cpython.sh", step, f"[{n}/3] {label}: {what}", src, env, logs)
        (tmp / "destdir" / "install").rename(tmp / "python")
        shutil.rmtree(tmp / "destdir")
        scrub(tmp / "python", build_root())
        _finish(tmp, dest, f"CPython {source.version} glibc {glibc[0]}.{glibc[1]}")
    finally:
        shutil.rmtree(work, ignore_errors=True)
        shutil.rmtree(tmp, ignore_errors=True)
    return from_prefix(dest / "python", minor)
