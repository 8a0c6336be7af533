"""Framework checks: which frameworks are shipped, one line without a GPU, and the verdicts."""

from __future__ import annotations

import sys
from typing import Any

from gapship.node import frameworks
from gapship.node.base import FAIL, PASS, SKIP

DISTS = [{"name": "torch"}, {"name": "jaxlib"}, {"name": "jax"}, {"name": "numpy"},
         {"name": "tensorflow_cpu"}]


def test_shipped_frameworks() -> None:
    assert frameworks.shipped_frameworks(DISTS) == ["jax", "tensorflow", "torch"]
    assert frameworks.shipped_frameworks([{"name": "numpy"}]) == []


def test_without_a_gpu_one_line() -> None:
    (check,) = frameworks.check_frameworks(sys.executable, ["jax", "torch"], False, 60, {}, {})
    assert check.status == SKIP and check.name == "jax, torch"
    assert check.detail == "no usable GPU on this node: the framework GPU checks did not run"
    assert frameworks.check_frameworks(sys.executable, [], False, 60, {}, {}) == []


def test_a_framework_that_cannot_be_imported() -> None:
    """The probe runs in its own process; its error goes through the catalogue."""
    (check,) = frameworks.check_frameworks(sys.executable, ["tensorflow"], True, 120,
                                           {"package": "tensorflow"}, {})
    assert check.status == FAIL and check.name == "tensorflow"
    assert "No module named 'tensorflow'" in check.detail
    assert check.remedy == "Run the framework by hand to see the error."


def judge(name: str, result: dict[str, Any], stderr: str = "",
          expected: dict[str, Any] | None = None) -> Any:
    return frameworks._judge(name, result, stderr, {"package": name}, expected or {})


def test_verdicts() -> None:
    good = judge("torch", {"version": "2.8.0", "cuda": "12.8", "available": True,
                           "matmul_ok": True, "cudnn": 91002, "conv_ok": True})
    assert good.status == PASS and good.name == "torch 2.8.0"
    assert good.detail == "matmul on the GPU correct; cuDNN 91002 convolution correct"
    unseen = judge("torch", {"version": "2.8.0", "cuda": "12.8", "available": False},
                   "UserWarning: CUDA initialization: The NVIDIA driver on your system is too "
                   "old (found version 11040).")
    assert unseen.status == FAIL and unseen.diagnosis == "cuda-driver-too-old"
    assert unseen.detail == "torch.cuda.is_available() is False"
    wrong = judge("jax", {"version": "0.7.1", "gpus": 1, "matmul_ok": False})
    assert wrong.status == FAIL and "differs from the CPU result" in wrong.detail
    cpu_only = judge("torch", {"version": "2.8.0+cpu", "cuda": None, "cpu_only": True},
                     expected={"framework": "torch", "cuda": "12.8"})
    assert cpu_only.status == FAIL and "CPU-only torch" in cpu_only.remedy
    placed = judge("tensorflow", {"version": "2.17.0", "gpus": 1, "matmul_ok": True,
                                  "placed_on": "/job:localhost/replica:0/task:0/device:CPU:0"})
    assert placed.status == FAIL and "not on the GPU" in placed.detail
    cudnn = judge("jax", {"version": "0.4.30", "gpus": 0,
                          "error": "Unable to initialize backend 'cuda'"},
                  "E external/xla/xla/stream_executor/cuda/cuda_dnn.cc:535] Loaded runtime "
                  "CuDNN library: 8.9.2 but source was compiled with: 9.1.0.")
    assert cudnn.diagnosis == "cudnn-mismatch" and "jax lists no GPU" in cudnn.detail
