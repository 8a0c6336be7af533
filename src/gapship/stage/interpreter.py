"""Stage the interpreter a provider found: copy it into the environment tree.

``copy_interpreter`` copies it in the standard layout (``bin/python3.X``, ``lib/python3.X/``);
the shared-library closure is grafted afterwards. The target's own interpreter is not copied:
the environment is tied to it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from gapship import ui
from gapship.errors import StageError
from gapship.node import layout
from gapship.node.loader import real_path
from gapship.providers.python import (
    SYSTEM_PREFIXES,
    Interpreter,
    PythonInstall,
    TargetPython,
    find_host_python,
)
from gapship.stage import graft, relocate
from gapship.tools import hermetic_env


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
        real = Path(real_path(link, sysroot))
        if real.is_dir():
            shutil.copytree(real, dest / link.relative_to(src), ignore=ignore)
        elif real.is_file():
            shutil.copy2(real, dest / link.relative_to(src))


def copy_interpreter(python: PythonInstall, tree: Path) -> Path:
    """Copy the executable and the standard library into ``tree``; return the staged exe."""
    bin_dir = tree / "bin"
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
        _copy_tree(libdir, tree / rel, python.sysroot)
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


def _site_packages(tree: Path, exe: Path, minor: str) -> Path:
    """PREFIX/lib/python3.X/site-packages, made a site dir of the staged interpreter."""
    proc = subprocess.run([str(exe), "-I", "-B", "-c",
                           "import json, site; print(json.dumps(site.getsitepackages()))"],
                          capture_output=True, text=True, check=False, env=hermetic_env())
    if proc.returncode != 0:
        tail = " / ".join((proc.stderr or proc.stdout).strip().splitlines()[-3:])
        raise StageError(f"the staged interpreter does not run on this builder: {tail}")
    real_tree = tree.resolve()
    site = tree / "lib" / f"python{minor}" / "site-packages"
    site.mkdir(parents=True, exist_ok=True)
    inside = [Path(e).resolve() for e in json.loads(proc.stdout)
              if Path(e).resolve().is_relative_to(real_tree)]
    if not inside:
        raise StageError("the staged interpreter has no site-packages inside its prefix.")
    if site.resolve() not in inside:
        inside[0].mkdir(parents=True, exist_ok=True)
        (inside[0] / layout.SITE_HOOK).write_text(_SITE_HOOK, encoding="utf-8")
    return site


def _copy_and_graft(python: PythonInstall, tree: Path) -> StagedInterpreter:
    """Copy the interpreter, graft its library closure, make it prefix-independent."""
    ui.step(f"staging Python {python.version} from {python.prefix}")
    exe = copy_interpreter(python, tree)
    stdlib = tree / "lib" / f"python{python.minor}"
    originals = {exe: Path(real_path(python.executable, python.sysroot))}
    for path in graft.elf_files(tree / "lib"):
        originals[path] = python.prefix / path.relative_to(tree)
    closure = graft.graft(tree, sorted(originals), originals, python.prefix, python.sysroot)
    graft.set_runpaths(tree, closure)
    if closure.grafted:
        ui.step("grafted " + ", ".join(sorted(closure.grafted)))
    build_prefix = str(python.build_prefix)
    if build_prefix not in SYSTEM_PREFIXES:
        src = build_prefix.encode()
        for elf_path in closure.dep_dirs:
            relocate.replace_c_strings(elf_path, src, relocate.neutral_prefix(src))
    relocate.relocate_sysconfigdata(stdlib, python.build_prefix)
    return StagedInterpreter(site=_site_packages(tree, exe, python.minor), compiler=exe)


def _tie_to_target(target_python: TargetPython, tree: Path) -> StagedInterpreter:
    """An environment for the target's own interpreter: a venv layout without ``venv``.

    ``pyvenv.cfg`` makes that interpreter take PREFIX as ``sys.prefix`` and use
    PREFIX/lib/python3.X/site-packages; the installer links ``bin/python3`` to it
    (layout.BASE_PYTHON names it), since that absolute link cannot ship.
    """
    ui.step(f"tying the environment to the target's {target_python.executable} (Python "
            f"{target_python.version}); no interpreter ships")
    (tree / "bin").mkdir(parents=True, exist_ok=True)
    site = tree / "lib" / f"python{target_python.minor}" / "site-packages"
    site.mkdir(parents=True)
    (tree / layout.PYVENV_CFG).write_text(
        f"home = {target_python.executable.parent}\ninclude-system-site-packages = false\n"
        f"version = {target_python.version}\n", encoding="utf-8")
    base = tree / layout.BASE_PYTHON
    base.parent.mkdir(parents=True, exist_ok=True)
    base.write_text(f"{target_python.executable}\n", encoding="utf-8")
    try:
        compiler: Path | None = find_host_python(target_python.minor).executable
    except StageError:
        compiler = None
    return StagedInterpreter(site=site, compiler=compiler)


def stage_interpreter(interpreter: Interpreter, tree: Path) -> StagedInterpreter:
    """Put the interpreter into the environment ``tree`` (or tie the tree to the target's)."""
    if isinstance(interpreter, TargetPython):
        return _tie_to_target(interpreter, tree)
    return _copy_and_graft(interpreter, tree)
