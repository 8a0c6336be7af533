"""The bundle's library closure judged against the target, before anything is written.

Every NEEDED of every ELF file of the staged tree must resolve as the target's ld.so will
resolve it: inside the tree (RPATH, RUNPATH, $ORIGIN, the activation's LD_LIBRARY_PATH), to
a library the target's loader finds (target.json's list, probe 2+), or to what the NVIDIA
driver provides on a GPU node. Anything else is grafted from the interpreter's root
filesystem (the builder's, or the twin's) into ``PREFIX/lib`` when its own symbol-version
needs fit the target, as auditwheel repair does, and found there through an added
``$ORIGIN`` RUNPATH; otherwise pack refuses, naming the library, the files that need it,
their package and the way out. The scan and the resolver are the doctor's own
(gapship.node.closure, gapship.node.loader), so pack and node judge alike.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from gapship import versions
from gapship.compat import glibc_libraries, headless_alternatives, is_system_library
from gapship.errors import CompatError, StageError
from gapship.files import edited
from gapship.node import layout
from gapship.node.closure import Scan, scan
from gapship.node.elf import GLIBC, ElfError, ElfFile, read_elf, version_needs
from gapship.node.loader import Loader
from gapship.node.owners import Owners
from gapship.probe import TargetInfo
from gapship.stage.treescan import TreeScan
from gapship.tools import hermetic_env, patchelf_bin

# where a library that the target itself has is said to be (a directory that exists nowhere)
TARGET_LIBRARIES = "/(the target's libraries)"
GRAFT_DIR = "lib"  # PREFIX/lib, beside the interpreter's own grafted libraries
_MAX_ROUNDS = 8  # a grafted library may need more that the target lacks; bounded


@dataclass(frozen=True)
class ClosureReport:
    """What the check proved: how many ELF files, against how many target libraries."""

    elf_files: int
    target_libraries: int | None  # None: an older probe without the list (a partial check)
    grafted: tuple[str, ...] = ()
    optional: tuple[str, ...] = ()  # libraries only dlopen-only plugins need (a warning)
    warnings: tuple[str, ...] = field(default=())

    def summary(self) -> str:
        """One line: what was proven and how."""
        against = (f"the target's {self.target_libraries:,} libraries (target.json)"
                   if self.target_libraries is not None else
                   "the libraries every glibc system has (target.json has no library list: "
                   "probe the target again for a full check)")
        grafted = f"; grafted {', '.join(self.grafted)}" if self.grafted else ""
        return f"closure of {self.elf_files} ELF files checked against {against}{grafted}"


class TargetLoader(Loader):
    """ld.so on the target: the tree's own paths as usual, then the target's library list
    where this machine's cache and default directories would come."""

    def __init__(self, ld_library_path: Sequence[str], libraries: frozenset[str] | None
                 ) -> None:
        # this machine's cache and directories play no part: the target's list stands in
        super().__init__(":".join(ld_library_path), cache_path=os.devnull,
                         default_dirs_fn=lambda elf_class, machine: [])
        self.libraries = libraries

    def target_has(self, name: str) -> bool:
        if name.startswith("ld-linux") or name in glibc_libraries():
            return True
        if self.libraries is None:
            return is_system_library(name)
        return name in self.libraries

    def find(self, name: str, obj: ElfFile, loaders: Sequence[ElfFile] = (),
             origin: str | None = None) -> tuple[str, str] | tuple[None, None]:
        found = super().find(name, obj, loaders, origin)
        if found[0] is None and "/" not in name and not obj.nodeflib and self.target_has(name):
            return f"{TARGET_LIBRARIES}/{name}", "the target's libraries"
        return found


def activation_library_dirs(tree: Path) -> list[str]:
    """The directories activation puts on LD_LIBRARY_PATH (layout.ACTIVATE_CONF), relative
    to the prefix: the target loads the environment that way, so it is judged that way."""
    conf = tree / layout.ACTIVATE_CONF
    if not conf.is_file():
        return []
    dirs = []
    for line in conf.read_text(encoding="utf-8").splitlines():
        key, _, value = line.partition("=")
        if key == "ld_library_path" and value:
            dirs.append(value)
    return dirs


