"""The diagnosis catalogue against error texts as users meet them (recorded from real reports).

Every entry of diagnoses.json has at least one recorded text here, and the test fails when
an entry is added without one.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from gapship.node.catalogue import (
    CATALOGUE,
    Catalogue,
    CatalogueError,
    catalogue,
    cuda_context,
    explain,
)

# tensorflow-gpu 1.11 on a local CUDA 9.0 toolkit (gpu.json: cuda 9.0, cuda_source toolkit)
TF111_TOOLKIT = dict({"package": "tensorflow-gpu 1.11.0", "cuda": "9.0", "cuda_source": "toolkit"},
                     **cuda_context("libcublas.so.9.0", "9.0"))

# (expected id, context, recorded error text, fields the cause or fix must contain)
RECORDED: list[tuple[str, dict[str, Any], str, list[str]]] = [
    ("interpreter-missing", {"prefix": "/home/u/envs/torch"},
     "sh: 1: /home/u/envs/torch/bin/python3: not found", ["/home/u/envs/torch/bin/python3"]),
    ("interpreter-missing", {},
     "FileNotFoundError: [Errno 2] No such file or directory: '/home/u/envs/t/bin/python3'",
     ["/home/u/envs/t/bin/python3", "--force"]),
    ("interpreter-wrong-arch", {},
     "bash: /home/u/envs/t/bin/python3: cannot execute binary file: Exec format error",
     ["/home/u/envs/t/bin/python3", "another CPU architecture"]),
    ("interpreter-wrong-arch", {},
     "OSError: [Errno 8] Exec format error: '/home/u/envs/t/bin/python3'", ["probe"]),
    ("interpreter-not-executable", {},
     "PermissionError: [Errno 13] Permission denied: '/scratch/u/envs/t/bin/python3'",
     ["chmod +x /scratch/u/envs/t/bin/python3", "noexec"]),
    ("interpreter-not-executable", {},
     "sh: 1: /tmp/envs/t/bin/python3: Permission denied", ["findmnt -T /tmp/envs/t/bin/python3"]),
    ("glibc-private", {},
     "/lib64/libc.so.6: version `GLIBC_PRIVATE' not found (required by "
     "/home/u/glibc-2.28/lib/libpthread.so.0)", ["LD_LIBRARY_PATH"]),
    ("glibc-too-old", {},
     "ImportError: /lib64/libc.so.6: version `GLIBC_2.28' not found (required by /home/u/envs/t/"
     "lib/python3.11/site-packages/torch/lib/libtorch_cpu.so)",
     ["needs GLIBC_2.28 from /lib64/libc.so.6", "torch/lib/libtorch_cpu.so", "--target"]),
    ("glibc-too-old", {},
     "/home/u/envs/t/bin/python3: /lib/x86_64-linux-gnu/libc.so.6: version `GLIBC_2.34' not "
     "found (required by /home/u/envs/t/bin/python3)", ["GLIBC_2.34", "twin"]),
    ("glibc-too-old", {},
     "OSError: /lib64/libm.so.6: version `GLIBC_2.29' not found (required by /home/u/envs/t/lib/"
     "python3.10/site-packages/numpy.libs/libopenblas64_p-r0-15028c96.3.21.so)",
     ["GLIBC_2.29 from /lib64/libm.so.6"]),
    ("libstdcxx-too-old", {},
     "ImportError: /lib64/libstdc++.so.6: version `GLIBCXX_3.4.29' not found (required by "
     "/home/u/envs/t/lib/python3.9/site-packages/scipy/spatial/_ckdtree.cpython-39-x86_64-linux"
     "-gnu.so)", ["GLIBCXX_3.4.29", "module load gcc"]),
    ("libstdcxx-too-old", {},
     "OSError: /usr/lib/x86_64-linux-gnu/libstdc++.so.6: version `CXXABI_1.3.13' not found "
     "(required by /home/u/envs/t/lib/python3.11/site-packages/torch/lib/libtorch_cpu.so)",
     ["CXXABI_1.3.13", "libstdc++"]),
    ("libgcc-too-old", {},
     "/lib64/libgcc_s.so.1: version `GCC_7.0.0' not found (required by /home/u/envs/t/lib/"
     "python3.8/site-packages/numpy.libs/libgfortran-2e0d59d6.so.5.0.0)",
     ["GCC_7.0.0 from /lib64/libgcc_s.so.1"]),
    ("cuda-stub-library", {},
     "failed call to cuInit: CUDA_ERROR_STUB_LIBRARY: CUDA driver is a stub library",
     ["lib64/stubs"]),
    ("no-nvidia-driver", {"gpu_node_command": "srun -N 1 --gres=gpu:1 /e/bin/gapship-doctor"},
     "RuntimeError: Found no NVIDIA driver on your system. Please check that you have an NVIDIA"
     " GPU and installed a driver from http://www.nvidia.com/Download/index.aspx",
     ["srun -N 1 --gres=gpu:1 /e/bin/gapship-doctor", "login"]),
    ("no-nvidia-driver", {},
     "W tensorflow/stream_executor/platform/default/dso_loader.cc:64] Could not load dynamic "
     "library 'libcuda.so.1'; dlerror: libcuda.so.1: cannot open shared object file: No such "
     "file or directory", ["log in to a GPU node"]),
    ("missing-shared-object-deleted",
     {"deleted": True, "package": "numpy 2.3.1", "owner": "numpy", "prefix": "/e",
      "expected_path": "lib/python3.13/site-packages/numpy.libs/libscipy_openblas64_-ff651d7f.so"},
     "ImportError: libscipy_openblas64_-ff651d7f.so: cannot open shared object file: No such "
     "file or directory", ["numpy installed it", "sh NAME.run --prefix /e --force"]),
    ("missing-shared-object-bundled",
     {"bundle_has": True, "package": "torch 2.8.0",
      "bundle_path": "lib/python3.12/site-packages/nvidia/cudnn/lib/libcudnn.so.9"},
     "OSError: libcudnn.so.9: cannot open shared object file: No such file or directory",
     ["libcudnn.so.9, which torch 2.8.0 needs, is in the bundle", "unset LD_LIBRARY_PATH"]),
    ("missing-shared-object", {"package": "tensorflow 2.4.0"},
     "ImportError: libcudnn.so.8: cannot open shared object file: No such file or directory",
     ["libcudnn.so.8 is needed by tensorflow 2.4.0", "add that package to env.toml"]),
    # issue 12.7b: a CUDA library's remedy follows the environment's own stack (gpu.json)
    ("cuda-library-missing-toolkit", TF111_TOOLKIT,
     "ImportError: libcublas.so.9.0: cannot open shared object file: No such file or directory",
     ["libcublas.so.9.0, which tensorflow-gpu 1.11.0 needs, belongs to the CUDA 9.0 stack",
      "cuda = { path = \"/usr/local/cuda-9.0\" }"]),
    ("cuda-library-missing-wheels", dict(
        {"package": "torch 2.8.0", "cuda": "12.8", "cuda_source": "wheels"},
        **cuda_context("libcublasLt.so.12", "12.8")),
     "OSError: libcublasLt.so.12: cannot open shared object file: No such file or directory",
     ["Add nvidia-cublas-cu12 to packages"]),
    ("cuda-library-missing-no-stack", dict(
        {"package": "tensorflow-gpu 1.11.0", "cuda_source": "none"},
        **cuda_context("libcudart.so.9.0", None)),
     "ImportError: libcudart.so.9.0: cannot open shared object file: No such file or directory",
     ["framework = \"...\"", "cuda = \"9.0\""]),
    ("cuda-library-other-version", dict(
        {"package": "tensorflow-gpu 1.13.1", "cuda": "9.0", "cuda_source": "toolkit"},
        **cuda_context("libcublas.so.10.0", "9.0")),
     "ImportError: libcublas.so.10.0: cannot open shared object file: No such file or directory",
     ["built for CUDA 10.0", "this environment's CUDA is 9.0", "/usr/local/cuda-10.0"]),
    ("missing-shared-object", {"package": "opencv-python 4.10.0.84"},
     "ImportError: libGL.so.1: cannot open shared object file: No such file or directory",
     ["libGL.so.1"]),
    ("missing-shared-object", {},
     "python3: error while loading shared libraries: libpython3.11.so.1.0: cannot open shared "
     "object file: No such file or directory", ["libpython3.11.so.1.0"]),
    ("wrong-elf-class", {},
     "ImportError: /usr/lib/libcudart.so.10.1: wrong ELF class: ELFCLASS32",
     ["/usr/lib/libcudart.so.10.1 is a 32-bit library"]),
    ("numpy-cpu-baseline", {},
     "RuntimeError: NumPy was built with baseline optimizations: \n(X86_V2) but your machine "
     "doesn't support:\n(X86_V2).", ["numpy<2.4", "(X86_V2)"]),
    ("numpy-cpu-baseline", {},
     "RuntimeError: NumPy was built with baseline optimizations: \n(SSE SSE2 SSE3 SSSE3 SSE41 "
     "POPCNT SSE42) but your machine doesn't support:\n(SSE41 POPCNT SSE42).",
     ["lacks SSE41 POPCNT SSE42"]),
    ("illegal-instruction", {"package": "tensorflow 2.17.0", "missing_flags": "lacks avx"},
     "Illegal instruction (core dumped)", ["tensorflow 2.17.0", "lacks avx"]),
    ("illegal-instruction", {},
     "zsh: illegal hardware instruction  python -c 'import tensorflow'", ["AVX"]),
    ("numpy-abi", {"package": "torch 2.1.0"},
     "A module that was compiled using NumPy 1.x cannot be run in\nNumPy 2.0.0 as it may crash."
     " To support both 1.x and 2.x\nversions of NumPy, modules must be compiled with NumPy 2.0.",
     ["torch 2.1.0", "NumPy 2.0.0", "numpy<2"]),
    ("numpy-abi", {}, "ImportError: numpy.core.multiarray failed to import", ["numpy<2"]),
    ("numpy-abi", {},
     "ValueError: numpy.dtype size changed, may indicate binary incompatibility. Expected 96 "
     "from C header, got 88 from PyObject", ["NumPy"]),
    ("numpy-abi", {},
     "RuntimeError: module compiled against API version 0x10 but this version of numpy is 0xe",
     ["NumPy 0xe"]),
    ("numpy-abi", {}, "AttributeError: _ARRAY_API not found", ["numpy<2"]),
    ("cuda-driver-too-old", {},
     "RuntimeError: CUDA error: CUDA driver version is insufficient for CUDA runtime version",
     ["older than", "cu118"]),
    ("cuda-driver-too-old", {},
     "UserWarning: CUDA initialization: The NVIDIA driver on your system is too old (found "
     "version 11040). Please update your GPU driver by downloading and installing a new version"
     " from the URL: http://www.nvidia.com/Download/index.aspx", ["--target"]),
    ("cuda-driver-too-old", {},
     "failed call to cuInit: CUDA_ERROR_SYSTEM_DRIVER_MISMATCH: system has unsupported display "
     "driver / cuda driver combination", ["driver"]),
    ("cuda-driver-too-old", {"min_driver": "570.26"},
     "driver supports CUDA 12.4 but the bundled CUDA runtime is 12.8",
     ["(CUDA 12.4)", "runtime (12.8) needs (570.26)"]),
    ("ptx-toolchain-too-new", {},
     "RuntimeError: CUDA error: the provided PTX was compiled with an unsupported toolchain.",
     ["JIT-compile"]),
    ("cuda-devices-hidden", {"cuda_visible_devices_hidden": True, "cuda_visible_devices": "-1"},
     "RuntimeError: No CUDA GPUs are available", ["CUDA_VISIBLE_DEVICES=-1"]),
    ("no-cuda-device", {"gpu_node_command": "bsub -gpu num=1 -I /e/bin/gapship-doctor"},
     "E tensorflow/stream_executor/cuda/cuda_driver.cc:271] failed call to cuInit: "
     "CUDA_ERROR_NO_DEVICE: no CUDA-capable device is detected",
     ["bsub -gpu num=1 -I /e/bin/gapship-doctor"]),
    ("no-cuda-device", {},
     "RuntimeError: Unable to initialize backend 'cuda': FAILED_PRECONDITION: No visible GPU "
     "devices. (you may need to uninstall the failing plugin package, or set JAX_PLATFORMS=cpu "
     "to skip this backend.)", ["sees no GPU"]),
    ("cuda-devices-busy", {},
     "RuntimeError: CUDA error: all CUDA-capable devices are busy or unavailable",
     ["exclusive-process"]),
    ("cuda-unknown-uvm", {"nvidia_uvm": False},
     "E tensorflow/stream_executor/cuda/cuda_driver.cc:328] failed call to cuInit: "
     "CUDA_ERROR_UNKNOWN: unknown error", ["modprobe nvidia_uvm"]),
    ("cuda-unknown-uvm", {"nvidia_uvm": False},
     "UserWarning: CUDA initialization: CUDA unknown error - this may be due to an incorrectly "
     "set up environment, e.g. changing env variable CUDA_VISIBLE_DEVICES after program start. "
     "Setting the available devices to be zero.", ["nvidia_uvm"]),
    ("cuda-unknown", {"nvidia_uvm": True},
     "failed call to cuInit: CUDA_ERROR_UNKNOWN: unknown error", ["nvidia-smi"]),
    ("cudnn-mismatch", {},
     "E tensorflow/compiler/xla/stream_executor/cuda/cuda_dnn.cc:417] Loaded runtime CuDNN "
     "library: 8.1.0 but source was compiled with: 8.6.0.  CuDNN library needs to have matching"
     " major version and equal or higher minor version.", ["(8.1.0)", "(8.6.0)"]),
    ("cudnn-mismatch", {},
     "RuntimeError: cuDNN version incompatibility: PyTorch was compiled  against (8, 9, 2) but "
     "found runtime version (8, 5, 0). PyTorch already comes bundled with cuDNN.",
     ["(8, 5, 0)", "LD_LIBRARY_PATH"]),
    ("cudnn-mismatch", {}, "cuDNN 8.9.7 is loaded but 9.10.2 was expected",
     ["cudnn = \"9.10.2\""]),
    ("no-kernel-image", {},
     "RuntimeError: CUDA error: no kernel image is available for execution on the device\n"
     "CUDA kernel errors might be asynchronously reported at some other API call",
     ["this GPU"]),
    ("no-kernel-image", {},
     "UserWarning: \nNVIDIA GeForce RTX 5090 with CUDA capability sm_120 is not compatible with "
     "the current PyTorch installation.\nThe current PyTorch install supports CUDA capabilities"
     " sm_50 sm_60 sm_70 sm_75 sm_80 sm_86 sm_90.", ["(sm_120)", "cu128"]),
    ("no-kernel-image", {}, "GPU 0 is sm_37 but the build has code only for sm_50 sm_60",
     ["(sm_37)"]),
    # issue 12: the fake CUDA 9.0 toolkit's cuDNN, as tensorflow-gpu 1.11 meets it
    ("cuda-symbol-missing-toolkit", dict(
        {"package": "tensorflow-gpu 1.11.0", "cuda": "9.0", "cuda_source": "toolkit"},
        **cuda_context("libcudnn.so.7", "9.0")),
     "ImportError: /home/user/envs/tf11/lib/python3.6/site-packages/tensorflow/python/../"
     "libtensorflow_framework.so: undefined symbol: cudnnGetRNNLinLayerMatrixParams, version "
     "libcudnn.so.7",
     ["tensorflow-gpu 1.11.0 needs cudnnGetRNNLinLayerMatrixParams from libcudnn.so.7, which "
      "belongs to the CUDA 9.0 stack", "local cuDNN", "cuda = { path = \"/usr/local/cuda-9.0\" }"]),
    ("undefined-symbol", {"package": "torchvision 0.20.0"},
     "ImportError: /home/u/envs/t/lib/python3.11/site-packages/torchvision/_C.so: undefined "
     "symbol: _ZN3c1017RegisterOperatorsD1Ev", ["torchvision 0.20.0", "_ZN3c1017Register"]),
]


@pytest.mark.parametrize(("expected", "context", "text", "mentions"), RECORDED,
                         ids=[f"{r[0]}-{i}" for i, r in enumerate(RECORDED)])
def test_recorded_error_text(expected: str, context: dict[str, Any], text: str,
                             mentions: list[str]) -> None:
    found = catalogue().diagnose(text, context)
    assert found is not None, text
    assert found.id == expected
    for mention in mentions:
        assert mention in found.remedy, (mention, found.remedy)


def test_every_entry_has_a_recorded_text() -> None:
    covered = {r[0] for r in RECORDED}
    assert set(catalogue().ids()) == covered


def test_unrelated_text_matches_nothing() -> None:
    assert catalogue().diagnose("ModuleNotFoundError: No module named 'yaml'") is None


def test_the_shipped_file_is_checked_on_load(tmp_path: Path) -> None:
    data = json.loads(Path(CATALOGUE).read_text())
    assert data["schema_version"] == 1
    bad = dict(data["diagnoses"][0], cause="{nonexistent} is gone")
    path = tmp_path / "bad.json"
    path.write_text(json.dumps({"schema_version": 1, "diagnoses": [bad]}))
    with pytest.raises(CatalogueError, match="nonexistent"):
        Catalogue.load(str(path))
    path.write_text(json.dumps({"schema_version": 1, "diagnoses": [data["diagnoses"][0]] * 2}))
    with pytest.raises(CatalogueError, match="duplicate"):
        Catalogue.load(str(path))
    path.write_text(json.dumps({"schema_version": 2, "diagnoses": []}))
    with pytest.raises(CatalogueError, match="schema_version"):
        Catalogue.load(str(path))


@pytest.mark.parametrize(("library", "stack"), [
    ("libcublas.so.9.0", ("9.0", "toolkit")), ("libcudnn.so.7", ("9.0", "toolkit")),
    ("libcudnn_ops_infer.so.8", ("11.8", "toolkit")), ("libcufft.so.10", ("10.0", "toolkit")),
])
def test_a_toolkit_stack_is_never_sent_to_cu12_wheels(library: str, stack: tuple[str, str]
                                                      ) -> None:
    """Issue 12.7b: the doctor suggested nvidia-cublas-cu12 for a CUDA 9 stack."""
    cuda, source = stack
    context = dict({"package": "tensorflow-gpu", "cuda": cuda, "cuda_source": source},
                   **cuda_context(library, cuda))
    found = catalogue().diagnose(f"{library}: cannot open shared object file", context)
    assert found is not None and found.id == "cuda-library-missing-toolkit"
    assert "-cu12" not in found.fix
    assert f"cuda = {{ path = \"/usr/local/cuda-{cuda}\" }}" in found.fix


def test_the_wheel_follows_the_stacks_cuda_major() -> None:
    assert cuda_context("libcublas.so.12", "12.4")["cuda_wheel"] == "nvidia-cublas-cu12"
    assert cuda_context("libcublas.so.11", "11.8")["cuda_wheel"] == "nvidia-cublas-cu11"
    assert cuda_context("libcublas.so.13", "13.0")["cuda_wheel"] == "nvidia-cublas"
    assert cuda_context("libcudnn.so.9", "12.8")["cuda_wheel"] == "nvidia-cudnn-cu12"
    assert "cuda_wheel" not in cuda_context("libcublas.so.9.0", "9.0")
    assert cuda_context("libgomp.so.1", "9.0") == {}


def test_the_cuda_a_remedy_names_is_one_env_toml_takes() -> None:
    assert cuda_context("libcudart.so.12", None)["library_cuda"] == "12"
    found = catalogue().diagnose("libcudart.so.12: cannot open shared object file", dict(
        {"package": "cupy-cuda12x 13.0", "cuda_source": "none"},
        **cuda_context("libcudart.so.12", None)))
    assert found is not None and 'cuda = "12"' in found.fix


def test_every_wheel_the_doctor_names_is_one_the_builder_knows() -> None:
    """The doctor cannot import the builder's table of NVIDIA wheels: the two must agree."""
    components = json.loads((Path(CATALOGUE).parents[1] / "stage" / "cuda_components.json")
                            .read_text())["components"]
    named = {wheel for wheel, _ in catalogue().cuda_libraries.values()}
    assert named and named <= set(components)


