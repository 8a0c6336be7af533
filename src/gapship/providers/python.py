"""An interpreter on the builder: how it describes itself and where one is found.

The interpreter sources (this package) find one; ``gapship.stage.interpreter`` copies it
into the staging directory. An interpreter may live inside another root filesystem (a twin
of the target's OS): its paths are then read as if that root were ``/``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from gapship.errors import StageError
from gapship.tools import hermetic_env

# Prefixes that every system has: not a trace of the builder when left in a file.
SYSTEM_PREFIXES = {"/", "/usr", "/usr/local"}
# the oldest Python gapship environments support (the doctor and installer helpers run on it)
OLDEST_PYTHON = (3, 6)

# Run by the candidate interpreter itself (3.6+, stdlib only).
_QUERY = r"""
import json, os, sys, sysconfig
# the base install's paths, also when asked through a virtual environment's python
paths = sysconfig.get_paths(vars={"base": sys.base_prefix, "platbase": sys.base_exec_prefix})
print(json.dumps({
    "version": "%d.%d.%d" % sys.version_info[:3],
    "implementation": sys.implementation.name,
    "executable": os.path.realpath(sys.executable),
    "prefix": getattr(sys, "base_prefix", sys.prefix),
    "stdlib": paths["stdlib"],
    "platstdlib": paths["platstdlib"],
    "libdir": sysconfig.get_config_var("LIBDIR"),
    "ldlibrary": sysconfig.get_config_var("LDLIBRARY"),
    "shared": bool(sysconfig.get_config_var("Py_ENABLE_SHARED")),
}))
"""


def minor_of(version: str) -> str:
    """``3.9.2`` -> ``3.9``."""
    return ".".join(version.split(".")[:2])


@dataclass(frozen=True)
class PythonInstall:
    """An interpreter on the builder, described by itself.

    The paths are where the files are on the builder. ``sysroot`` is the root filesystem
    the interpreter belongs to (``/`` for the builder's own; a twin's rootfs otherwise).
    """

    version: str
    executable: Path
    prefix: Path
    stdlib: Path
    platstdlib: Path
    shared: bool
    sysroot: Path = Path("/")

    @property
    def minor(self) -> str:
        return minor_of(self.version)

    @property
    def build_prefix(self) -> Path:
        """The prefix as the interpreter knows it (``/usr`` for a twin's, not the rootfs path)."""
        return Path("/", self.prefix.relative_to(self.sysroot))


@dataclass(frozen=True)
class TargetPython:
    """The target's own interpreter: nothing of it ships, the environment is tied to it."""

    version: str
    executable: PurePosixPath

    @property
    def minor(self) -> str:
        return minor_of(self.version)


def query_python(executable: Path, *, runner: Sequence[str] = (), sysroot: Path = Path("/")
                 ) -> PythonInstall | None:
    """Ask an interpreter to describe itself; None when it does not run or is not CPython.

    ``runner`` is a command prefix that runs it inside ``sysroot`` (bwrap into a twin's
    rootfs); ``executable`` is then its path inside that root.
    """
    try:
        proc = subprocess.run([*runner, str(executable), "-I", "-c", _QUERY],
                              capture_output=True, text=True, timeout=60, check=False,
                              env=hermetic_env())
        data = json.loads(proc.stdout)
    except (OSError, subprocess.TimeoutExpired, json.JSONDecodeError):
        return None
    if data.get("implementation") != "cpython":
        return None

    def here(key: str) -> Path:
        return sysroot / str(data[key]).lstrip("/")

    return PythonInstall(version=data["version"], executable=here("executable"),
                         prefix=here("prefix"), stdlib=here("stdlib"),
                         platstdlib=here("platstdlib"), shared=data["shared"], sysroot=sysroot)


def _candidates(minor: str | None) -> list[Path]:
    found = [Path(sys.executable)]
    if minor is None:
        return found
    exe = f"python{minor}"
    pyenv = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv")) / "versions"
    found += sorted(pyenv.glob(f"{minor}.*/bin/{exe}"), reverse=True)
    uv_dir = Path(os.environ.get("UV_PYTHON_INSTALL_DIR",
                                 Path.home() / ".local" / "share" / "uv" / "python"))
    found += sorted(uv_dir.glob(f"cpython-{minor}.*/bin/{exe}"), reverse=True)
    found += [Path("/usr/local/bin", exe), Path("/usr/bin", exe)]
    on_path = shutil.which(exe)
    if on_path:
        found.append(Path(on_path))
    return found


def first_python(candidates: Iterable[Path], minor: str | None,
                 ask: Callable[[Path], PythonInstall | None] = query_python
                 ) -> PythonInstall | None:
    """The first candidate that exists, runs (``ask``) and is of version ``minor``."""
    seen: set[Path] = set()
    for candidate in candidates:
        if candidate in seen or not (candidate.exists() or candidate.is_symlink()):
            continue
        seen.add(candidate)
        info = ask(candidate)
        if info and (minor is None or info.minor == minor):
            return info
    return None


def find_host_python(minor: str | None) -> PythonInstall:
    """The builder's interpreter of version ``3.X`` (or the one running gapship when None)."""
    found = first_python(_candidates(minor), minor)
    if found is not None:
        return found
    raise StageError(
        f"no CPython {minor} found on this builder.",
        f"Install one (`uv python install {minor}`, pyenv, or the distribution's python{minor}) "
        "or set `python` in env.toml to a version you have.")
