"""The GPU planner over the recorded targets of the probe: each decision and each refusal."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from gapship import plan as planner
from gapship.compat import load
from gapship.errors import CompatError, ResolveError
from gapship.plan import LockedFile, Resolution
from gapship.plan.gpu import GpuChoice, decide
from gapship.probe import TargetInfo, parse_target
from gapship.spec import parse_spec
from tests.fixtures.targets import fixture_target

PY311, PY36 = "3.11.7", "3.6.15"


def target(name: str, **changes: Any) -> TargetInfo:
    """A recorded machine, optionally with its driver or GPUs changed."""
    data = copy.deepcopy(fixture_target(name))
    if "driver" in changes:
        data["nvidia"]["driver_version"] = changes["driver"]
    if "gpus" in changes:
        data["nvidia"]["gpus"] = [{"name": n, "compute_capability": cc, "memory_mib": 1}
                                  for n, cc in changes["gpus"]]
    return parse_target(data, name)


def plan_gpu(machine: TargetInfo, toml: str, python: str = PY311) -> GpuChoice:
    return decide(parse_spec('name = "x"\n' + toml), machine, python, load())


def decision(choice: GpuChoice, what: str) -> str:
    return next(d.value for d in choice.decisions if d.what == what)


# (machine, spec, python) -> the chosen build, the CUDA decision, and a warning fragment
CHOSEN = [
    ("ubuntu2204-h100", 'framework = "torch"', PY311, "torch 2.10 with CUDA 12.8",
     "12.8 (PyPI wheels)", "torch 2.11 with CUDA 12.8 also runs here"),
    ("rocky8-a100", 'framework = "torch"', PY311, "torch 2.10 with CUDA 12.8",
     "12.8 (PyPI wheels)", None),
    ("centos7-v100", 'framework = "torch"', PY311, "torch 2.0 with CUDA 11.7",
     "11.7 (PyPI wheels)", "torch 2.5 with CUDA 11.8 also runs here"),
    ("ubuntu2204-h100", 'framework = "tensorflow"', PY311, "tensorflow 2.21 with CUDA 12.5",
     "12.5 (PyPI wheels)", None),
    ("centos7-v100", 'framework = "tensorflow"', PY311, "tensorflow 2.14 with CUDA 11.8",
     "11.8 (PyPI wheels)", "compute capability 7.0 comes from gapship's GPU table"),
    ("ubuntu2204-h100", 'framework = "jax"', PY311, "jax 0.10 with CUDA 12.1",
     "12.1 (PyPI wheels)", None),
    ("ubuntu1604-k80", 'framework = "tensorflow-gpu==1.11.0"', PY36,
     "tensorflow-gpu 1.11 with CUDA 9.0", "9.0 (a local toolkit)",
     "cuda = { path = \"/usr/local/cuda-9.0\" }"),
    ("login-cpu", 'framework = "torch"', PY311, "torch 2.11 with CUDA 13.0",
     "13.0 (PyPI wheels)", "no NVIDIA driver or GPU (a login node?)"),
    ("cpu-noavx2", 'framework = "tensorflow"', PY311, "tensorflow 2.21 with CUDA 12.5",
     "12.5 (PyPI wheels)", None),
]


@pytest.mark.parametrize(("machine", "toml", "python", "label", "cuda", "warning"), CHOSEN)
def test_the_newest_build_that_runs_is_chosen(machine: str, toml: str, python: str, label: str,
                                              cuda: str, warning: str | None) -> None:
    choice = plan_gpu(target(machine), toml, python)
    assert choice.candidate == label
    assert decision(choice, "CUDA") == cuda
    if warning:
        assert any(warning in w for w in choice.warnings), choice.warnings
    assert all(d.fact for d in choice.decisions)  # every decision names what it rests on
    gpu = choice.gpu
    assert gpu.min_driver is not None and gpu.cuda == cuda.split()[0]


REFUSED = [
    ("ubuntu1604-k80", 'framework = "torch"', PY311,
     ["torch 2.11 needs glibc >= 2.28", "driver 384.183 runs CUDA 9.0 at most",
      "the Tesla K80 is sm_37",
      "Instead: torch 1.1 with CUDA 9.0 works on this node with Python 3.7"]),
    ("ubuntu1604-k80", 'framework = "tensorflow"', PY311,
     ["CUDA 12.5 needs driver >= 525.60.13",
      "Instead: tensorflow-gpu 1.12 with CUDA 9.0 works on this node with Python 3.6"]),
    ("ubuntu1604-k80", 'framework = "jax"', PY311,
     ["the Tesla K80 is 3.7", "No jax build that gapship knows runs on this node"]),
    ("centos7-v100", 'framework = "jax"', PY311,
     ["driver 470.182.03 runs CUDA 11.8 at most", "needs compute capability >= 7.5"]),
    ("qemu-v1", 'framework = "tensorflow"', PY311,
     ["TensorFlow's prebuilt wheels use AVX since 1.6; this CPU lacks avx"]),
    ("alpine-musl", 'framework = "torch"', PY311, ["the target's C library is musl"]),
    ("rocky8-a100", 'framework = "torch==1.7.1"', PY311,
     ["torch 1.7 supports Python <3.9,>=3.6, not 3.11.7"]),
]


@pytest.mark.parametrize(("machine", "toml", "python", "fragments"), REFUSED)
def test_what_cannot_work_is_refused_with_the_reason(machine: str, toml: str, python: str,
                                                      fragments: list[str]) -> None:
    with pytest.raises(CompatError) as info:
        plan_gpu(target(machine), toml, python)
    message = info.value.message
    assert "\n" not in message
    for fragment in fragments:
        assert fragment in message, message


def test_old_driver_refusal_names_the_build_that_works_and_the_driver_to_ask_for() -> None:
    machine = target("rocky8-a100", driver="450.80.02")
    with pytest.raises(CompatError) as info:
        plan_gpu(machine, 'framework = "torch>=2.7"')
    message = info.value.message
    assert "driver 450.80.02 runs CUDA 11.8 at most" in message
    assert "torch 2.7 with CUDA 11.8 works on this node" in message
    assert "https://download.pytorch.org/whl/cu118" in message


def test_kepler_k80_with_driver_470_gets_the_newest_build_with_sm_37() -> None:
    k80 = target("rocky8-a100", driver="470.182.03", gpus=[("Tesla K80", "3.7")])
    without_index = plan_gpu(k80, 'framework = "torch"')
    # PyPI's newest sm_37 build is torch 2.0 (cu117); 2.7 cu118 is newer but on PyTorch's index
    assert without_index.candidate == "torch 2.0 with CUDA 11.7"
    assert any("torch 2.7 with CUDA 11.8 also runs here" in w and "whl/cu118" in w
               for w in without_index.warnings)
    with_index = plan_gpu(k80, 'framework = "torch"\n'
                               'indexes = ["https://download.pytorch.org/whl/cu118"]')
    assert with_index.candidate == "torch 2.7 with CUDA 11.8"
    assert with_index.indexes == ("https://download.pytorch.org/whl/cu118",)
    assert "sm_37" in (with_index.gpu.archs or ())
    with pytest.raises(CompatError) as info:
        plan_gpu(k80, 'framework = "torch>=2.8"')
    assert "the Tesla K80 is sm_37" in info.value.message


def test_declared_compute_nodes_replace_a_login_node_probe() -> None:
    choice = plan_gpu(target("login-cpu"), 'framework = "torch"\n'
                      'compute = { driver = "470.182.03", compute_capability = ["7.0"] }')
    assert choice.candidate == "torch 2.0 with CUDA 11.7"
    assert decision(choice, "compute nodes").startswith("driver 470.182.03")
    assert not any("login node" in w for w in choice.warnings)


def test_unverified_rows_warn_and_never_refuse() -> None:
    choice = plan_gpu(target("centos7-v100"), 'framework = "torch==1.9.*"', "3.8.18")
    assert choice.candidate == "torch 1.9 with CUDA 10.2"
    assert any("marked unverified" in w for w in choice.warnings)


def test_a_pinned_cuda_version_limits_the_builds() -> None:
    choice = plan_gpu(target("ubuntu2204-h100"), 'framework = "torch"\ncuda = "12.6"\n'
                      'indexes = ["https://download.pytorch.org/whl/cu126"]')
    assert choice.candidate == "torch 2.11 with CUDA 12.6"
    with pytest.raises(CompatError) as info:
        plan_gpu(target("ubuntu2204-h100"), 'framework = "torch"\ncuda = "7.5"')
    assert "no torch release that gapship knows matches" in info.value.message


def test_local_toolkit_versions_are_checked_against_the_framework() -> None:
    spec = parse_spec('name = "x"\nframework = "tensorflow-gpu==1.11.0"\n'
                      'cuda = { path = "/opt/cuda-10.0" }')
    machine = target("ubuntu1604-k80")
    with pytest.raises(CompatError) as info:
        decide(spec, machine, PY36, load(), local=("10.0", "7.4.1"))
    assert "tensorflow-gpu 1.11 needs CUDA 9.0; the local toolkit is CUDA 10.0" in \
        info.value.message
    ok = decide(spec, machine, PY36, load(), local=("9.0", "7.1.4"))
    assert ok.gpu.cuda_source == "toolkit" and ok.gpu.toolkit_path == "/opt/cuda-10.0"
    assert ok.gpu.ld_library_path == ("cuda/lib64",)


def test_tensorflow_architectures_stay_within_what_its_cuda_builds() -> None:
    old = plan_gpu(target("ubuntu1604-k80"), 'framework = "tensorflow-gpu==1.11.0"', PY36)
    assert old.gpu.archs == ("sm_35", "sm_50", "sm_60", "sm_70", "compute_70")  # CUDA 9.0
    new = plan_gpu(target("ubuntu2204-h100"), 'framework = "tensorflow"')
    assert new.gpu.archs is not None and "sm_35" not in new.gpu.archs  # CUDA 12: sm_50 floor


@pytest.mark.parametrize(("machine", "driver", "suggestion"), [
    # driver 418 runs CUDA 10.0: the nearest TF release built for the user's toolkit
    ("ubuntu1604-k80", "418.87.01",
     "tensorflow-gpu 1.13 with CUDA 10.0 works on this node with the local CUDA 10.0 toolkit"),
    ("centos7-v100", None,
     "tensorflow-gpu 1.13 with CUDA 10.0 works on this node with the local CUDA 10.0 toolkit"),
    # driver 384 runs no CUDA 10 build: only the toolkit the asked release needs can help
    ("ubuntu1604-k80", None, None),
])
def test_advice_for_a_local_toolkit_fits_that_toolkit(machine: str, driver: str | None,
                                                      suggestion: str | None) -> None:
    """Issue 12.7a: a CUDA 10 toolkit and tensorflow-gpu 1.11 got "tensorflow-gpu 1.12 with
    CUDA 9.0" (or a CUDA 10.1/11.2 build), none of which the user's toolkit can run."""
    spec = parse_spec('name = "x"\nframework = "tensorflow-gpu==1.11.0"\n'
                      'cuda = { path = "/opt/cuda-10.0" }')
    node = target(machine, driver=driver) if driver else target(machine)
    with pytest.raises(CompatError) as info:
        decide(spec, node, PY36, load(), local=("10.0", "7.4.1"))
    message = info.value.message
    assert "CUDA 9.0 works" not in message and "CUDA 10.1" not in message
    assert "CUDA 11" not in message
    if suggestion:
        assert suggestion in message, message
    assert 'give the CUDA 9.0 toolkit that tensorflow-gpu 1.11 is built for: cuda = { path = ' \
           '"/usr/local/cuda-9.0" }' in message, message