def test_the_judging_tables_are_checked_on_load(tmp_path: Path) -> None:
    path = tmp_path / "bad.json"
    path.write_text(json.dumps({"schema_version": 1, "diagnoses": [],
                                "cuda_libraries": {"libcublas": ["nvidia-cublas", "major"]}}))
    with pytest.raises(CatalogueError, match="libcublas"):
        Catalogue.load(str(path))
    path.write_text(json.dumps({"schema_version": 1, "diagnoses": [],
                                "optional_plugins": [{"id": "x", "uses": "y"}]}))
    with pytest.raises(CatalogueError, match="parents or under"):
        Catalogue.load(str(path))
    path.write_text(json.dumps({"schema_version": 1, "diagnoses": [], "optional_plugins": [
        {"id": "x", "uses": "y", "under": ["/a/"], "libs": []}]}))
    with pytest.raises(CatalogueError, match="libs"):
        Catalogue.load(str(path))


def test_a_symbol_a_toolkit_library_lacks_is_judged_against_the_toolkit() -> None:
    """Issue 12: ld.so names the library of a versioned symbol; for a CUDA library of a
    local-toolkit stack the remedy is that toolkit, not "pin the two packages"."""
    text = ("ImportError: /e/lib/python3.6/site-packages/tensorflow/libtensorflow_framework.so: "
            "undefined symbol: cublasCreate_v2, version libcublas.so.9.0")
    stack = {"package": "tensorflow-gpu 1.11.0", "cuda": "9.0", "cuda_source": "toolkit"}
    detail, remedy, diagnosis = explain(text, stack, "fallback")
    assert diagnosis == "cuda-symbol-missing-toolkit"
    assert detail.endswith("undefined symbol: cublasCreate_v2, version libcublas.so.9.0")
    assert "cublasCreate_v2 from libcublas.so.9.0" in remedy and "-cu12" not in remedy
    assert 'cuda = { path = "/usr/local/cuda-9.0" }' in remedy
    # a library outside the CUDA stack keeps the general advice, its symbol without the comma
    _, remedy, diagnosis = explain("undefined symbol: _ZN3fooEv, version libfoo.so.1", stack,
                                   "fallback")
    assert diagnosis == "undefined-symbol" and "(the symbol _ZN3fooEv is missing)" in remedy
