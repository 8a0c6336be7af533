"""PREFIX/cuda: the view over NVIDIA's wheels (their real layouts, cu12 and cu13, built here
as small trees), versions read from toolkits, and a local toolkit of real shared libraries
compiled in the test, copied."""

from __future__ import annotations

import ctypes
import json
import os
import subprocess
from pathlib import Path

import pytest

from gapship.errors import SpecError, StageError
from gapship.plan import GpuPlan
from gapship.stage import cuda
from gapship.stage.relocate import symlinks_escaping
from tests.conftest import require_tool

CUDNN_HEADER = "#define CUDNN_MAJOR {0}\n#define CUDNN_MINOR {1}\n#define CUDNN_PATCHLEVEL {2}\n"
CUDART_SOURCE = "int cudaRuntimeGetVersion(int *v) { *v = 9000; return 0; }\n"
CUDNN_SOURCE = "unsigned long cudnnGetVersion(void) { return 7605; }\n"


def put(path: Path, text: str = "x", mode: int = 0o644) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(mode)
    return path


def dist(site: Path, name: str, version: str) -> None:
    info = site / f"{name.replace('-', '_')}-{version}.dist-info"
    put(info / "METADATA", f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
    put(info / "RECORD", "")


def cu12_site(site: Path, cudnn: bool = True) -> Path:
    """The files of nvidia-cuda-runtime-cu12, -nvcc-cu12, -cublas-cu12 (and cudnn) as installed."""
    nv = site / "nvidia"
    put(nv / "__init__.py", "")
    put(nv / "cuda_runtime" / "__init__.py", "")
    put(nv / "cuda_runtime" / "include" / "cuda_runtime.h", "#define CUDART_VERSION 12080\n")
    put(nv / "cuda_runtime" / "include" / "cooperative_groups" / "reduce.h")
    put(nv / "cuda_runtime" / "lib" / "libcudart.so.12", "\x7fELF")
    put(nv / "cuda_runtime" / "lib" / "libcudadevrt.a")
    put(nv / "cuda_nvcc" / "bin" / "ptxas", "#!/bin/sh\necho 'ptxas: release 12.8'\n", 0o755)
    put(nv / "cuda_nvcc" / "include" / "crt" / "host_config.h")
    put(nv / "cuda_nvcc" / "include" / "cooperative_groups" / "details" / "sync.h")
    put(nv / "cuda_nvcc" / "lib" / "__init__.py", "")
    put(nv / "cuda_nvcc" / "nvvm" / "lib64" / "libnvvm.so", "\x7fELF")
    put(nv / "cuda_nvcc" / "nvvm" / "libdevice" / "libdevice.10.bc")
    put(nv / "cublas" / "include" / "cublas_v2.h")
    put(nv / "cublas" / "lib" / "libcublas.so.12", "\x7fELF")
    put(nv / "cublas" / "lib" / "libcublasLt.so.12", "\x7fELF")
    dist(site, "nvidia-cuda-runtime-cu12", "12.8.90")
    dist(site, "nvidia-cuda-nvcc-cu12", "12.8.93")
    dist(site, "nvidia-cublas-cu12", "12.8.4.1")
    dist(site, "numpy", "2.2.0")
    if cudnn:
        put(nv / "cudnn" / "include" / "cudnn_version.h", CUDNN_HEADER.format(9, 10, 2))
        put(nv / "cudnn" / "lib" / "libcudnn.so.9", "\x7fELF")
        put(nv / "cudnn" / "lib" / "libcudnn_ops.so.9", "\x7fELF")
        dist(site, "nvidia-cudnn-cu12", "9.10.2.21")
    return site


def cu13_site(site: Path) -> Path:
    """CUDA 13: one nvidia/cu13 tree shared by the toolkit wheels."""
    cu13 = site / "nvidia" / "cu13"
    put(cu13 / "bin" / "nvcc", "#!/bin/sh\necho 'Cuda compilation tools, release 13.0'\n", 0o755)
    put(cu13 / "bin" / "nvcc.profile", "TOP = $(_HERE_)/..\n")
    put(cu13 / "bin" / "crt" / "link.stub")
    put(cu13 / "include" / "cuda_runtime.h")
    put(cu13 / "lib" / "libcudart.so.13", "\x7fELF")
    put(cu13 / "lib" / "libnvvm.so.4", "\x7fELF")
    put(cu13 / "lib" / "stubs" / "libcuda.so", "\x7fELF")
    put(cu13 / "nvvm" / "bin" / "cicc", mode=0o755)
    dist(site, "nvidia-cuda-runtime", "13.0.96")
    dist(site, "nvidia-cuda-nvcc", "13.0.88")
    dist(site, "nvidia-nvvm", "13.0.88")
    return site


def gpu_plan(**kw: object) -> GpuPlan:
    base: dict[str, object] = {"framework": None, "framework_version": None, "cuda": "12.8",
                               "cudnn": None, "cuda_source": "wheels", "min_driver": None}
    return GpuPlan(**{**base, **kw})  # type: ignore[arg-type]


def env_tree(tmp: Path) -> tuple[Path, Path]:
    root = tmp / "tree"
    site = root / "lib" / "python3.12" / "site-packages"
    site.mkdir(parents=True)
    (root / "gapship").mkdir()
    return root, site


def test_cu12_view_links_into_the_wheels(tmp_path: Path) -> None:
    root, site = env_tree(tmp_path)
    view = cuda.build_cuda_view(root, cu12_site(site), gpu_plan(nvcc=True))
    c = root / "cuda"
    assert symlinks_escaping(root) == []
    assert all(not os.path.isabs(os.readlink(p)) for p in c.rglob("*") if p.is_symlink())
    assert sorted(p.name for p in (c / "lib64").iterdir()) == [
        "libcublas.so", "libcublas.so.12", "libcublasLt.so", "libcublasLt.so.12",
        "libcudart.so", "libcudart.so.12", "libcudnn.so", "libcudnn.so.9",
        "libcudnn_ops.so", "libcudnn_ops.so.9"]
    assert (c / "lib64" / "libcudart.so").resolve() == \
        (site / "nvidia/cuda_runtime/lib/libcudart.so.12").resolve()
    assert (c / "include" / "cuda_runtime.h").is_file()
    assert (c / "include" / "crt" / "host_config.h").is_file()
    # a directory two wheels both have is merged, not hidden
    assert (c / "include" / "cooperative_groups" / "reduce.h").is_file()
    assert (c / "include" / "cooperative_groups" / "details" / "sync.h").is_file()
    assert not (c / "include" / "__init__.py").exists()
    assert (c / "nvvm" / "libdevice" / "libdevice.10.bc").is_file()
    ptxas = subprocess.run([str(c / "bin" / "ptxas")], capture_output=True, text=True,
                           check=True)
    assert "12.8" in ptxas.stdout
    assert view.cuda == "12.8.90" and view.cudnn == "9.10.2" and view.tools == ("ptxas",)
    assert json.loads((c / "version.json").read_text()) == {
        "cuda": {"name": "CUDA SDK", "version": "12.8.90"},
        "cuda_cudart": {"name": "CUDA Runtime (cudart)", "version": "12.8.90"},
        "cuda_nvcc": {"name": "CUDA NVCC", "version": "12.8.93"},
        "libcublas": {"name": "CUDA cuBLAS", "version": "12.8.4.1"},
        "libcudnn": {"name": "NVIDIA cuDNN", "version": "9.10.2.21"},
    }
    grep = subprocess.run(["grep", "CUDNN_MAJOR", "-A", "2",
                           str(c / "include" / "cudnn_version.h")],
                          capture_output=True, text=True, check=True)
    assert grep.stdout.split() == ["#define", "CUDNN_MAJOR", "9", "#define", "CUDNN_MINOR",
                                   "10", "#define", "CUDNN_PATCHLEVEL", "2"]


def test_cu13_view_has_nvcc_and_leaves_the_driver_stub_out(tmp_path: Path) -> None:
    root, site = env_tree(tmp_path)
    view = cuda.build_cuda_view(root, cu13_site(site), gpu_plan(cuda="13.0", nvcc=True))
    c = root / "cuda"
    out = subprocess.run([str(c / "bin" / "nvcc"), "-V"], capture_output=True, text=True,
                         check=True)
    assert "release 13.0" in out.stdout
    assert not (c / "lib64" / "libcuda.so").exists() and not (c / "lib64" / "stubs").exists()
    assert (c / "lib64" / "libcudart.so.13").exists() and (c / "lib" / "libnvvm.so.4").exists()
    assert (c / "bin" / "crt" / "link.stub").is_file() and (c / "nvvm/bin/cicc").is_file()
    assert view.cuda == "13.0.96" and view.cudnn is None and "nvcc" in view.tools
    data = json.loads((c / "version.json").read_text())
    assert data["libnvvm"]["version"] == "13.0.88" and data["cuda"]["version"] == "13.0.96"
    assert symlinks_escaping(root) == []


def test_stage_gpu_writes_gpu_json_and_activate_conf(tmp_path: Path) -> None:
    root, site = env_tree(tmp_path)
    cu12_site(site, cudnn=False)
    gpu = gpu_plan(cudnn="9.10", nvcc=True, xla_cuda_data_dir=True,
                   ld_library_path=("lib/python3.12/site-packages/nvidia/cublas/lib",))
    warnings = cuda.stage_gpu(gpu, root, site)
    assert len(warnings) == 1 and "nvcc" in warnings[0] and "local toolkit" in warnings[0]
    assert json.loads((root / "gapship" / "gpu.json").read_text()) == gpu.doctor_json()
    conf = (root / "gapship" / "activate.conf").read_text().splitlines()
    assert [ln for ln in conf if not ln.startswith("#")] == [
        "cuda_home=cuda", "path=cuda/bin",
        "ld_library_path=lib/python3.12/site-packages/nvidia/cublas/lib",
        "xla_cuda_data_dir=cuda"]


def test_activation_leaves_out_a_library_dir_a_wheel_does_not_have(tmp_path: Path) -> None:
    """The plan names a directory per NVIDIA wheel; nvcc's wheel has bin/ and nvvm/ only."""
    root, _ = env_tree(tmp_path)
    settings = cuda.activation_settings(gpu_plan(ld_library_path=("nvidia/cuda_nvcc/lib",)),
                                        root)
    assert ("ld_library_path", "nvidia/cuda_nvcc/lib") not in settings


@pytest.mark.parametrize("asked", [False, True])
def test_tools_in_the_view_go_on_path_whoever_asked_for_them(tmp_path: Path, asked: bool
                                                             ) -> None:
    """packages = ["nvidia-cuda-runtime", "nvidia-cuda-nvcc"] ships nvcc without cuda.nvcc."""
    root, site = env_tree(tmp_path)
    cuda.build_cuda_view(root, cu13_site(site), gpu_plan(cuda="13.0", nvcc=asked))
    assert ("path", "cuda/bin") in cuda.activation_settings(gpu_plan(nvcc=asked), root)


def test_a_view_without_tools_adds_nothing_to_path(tmp_path: Path) -> None:
    root, _ = env_tree(tmp_path)
    put(root / "cuda" / "bin" / "README", "not a tool\n")
    assert ("path", "cuda/bin") not in cuda.activation_settings(gpu_plan(), root)


# ---- local toolkits

def compile_lib(out: Path, source: str, soname: str) -> Path:
    gcc = require_tool("gcc")
    out.parent.mkdir(parents=True, exist_ok=True)
    src = out.parent / (out.name + ".c")
    src.write_text(source)
    subprocess.run([gcc, "-shared", "-fPIC", "-o", str(out), f"-Wl,-soname,{soname}",
                    str(src)], check=True)
    src.unlink()
    return out


def make_local_toolkit(base: Path, cuda_version: str = "9.0.176", cudnn_major: int = 7
                       ) -> tuple[Path, Path]:
    """A CUDA 9.0 toolkit and a separate cuDNN 7 as people unpack them, with real libraries."""
    tk = base / "cuda-9.0"
    lib64 = tk / "lib64"
    lib64.mkdir(parents=True)
    (tk / "version.txt").write_text(f"CUDA Version {cuda_version}\n")
    put(tk / "include" / "cuda_runtime_api.h", "#define CUDART_VERSION 9000\n")
    compile_lib(lib64 / "libcudart.so.9.0.176", CUDART_SOURCE, "libcudart.so.9.0")
    os.symlink("libcudart.so.9.0.176", lib64 / "libcudart.so.9.0")
    os.symlink("libcudart.so.9.0", lib64 / "libcudart.so")
    put(lib64 / "libcudart_static.a")
    put(lib64 / "stubs" / "libcuda.so")
    put(tk / "bin" / "nvcc", "#!/bin/sh\necho 'Cuda compilation tools, release 9.0, "
        "V9.0.176'\n", 0o755)
    put(tk / "bin" / "ptxas", mode=0o755)
    put(tk / "bin" / "nsight", mode=0o755)
    put(tk / "nvvm" / "libdevice" / "libdevice.10.bc")
    cudnn = base / "cudnn-7"
    put(cudnn / "include" / "cudnn.h", CUDNN_HEADER.format(cudnn_major, 6, 5))
    compile_lib(cudnn / "lib64" / "libcudnn.so.7.6.5", CUDNN_SOURCE, "libcudnn.so.7")
    os.symlink("libcudnn.so.7.6.5", cudnn / "lib64" / "libcudnn.so.7")
    # an absolute link, as some unpacked cuDNN trees have: copied as a file
    os.symlink(cudnn / "lib64" / "libcudnn.so.7", cudnn / "lib64" / "libcudnn.so")
    put(cudnn / "lib64" / "libcudnn_static.a")
    return tk, cudnn


def test_read_toolkit_versions(tmp_path: Path) -> None:
    tk, cudnn = make_local_toolkit(tmp_path)
    assert cuda.read_toolkit_versions(tk, cudnn) == cuda.ToolkitVersions("9.0.176", "7.6.5")
    assert cuda.read_toolkit_versions(tk, None) == cuda.ToolkitVersions("9.0.176", None)
    (tk / "version.txt").unlink()
    assert cuda.read_toolkit_versions(tk, None).cuda == "9.0"
    (tk / "version.json").write_text(json.dumps({"cuda": {"name": "CUDA SDK",
                                                          "version": "12.4.1"}}))
    assert cuda.read_toolkit_versions(tk, None).cuda == "12.4.1"
    put(tk / "include" / "cudnn_version.h", CUDNN_HEADER.format(8, 9, 7))
    assert cuda.read_toolkit_versions(tk, None).cudnn == "8.9.7"


@pytest.mark.parametrize(("case", "words"), [
    ("missing", "is not a directory"), ("empty", "is not a CUDA toolkit"),
    ("no-cudnn-header", "has no include/cudnn_version.h"), ("bad-json", "cuda.version")])
def test_not_a_toolkit_is_one_line_with_the_next_step(tmp_path: Path, case: str,
                                                      words: str) -> None:
    tk, cudnn = make_local_toolkit(tmp_path)
    target = tk
    if case == "missing":
        target = tmp_path / "nowhere"
    elif case == "empty":
        target = tmp_path / "empty"
        target.mkdir()
    elif case == "no-cudnn-header":
        (cudnn / "include" / "cudnn.h").unlink()
    else:
        (tk / "version.json").write_text("{}")
    with pytest.raises(SpecError) as err:
        cuda.read_toolkit_versions(target, cudnn)
    assert words in str(err.value) and "\n" not in str(err.value) and err.value.hint


@pytest.mark.parametrize("nvcc", [False, True])
def test_copy_local_toolkit_takes_only_what_runs(tmp_path: Path, nvcc: bool) -> None:
    tk, cudnn = make_local_toolkit(tmp_path)
    root, _ = env_tree(tmp_path)
    local = cuda.copy_local_toolkit(tk, cudnn, root, nvcc=nvcc)
    c = root / "cuda"
    assert local.versions == cuda.ToolkitVersions("9.0.176", "7.6.5")
    assert sorted(p.name for p in (c / "lib64").iterdir()) == [
        "libcudart.so", "libcudart.so.9.0", "libcudart.so.9.0.176",
        "libcudnn.so", "libcudnn.so.7", "libcudnn.so.7.6.5"]
    assert os.readlink(c / "lib64" / "libcudart.so.9.0") == "libcudart.so.9.0.176"
    assert not (c / "lib64" / "libcudnn.so").is_symlink()
    assert symlinks_escaping(root) == []
    assert (c / "include" / "cudnn.h").is_file() and (c / "version.txt").is_file()
    files = [p for p in c.rglob("*") if p.is_file() and not p.is_symlink()]
    assert local.added_bytes == sum(p.stat().st_size for p in files)
    assert (c / "bin" / "nvcc").exists() is nvcc and not (c / "bin" / "nsight").exists()
    assert (c / "nvvm" / "libdevice" / "libdevice.10.bc").exists() is nvcc
    cudart = ctypes.CDLL(str(c / "lib64" / "libcudart.so.9.0"))
    version = ctypes.c_int()
    assert cudart.cudaRuntimeGetVersion(ctypes.byref(version)) == 0 and version.value == 9000


def test_nvcc_asked_of_a_toolkit_without_it(tmp_path: Path) -> None:
    tk, cudnn = make_local_toolkit(tmp_path)
    (tk / "bin" / "nvcc").unlink()
    root, _ = env_tree(tmp_path)
    with pytest.raises(StageError, match="no bin/nvcc"):
        cuda.copy_local_toolkit(tk, cudnn, root, nvcc=True)


def test_stage_gpu_toolkit_checks_the_lock_and_puts_lib64_on_the_path(tmp_path: Path) -> None:
    tk, cudnn = make_local_toolkit(tmp_path)
    root, site = env_tree(tmp_path)
    gpu = gpu_plan(framework="tensorflow-gpu", cuda="9.0", cudnn="7", cuda_source="toolkit",
                   toolkit_path=str(tk), cudnn_path=str(cudnn))
    assert cuda.stage_gpu(gpu, root, site) == []
    assert "ld_library_path=cuda/lib64" in (root / "gapship" / "activate.conf").read_text()
    other, _ = env_tree(tmp_path / "again")
    with pytest.raises(StageError, match=r"CUDA 9\.0\.176; the lock was planned with CUDA 10"):
        cuda.stage_gpu(gpu_plan(cuda="10.0", cuda_source="toolkit", toolkit_path=str(tk)),
                       other, site)
