"""Graft the interpreter's shared-library closure into the tree and point RUNPATHs at it.

Every library that the staged ELF files need, except those every glibc system has
(compat's system_libs.json), is copied into ``PREFIX/lib`` and found through
``RUNPATH=$ORIGIN/...``. Libraries are found by the node's ld.so resolver (gapship.node.loader).
Edits are recorded first and applied with patchelf afterwards.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from gapship.compat import is_system_library
from gapship.errors import StageError
from gapship.files import edited
from gapship.node.elf import ElfError, iter_elf_paths, read_elf
from gapship.node.loader import Loader
from gapship.tools import hermetic_env, patchelf_bin


def elf_files(root: Path) -> list[Path]:
    """Every regular ELF file under ``root`` (links left out), sorted."""
    return sorted(Path(p) for p in iter_elf_paths(root, every_file=True))


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
    # the builder's LD_LIBRARY_PATH plays no part: nothing in its shell changes what is packed
    loader = Loader("", sysroot=sysroot)
    queue = list(elf_files)
    for staged, info in loader.each_elf(queue):
        original = originals.get(staged, staged)
        deps = closure.dep_dirs.setdefault(staged, set())
        for name in info.needed:
            if is_system_library(name):
                continue
            where, _ = loader.find(name, info, origin=str(original.parent))
            if where is None:
                closure.missing.setdefault(name, []).append(str(staged.relative_to(stage)))
                continue
            found = Path(where)
            real = Path(loader.real_path(found))
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
        try:
            info = read_elf(elf_path)
        except ElfError:
            info = None
        if info is None:
            continue
        entries = sorted({"$ORIGIN" if d == elf_path.parent else
                          "$ORIGIN/" + os.path.relpath(d, elf_path.parent) for d in dirs})
        runpath = ":".join(entries)
        if runpath:
            if [p for p in info.runpath if p] == entries and not any(info.rpath):
                continue
            cmd = [patchelf, "--set-rpath", runpath]
        elif any(info.runpath) or any(info.rpath):
            cmd = [patchelf, "--remove-rpath"]
        else:
            continue
        with edited(elf_path) as work:  # patchelf writes in place: never through a link
            proc = subprocess.run([*cmd, str(work)], capture_output=True, text=True,
                                  check=False, env=hermetic_env())
            if proc.returncode != 0:  # raised inside: the file is left as it was
                raise StageError(f"patchelf failed on {elf_path.relative_to(stage)}: "
                                 f"{proc.stderr.strip()}")
        changed += 1
    return changed
