"""Reading ELF files with pyelftools: what a binary needs, where it looks, what it provides."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from elftools.common.exceptions import ELFError
from elftools.elf.dynamic import DynamicSection
from elftools.elf.elffile import ELFFile
from elftools.elf.gnuversions import GNUVerNeedSection

_MAGIC = b"\x7fELF"


@dataclass(frozen=True)
class ElfInfo:
    """The dynamic-linking facts of one ELF file.

    ``version_needs`` maps each library file name (``libc.so.6``) to the symbol versions this
    file needs from it (``GLIBC_2.34`` ...).
    """

    path: Path
    soname: str | None
    needed: tuple[str, ...]
    rpath: tuple[str, ...]
    runpath: tuple[str, ...]
    version_needs: dict[str, frozenset[str]]
    machine: str


def is_elf(path: Path) -> bool:
    """True for a regular file that starts with the ELF magic."""
    try:
        if path.is_symlink() or not path.is_file():
            return False
        with path.open("rb") as fh:
            return fh.read(4) == _MAGIC
    except OSError:
        return False


def read_elf(path: Path) -> ElfInfo | None:
    """Dynamic section and version needs of ``path``; None when it is not a usable ELF file."""
    try:
        with path.open("rb") as fh:
            elf = ELFFile(fh)
            soname = None
            needed: list[str] = []
            rpath: list[str] = []
            runpath: list[str] = []
            needs: dict[str, set[str]] = {}
            for section in elf.iter_sections():
                if isinstance(section, DynamicSection):
                    for tag in section.iter_tags():
                        # pyelftools sets these attributes per tag kind; its stubs omit them
                        kind = tag.entry.d_tag
                        if kind == "DT_NEEDED":
                            needed.append(tag.needed)  # type: ignore[attr-defined]
                        elif kind == "DT_SONAME":
                            soname = tag.soname  # type: ignore[attr-defined]
                        elif kind == "DT_RPATH":
                            rpath += [p for p in tag.rpath.split(":") if p]  # type: ignore[attr-defined]
                        elif kind == "DT_RUNPATH":
                            runpath += [p for p in tag.runpath.split(":") if p]  # type: ignore[attr-defined]
                elif isinstance(section, GNUVerNeedSection):
                    for verneed, auxes in section.iter_versions():
                        names = needs.setdefault(str(verneed.name), set())
                        names.update(aux.name for aux in auxes)
            return ElfInfo(path=path, soname=soname, needed=tuple(needed), rpath=tuple(rpath),
                           runpath=tuple(runpath),
                           version_needs={k: frozenset(v) for k, v in needs.items()},
                           machine=str(elf["e_machine"]))
    except (ELFError, OSError, ValueError, KeyError):
        return None


def iter_elf_files(root: Path) -> list[Path]:
    """Every regular ELF file under ``root``, sorted."""
    return sorted(p for p in root.rglob("*") if is_elf(p))


def version_key(version: str) -> tuple[int, ...]:
    """``GLIBC_2.34`` -> (2, 34); a non-numeric tail sorts first."""
    tail = version.split("_", 1)[-1]
    parts = []
    for piece in tail.split("."):
        if not piece.isdigit():
            break
        parts.append(int(piece))
    return tuple(parts)
