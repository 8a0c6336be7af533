"""An interpreter to stage: how it describes itself, where it is, how it is copied.

A provider (providers.py) finds an interpreter; ``copy_interpreter`` copies it into the
staging tree in the standard layout (``bin/python3.X``, ``lib/python3.X/``); the
shared-library closure is grafted afterwards. An interpreter may live inside another root
filesystem (a twin of the target's OS): its paths are then read as if that root were ``/``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path, PurePosixPath

from gapship import ui
from gapship.errors import StageError
from gapship.stage import graft, relocate
from gapship.stage.elf import iter_elf_files
from gapship.stage.graft import real_path

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
                              capture_output=True, text=True, timeout=60, check=False)
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


def _exclusions() -> dict[str, list[str]]:
    text = resources.files(__package__).joinpath("stdlib_exclude.json").read_text("utf-8")
    data: dict[str, list[str]] = json.loads(text)
    return data


def _copy_tree(src: Path, dest: Path, sysroot: Path) -> None:
    """Copy a stdlib directory, leaving out what the exclusion data names.

    Symlinks are replaced by what they point to, resolved inside ``sysroot``; dangling ones
    are dropped.
    """
    rules = _exclusions()
    skip_dirs = set(rules["dirs"])
    # absolute links inside another rootfs would be read from the builder's own /: copy later
    rerooted: list[Path] = []

    def skip(directory: str, name: str) -> bool:
        full = Path(directory, name)
        if name in skip_dirs:
            return True
        if sysroot != Path("/") and full.is_symlink() and os.readlink(full).startswith("/"):
            rerooted.append(full)
            return True
        if full.is_symlink() and not full.exists():
            return True
        if full.is_dir():
            return name in skip_dirs or name.startswith(tuple(rules["dir_prefixes"]))
        return (Path(directory).name == "lib-dynload"
                and name.startswith(tuple(rules["dynload_prefixes"])))

    def ignore(directory: str, names: list[str]) -> set[str]:
        return {name for name in names if skip(directory, name)}

    shutil.copytree(src, dest, symlinks=False, ignore=ignore, dirs_exist_ok=True)
    for link in rerooted:
        real = real_path(link, sysroot)
        if real.is_dir():
            shutil.copytree(real, dest / link.relative_to(src), ignore=ignore)
        elif real.is_file():
            shutil.copy2(real, dest / link.relative_to(src))


def copy_interpreter(python: PythonInstall, stage: Path) -> Path:
    """Copy the executable and the standard library into ``stage``; return the staged exe."""
    bin_dir = stage / "bin"
    bin_dir.mkdir(parents=True, exist_ok=True)
    exe = bin_dir / f"python{python.minor}"
    shutil.copy2(real_path(python.executable, python.sysroot), exe)
    for name in ("python3", "python"):
        (bin_dir / name).symlink_to(exe.name)
    for libdir in {python.stdlib, python.platstdlib}:
        try:
            rel = libdir.relative_to(python.prefix)
        except ValueError:
            rel = Path("lib") / f"python{python.minor}"
        _copy_tree(libdir, stage / rel, python.sysroot)
    return exe


@dataclass(frozen=True)
class StagedInterpreter:
    """What staging the interpreter left in the tree.

    ``site`` is where packages go; ``compiler`` a Python of the same version on the builder
    that can precompile bytecode (None: there is none).
    """

    site: Path
    compiler: Path | None


# Run at startup by the interpreter's own site dir, when that is not lib/python3.X/site-packages
# (Debian's python3 uses dist-packages): packages then live where every gapship env has them.
_SITE_HOOK = ("import os, site, sys; site.addsitedir(os.path.join(sys.prefix, 'lib', "
              "'python%d.%d' % sys.version_info[:2], 'site-packages'))\n")


def _site_packages(root: Path, exe: Path, minor: str) -> Path:
    """PREFIX/lib/python3.X/site-packages, made a site dir of the staged interpreter."""
    proc = subprocess.run([str(exe), "-I", "-B", "-c",
                           "import json, site; print(json.dumps(site.getsitepackages()))"],
                          capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        tail = " / ".join((proc.stderr or proc.stdout).strip().splitlines()[-3:])
        raise StageError(f"the staged interpreter does not run on this builder: {tail}")
    real_root = root.resolve()
    site = root / "lib" / f"python{minor}" / "site-packages"
    site.mkdir(parents=True, exist_ok=True)
    inside = [Path(e).resolve() for e in json.loads(proc.stdout)
              if Path(e).resolve().is_relative_to(real_root)]
    if not inside:
        raise StageError("the staged interpreter has no site-packages inside its prefix.")
    if site.resolve() not in inside:
        inside[0].mkdir(parents=True, exist_ok=True)
        (inside[0] / "gapship-site.pth").write_text(_SITE_HOOK, encoding="utf-8")
    return site


def _copy_and_graft(python: PythonInstall, root: Path) -> StagedInterpreter:
    """Copy the interpreter, graft its library closure, make it prefix-independent."""
    ui.step(f"staging Python {python.version} from {python.prefix}")
    exe = copy_interpreter(python, root)
    stdlib = root / "lib" / f"python{python.minor}"
    originals = {exe: real_path(python.executable, python.sysroot)}
    for path in iter_elf_files(root / "lib"):
        originals[path] = python.prefix / path.relative_to(root)
    closure = graft.graft(root, sorted(originals), originals, python.prefix, python.sysroot)
    graft.set_runpaths(root, closure)
    if closure.grafted:
        ui.step("grafted " + ", ".join(sorted(closure.grafted)))
    build_prefix = str(python.build_prefix)
    if build_prefix not in SYSTEM_PREFIXES:
        src = build_prefix.encode()
        for elf_path in closure.dep_dirs:
            relocate.replace_c_strings(elf_path, src, relocate.neutral_prefix(src))
    relocate.relocate_sysconfigdata(stdlib, python.build_prefix)
    return StagedInterpreter(site=_site_packages(root, exe, python.minor), compiler=exe)


PYVENV_CFG = "pyvenv.cfg"
BASE_PYTHON = "gapship/base-python"


def _tie_to_target(python: TargetPython, root: Path) -> StagedInterpreter:
    """An environment for the target's own interpreter: a venv layout without ``venv``.

    ``pyvenv.cfg`` makes that interpreter take PREFIX as ``sys.prefix`` and use
    PREFIX/lib/python3.X/site-packages; the installer links ``bin/python3`` to it
    (gapship/base-python names it), since that absolute link cannot ship.
    """
    ui.step(f"tying the environment to the target's {python.executable} (Python "
            f"{python.version}); no interpreter ships")
    (root / "bin").mkdir(parents=True, exist_ok=True)
    site = root / "lib" / f"python{python.minor}" / "site-packages"
    site.mkdir(parents=True)
    (root / PYVENV_CFG).write_text(
        f"home = {python.executable.parent}\ninclude-system-site-packages = false\n"
        f"version = {python.version}\n", encoding="utf-8")
    base = root / BASE_PYTHON
    base.parent.mkdir(parents=True, exist_ok=True)
    base.write_text(f"{python.executable}\n", encoding="utf-8")
    try:
        compiler: Path | None = find_host_python(python.minor).executable
    except StageError:
        compiler = None
    return StagedInterpreter(site=site, compiler=compiler)


def stage_interpreter(python: PythonInstall | TargetPython, root: Path) -> StagedInterpreter:
    """Put the interpreter into the tree at ``root`` (or tie the tree to the target's)."""
    if isinstance(python, TargetPython):
        return _tie_to_target(python, root)
    return _copy_and_graft(python, root)
