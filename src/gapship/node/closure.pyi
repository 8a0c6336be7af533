# Types of closure.py for the builder's mypy; closure.py itself runs unannotated on Python 3.6+.
import os
from collections.abc import Iterable
from typing import Any

from .base import Check
from .loader import Loader
from .owners import Owners

_Path = str | os.PathLike[str]

GROUP: str
DRIVER_LIBRARIES: tuple[str, ...]

def is_driver_library(name: str) -> bool: ...

class Scan:
    files: int
    skipped_abi: int
    sonames: dict[str, str]
    missing: dict[str, list[str]]
    plugins_missing: dict[str, list[str]]
    missing_versions: dict[tuple[str, str], list[str]]
    unreadable: list[tuple[str, str]]
    driver_needed: dict[str, list[str]]
    outside: dict[str, tuple[str, str]]
    interp_missing: dict[str, list[str]]
    def __init__(self) -> None: ...

def scan(prefix: _Path, loader: Loader | None = ..., main_exe: str | None = ...,
         paths: Iterable[str] | None = ...) -> Scan: ...
def running_glibc() -> str | None: ...
def check_closure(prefix: _Path, owners: Owners | None = ..., loader: Loader | None = ...,
                  context: dict[str, Any] | None = ...) -> tuple[list[Check], Scan]: ...
def library_context(name: str, owners: Owners, sonames: dict[str, str]) -> dict[str, Any]: ...
