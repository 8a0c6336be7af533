"""The pack pipeline, in the order the data walks: providers -> plan -> fetch -> stage ->
verify -> bundle.

``pack_spec`` starts from env.toml's Spec and runs every step; ``pack_lock`` starts from a
lock that `gapship plan` wrote, so the plan is already made: the providers find the
interpreter it was planned with, and the rest runs as for a spec. Either way the staged
tree's own doctor runs in a replica of the target (``verify``) before the bundle is written,
unless ``smoke=False``.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor, wait
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

from gapship import providers, ui, verify
from gapship.bundle import BundleInfo, write_bundle
from gapship.bundle.codec import Codec, choose
from gapship.bundle.delta import OldEnvironment, write_delta
from gapship.bundle.image import image_carrier
from gapship.cache import cache_dir
from gapship.errors import CompatError, StageError
from gapship.fetch import FetchResult, fetch, installed_sizes
from gapship.files import sha256_file
from gapship.node import layout
from gapship.plan import Lock, framework_pythons, plan, refuse_python_first
from gapship.probe import TargetInfo
from gapship.providers import PythonChoice
from gapship.providers.python import Interpreter
from gapship.providers.toolkit import read_toolkit_versions
from gapship.providers.twin import release_for as twin_release_for
from gapship.spec import PythonSpec, Spec
from gapship.stage import StagedTree, stage_environment

# pip ships in every environment, so that `pip list` and `pip install --no-index` work there.
ALWAYS_SHIPPED = ("pip",)


@dataclass(frozen=True)
class PackResult:
    lock: Lock
    fetched: FetchResult
    tree: StagedTree
    bundle: BundleInfo
    warnings: tuple[str, ...]
    smoke: verify.SmokeRun
    codec: Codec
    # what this pack proved about the bundle on the target, and how: one line each
    proven: tuple[str, ...]


@dataclass(frozen=True)
class Provided:
    """What the providers found before the plan: the interpreter, and the (CUDA, cuDNN)
    versions of env.toml's local toolkit directories when it names them."""

    python: PythonChoice
    local_toolkit: tuple[str, str | None] | None


def pack_spec(spec: Spec, target: TargetInfo, out: Path, *, codec: str = "auto",
              level: int | None = None, keep_tree: Path | None = None, smoke: bool = True,
              sign_key: Path | None = None, image_format: str = "directory",
              split: int | None = None, update_of: OldEnvironment | None = None,
              bytecode: bool = True) -> PackResult:
    """Build ``out`` for ``target`` from env.toml's spec. Nothing is written at ``out``
    unless every check passed; ``smoke=False`` (--no-verify) skips the smoke run. ``codec``
    (auto, zstd, gzip) and ``level`` (the codec's own scale; None: its default) compress the
    payload; auto takes zstd where the target's probe found it."""
    _check_keep_tree(keep_tree)
    chosen = choose(codec, target.site.tools, level)
    provided = provide(spec, target)
    lock = plan_spec(spec, target, provided)
    return _fetch_stage_bundle(lock, provided.python.interpreter, target, out, codec=chosen,
                               keep_tree=keep_tree, smoke=smoke, sign_key=sign_key,
                               image_format=image_format, split=split, update_of=update_of,
                               bytecode=bytecode)


def pack_lock(lock: Lock, target: TargetInfo, out: Path, *,
              python_spec: PythonSpec | None = None, codec: str = "auto",
              level: int | None = None, keep_tree: Path | None = None, smoke: bool = True,
              sign_key: Path | None = None, image_format: str = "directory",
              split: int | None = None, update_of: OldEnvironment | None = None,
              bytecode: bool = True) -> PackResult:
    """Build ``out`` for ``target`` exactly from a lock that `gapship plan` wrote.
    ``python_spec`` (the CLI's --python options) names the archive or rootfs to take the
    lock's interpreter from."""
    _check_keep_tree(keep_tree)
    chosen = choose(codec, target.site.tools, level)
    interpreter = interpreter_for_lock(lock, python_spec or PythonSpec(), target)
    return _fetch_stage_bundle(lock, interpreter, target, out, codec=chosen,
                               keep_tree=keep_tree, smoke=smoke, sign_key=sign_key,
                               image_format=image_format, split=split, update_of=update_of,
                               bytecode=bytecode)


# ---- providers

