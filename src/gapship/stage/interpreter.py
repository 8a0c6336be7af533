"""Interpreter providers. This module holds the `host` provider: an interpreter on the builder.

A provider finds an interpreter and copies it into the staging tree in the standard layout
(``bin/python3.X``, ``lib/python3.X/``); the shared-library closure is grafted afterwards.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from gapship.errors import StageError

# Run by the candidate interpreter itself (3.6+, stdlib only).
_QUERY = r"""
import json, os, sys, sysconfig
paths = sysconfig.get_paths()
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


@dataclass(frozen=True)
class PythonInstall:
    """An interpreter found on the builder, described by itself."""

    version: str
    executable: Path
    prefix: Path
    stdlib: Path
    platstdlib: Path
    shared: bool

    @property
    def minor(self) -> str:
        return ".".join(self.version.split(".")[:2])


def query_python(executable: Path) -> PythonInstall | None:
    """Ask an interpreter to describe itself; None when it does not run or is not CPython."""
    try:
        proc = subprocess.run([str(executable), "-I", "-c", _QUERY], capture_output=True,
                              text=True, timeout=30, check=False)
        data = json.loads(proc.stdout)
    except (OSError, subprocess.TimeoutExpired, json.JSONDecodeError):
        return None
    if data.get("implementation") != "cpython":
        return None
    return PythonInstall(version=data["version"], executable=Path(data["executable"]),
                         prefix=Path(data["prefix"]), stdlib=Path(data["stdlib"]),
                         platstdlib=Path(data["platstdlib"]), shared=data["shared"])


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


def find_host_python(minor: str | None) -> PythonInstall:
    """The builder's interpreter of version ``3.X`` (or the one running gapship when None)."""
    seen: set[Path] = set()
    for candidate in _candidates(minor):
        if candidate in seen or not candidate.exists():
            continue
        seen.add(candidate)
        info = query_python(candidate)
        if info and (minor is None or info.minor == minor):
            return info
    raise StageError(
        f"no CPython {minor} found on this builder.",
        f"Install one (`uv python install {minor}`, pyenv, or the distribution's python{minor}) "
        "or set `python` in env.toml to a version you have.")


def _exclusions() -> dict[str, list[str]]:
    text = resources.files(__package__).joinpath("stdlib_exclude.json").read_text("utf-8")
    data: dict[str, list[str]] = json.loads(text)
    return data


def _copy_tree(src: Path, dest: Path) -> None:
    """Copy a stdlib directory, leaving out what the exclusion data names.

    Symlinks that stay inside ``src`` are kept as links; others are replaced by what they
    point to (dangling ones are dropped).
    """
    rules = _exclusions()
    skip_dirs = set(rules["dirs"])

    def skip(directory: str, name: str) -> bool:
        full = Path(directory, name)
        if full.is_symlink() and not full.exists():
            return True
        if full.is_dir():
            return name in skip_dirs or name.startswith(tuple(rules["dir_prefixes"]))
        return (Path(directory).name == "lib-dynload"
                and name.startswith(tuple(rules["dynload_prefixes"])))

    def ignore(directory: str, names: list[str]) -> set[str]:
        return {name for name in names if skip(directory, name)}

    shutil.copytree(src, dest, symlinks=False, ignore=ignore, dirs_exist_ok=True)


def copy_interpreter(python: PythonInstall, stage: Path) -> Path:
    """Copy the executable and the standard library into ``stage``; return the staged exe."""
    bin_dir = stage / "bin"
    bin_dir.mkdir(parents=True, exist_ok=True)
    exe = bin_dir / f"python{python.minor}"
    shutil.copy2(python.executable, exe)
    for name in ("python3", "python"):
        (bin_dir / name).symlink_to(exe.name)
    for libdir in {python.stdlib, python.platstdlib}:
        try:
            rel = libdir.relative_to(python.prefix)
        except ValueError:
            rel = Path("lib") / f"python{python.minor}"
        _copy_tree(libdir, stage / rel)
    return exe
