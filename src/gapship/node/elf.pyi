# Types of elf.py for the builder's mypy; elf.py itself runs unannotated on Python 3.6+.
import os
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import BinaryIO, NamedTuple

_Path = str | os.PathLike[str]

ELF_MAGIC: bytes
ET_EXEC: int
ET_DYN: int
PT_LOAD: int
PT_DYNAMIC: int
PT_INTERP: int
DT_NULL: int
DT_NEEDED: int
DT_STRTAB: int
DT_STRSZ: int
DT_SONAME: int
DT_RPATH: int
DT_RUNPATH: int
DT_FLAGS_1: int
DT_VERDEF: int
DT_VERDEFNUM: int
DT_VERNEED: int
DT_VERNEEDNUM: int
DF_1_NODEFLIB: int
VER_FLG_BASE: int
VER_FLG_WEAK: int
MACHINES: dict[int, str]

class ElfError(Exception): ...

class ElfFile:
    path: str
    elf_class: int
    endian: str
    machine: int
    type: int
    interp: str | None
    soname: str | None
    needed: list[str]
    rpath: list[str]
    runpath: list[str]
    nodeflib: bool
    version_needs: dict[str, list[tuple[str, bool]]]
    version_defs: set[str]
    dynamic: bool
    def __init__(self, path: str, elf_class: int, endian: str, machine: int,
                 elf_type: int) -> None: ...
    @property
    def abi(self) -> tuple[int, str, int]: ...
    def describe_abi(self) -> str: ...

GLIBC: str
GLIBCXX: str

class Misfit(NamedTuple):
    family: str
    newest: tuple[int, ...]
    files: list[str]

class VersionNeeds:
    glibc: dict[tuple[int, ...], list[str]]
    glibcxx: dict[tuple[int, ...], list[str]]
    def __init__(self, glibc: dict[tuple[int, ...], list[str]],
                 glibcxx: dict[tuple[int, ...], list[str]]) -> None: ...
    def newest_glibc(self) -> tuple[int, ...] | None: ...
    def newest_glibcxx(self) -> tuple[int, ...] | None: ...
    def misfits(self, glibc: tuple[int, ...] | None,
                glibcxx: tuple[int, ...] | None) -> list[Misfit]: ...

def version_needs(files: Mapping[_Path, str],
                  is_system: Callable[[str], bool]) -> VersionNeeds: ...
def version_needs_of(elfs: Iterable[tuple[str, ElfFile | ElfError | None]],
                     is_system: Callable[[str], bool]) -> VersionNeeds: ...
def might_be_elf(name: str, mode: int) -> bool: ...
def iter_elf_paths(root: _Path, every_file: bool = ...) -> Iterator[str]: ...
def version_key(version: str) -> tuple[str, tuple[int, ...]]: ...
def needs_newer(version: str | tuple[int, ...], have: tuple[int, ...] | None) -> bool: ...
def newest_version(versions: Iterable[str], family: str) -> str | None: ...
def read_header(path: _Path) -> tuple[int, str, int] | None: ...
def header_of(head: bytes) -> tuple[int, str, int] | None: ...
def read_elf(path: _Path) -> ElfFile | None: ...
def parse_elf(fh: BinaryIO, path: str) -> ElfFile | None: ...
