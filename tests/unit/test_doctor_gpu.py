"""The driver/GPU checks through ctypes, against a gcc-built libcuda.so.1 double.

No GPU or NVIDIA driver can exist on the build machine: doctor_fakes/fake_cuda.c answers
the driver API with values chosen per test (FAKE_* variables) and runs the vector add on
the CPU with the kernel parameters it is given. The PTX itself only runs on a real GPU
(scripts/gpu-check.sh build / check).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from packaging.specifiers import SpecifierSet

from gapship.compat import Fact, load
from gapship.node import gpu
from gapship.node.archs import arch_covers
from gapship.node.base import FAIL, PASS, WARN
from gapship.plan.gpu import Candidate, NodeFacts, problems
from tests.unit.doctor_fakes.build import fake_cuda

CONTEXT = {"gpu_node_command": "srun -N 1 --gres=gpu:1 /e/bin/gapship-doctor", "prefix": "/e"}
PLANNED = {"cuda": "12.8", "cudnn": "9.10.2", "min_driver": "525.60.13",
           "archs": ["sm_75", "sm_80", "sm_90"]}
FAKE_VARS = ("FAKE_CU_INIT_RC", "FAKE_CU_DRIVER", "FAKE_CU_DEVICES", "FAKE_CU_CC",
             "FAKE_CU_MODULE_RC", "FAKE_CU_WRONG_SUM", "FAKE_CUDART_VERSION",
             "FAKE_CUDNN_VERSION", "CUDA_VISIBLE_DEVICES")


@pytest.fixture(scope="module")
def fakes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return fake_cuda(tmp_path_factory.mktemp("fake-cuda"))


@pytest.fixture()
def node(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """/proc files of a node with the driver 550.54.15 and nvidia_uvm loaded."""
    for var in FAKE_VARS:
        monkeypatch.delenv(var, raising=False)
    modules = tmp_path / "modules"
    modules.write_text("nvidia_uvm 1531904 0 - Live 0x0\nnvidia 56717312 1 nvidia_uvm\n")
    version = tmp_path / "version"
    version.write_text("NVRM version: NVIDIA UNIX x86_64 Kernel Module  550.54.15  Tue Mar  5 "
                       "22:23:56 UTC 2024\nGCC version:  gcc version 12.2.0\n")
    return {"proc_modules": str(modules), "driver_version_file": str(version)}


def run(fakes: Path, node: dict[str, str], expected: dict[str, object] | None = None,
        ) -> tuple[list[Any], dict[str, Any]]:
    checks, facts = gpu.check_gpu(dict(CONTEXT), PLANNED if expected is None else expected,
                                  libcuda=str(fakes / "libcuda.so.1"), **node)
    return list(checks), dict(facts)


def test_a_working_gpu(fakes: Path, node: dict[str, str]) -> None:
    checks, facts = run(fakes, node)
    assert [c.status for c in checks] == [PASS] * 4
    assert [c.name for c in checks] == [
        "NVIDIA driver 550.54.15 (CUDA 12.4)", "nvidia_uvm",
        "GPU 0: Fake GPU 80GB, sm_80, 80.0 GiB", "vector add on GPU 0 (PTX JIT)"]
    assert checks[3].detail == "4096 sums correct (PTX for sm_50)"
    assert facts["usable"] and facts["driver_cuda"] == 12040 and facts["driver"] == "550.54.15"


def test_no_driver_is_one_line(node: dict[str, str], tmp_path: Path) -> None:
    missing = str(tmp_path / "nowhere" / "libcuda.so.1")
    (check,), facts = gpu.check_gpu(dict(CONTEXT), PLANNED, libcuda=missing, **node)
    assert check.status == WARN and check.diagnosis == "no-nvidia-driver"
    assert check.detail.startswith("no NVIDIA driver on this node")
    assert check.remedy.endswith("srun -N 1 --gres=gpu:1 /e/bin/gapship-doctor")
    assert not facts["usable"]
    (plain,), _ = gpu.check_gpu(dict(CONTEXT), {}, libcuda=missing, **node)
    assert plain.status == PASS and plain.detail.endswith("ships no GPU libraries")


def test_no_device_on_a_login_node(fakes: Path, node: dict[str, str],
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_CU_INIT_RC", "100")
    (check,), facts = run(fakes, node)
    assert check.status == WARN and check.diagnosis == "no-cuda-device"
    assert check.detail == "cuInit: CUDA_ERROR_NO_DEVICE: no CUDA-capable device is detected"
    assert "srun -N 1 --gres=gpu:1" in check.remedy and not facts["usable"]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    (hidden,), _ = run(fakes, node)
    assert hidden.diagnosis == "cuda-devices-hidden" and "unset CUDA_VISIBLE_DEVICES" \
        in hidden.remedy.replace("Unset", "unset")


def test_unknown_error_with_and_without_nvidia_uvm(fakes: Path, node: dict[str, str],
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_CU_INIT_RC", "999")
    (check,), _ = run(fakes, node)
    assert check.status == FAIL and check.diagnosis == "cuda-unknown"
    Path(node["proc_modules"]).write_text("nvidia 56717312 0 - Live 0x0\n")
    (check,), _ = run(fakes, node)
    assert check.status == FAIL and check.diagnosis == "cuda-unknown-uvm"
    assert "modprobe nvidia_uvm" in check.remedy


def test_a_driver_older_than_the_plan_needs(fakes: Path, node: dict[str, str]) -> None:
    Path(node["driver_version_file"]).write_text(
        "NVRM version: NVIDIA UNIX x86_64 Kernel Module  470.82.01  Tue Oct 26 2021\n")
    checks, _ = run(fakes, node)
    old = next(c for c in checks if c.name == "driver >= 525.60.13")
    assert old.status == FAIL and old.diagnosis == "cuda-driver-too-old"
    assert old.detail == "driver 470.82.01 is older than 525.60.13, which CUDA 12.8 needs"


def test_a_gpu_the_build_has_no_code_for(fakes: Path, node: dict[str, str],
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_CU_CC", "37")
    checks, _ = run(fakes, node)
    arch = next(c for c in checks if c.name == "GPU 0 architecture")
    assert arch.status == FAIL and arch.diagnosis == "no-kernel-image"
    assert "(sm_37)" in arch.remedy


def test_wrong_results_and_a_refused_ptx(fakes: Path, node: dict[str, str],
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_CU_WRONG_SUM", "1")
    kernel = run(fakes, node)[0][-1]
    assert kernel.status == FAIL
    assert kernel.detail == "4096 of 4096 sums wrong (c[0] = 1.5, expected 0.5)"
    monkeypatch.delenv("FAKE_CU_WRONG_SUM")
    monkeypatch.setenv("FAKE_CU_MODULE_RC", "222")
    kernel = run(fakes, node)[0][-1]
    assert kernel.status == FAIL and kernel.diagnosis == "ptx-toolchain-too-new"
    assert "JIT log: ptxas fatal: fake JIT refusal" in kernel.detail


def test_every_device_is_checked(fakes: Path, node: dict[str, str],
                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_CU_DEVICES", "2")
    checks, facts = run(fakes, node)
    assert [c.name for c in checks if c.name.startswith("vector add")] == [
        "vector add on GPU 0 (PTX JIT)", "vector add on GPU 1 (PTX JIT)"]
    assert len(facts["devices"]) == 2


@pytest.mark.parametrize(("archs", "cc", "ptx", "covered"), [
    (["sm_80"], (8, 6), False, True), (["sm_80"], (9, 0), False, False),
    (["sm_86"], (8, 0), False, False), (["sm_80", "compute_80"], (9, 0), False, True),
    (["sm_90+PTX"], (12, 0), False, True), (["sm_90a"], (9, 0), False, True),
    (["sm_90a"], (10, 0), False, False), (["sm_120"], (12, 1), False, True),
    (["sm_50", "sm_60"], (3, 7), False, False),
    (["sm_50", "sm_60"], (6, 1), False, True),  # sm_60 SASS runs on 6.1
    (["sm_50", "sm_60"], (7, 0), False, False),
    (["sm_75", "sm_90"], (12, 0), True, True),  # PTX of the newest is JIT-compiled
    (["sm_75"], (7, 0), True, False), (["sm_90a"], (10, 0), True, False),
])
def test_arch_coverage(archs: list[str], cc: tuple[int, int], ptx: bool, covered: bool) -> None:
    assert arch_covers(archs, cc, ptx) is covered


@pytest.mark.parametrize(("cc", "runs"), [((9, 0), True), ((10, 0), False), ((8, 0), False)])
def test_sm_90a_is_judged_alike_by_plan_and_doctor(
        cc: tuple[int, int], runs: bool, fakes: Path, node: dict[str, str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A build with only sm_90a code: the planner refuses it for a GPU exactly when the doctor
    says that GPU has no code in it."""
    build = Candidate(family="torch", release="2.7.0", package="torch", extra=None, cuda=None,
                      cudnn=None, tag=None, index=None, archs=("sm_90a",), ptx=False,
                      min_cc=None, min_driver=None, python=SpecifierSet(">=3.9"), glibc=None,
                      local_toolkit=False, fact=Fact("a test", True))
    facts = NodeFacts(driver=None, gpus=(("GPU", cc),), glibc=None, cpu_flags=frozenset(),
                      x86_64_level=None)
    planned = problems(build, facts, "3.11.7", load())
    monkeypatch.setenv("FAKE_CU_CC", f"{cc[0]}{cc[1]}")
    checks, _ = run(fakes, node, dict(PLANNED, archs=["sm_90a"]))
    refused = [c for c in checks if c.name == "GPU 0 architecture"]
    assert (not planned) is (not refused) is runs


