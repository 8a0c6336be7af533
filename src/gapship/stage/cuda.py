"""PREFIX/cuda, the CUDA_HOME view: links into NVIDIA's wheels, or a copied local toolkit.

With wheels, ``bin/``, ``lib64/``, ``include/`` and ``nvvm/`` are relative symlinks into
``site-packages/nvidia/<component>/`` (CUDA 13: ``nvidia/cu13/``), so the tree stays
prefix-independent, and ``version.json`` is written in the toolkit's own format from the
installed wheels' versions. A local toolkit (a legacy stack such as CUDA 9 + cuDNN 7) is
copied instead, only what a runtime needs. Either way ``$CUDA_HOME/bin/nvcc -V`` (when nvcc
ships) and ``grep CUDNN_MAJOR -A 2 $CUDA_HOME/include/cudnn_version.h`` answer as in a real
toolkit, and ``gapship/activate.conf`` tells activation which variables to set.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path

from gapship import ui
from gapship.errors import StageError
from gapship.files import write_json
from gapship.node import layout
from gapship.plan import GpuPlan
from gapship.providers.toolkit import ToolkitVersions, cudnn_header_version, read_toolkit_versions
from gapship.stage.manifest import distributions

VIEW = "cuda"
# what nvcc needs beside itself to compile, in a toolkit's bin/ (the rest are other tools)
_NVCC_TOOLS = ("nvcc", "nvcc.profile", "ptxas", "fatbinary", "nvlink", "cudafe++", "bin2c",
               "crt", "cuobjdump", "nvdisasm", "nvprune")
# package markers in the wheels' directories: not part of a toolkit
_NOT_TOOLKIT = frozenset({"__init__.py", "__pycache__"})


@dataclass(frozen=True)
class CudaView:
    """PREFIX/cuda built from the wheels: what it holds and the versions it reports."""

    root: Path
    cuda: str | None
    cudnn: str | None
    components: tuple[str, ...]
    tools: tuple[str, ...]


@dataclass(frozen=True)
class LocalToolkit:
    """A local toolkit copied into PREFIX/cuda, and the bytes it adds to the environment."""

    versions: ToolkitVersions
    added_bytes: int


# ---- the view over the wheels

@cache
def _component_names() -> dict[str, tuple[str, str]]:
    text = resources.files(__package__).joinpath("cuda_components.json").read_text("utf-8")
    return {wheel: (key, name) for wheel, (key, name) in json.loads(text)["components"].items()}


def _wheel_base(name: str) -> str:
    """nvidia-cuda-runtime-cu12 -> nvidia-cuda-runtime (the component, any CUDA major)."""
    return re.sub(r"-cu\d+$", "", name.lower().replace("_", "-").replace(".", "-"))


def _link(dest: Path, target: Path) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    os.symlink(os.path.relpath(target, dest.parent), dest)


def _merge_links(src: Path, dest: Path, conflicts: list[str]) -> None:
    """Link every entry of ``src`` into ``dest``; a directory two wheels share is split."""
    for entry in sorted(src.iterdir()):
        if entry.name in _NOT_TOOLKIT:
            continue
        out = dest / entry.name
        if not os.path.lexists(out):
            _link(out, entry)
        elif out.is_dir() and entry.is_dir():
            if out.is_symlink():
                first = Path(os.path.normpath(out.parent / os.readlink(out)))
                out.unlink()
                out.mkdir()
                _merge_links(first, out, conflicts)
            _merge_links(entry, out, conflicts)
        else:
            conflicts.append(str(out))


def is_shared_library(name: str) -> bool:
    return name.endswith(".so") or ".so." in name


def _link_libraries(lib_dir: Path, lib64: Path, conflicts: list[str]) -> None:
    # only the directory itself: lib/stubs/libcuda.so must never be loaded at run time
    for lib in sorted(lib_dir.iterdir()):
        if is_shared_library(lib.name) and not lib.is_dir():
            if os.path.lexists(lib64 / lib.name):
                conflicts.append(f"{lib64.name}/{lib.name}")
            else:
                _link(lib64 / lib.name, lib)


def _add_dev_links(lib64: Path) -> None:
    """libcudart.so -> libcudart.so.12, as a toolkit has, for builds that link -lcudart."""
    names = sorted(p.name for p in lib64.iterdir())
    for name in names:
        base = name.split(".so", 1)[0] + ".so"
        if name != base and not os.path.lexists(lib64 / base):
            os.symlink(name, lib64 / base)


def build_cuda_view(root: Path, site_packages: Path, gpu: GpuPlan) -> CudaView:
    """Build ``root/cuda`` from the NVIDIA wheels installed in ``site_packages``."""
    view = root / VIEW
    if os.path.lexists(view):
        raise StageError(f"{view} exists already; a package installed files there.")
    conflicts: list[str] = []
    lib64 = view / "lib64"
    lib64.mkdir(parents=True)
    nvidia = site_packages / "nvidia"
    component_dirs = sorted(p for p in nvidia.iterdir() if p.is_dir()
                            and p.name not in _NOT_TOOLKIT) if nvidia.is_dir() else []
    for comp in component_dirs:
        for sub in ("bin", "include", "nvvm"):
            if (comp / sub).is_dir():
                (view / sub).mkdir(exist_ok=True)
                _merge_links(comp / sub, view / sub, conflicts)
        for sub in ("lib", "lib64"):
            if (comp / sub).is_dir():
                _link_libraries(comp / sub, lib64, conflicts)
    _add_dev_links(lib64)
    # nvcc.profile of the CUDA 13 wheels names $(TOP)/lib
    os.symlink("lib64", view / "lib")
    if conflicts:
        ui.step(f"CUDA view: kept the first of files two wheels both carry: "
                f"{', '.join(sorted(conflicts)[:5])}")

    versions: dict[str, dict[str, str]] = {}
    cuda = gpu.cuda
    cudnn_wheel = None
    for dist in distributions(site_packages):
        base = _wheel_base(str(dist["name"]))
        if not base.startswith("nvidia-"):
            continue
        key, label = _component_names().get(
            base, (f"lib{base.removeprefix('nvidia-').replace('-', '_')}", str(dist["name"])))
        versions[key] = {"name": label, "version": str(dist["version"])}
        if key == "cuda_cudart":
            cuda = str(dist["version"])
        elif key == "libcudnn":
            cudnn_wheel = str(dist["version"])
    if cuda is not None:
        versions["cuda"] = {"name": "CUDA SDK", "version": cuda}
    write_json(view / "version.json", versions)
    cudnn = cudnn_header_version([view / "include"]) or cudnn_wheel
    tools = tuple(sorted(p.name for p in (view / "bin").iterdir())) \
        if (view / "bin").is_dir() else ()
    return CudaView(root=view, cuda=cuda, cudnn=cudnn,
                    components=tuple(sorted(versions)), tools=tools)


# ---- a local toolkit, copied

def _lib_dir(top: Path) -> Path | None:
    for sub in ("lib64", "lib", "targets/x86_64-linux/lib"):
        if (top / sub).is_dir():
            return top / sub
    return None


def _copy_libraries(src: Path, dest: Path, prefix: str = "") -> int:
    """Shared libraries of ``src`` (not its subdirectories, not static archives).

    Links between them stay links; a link that leaves ``src`` is copied as a file.
    """
    dest.mkdir(parents=True, exist_ok=True)
    added = 0
    for lib in sorted(src.iterdir()):
        if not (is_shared_library(lib.name) and lib.name.startswith(prefix)) or lib.is_dir():
            continue
        out = dest / lib.name
        if os.path.lexists(out):
            out.unlink()
        if lib.is_symlink():
            target = os.readlink(lib)
            if "/" not in target and is_shared_library(target) and (src / target).exists():
                os.symlink(target, out)
                continue
        if lib.exists():
            shutil.copy2(lib, out)
            added += out.stat().st_size
    return added


def _copy_tree(src: Path, dest: Path) -> int:
    shutil.copytree(src, dest, symlinks=False, dirs_exist_ok=True)
    return sum(p.stat().st_size for p in src.rglob("*") if p.is_file())


def copy_local_toolkit(cuda_dir: Path, cudnn_dir: Path | None, root: Path, nvcc: bool
                       ) -> LocalToolkit:
    """Copy what a runtime needs from a local toolkit (and cuDNN) into ``root/cuda``.

    That is: the shared libraries of lib64 (no static archives, no stubs), include/, the
    version file, and bin/nvcc with what it needs only when ``nvcc``. Returns the versions
    read and the bytes added.
    """
    versions = read_toolkit_versions(cuda_dir, cudnn_dir)
    view = root / VIEW
    if os.path.lexists(view):
        raise StageError(f"{view} exists already; a package installed files there.")
    view.mkdir(parents=True)
    lib_src = _lib_dir(cuda_dir)
    if lib_src is None:
        raise StageError(f"the CUDA toolkit {cuda_dir} has no lib64/ with its libraries.",
                         "Point cuda.path at a complete toolkit.")
    added = _copy_libraries(lib_src, view / "lib64")
    if (cuda_dir / "include").is_dir():
        added += _copy_tree(cuda_dir / "include", view / "include")
    for name in ("version.json", "version.txt"):
        if (cuda_dir / name).is_file():
            shutil.copy2(cuda_dir / name, view / name)
            added += (view / name).stat().st_size
    if cudnn_dir is not None:
        cudnn_libs = _lib_dir(cudnn_dir)
        if cudnn_libs is None:
            raise StageError(f"the cuDNN directory {cudnn_dir} has no lib64/ or lib/.",
                             "Set cudnn.path to the unpacked cuDNN.")
        added += _copy_libraries(cudnn_libs, view / "lib64", prefix="libcudnn")
        headers = cudnn_dir / "include" if (cudnn_dir / "include").is_dir() else cudnn_dir
        (view / "include").mkdir(exist_ok=True)
        for header in sorted(headers.glob("cudnn*.h")):
            shutil.copy2(header, view / "include" / header.name)
            added += header.stat().st_size
    if nvcc:
        added += _copy_nvcc(cuda_dir, view)
    return LocalToolkit(versions=versions, added_bytes=added)


def _copy_nvcc(cuda_dir: Path, view: Path) -> int:
    if not (cuda_dir / "bin" / "nvcc").is_file():
        raise StageError(f"nvcc was asked for, and the toolkit {cuda_dir} has no bin/nvcc.",
                         "Set cuda.nvcc = false, or point cuda.path at a full toolkit.")
    added = 0
    (view / "bin").mkdir(exist_ok=True)
    for name in _NVCC_TOOLS:
        src = cuda_dir / "bin" / name
        if src.is_dir():
            added += _copy_tree(src, view / "bin" / name)
        elif src.is_file():
            shutil.copy2(src, view / "bin" / name)
            added += src.stat().st_size
    if (cuda_dir / "nvvm").is_dir():
        added += _copy_tree(cuda_dir / "nvvm", view / "nvvm")
    return added


# ---- into the stage

def _same_version(found: str | None, planned: str | None) -> bool:
    """"9.0.176" is the planned "9.0"; compared on the plan's precision."""
    if planned is None:
        return True
    if found is None:
        return False
    want = planned.split(".")
    return found.split(".")[:len(want)] == want