def provide(spec: Spec, target: TargetInfo) -> Provided:
    """Ask the providers for the interpreter and read the local toolkit, if any; a Python
    that the framework cannot run on is refused first, before anything is fetched."""
    refuse_python_first(spec, target)
    choice = providers.choose_python(spec.python_spec, target, framework_pythons(spec))
    ui.step(f"Python {choice.version} from {choice.source}: {choice.reason}")
    toolkit = None
    if spec.cuda.path is not None:
        found = read_toolkit_versions(
            Path(spec.cuda.path).expanduser(),
            Path(spec.cudnn.path).expanduser() if spec.cudnn.path else None)
        toolkit = (found.cuda, found.cudnn)
    return Provided(python=choice, local_toolkit=toolkit)


def interpreter_for_lock(lock: Lock, want: PythonSpec, target: TargetInfo) -> Interpreter:
    """The interpreter a lock was planned with: its source, asked again for that version,
    where the lock says it was found (the rootfs, the archive, the path); ``want``'s
    --python-archive or --twin-root, when given, name another place for it."""
    found = lock.interpreter
    source = found.path if found and found.path else lock.python_source
    archive = want.archive or (found.archive if found else None)
    twin_root = want.twin_root or (found.twin_root if found else None)
    if found and found.archive_sha256 and archive:
        digest = sha256_file(Path(archive).expanduser())  # a missing file: unpack says so
        if digest != found.archive_sha256:
            raise StageError(f"{archive} is not the archive the lock was planned with (sha256 "
                             f"{digest[:16]}..., the lock's {found.archive_sha256[:16]}...).",
                             "Give the same archive with --python-archive, or plan again.")
    if found and found.twin_release and not twin_root:
        release = twin_release_for(target)
        if release is None or release.codename != found.twin_release:
            raise StageError(f"the lock's Python comes from a {found.twin_release} twin; the "
                             f"target runs {target.describe()}.",
                             "Pack for the target the lock was planned for, or plan again.")
    choice = providers.choose_python(
        replace(want, version=lock.python_minor, source=source, archive=archive,
                twin_root=twin_root), target)
    where = choice.locator.describe() if choice.locator else choice.source
    ui.step(f"Python {choice.version} from {where}, as the lock says")
    if choice.version != lock.python_version:
        ui.warn(f"the lock was planned for Python {lock.python_version}; {choice.source} gives "
                f"{choice.version} (same minor version: the wheels fit)")
    return choice.interpreter


# ---- plan

def plan_spec(spec: Spec, target: TargetInfo, provided: Provided) -> Lock:
    """The lock for a spec on a target, with each wheel's unpacked size and a warning when
    the target's home is short of space."""
    python = provided.python
    ui.step(f"planning for Python {python.version} ({python.source}) on {target.describe()}")
    lock = plan(spec, target, python.version, python.source,
                extra_requirements=ALWAYS_SHIPPED, local_toolkit=provided.local_toolkit,
                interpreter=python.locator)
    sizes = installed_sizes(lock.files)
    lock = replace(lock, files=tuple(replace(f, installed_size=sizes.get(f.sha256))
                                     for f in lock.files))
    free_kb = target.home_free_kb
    if free_kb is not None and lock.installed_size > free_kb * 1024 * 0.8:
        lock = replace(lock, warnings=(*lock.warnings, (
            f"little free space: the packages unpack to {lock.installed_size / 1e9:.2f} GB and "
            f"the target's home has {free_kb / 1e6:.2f} GB free; install on scratch with "
            "--prefix, or leave out what you do not need (exclude = [...])")))
    return lock


def _refuse_missing_toolkit(lock: Lock) -> None:
    gpu = lock.gpu
    if gpu is not None and gpu.cuda_source == "toolkit" and not gpu.toolkit_path:
        raise CompatError(f"{gpu.framework} {gpu.framework_version} needs CUDA {gpu.cuda} and "
                          f"cuDNN {gpu.cudnn}, and no wheel provides them.",
                          "Name a local toolkit in env.toml: cuda = { path = "
                          f"\"/usr/local/cuda-{gpu.cuda}\" }} and cudnn = {{ path = ... }}.")


# ---- fetch -> stage -> verify -> bundle

