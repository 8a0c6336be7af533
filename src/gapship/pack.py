"""The pack pipeline: spec (or lock) + target -> plan -> fetch -> stage -> bundle."""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from gapship import ui
from gapship.bundle import BundleInfo, write_bundle
from gapship.cache import cache_dir
from gapship.fetch import FetchResult, fetch
from gapship.plan import Lock, plan
from gapship.probe import TargetInfo
from gapship.spec import Spec
from gapship.stage import StagedTree, stage_environment
from gapship.stage.interpreter import find_host_python


@dataclass(frozen=True)
class PackResult:
    lock: Lock
    fetched: FetchResult
    tree: StagedTree
    bundle: BundleInfo
    warnings: tuple[str, ...]


def pack(spec: Spec, target: TargetInfo, out: Path, *, level: int = 6,
         keep_tree: Path | None = None) -> PackResult:
    """Build ``out`` for ``target``. Nothing is written at ``out`` unless every check passed."""
    python = find_host_python(spec.python)
    ui.step(f"resolving {len(spec.packages)} requirements for Python {python.version} on "
            f"{target.describe()}")
    # pip ships in every environment, so that `pip list` and `pip install --no-index` work there.
    lock = plan(spec, target, python.version, "host", extra_requirements=("pip",))
    ui.step(f"{len(lock.files)} wheels, {lock.download_size / 1e6:.1f} MB to fetch")
    fetched = fetch(lock.files)
    ui.step(f"fetched {fetched.downloaded_bytes / 1e6:.1f} MB "
            f"({fetched.cache_hits} of {len(lock.files)} files from the cache)")
    work_parent = cache_dir() / "stage"
    work_parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f"{spec.name}-", dir=work_parent))
    try:
        tree = stage_environment(lock, python, list(fetched.paths), target, work)
        warnings = list(tree.warnings)
        if target.home_free_kb is not None and tree.total_bytes // 1024 > target.home_free_kb:
            warnings.append(f"the environment needs {tree.total_bytes / 1e9:.2f} GB; the "
                            f"target's home has {target.home_free_kb / 1e6:.2f} GB free: install "
                            "it on scratch with --prefix")
        bundle = write_bundle(tree.root, out, name=lock.name, version=lock.env_version,
                              python=python.version, installed_bytes=tree.total_bytes,
                              level=level)
        if keep_tree is not None:
            shutil.rmtree(keep_tree, ignore_errors=True)
            shutil.move(str(tree.root), keep_tree)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return PackResult(lock=lock, fetched=fetched, tree=tree, bundle=bundle,
                      warnings=tuple(warnings))
