"""Framework checks: which frameworks are shipped, one line without a GPU, and the verdicts."""

from __future__ import annotations

import sys
from importlib import resources
from pathlib import Path
from typing import Any

from gapship import doctor
from gapship.compat import FRAMEWORKS_FILE, load
from gapship.node import frameworks
from gapship.node.base import FAIL, PASS, SKIP

DISTS = [{"name": "torch"}, {"name": "jaxlib"}, {"name": "jax"}, {"name": "numpy"},
         {"name": "tensorflow_cpu"}]


def compat_table() -> dict[str, str]:
    """The doctor's view of the builder's framework table, read from the compat data."""
    path = resources.files("gapship.compat").joinpath("data").joinpath(FRAMEWORKS_FILE)
    with resources.as_file(path) as file:
        return frameworks.framework_of_distribution(str(file))  # type: ignore[no-any-return]


def test_shipped_frameworks() -> None:
    table = compat_table()
    assert frameworks.shipped_frameworks(DISTS, table) == ["jax", "tensorflow", "torch"]
    assert frameworks.shipped_frameworks([{"name": "numpy"}], table) == []


def test_the_doctor_ships_the_compat_framework_table(tmp_path: Path) -> None:
    """One list: what env.toml may name, what the plan versions and what the doctor checks."""
    doctor.install_target_files(tmp_path)
    shipped = frameworks.framework_of_distribution(
        str(tmp_path / "gapship" / "node" / frameworks.TABLE_FILE))
    assert shipped == compat_table()
    assert shipped["tensorflow-cpu"] == "tensorflow" and shipped["jaxlib"] == "jax"
    compat = load()
    assert {f.family for f in compat.frameworks} == set(shipped.values())
    for fw in compat.frameworks:
        assert compat.framework_named(fw.family) is fw


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
