"""Graft the interpreter's shared-library closure into the tree and point RUNPATHs at it.

Every library that the staged ELF files need, except those every glibc system has
(system_libs.json), is copied into ``PREFIX/lib`` and found through ``RUNPATH=$ORIGIN/...``.
Edits are recorded first and applied with patchelf afterwards.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path, PurePosixPath

from gapship.errors import StageError
from gapship.stage.elf import ElfInfo, read_elf
from gapship.tools import hermetic_env, patchelf_bin

_DEFAULT_DIRS = ("/lib/x86_64-linux-gnu", "/usr/lib/x86_64-linux-gnu", "/lib64", "/usr/lib64",
                 "/lib", "/usr/lib")


@functools.cache
def system_libraries() -> frozenset[str]:
    """Library names that every glibc system provides (never shipped)."""
    text = resources.files(__package__).joinpath("system_libs.json").read_text("utf-8")
    return frozenset(json.loads(text)["libraries"])


def is_system_library(name: str) -> bool:
    return name in system_libraries() or name.startswith("ld-linux")


@functools.cache
def _ldconfig_cache() -> dict[str, str]:
    """name -> path from the builder's ld.so cache (64-bit entries)."""
    for ldconfig in ("/sbin/ldconfig", "/usr/sbin/ldconfig", "ldconfig"):
        try:
            proc = subprocess.run([ldconfig, "-p"], capture_output=True, text=True, check=False,
                                  env=hermetic_env())
        except OSError:
            continue
        entries: dict[str, str] = {}
        for line in proc.stdout.splitlines()[1:]:
            name, _, rest = line.strip().partition(" (")
            flags, _, path = rest.partition(") => ")
            if "x86-64" in flags or "64bit" in flags or "AArch64" in flags:
                entries.setdefault(name, path)
        return entries
    return {}


@functools.cache
def _ld_conf_dirs(sysroot: Path) -> tuple[str, ...]:
    """Library directories named by ``sysroot``'s /etc/ld.so.conf (includes followed)."""
    dirs: list[str] = []

    def read(conf: Path, depth: int) -> None:
        try:
            lines = conf.read_text(encoding="utf-8", errors="replace").splitlines()
        except OSError:
            return
        for line in lines:
            line = line.split("#", 1)[0].strip()
            if line.startswith("include ") and depth < 4:
                pattern = line.split(None, 1)[1].lstrip("/")
                for included in sorted(sysroot.glob(pattern)):
                    read(included, depth + 1)
            elif line.startswith("/"):
                dirs.append(line)

    read(sysroot / "etc" / "ld.so.conf", 0)
    return tuple(dirs)


def find_library(name: str, elf: ElfInfo, origin: Path, sysroot: Path = Path("/")
                 ) -> Path | None:
    """Resolve a DT_NEEDED name the way ld.so does (without LD_LIBRARY_PATH).

    ``origin`` is the directory of the file on the builder; absolute search paths are read
    inside ``sysroot`` (a twin's rootfs), whose ld.so.conf stands in for the ld.so cache.
    """
    if "/" in name:
        found = sysroot / name.lstrip("/")
        return found if found.exists() else None
    dirs: list[str] = []
    if not elf.runpath:
        dirs += elf.rpath
    dirs += elf.runpath
    candidates = [Path(d.replace("$ORIGIN", str(origin)).replace("${ORIGIN}", str(origin)))
                  if "ORIGIN" in d else sysroot / d.lstrip("/") for d in dirs]
    on_host = sysroot == Path("/")
    if on_host:
        cached = _ldconfig_cache().get(name)
        if cached:
            candidates.append(Path(cached).parent)
    else:
        candidates += [sysroot / d.lstrip("/") for d in _ld_conf_dirs(sysroot)]
    candidates += [sysroot / d.lstrip("/") for d in _DEFAULT_DIRS]
    for d in candidates:
        candidate = d / name
        if candidate.exists() or candidate.is_symlink():
            return candidate
    return None


def real_path(path: Path, sysroot: Path) -> Path:
    """Follow the symlinks of ``path`` (a path under ``sysroot``) as if ``sysroot`` were ``/``."""
    if sysroot == Path("/"):
        return path.resolve()
    parts = list(path.relative_to(sysroot).parts)
    current = sysroot
    for _ in range(64 * (len(parts) + 1)):
        if not parts:
            return current
        candidate = current / parts.pop(0)
        if candidate.is_symlink():
            link = os.readlink(candidate)
            parts = list(PurePosixPath(link.lstrip("/")).parts) + parts
            current = sysroot if link.startswith("/") else current
        elif candidate.name == "..":
            current = current.parent if current != sysroot else sysroot
        else:
            current = candidate
    raise StageError(f"{path}: too many levels of symbolic links inside {sysroot}.")