def _scan(tree: Path, target: TargetInfo, scanned: TreeScan | None = None) -> Scan:
    """Resolve the tree; with ``scanned`` (the one pass over it, still current), from the
    ELF files that pass read instead of walking and reading the tree again."""
    loader = TargetLoader([str(tree / d) for d in activation_library_dirs(tree)],
                          target.libraries)
    if scanned is None:
        return scan(str(tree), loader)
    for rel, elf in scanned.elf_files():
        loader.remember(os.path.join(scanned.root, rel), elf)
    return scan(str(scanned.root), loader, paths=scanned.closure_paths())


def _rel(path: str, tree: Path) -> str:
    return os.path.relpath(path, tree)


def _listing(items: Sequence[str], most: int = 4) -> str:
    shown = ", ".join(items[:most])
    return shown + (f" and {len(items) - most} more" if len(items) > most else "")


@dataclass(frozen=True)
class _Refusal:
    name: str
    packages: tuple[str, ...]
    message: str
    way_out: str


def _refusal(name: str, needers: list[str], tree: Path, target: TargetInfo, why: str
             ) -> _Refusal:
    owners = Owners(str(tree))
    by_owner: dict[str, list[str]] = {}
    for path in needers:
        by_owner.setdefault(owners.owner(path), []).append(owners.rel(path))
    packages = sorted(by_owner)
    files = sorted(f for fs in by_owner.values() for f in fs)
    headless = headless_alternatives()
    swaps = [f"{headless[p]} instead of {p}" for p in packages if p in headless]
    way_out = (f"Use {' and '.join(swaps)}: it needs no display libraries." if swaps else
               f"Ask for {name} on the target (a module, or the site's package), pack with an "
               "interpreter source whose system has it (--python twin or --twin-root), or "
               f"leave out {', '.join(packages)}.")
    where = f"{target.os_pretty or 'the target'}" + (
        f" ({len(target.libraries):,} libraries in target.json)"
        if target.libraries is not None else "")
    return _Refusal(name, tuple(packages),
                    f"{name} is needed by {_listing(files)} ({', '.join(packages)}); "
                    f"{where} does not have it, and {why}", way_out)


def _refuse(refusals: list[_Refusal]) -> None:
    """One error for every library that can be neither found nor grafted, the first in full."""
    first, rest = refusals[0], refusals[1:]
    also = ("; also missing: " + ", ".join(f"{r.name} ({', '.join(r.packages)})" for r in rest)
            if rest else "")
    ways = list(dict.fromkeys(r.way_out for r in refusals))
    raise CompatError(first.message + also + ".", " ".join(ways))


def _fits(library: Path, target: TargetInfo) -> str | None:
    """Why a library from the builder cannot run on the target (its GLIBC_/GLIBCXX_ needs)."""
    needs = version_needs({str(library): library.name}, is_system_library)
    for misfit in needs.misfits(target.glibc_version, target.glibcxx_version):
        have = target.glibc if misfit.family == GLIBC else target.glibcxx
        return (f"the copy this builder has needs {misfit.family}_"
                f"{versions.dotted(misfit.newest)} (the target has {have})")
    return None


def _add_runpath(path: Path, directory: Path) -> None:
    """Add ``$ORIGIN/...`` of ``directory`` to ``path``'s search path, keeping its kind."""
    try:
        info = read_elf(path)
    except ElfError:
        info = None
    if info is None:
        return
    entry = "$ORIGIN" if directory == path.parent else \
        "$ORIGIN/" + os.path.relpath(directory, path.parent)
    uses_rpath = any(info.rpath) and not any(info.runpath)
    current = [p for p in (info.rpath if uses_rpath else info.runpath) if p]
    if entry in current:
        return
    cmd = [patchelf_bin(), "--set-rpath", ":".join([*current, entry])]
    if uses_rpath:
        cmd.insert(1, "--force-rpath")  # DT_RPATH reaches the libraries it loads; keep it so
    # patchelf writes in place: a wheel's library may be a hard link into uv's cache
    with edited(path) as work:
        proc = subprocess.run([*cmd, str(work)], capture_output=True, text=True, check=False,
                              env=hermetic_env())
        if proc.returncode != 0:  # raised inside: the file is left as it was
            raise StageError(f"patchelf failed on {path}: {proc.stderr.strip()}")