# A framework's GPU build named in `packages` is the framework: the same plan as `framework`.
IN_PACKAGES = [
    ("ubuntu1604-k80", "tensorflow-gpu==1.11.0", 'python = "3.6"', PY36),
    ("ubuntu2204-h100", "torch", "", PY311),
    ("ubuntu2204-h100", "tensorflow[and-cuda]", "", PY311),
    ("ubuntu2204-h100", "jax[cuda12]", "", PY311),
]


@pytest.mark.parametrize(("machine", "requirement", "extra", "python"), IN_PACKAGES)
def test_a_framework_named_in_packages_is_planned_as_the_framework(
        machine: str, requirement: str, extra: str, python: str) -> None:
    as_framework = plan_gpu(target(machine), f'framework = "{requirement}"\n{extra}', python)
    spec = parse_spec(f'name = "x"\npackages = ["{requirement}", "numpy"]\n{extra}')
    assert spec.framework == requirement and spec.packages == ("numpy",)
    in_packages = decide(spec, target(machine), python, load())
    assert in_packages.candidate == as_framework.candidate
    assert in_packages.gpu == as_framework.gpu
    assert in_packages.requirements == as_framework.requirements
    assert in_packages.warnings == as_framework.warnings
    assert [(d.what, d.value) for d in in_packages.decisions] == \
        [(d.what, d.value) for d in as_framework.decisions]
    assert decision(in_packages, "framework") == decision(as_framework, "framework")
    why = next(d.why for d in in_packages.decisions if d.what == "framework")
    assert why.startswith(f"named in packages (`{requirement}`)")