def _each_elf(queue: list[Path]) -> Iterator[tuple[Path, ElfInfo]]:
    """Take ELF files off ``queue`` once each (the caller appends what it finds)."""
    done: set[Path] = set()
    while queue:
        path = queue.pop()
        if path in done:
            continue
        done.add(path)
        info = read_elf(path)
        if info is not None:
            yield path, info


def library_closure(elf_files: list[Path], sysroot: Path = Path("/")) -> list[Path]:
    """The non-system libraries ``elf_files`` need, recursively (nothing is copied).

    Libraries that cannot be found are left out: grafting reports them.
    """
    found_all: dict[Path, None] = {}
    queue = list(elf_files)
    for path, info in _each_elf(queue):
        for name in info.needed:
            if is_system_library(name):
                continue
            found = find_library(name, info, path.parent, sysroot)
            if found is not None:
                real = real_path(found, sysroot)
                found_all.setdefault(real)
                queue.append(real)
    return list(found_all)


@dataclass
class Closure:
    """What grafting found: copied libraries and, per staged ELF, the dirs its deps are in."""

    grafted: dict[str, Path] = field(default_factory=dict)
    dep_dirs: dict[Path, set[Path]] = field(default_factory=dict)
    missing: dict[str, list[str]] = field(default_factory=dict)


def graft(stage: Path, elf_files: list[Path], originals: dict[Path, Path], src_prefix: Path,
          sysroot: Path = Path("/")) -> Closure:
    """Copy the non-system library closure of ``elf_files`` into ``stage``.

    ``originals`` maps a staged file to where it came from, so that its RUNPATH and $ORIGIN
    resolve as they did on the builder. Libraries from inside ``src_prefix`` keep their
    relative place; system libraries outside it go to ``stage/lib``. Libraries are looked
    up inside ``sysroot`` (the interpreter's own root filesystem).
    """
    closure = Closure()
    lib_dir = stage / "lib"
    queue = list(elf_files)
    for staged, info in _each_elf(queue):
        original = originals.get(staged, staged)
        deps = closure.dep_dirs.setdefault(staged, set())
        for name in info.needed:
            if is_system_library(name):
                continue
            found = find_library(name, info, original.parent, sysroot)
            if found is None:
                closure.missing.setdefault(name, []).append(str(staged.relative_to(stage)))
                continue
            real = real_path(found, sysroot)
            try:
                dest = stage / found.relative_to(src_prefix)
            except ValueError:
                dest = lib_dir / name
                closure.grafted[name] = real
            if not dest.exists():
                dest.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(real, dest)
                os.chmod(dest, 0o755)
                originals[dest] = real
                queue.append(dest)
            deps.add(dest.parent)
    if closure.missing:
        names = ", ".join(f"{k} (needed by {v[0]})" for k, v in sorted(closure.missing.items()))
        raise StageError(f"libraries the interpreter needs are not on this builder: {names}.",
                         "Install them on the builder or choose another interpreter source.")
    return closure


def set_runpaths(stage: Path, closure: Closure) -> int:
    """Point each staged ELF's RUNPATH at the dirs of its deps, relative to $ORIGIN."""
    patchelf = patchelf_bin()
    changed = 0
    for elf_path, dirs in sorted(closure.dep_dirs.items()):
        info = read_elf(elf_path)
        if info is None:
            continue
        entries = sorted({"$ORIGIN" if d == elf_path.parent else
                          "$ORIGIN/" + os.path.relpath(d, elf_path.parent) for d in dirs})
        runpath = ":".join(entries)
        if runpath:
            if info.runpath == tuple(entries) and not info.rpath:
                continue
            cmd = [patchelf, "--set-rpath", runpath, str(elf_path)]
        elif info.runpath or info.rpath:
            cmd = [patchelf, "--remove-rpath", str(elf_path)]
        else:
            continue
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False,
                              env=hermetic_env())
        if proc.returncode != 0:
            raise StageError(f"patchelf failed on {elf_path.relative_to(stage)}: "
                             f"{proc.stderr.strip()}")
        changed += 1
    return changed
