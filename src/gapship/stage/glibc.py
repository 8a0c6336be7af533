"""The glibc/libstdc++ check: every ELF file's symbol-version needs against the target's."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from gapship.errors import CompatError
from gapship.probe import TargetInfo
from gapship.stage.elf import iter_elf_files, read_elf, version_key
from gapship.stage.graft import is_system_library


@dataclass(frozen=True)
class VersionNeeds:
    """The newest GLIBC_ and GLIBCXX_ versions the tree needs from system libraries, and who."""

    glibc: dict[tuple[int, ...], list[str]]
    glibcxx: dict[tuple[int, ...], list[str]]

    def newest_glibc(self) -> tuple[int, ...] | None:
        return max(self.glibc) if self.glibc else None

    def newest_glibcxx(self) -> tuple[int, ...] | None:
        return max(self.glibcxx) if self.glibcxx else None


def collect_needs(root: Path) -> VersionNeeds:
    """Read the version needs of every ELF file under ``root`` (pyelftools).

    Needs on libraries that ship inside the tree (a wheel's own libstdc++ copy) do not count:
    only those on system libraries do.
    """
    return needs_of({path: str(path.relative_to(root)) for path in iter_elf_files(root)})


def needs_of(files: dict[Path, str]) -> VersionNeeds:
    """The system-library version needs of ``files`` (path -> the name to report it by)."""
    glibc: dict[tuple[int, ...], list[str]] = defaultdict(list)
    glibcxx: dict[tuple[int, ...], list[str]] = defaultdict(list)
    for path, rel in files.items():
        info = read_elf(path)
        if info is None:
            continue
        for lib, versions in info.version_needs.items():
            if not is_system_library(lib):
                continue
            for v in versions:
                if v.startswith("GLIBC_") and version_key(v):
                    glibc[version_key(v)].append(rel)
                elif v.startswith("GLIBCXX_") and version_key(v):
                    glibcxx[version_key(v)].append(rel)
    return VersionNeeds(glibc=dict(glibc), glibcxx=dict(glibcxx))


def _v(version: tuple[int, ...]) -> str:
    return ".".join(map(str, version))


def _files(paths: list[str]) -> str:
    unique = sorted(set(paths))
    shown = ", ".join(unique[:5])
    return shown + (f" and {len(unique) - 5} more" if len(unique) > 5 else "")


def check_target_runs(needs: VersionNeeds, target: TargetInfo) -> list[str]:
    """Raise CompatError when the target's glibc or libstdc++ is too old; return warnings."""
    warnings: list[str] = []
    newest = needs.newest_glibc()
    if newest and target.glibc_version and newest > target.glibc_version:
        too_new = {v: p for v, p in needs.glibc.items() if v > target.glibc_version}
        files = [f for paths in too_new.values() for f in paths]
        raise CompatError(
            f"the environment needs GLIBC_{_v(newest)} ({_files(files)}); "
            f"the target has glibc {target.glibc}.",
            "Ways out: pack with an interpreter built for an older glibc (a twin of the "
            "target's OS, the target's own Python, or a python-build-standalone archive), "
            "pin older packages, or pack on a builder whose glibc is not newer than the target's.")
    if newest and not target.glibc_version:
        warnings.append("the target's glibc version is unknown; the GLIBC_ check was skipped")
    newest_cxx = needs.newest_glibcxx()
    if newest_cxx and target.glibcxx_version and newest_cxx > target.glibcxx_version:
        too_new = {v: p for v, p in needs.glibcxx.items() if v > target.glibcxx_version}
        files = [f for paths in too_new.values() for f in paths]
        raise CompatError(
            f"the environment needs GLIBCXX_{_v(newest_cxx)} ({_files(files)}); the target's "
            f"libstdc++ provides up to GLIBCXX_{target.glibcxx}.",
            "Pin an older release of those packages, or load a newer GCC runtime module on "
            "the target and probe again.")
    if newest_cxx and not target.glibcxx_version:
        warnings.append("the target's libstdc++ version is unknown; the GLIBCXX_ check was "
                        "skipped")
    return warnings