def test_tensorflow_gpu_1_11_in_packages_plans_cuda_9_and_cudnn_7_from_a_local_toolkit() -> None:
    spec = parse_spec('name = "x"\npython = "3.6"\npackages = ["tensorflow-gpu==1.11.0"]\n')
    choice = decide(spec, target("ubuntu1604-k80"), PY36, load())
    assert (choice.gpu.cuda, choice.gpu.cudnn, choice.gpu.cuda_source) == ("9.0", "7", "toolkit")
    assert decision(choice, "framework") == "tensorflow-gpu 1.11"
    assert any('cuda = { path = "/usr/local/cuda-9.0" }' in w for w in choice.warnings)


def test_nvidia_wheels_in_packages_that_the_driver_cannot_run_are_refused(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """nvidia-cuda-runtime resolves to CUDA 13.5, a minor the data lacks: its major's
    minor-version-compatibility minimum (580.65.06) applies, and driver 550 is refused."""
    def resolved(version: str) -> Resolution:
        return Resolution(tuple(LockedFile(name=n, version=version, filename=f"{n}.whl",
                                           url=f"https://x/{n}.whl", sha256="0" * 64, size=1)
                                for n in ("nvidia-cuda-runtime", "nvidia-cuda-nvcc")),
                          "x86_64-manylinux_2_35", ())

    spec = parse_spec('name = "x"\npackages = ["nvidia-cuda-runtime", "nvidia-cuda-nvcc"]\n')
    monkeypatch.setattr(planner, "resolve", lambda *args, **kwargs: resolved("13.5.20"))
    with pytest.raises(ResolveError) as info:
        planner.plan(spec, target("ubuntu2204-h100"), PY311, "host")
    assert info.value.message == ("the resolved wheels carry CUDA 13.5, which needs driver >= "
                                  "580.65.06; the target's driver is 550.54.15.")
    assert "ask for nvidia-cuda-runtime-cu12, nvidia-cuda-nvcc-cu12 instead" in info.value.hint
    monkeypatch.setattr(planner, "resolve", lambda *args, **kwargs: resolved("12.9.79"))
    lock = planner.plan(spec, target("ubuntu2204-h100"), PY311, "host")
    assert lock.gpu is not None and lock.gpu.min_driver == "525.60.13"