def _fetch_stage_bundle(lock: Lock, interpreter: Interpreter, target: TargetInfo, out: Path,
                        *, codec: Codec, keep_tree: Path | None, smoke: bool,
                        sign_key: Path | None = None, image_format: str = "directory",
                        split: int | None = None, update_of: OldEnvironment | None = None,
                        bytecode: bool = True) -> PackResult:
    _refuse_missing_toolkit(lock)
    for warning in lock.warnings:
        ui.warn(warning)
    ui.step(f"{len(lock.files)} files, {lock.download_size / 1e6:.1f} MB to fetch")
    fetched = fetch(lock.files)
    ui.step(f"fetched {fetched.downloaded_bytes / 1e6:.1f} MB "
            f"({fetched.cache_hits} of {len(lock.files)} files from the cache)")
    with _workdir(lock.name) as workdir:
        tree = stage_environment(lock, interpreter, list(fetched.paths), target, workdir,
                                 with_bytecode=bytecode)
        # The smoke run reads the tree (bound read-only) while the bundle is written from it:
        # the bundle takes its final name only once the smoke run passed.
        smoke_run_of = (_Background(verify.smoke_run, tree.path, lock.name, target,
                                    interpreter) if smoke
                        else _Background(verify.skipped, "--no-verify"))
        try:
            if update_of is not None:
                # only what differs from the installed version: NAME-OLD-to-NEW.run
                smoke_run_of.result()
                bundle, _ = write_delta(tree.path, update_of, out, name=lock.name,
                                        version=lock.env_version)
            else:
                source, installed = tree.path, tree.total_bytes
                if image_format == "squashfs":  # the tree as one image, in a small carrier tree
                    if target.site.can_mount_images() is False:
                        runtime = target.site.container_runtime
                        ui.warn("the target has no squashfuse, or no /dev/fuse this user can open: "
                                "activation cannot mount the image there; "
                                + (f"run it through {runtime} (--bind IMAGE:MOUNT:image-src=/)"
                                   if runtime else "pack the directory form instead (no --format)"))
                    source = image_carrier(tree.path, workdir)
                    installed = sum(p.stat().st_size for p in source.rglob("*") if p.is_file())
                bundle = write_bundle(source, out, name=lock.name, version=lock.env_version,
                                      python=interpreter.version, installed_bytes=installed,
                                      codec=codec, sign_key=sign_key, split=split,
                                      members=tree.members if source == tree.path else None,
                                      gate=smoke_run_of)
        except BaseException:
            smoke_run_of.finish()  # before the tree it reads is removed
            raise
        smoke_run = smoke_run_of.result()
        if keep_tree is not None:
            shutil.rmtree(keep_tree, ignore_errors=True)
            shutil.move(str(tree.path), keep_tree)
    return PackResult(lock=lock, fetched=fetched, tree=tree, bundle=bundle,
                      warnings=(*tree.warnings, *_space_warnings(tree, target),
                                *(f"smoke run, not judged (this machine is not the target): "
                                  f"{line}" for line in smoke_run.not_judged)),
                      smoke=smoke_run, codec=codec,
                      proven=(*tree.proven, smoke_run.proven()))


class _Background:
    """A call run on a thread of its own, as a bundle's gate: ``poll`` raises its error once
    it has failed, ``result`` waits for it (and raises its error)."""

    def __init__(self, call: Callable[..., verify.SmokeRun], *args: object) -> None:
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="gapship-smoke")
        self._future = self._pool.submit(call, *args)
        self._pool.shutdown(wait=False)

    def poll(self) -> None:
        if self._future.done():
            self._future.result()

    def result(self) -> verify.SmokeRun:
        return self._future.result()

    def finish(self) -> None:
        """Wait for it to end, whatever it found (what stopped the bundle is the error)."""
        wait([self._future])


def _check_keep_tree(keep: Path | None) -> None:
    """--keep-tree replaces only an earlier staged tree or an empty directory."""
    if keep is None:
        return
    if keep.is_symlink() or (keep.exists() and not keep.is_dir()):
        raise StageError(f"--keep-tree {keep}: it is not a directory; it is left as it is.",
                         "Choose another directory.")
    if keep.is_dir() and any(keep.iterdir()) and not (keep / layout.MANIFEST).is_file():
        raise StageError(f"--keep-tree {keep}: it holds files that are not a staged gapship "
                         "tree; they are left as they are.", "Choose another directory.")


@contextmanager
def _workdir(name: str) -> Iterator[Path]:
    """A scratch directory for one pack, under the cache (same filesystem), removed after."""
    parent = cache_dir() / "stage"
    parent.mkdir(parents=True, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix=f"{name}-", dir=parent))
    try:
        yield workdir
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _space_warnings(tree: StagedTree, target: TargetInfo) -> list[str]:
    free_kb = target.home_free_kb
    if free_kb is None or tree.total_bytes // 1024 <= free_kb:
        return []
    return [f"the environment needs {tree.total_bytes / 1e9:.2f} GB; the target's home has "
            f"{free_kb / 1e6:.2f} GB free: install it on scratch with --prefix"]
