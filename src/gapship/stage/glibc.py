"""The glibc/libstdc++ check: every ELF file's symbol-version needs against the target's."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from gapship.errors import CompatError
from gapship.node.elf import ElfError, needs_newer, read_elf, version_key
from gapship.probe import TargetInfo
from gapship.stage.graft import elf_files, is_system_library

# the symbol-version families checked against the target: glibc's and libstdc++'s
GLIBC, GLIBCXX = "GLIBC", "GLIBCXX"


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
    """Read the version needs of every ELF file under ``root``.

    Needs on libraries that ship inside the tree (a wheel's own libstdc++ copy) do not count:
    only those on system libraries do.
    """
    return needs_of({path: str(path.relative_to(root)) for path in elf_files(root)})


def needs_of(files: dict[Path, str]) -> VersionNeeds:
    """The system-library version needs of ``files`` (path -> the name to report it by)."""
    found: dict[str, dict[tuple[int, ...], list[str]]] = {
        GLIBC: defaultdict(list), GLIBCXX: defaultdict(list)}
    for path, rel in files.items():
        try:
            info = read_elf(path)
        except ElfError:
            continue  # a damaged file is not the glibc check's to report
        if info is None:
            continue
        for lib, versions in info.version_needs.items():
            if not is_system_library(lib):
                continue
            for version, _weak in versions:
                family, numbers = version_key(version)
                if numbers and family in found:
                    found[family][numbers].append(rel)
    return VersionNeeds(glibc=dict(found[GLIBC]), glibcxx=dict(found[GLIBCXX]))


@dataclass(frozen=True)
class Misfit:
    """The newest need of one family (GLIBC, GLIBCXX) beyond what the target has, and who."""

    family: str
    newest: tuple[int, ...]
    files: list[str]


def misfits(needs: VersionNeeds, target: TargetInfo) -> list[Misfit]:
    """The families whose needs are newer than the target's glibc / libstdc++, glibc first."""
    found: list[Misfit] = []
    for family, by_version, have in ((GLIBC, needs.glibc, target.glibc_version),
                                     (GLIBCXX, needs.glibcxx, target.glibcxx_version)):
        too_new = {v: p for v, p in by_version.items() if needs_newer(v, have)}
        if too_new:
            found.append(Misfit(family, max(too_new),
                                [f for paths in too_new.values() for f in paths]))
    return found


def _v(version: tuple[int, ...]) -> str:
    return ".".join(map(str, version))


def _files(paths: list[str]) -> str:
    unique = sorted(set(paths))
    shown = ", ".join(unique[:5])
    return shown + (f" and {len(unique) - 5} more" if len(unique) > 5 else "")


def check_target_runs(needs: VersionNeeds, target: TargetInfo) -> list[str]:
    """Raise CompatError when the target's glibc or libstdc++ is too old; return warnings."""
    warnings: list[str] = []
    for misfit in misfits(needs, target):
        if misfit.family == GLIBC:
            raise CompatError(
                f"the environment needs GLIBC_{_v(misfit.newest)} ({_files(misfit.files)}); "
                f"the target has glibc {target.glibc}.",
                "Ways out: pack with an interpreter built for an older glibc (a twin of the "
                "target's OS, the target's own Python, or a python-build-standalone archive), "
                "pin older packages, or pack on a builder whose glibc is not newer than the "
                "target's.")
        raise CompatError(
            f"the environment needs GLIBCXX_{_v(misfit.newest)} ({_files(misfit.files)}); the "
            f"target's libstdc++ provides up to GLIBCXX_{target.glibcxx}.",
            "Pin an older release of those packages, or load a newer GCC runtime module on "
            "the target and probe again.")
    if needs.glibc and not target.glibc_version:
        warnings.append("the target's glibc version is unknown; the GLIBC_ check was skipped")
    if needs.glibcxx and not target.glibcxx_version:
        warnings.append("the target's libstdc++ version is unknown; the GLIBCXX_ check was "
                        "skipped")
    return warnings
