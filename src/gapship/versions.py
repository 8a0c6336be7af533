"""Version numbers, read and written one way across the builder.

Release numbers (CUDA "12.8", a driver "525.60.13", Python "3.11.9", glibc "2.31") are
tuples of ints, compared as tuples; PEP 440 versions of packages go through
``packaging.version.Version``. Two kinds have their own owner: the GLIBC_/GLIBCXX_ symbol
versions of ELF files (the ELF reader's key), and the helpers of the code that runs on the
target (``gapship.node`` is stdlib-only and cannot import the builder).
"""

from __future__ import annotations


def release(text: str) -> tuple[int, ...]:
    """"12.8" -> (12, 8); "525.60.13" -> (525, 60, 13). ValueError when a part is no number."""
    return tuple(int(part) for part in text.split("."))


def dotted(version: tuple[int, ...]) -> str:
    """(2, 31) -> "2.31"."""
    return ".".join(map(str, version))


def minor(version: str) -> str:
    """The major.minor of a version: "3.11.9" -> "3.11", "12.8.90" -> "12.8"."""
    return ".".join(version.split(".")[:2])


def matches(found: str, wanted: str) -> bool:
    """Whether ``found`` is ``wanted`` at the precision ``wanted`` is given in: "9.0.176"
    matches "9.0" and "9", not "9.1"."""
    parts = wanted.split(".")
    return found.split(".")[:len(parts)] == parts


def driver_text(version: tuple[int, ...]) -> str:
    """(450, 80, 2) -> "450.80.02": NVIDIA writes the parts after the branch with two digits."""
    return ".".join([str(version[0]), *(f"{p:02d}" for p in version[1:])])