def activation_settings(gpu: GpuPlan, root: Path) -> list[tuple[str, str]]:
    """What activation sets for this GPU stack, prefix-relative (layout.ACTIVATE_CONF)."""
    settings = [("cuda_home", VIEW)]
    # nvcc or ptxas shipped, asked for or pulled in by a package: `nvcc -V` must just work
    tools = root / VIEW / "bin"
    if tools.is_dir() and any(t.is_file() and os.access(t, os.X_OK) for t in tools.iterdir()):
        settings.append(("path", f"{VIEW}/bin"))
    dirs = list(gpu.ld_library_path)
    # legacy frameworks dlopen libcudart.so.9.0 by name: the copied toolkit must be found
    if gpu.cuda_source == "toolkit" and f"{VIEW}/lib64" not in dirs:
        dirs.insert(0, f"{VIEW}/lib64")
    # the plan names a directory per NVIDIA wheel; some wheels have none (nvcc: bin/, nvvm/)
    settings += [("ld_library_path", d) for d in dirs if (root / d).is_dir()]
    if gpu.xla_cuda_data_dir:
        settings.append(("xla_cuda_data_dir", VIEW))
    return settings


def write_activation_conf(gpu: GpuPlan, root: Path) -> None:
    lines = ["# what activation sets for the GPU stack, relative to the prefix; read by",
             f"# {layout.WRITE_ACTIVATION} at install time and by gapship-rehome",
             *(f"{key}={value}" for key, value in activation_settings(gpu, root))]
    (root / layout.ACTIVATE_CONF).write_text("\n".join(lines) + "\n", encoding="utf-8")