def libs(fakes: Path) -> dict[str, str]:
    return {"libcudart.so.12": str(fakes / "libcudart.so.12"),
            "libcudnn.so.9": str(fakes / "libcudnn.so.9")}


def test_bundled_runtime_and_cudnn(fakes: Path, node: dict[str, str],
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    checks = gpu.check_cuda_libraries(libs(fakes), PLANNED, 12080, dict(CONTEXT), str)
    assert [(c.status, c.name) for c in checks] == [
        (PASS, "CUDA runtime 12.8"), (PASS, "driver runs CUDA 12.8"), (PASS, "cuDNN 9.10.2")]
    minor = gpu.check_cuda_libraries(libs(fakes), PLANNED, 12040, dict(CONTEXT), str)
    assert minor[1].status == WARN and "minor-version compatibility" in minor[1].detail
    monkeypatch.setenv("FAKE_CUDART_VERSION", "13000")
    monkeypatch.setenv("FAKE_CUDNN_VERSION", "8907")
    old = gpu.check_cuda_libraries(libs(fakes), PLANNED, 12040, dict(CONTEXT), str)
    by_name = {c.name: c for c in old}
    assert by_name["CUDA runtime is the planned one"].status == WARN
    driver = by_name["driver runs CUDA 13.0"]
    assert driver.status == FAIL and driver.diagnosis == "cuda-driver-too-old"
    assert "(CUDA 12.4) is older than the bundle's CUDA runtime (13.0)" in driver.remedy
    cudnn = by_name["cuDNN 8.9.7"]
    assert cudnn.status == FAIL and cudnn.diagnosis == "cudnn-mismatch"
    none = gpu.check_cuda_libraries({}, {}, None, dict(CONTEXT), str)
    assert [(c.status, c.detail) for c in none] == [(PASS, "none in this environment")]
