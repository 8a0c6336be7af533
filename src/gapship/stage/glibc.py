"""The glibc/libstdc++ check: every ELF file's symbol-version needs against the target's."""

from __future__ import annotations

from pathlib import Path

from gapship.compat import is_system_library
from gapship.errors import CompatError
from gapship.node.elf import GLIBC, VersionNeeds, version_needs_of
from gapship.probe import TargetInfo
from gapship.stage.treescan import TreeScan, scan_tree


def collect_needs(root: Path, scanned: TreeScan | None = None) -> VersionNeeds:
    """The version needs of every ELF file under ``root`` (as ``scanned``, the one pass over
    the tree, read them; else read now).

    Needs on libraries that ship inside the tree (a wheel's own libstdc++ copy) do not count:
    only those on system libraries do.
    """
    scanned = scanned if scanned is not None else scan_tree(root)
    return version_needs_of(scanned.elf_files(), is_system_library)


def _v(version: tuple[int, ...]) -> str:
    return ".".join(map(str, version))


def _files(paths: list[str]) -> str:
    unique = sorted(set(paths))
    shown = ", ".join(unique[:5])
    return shown + (f" and {len(unique) - 5} more" if len(unique) > 5 else "")


def check_target_runs(needs: VersionNeeds, target: TargetInfo) -> list[str]:
    """Raise CompatError when the target's glibc or libstdc++ is too old; return warnings."""
    warnings: list[str] = []
    for misfit in needs.misfits(target.glibc_version, target.glibcxx_version):
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


def proof(target: TargetInfo) -> str | None:
    """What ``check_target_runs`` proved, in one line; None when the target's glibc is unknown."""
    if not target.glibc:
        return None
    against = f"glibc {target.glibc}"
    if target.glibcxx:
        against += f" and libstdc++ (GLIBCXX_{target.glibcxx})"
    return f"the GLIBC_/GLIBCXX_ needs of every ELF file checked against the probe's {against}"
