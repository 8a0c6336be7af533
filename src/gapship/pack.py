"""The pack pipeline: spec (or lock) + target -> plan -> fetch -> stage -> bundle."""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path

from gapship import ui
from gapship.bundle import BundleInfo, write_bundle
from gapship.cache import cache_dir
from gapship.errors import CompatError
from gapship.fetch import FetchResult, fetch, installed_sizes
from gapship.plan import Lock, plan
from gapship.probe import TargetInfo
from gapship.spec import PythonSpec, Spec
from gapship.stage import StagedTree, providers, stage_environment
from gapship.stage.cuda import read_toolkit_versions
from gapship.stage.interpreter import PythonInstall, TargetPython
from gapship.stage.sdist import build_pure_wheels


@dataclass(frozen=True)
class PackResult:
    lock: Lock
    fetched: FetchResult
    tree: StagedTree
    bundle: BundleInfo
    warnings: tuple[str, ...]


def choose_python(spec: Spec, target: TargetInfo) -> tuple[PythonInstall | TargetPython, str]:
    """The interpreter to ship (or, for `target`, to tie the environment to) and its source."""
    choice = providers.choose_python(spec.python_spec, target)
    ui.step(f"Python {choice.version} from {choice.source}: {choice.reason}")
    return choice.python, choice.source


def python_for_lock(lock: Lock, want: PythonSpec, target: TargetInfo
                    ) -> PythonInstall | TargetPython:
    """The interpreter a lock was planned with: its source, asked again for that version."""
    choice = providers.choose_python(
        replace(want, version=lock.python_minor, source=lock.python_source), target)
    if choice.version != lock.python_version:
        ui.warn(f"the lock was planned for Python {lock.python_version}; {choice.source} gives "
                f"{choice.version} (same minor version: the wheels fit)")
    return choice.python


def local_toolkit_versions(spec: Spec) -> tuple[str, str | None] | None:
    """(CUDA, cuDNN) of env.toml's local toolkit directories, when it names them."""
    if spec.cuda.path is None:
        return None
    found = read_toolkit_versions(Path(spec.cuda.path).expanduser(),
                                  Path(spec.cudnn.path).expanduser() if spec.cudnn.path else None)
    return found.cuda, found.cudnn


def plan_spec(spec: Spec, target: TargetInfo) -> tuple[Lock, PythonInstall | TargetPython]:
    """Plan a spec for a target: the lock, and the interpreter it was planned with."""
    python, source = choose_python(spec, target)
    ui.step(f"planning for Python {python.version} ({source}) on {target.describe()}")
    # pip ships in every environment, so that `pip list` and `pip install --no-index` work there.
    lock = plan(spec, target, python.version, source, extra_requirements=("pip",),
                local_toolkit=local_toolkit_versions(spec))
    sizes = installed_sizes(lock.files)
    lock = replace(lock, files=tuple(replace(f, installed_size=sizes.get(f.sha256))
                                     for f in lock.files))
    free_kb = target.home_free_kb
    if free_kb is not None and lock.installed_size > free_kb * 1024 * 0.8:
        lock = replace(lock, warnings=(*lock.warnings, (
            f"little free space: the packages unpack to {lock.installed_size / 1e9:.2f} GB and "
            f"the target's home has {free_kb / 1e6:.2f} GB free; install on scratch with "
            "--prefix, or leave out what you do not need (exclude = [...])")))
    return lock, python


def pack(spec: Spec | Lock, target: TargetInfo, out: Path, *, level: int = 6,
         keep_tree: Path | None = None, python_spec: PythonSpec | None = None,
         sign_key: Path | None = None) -> PackResult:
    """Build ``out`` for ``target`` from a spec, or exactly from a lock that `gapship plan`
    wrote. Nothing is written at ``out`` unless every check passed. ``python_spec`` (the
    CLI's --python options) overrides the spec's; for a lock it names the archive or rootfs.
    ``sign_key`` (from `gapship keygen`) signs the bundle."""
    if isinstance(spec, Lock):
        lock, python = spec, python_for_lock(spec, python_spec or PythonSpec(), target)
    else:
        if python_spec is not None:
            spec = replace(spec, python_spec=python_spec)
        lock, python = plan_spec(spec, target)
    if lock.gpu is not None and lock.gpu.cuda_source == "toolkit" and not lock.gpu.toolkit_path:
        raise CompatError(f"{lock.gpu.framework} {lock.gpu.framework_version} needs CUDA "
                          f"{lock.gpu.cuda} and cuDNN {lock.gpu.cudnn}, and no wheel provides "
                          "them.", "Name a local toolkit in env.toml: cuda = { path = "
                          f"\"/usr/local/cuda-{lock.gpu.cuda}\" }} and cudnn = {{ path = ... }}.")
    for warning in lock.warnings:
        ui.warn(warning)
    ui.step(f"{len(lock.files)} files, {lock.download_size / 1e6:.1f} MB to fetch")
    fetched = fetch(lock.files)
    ui.step(f"fetched {fetched.downloaded_bytes / 1e6:.1f} MB "
            f"({fetched.cache_hits} of {len(lock.files)} files from the cache)")
    wheels = build_pure_wheels(list(fetched.paths))
    work_parent = cache_dir() / "stage"
    work_parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f"{lock.name}-", dir=work_parent))
    try:
        tree = stage_environment(lock, python, wheels, target, work)
        warnings = list(tree.warnings)
        if target.home_free_kb is not None and tree.total_bytes // 1024 > target.home_free_kb:
            warnings.append(f"the environment needs {tree.total_bytes / 1e9:.2f} GB; the "
                            f"target's home has {target.home_free_kb / 1e6:.2f} GB free: install "
                            "it on scratch with --prefix")
        bundle = write_bundle(tree.root, out, name=lock.name, version=lock.env_version,
                              python=python.version, installed_bytes=tree.total_bytes,
                              level=level, sign_key=sign_key)
        if keep_tree is not None:
            shutil.rmtree(keep_tree, ignore_errors=True)
            shutil.move(str(tree.root), keep_tree)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return PackResult(lock=lock, fetched=fetched, tree=tree, bundle=bundle,
                      warnings=tuple(warnings))
