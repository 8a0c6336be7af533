"""Lock + interpreter + fetched files -> a prefix-independent environment tree with its
manifest.

All relocation work happens here, on the builder: the install on the target is extraction
plus writing a handful of activation files.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from gapship import activate, doctor, ui
from gapship.cache import cache_dir
from gapship.errors import StageError
from gapship.files import replace_bytes, write_json
from gapship.node import layout
from gapship.plan import Lock, cpu_needs_json
from gapship.probe import TargetInfo
from gapship.providers.python import SYSTEM_PREFIXES, Interpreter, PythonInstall
from gapship.stage import (
    bytecode,
    cuda,
    glibc,
    manifest,
    relocate,
    target_closure,
    treescan,
)
from gapship.stage.interpreter import stage_interpreter
from gapship.stage.sdist import build_pure_wheels
from gapship.tools import hermetic_env
from gapship.uv import uv_bin, uv_env


@dataclass(frozen=True)
class StagedTree:
    """A finished environment tree at ``path``, ready to be bundled."""

    path: Path
    python_minor: str
    site_packages: str
    total_bytes: int
    file_count: int
    distributions: tuple[dict[str, object], ...]
    warnings: tuple[str, ...]
    proven: tuple[str, ...] = ()  # what the static checks proved, one line each
    # every path of the tree as the bundle stores it (directories first, the manifest last)
    members: tuple[Path, ...] = ()


# 2000-01-01T00:00:00Z, the mtime of every .py (see "precompiling bytecode")
SOURCE_MTIME = 946684800


def _run(cmd: list[str], what: str, env: dict[str, str] | None = None) -> str:
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env or hermetic_env(),
                          check=False)
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        raise StageError(f"{what} failed: {' / '.join(tail)}")
    return proc.stdout


def _install_wheels(lock: Lock, wheels: list[Path], site: Path, tree: Path) -> None:
    if not wheels:
        return
    cmd = [uv_bin(), "pip", "install", "--target", str(site), "--no-index", "--no-deps",
           "--offline", "--python", sys.executable, "--python-version", lock.python_version,
           "--python-platform", lock.platform_tag, "--only-binary", ":all:",
           "--link-mode", "hardlink", "--quiet", *map(str, wheels)]
    _run(cmd, "installing the wheels", env=uv_env())
    # Console scripts land in site/bin; they belong in PREFIX/bin, beside python3.
    scripts = site / "bin"
    moved: dict[str, str] = {}
    if scripts.is_dir():
        rel_bin = os.path.relpath(tree / "bin", site)
        for script in sorted(scripts.iterdir()):
            dest = tree / "bin" / script.name
            if dest.exists():
                raise StageError(f"a package's script bin/{script.name} would replace the "
                                 "environment's own; remove that package.")
            shutil.move(str(script), dest)
            moved[f"bin/{script.name}"] = f"{rel_bin}/{script.name}"
        scripts.rmdir()
    _fix_records(site, moved)


def _fix_records(site: Path, moved: dict[str, str]) -> None:
    """Point RECORD at moved scripts; drop direct_url.json (it names the builder's cache)."""
    for dist_info in site.glob("*.dist-info"):
        (dist_info / "direct_url.json").unlink(missing_ok=True)
        record = dist_info / "RECORD"
        if not record.exists():
            continue
        lines = []
        for line in record.read_text(encoding="utf-8").splitlines():
            path = line.rsplit(",", 2)[0]
            if path.endswith("direct_url.json"):
                continue
            if path in moved:
                line = f"{moved[path]},,"
            lines.append(line)
        # a new file renamed over RECORD: the old one may be a hard link into uv's cache
        replace_bytes(record, ("\n".join(lines) + "\n").encode("utf-8"))


def builder_needles(interpreter: Interpreter, workdir: Path) -> list[bytes]:
    """Paths this pack read from or wrote to, which must not appear in the tree.

    The builder's home as such is not one: packages mention ``/root/`` or ``/home/`` in
    docs and tests, and the interpreter's prefix and the cache already cover what lives there.
    """
    needles = {str(workdir.resolve()), str(cache_dir().resolve())}
    prefixes = ((interpreter.prefix, interpreter.prefix.resolve())
                if isinstance(interpreter, PythonInstall) else ())
    for prefix in prefixes:
        if str(prefix) not in SYSTEM_PREFIXES:
            needles.add(str(prefix))
    return sorted(n.encode() for n in needles)


def stage_environment(lock: Lock, interpreter: Interpreter, fetched: list[Path],
                      target: TargetInfo, workdir: Path, *, with_bytecode: bool = True
                      ) -> StagedTree:
    """Build the environment tree at ``workdir/tree`` from the fetched files (wheels, and
    source archives built here into pure-Python wheels) and check it against the target.
    ``with_bytecode=False`` (--no-bytecode): no .pyc, the target's Python compiles at first use."""
    tree = workdir / "tree"
    if tree.exists():
        shutil.rmtree(tree)
    tree.mkdir(parents=True)
    warnings: list[str] = []

    staged = stage_interpreter(interpreter, tree)
    site = staged.site
    wheels = build_pure_wheels(fetched)
    ui.step(f"installing {len(wheels)} wheels into {site.relative_to(tree)}")
    _install_wheels(lock, wheels, site, tree)
    if lock.gpu is not None:
        warnings += cuda.stage_gpu(lock.gpu, tree, site)
    for script in sorted((tree / "bin").iterdir()):
        if script.is_file() and not script.is_symlink():
            relocate.rewrite_script(script)

    activate.install_target_files(tree)
    doctor.install_target_files(tree)
    dists = manifest.distributions(site)
    (tree / layout.NAME).write_text(lock.name + "\n", encoding="utf-8")
    (tree / layout.VERSION).write_text(lock.env_version + "\n", encoding="utf-8")
    write_json(tree / layout.LOCK, json.loads(lock.shipped().to_json()))
    write_json(tree / layout.CPU_NEEDS, cpu_needs_json(lock))
    write_json(tree / layout.TARGET, target.to_json())
    write_json(tree / layout.ENVIRONMENT, {
        "name": lock.name, "version": lock.env_version, "python": interpreter.version,
        "python_source": lock.python_source, "platform_tag": lock.platform_tag,
        "site_packages": site.relative_to(tree).as_posix(), "distributions": dists,
    })

    if not with_bytecode:
        ui.step("no bytecode shipped (--no-bytecode): it is compiled on first use")
    elif staged.compiler is None:
        ui.step(f"no Python {interpreter.minor} on this builder: bytecode is compiled on "
                "first use")
    else:
        ui.step("precompiling bytecode")
        # Bytecode records its source's mtime: one fixed mtime for every source makes it the
        # same in every build of the same packages, so that a delta (pack --update-of) carries
        # only the bytecode of what changed.
        for source in (tree / "lib").rglob("*.py"):
            if not source.is_symlink():
                os.utime(source, (SOURCE_MTIME, SOURCE_MTIME))
        # as compileall -d /lib: the files named as they will be on the target; sources that
        # do not compile (test data in py2 syntax) stay uncompiled
        compiled = bytecode.precompile(staged.compiler, tree / "lib")
        ui.step(f"bytecode: {compiled.describe()}")

    ui.step("reading every file once: sha256, builder paths, ELF")
    # target.json is the probe's record of the target itself, not a trace of the builder.
    scanned = treescan.scan_tree(tree, builder_needles(interpreter, workdir),
                                 skip=(layout.TARGET,))
    ui.step(f"checked that no builder path is left in {len(scanned.files)} files")
    relocate.raise_builder_paths(scanned.hits)
    escaping = scanned.escaping_symlinks()
    if escaping:
        raise StageError(f"symlinks point outside the environment: {', '.join(escaping[:10])}.")

    ui.step("resolving every library the environment needs as the target's loader will")
    closure = target_closure.check_against_target(
        tree, target, interpreter.sysroot if isinstance(interpreter, PythonInstall) else None,
        scanned)
    if closure.grafted:
        ui.step("grafted from this builder for the target: " + ", ".join(closure.grafted))
        # a grafted library was not there to be scanned for builder paths
        relocate.raise_builder_paths(scanned.hits)
    warnings += closure.warnings
    if closure.target_libraries is None:
        warnings.append("target.json has no list of the target's libraries (an older probe): "
                        "only the libraries every glibc system has were assumed; probe again "
                        "for a full check")
    ui.step(f"checking glibc needs against the target ({target.describe()})")
    warnings += glibc.check_target_runs(glibc.collect_needs(tree, scanned), target)
    proof = glibc.proof(target)
    proven_glibc = (proof,) if proof else ()

    data = scanned.manifest()
    write_json(tree / layout.MANIFEST, data)
    return StagedTree(path=tree, python_minor=interpreter.minor,
                      site_packages=site.relative_to(tree).as_posix(),
                      total_bytes=data["total_bytes"], file_count=len(data["files"]),
                      distributions=tuple(dists), warnings=tuple(warnings),
                      proven=(*proven_glibc, closure.summary()),
                      members=tuple(scanned.members(last=layout.MANIFEST)))