def check_against_target(tree: Path, target: TargetInfo, sysroot: Path | None,
                         scanned: TreeScan | None = None) -> ClosureReport:
    """Resolve the tree as the target will; graft what it lacks from ``sysroot`` (the
    interpreter's root filesystem; None: nothing to graft from). Raises CompatError naming
    a library that can be neither found nor grafted. ``scanned``: the one pass over the
    tree, whose ELF files are taken as read; the files grafted or patched here are read
    again into it."""
    source = Loader("", sysroot=str(sysroot) if sysroot else None)
    grafted: list[str] = []
    changed: list[Path] = []
    elsewhere: dict[str, list[str]] = {}
    for round_ in range(_MAX_ROUNDS):
        result = _scan(tree, target, scanned if round_ == 0 else None)
        # a library the environment ships, off these files' search path: their package loads
        # it first (ctypes, dlopen), or they are its build's own test programs (torch/bin);
        # the same on every machine, so the doctor warns and pack neither grafts nor refuses
        for name in [n for n in result.missing if n in result.sonames]:
            elsewhere[name] = result.missing.pop(name)
        if not result.missing:
            break
        refusals: list[_Refusal] = []
        for name, needers in sorted(result.missing.items()):
            dest = tree / GRAFT_DIR / name
            if not dest.exists():
                obj = source.read(needers[0])
                where = None
                if sysroot is not None and isinstance(obj, ElfFile):
                    where, _ = source.find(name, obj)
                if where is None:
                    refusals.append(_refusal(
                        name, needers, tree, target,
                        "nothing ships with the target's own interpreter" if sysroot is None
                        else "this builder has none to graft" if sysroot == Path("/")
                        else f"the interpreter's root filesystem ({sysroot}) has none to graft"))
                    continue
                real = Path(source.real_path(where))
                misfit = _fits(real, target)
                if misfit:
                    refusals.append(_refusal(name, needers, tree, target, misfit))
                    continue
                dest.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(real, dest)
                os.chmod(dest, 0o755)
                _add_runpath(dest, dest.parent)
                grafted.append(name)
                changed.append(dest)
            for path in needers:
                _add_runpath(Path(path), dest.parent)
                changed.append(Path(path))
        if refusals:
            _refuse(refusals)
    else:
        raise StageError("grafting libraries for the target did not settle: "
                         f"{', '.join(sorted(result.missing))} still missing.")
    if scanned is not None and changed:
        scanned.update(dict.fromkeys(changed))
    optional = sorted(result.plugins_missing)
    warnings = [f"{_listing(sorted(_rel(p, tree) for p in needers))} "
                f"need{'s' if len(needers) == 1 else ''} {name}, which the environment has "
                f"at {_rel(result.sonames[name], tree)} but not on "
                f"{'its' if len(needers) == 1 else 'their'} library search path: "
                f"{'it loads' if len(needers) == 1 else 'they load'} only after "
                f"{'its' if len(needers) == 1 else 'their'} package has loaded it, on any "
                "machine (the doctor says the same)"
                for name, needers in sorted(elsewhere.items())]
    if optional:
        warnings.append(f"optional plugins need {', '.join(optional)}, which the target does "
                        "not have: they load only where those libraries exist (dlopen)")
    if result.missing_versions:
        (version, provider), needers = sorted(result.missing_versions.items())[0]
        raise CompatError(f"{Path(needers[0]).relative_to(tree)} needs {version}, which "
                          f"{Path(provider).name} in the environment does not define.",
                          "Pin releases of those packages built together.")
    return ClosureReport(elf_files=result.files,
                         target_libraries=len(target.libraries)
                         if target.libraries is not None else None,
                         grafted=tuple(grafted), optional=tuple(optional),
                         warnings=tuple(warnings))