def stage_gpu(gpu: GpuPlan, root: Path, site_packages: Path) -> list[str]:
    """Give the staged tree its CUDA_HOME view, gpu.json and activate.conf; return warnings."""
    warnings: list[str] = []
    if gpu.cuda_source == "toolkit":
        if gpu.toolkit_path is None:
            raise StageError("the lock asks for a local CUDA toolkit and names none.",
                             "Plan again with cuda = { path = ... } in env.toml.")
        local = copy_local_toolkit(Path(gpu.toolkit_path),
                                   Path(gpu.cudnn_path) if gpu.cudnn_path else None,
                                   root, gpu.nvcc)
        found = local.versions
        for what, have, planned in (("CUDA", found.cuda, gpu.cuda),
                                    ("cuDNN", found.cudnn, gpu.cudnn)):
            if not _same_version(have, planned):
                raise StageError(f"the local toolkit has {what} {have or 'missing'}; the lock "
                                 f"was planned with {what} {planned}.",
                                 "The toolkit changed since planning: plan again.")
        ui.step(f"copied the local CUDA {found.cuda} toolkit"
                + (f" with cuDNN {found.cudnn}" if found.cudnn else "")
                + f" into {VIEW}/ ({local.added_bytes / 1e6:.1f} MB)")
    else:
        view = build_cuda_view(root, site_packages, gpu)
        ui.step(f"CUDA view {VIEW}/: CUDA {view.cuda or '?'}"
                + (f", cuDNN {view.cudnn}" if view.cudnn else "")
                + (f", {' '.join(t for t in view.tools if t in ('nvcc', 'ptxas'))}"
                   if view.tools else ""))
        if gpu.nvcc and "nvcc" not in view.tools:
            warnings.append("nvcc was asked for, and the CUDA wheels carry no nvcc (the CUDA 12 "
                            "nvcc wheel has only ptxas): use CUDA 13 wheels or a local "
                            "toolkit (cuda = { path = ... }) for nvcc")
    write_json(root / layout.GPU, gpu.doctor_json())
    write_activation_conf(gpu, root)
    return warnings
