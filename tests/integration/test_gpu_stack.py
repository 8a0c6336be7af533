"""GPU stacks packed for the trixie replica, installed offline as uid 1000, checked the way
people check a CUDA install: `nvcc -V`/`ptxas --version` from $CUDA_HOME, the cuDNN header,
and the runtime library loaded by name after activation.

The locks are written by hand (the GPU plan is the input here; the planner has its own tests).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gapship.bundle import write_bundle
from gapship.bundle.codec import choose
from gapship.fetch import fetch
from gapship.plan import GpuPlan, Lock, resolve
from gapship.probe import load_target
from gapship.providers.python import find_host_python
from gapship.replica import Replica
from gapship.stage import stage_environment
from tests.conftest import ROOT
from tests.unit.test_cuda_view import make_local_toolkit

GPU_CHECK = ROOT / "scripts" / "gpu_check.py"
CUDART_VERSION = ("import ctypes, sys; v = ctypes.c_int(); "
                  "lib = ctypes.CDLL(sys.argv[1]); "
                  "print('cudart', lib.cudaRuntimeGetVersion(ctypes.byref(v)), v.value)")


def hand_lock(name: str, requirements: tuple[str, ...], target: Path, gpu: GpuPlan) -> Lock:
    python = find_host_python(None)
    requirements = (*requirements, "pip")
    resolution = resolve(requirements, python.version, load_target(target))
    return Lock(name=name, env_version="1.0", python_version=python.version,
                python_source="host", platform_tag=resolution.platform,
                requirements=requirements, files=resolution.files, gpu=gpu)


def version_of(lock: Lock, name: str) -> str:
    return next(f.version for f in lock.files if f.name == name)


def wheels_gpu(cuda: str, nvcc: bool = True) -> GpuPlan:
    return GpuPlan(framework=None, framework_version=None, cuda=cuda, cudnn=None,
                   cuda_source="wheels", min_driver=None, nvcc=nvcc)


def packed(work: Path, lock: Lock, target: Path) -> Path:
    """The pack pipeline's pieces for a lock: fetch, stage, bundle."""
    out = work / f"{lock.name}.run"
    python = find_host_python(lock.python_minor)
    fetched = fetch(lock.files)
    tree = stage_environment(lock, python, list(fetched.paths), load_target(target),
                             work / f"{lock.name}-stage")
    write_bundle(tree.path, out, name=lock.name, version=lock.env_version,
                 python=python.version, installed_bytes=tree.total_bytes,
                 codec=choose("gzip", (), 1))
    return out


@pytest.fixture(scope="module")
def gpu_work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("gpu")


def test_cu12_runtime_and_nvcc_wheels(gpu_work: Path, trixie_target: Path,
                                      trixie: Replica) -> None:
    lock = hand_lock("cu12", ("nvidia-cuda-runtime-cu12", "nvidia-cuda-nvcc-cu12"),
                     trixie_target, wheels_gpu("12"))
    bundle = packed(gpu_work, lock, trixie_target)
    script = f"""set -e
sh cu12.run --prefix ~/envs/cu12 >/dev/null
. ~/envs/cu12/activate
[ "$CUDA_HOME" = "$HOME/envs/cu12/cuda" ] && [ "$CUDA_PATH" = "$CUDA_HOME" ]
"$CUDA_HOME/bin/ptxas" --version
python -c "{CUDART_VERSION}" "$CUDA_HOME/lib64/libcudart.so"
cat "$CUDA_HOME/version.json"
python gpu_check.py > gpu-check.txt || true
"""
    proc = trixie.run(script, [(bundle, "/home/user/cu12.run"),
                               (GPU_CHECK, "/home/user/gpu_check.py")])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    nvcc = version_of(lock, "nvidia-cuda-nvcc-cu12")
    runtime = version_of(lock, "nvidia-cuda-runtime-cu12")
    assert f"V{nvcc}" in proc.stdout
    major, minor = runtime.split(".")[:2]
    assert f"cudart 0 {int(major) * 1000 + int(minor) * 10}" in proc.stdout
    version_json = json.loads(proc.stdout[proc.stdout.index("{"):])
    assert version_json["cuda"]["version"] == runtime
    assert version_json["cuda_nvcc"]["version"] == nvcc
    gpu_json = json.loads((trixie.home / "envs/cu12/gapship/gpu.json").read_text())
    assert gpu_json["cuda_source"] == "wheels"
    # the GPU check script gets as far as a machine without a driver lets it
    check = (trixie.home / "gpu-check.txt").read_text().splitlines()
    assert check[0].startswith(f"gpu-check: runtime {int(major) * 1000 + int(minor) * 10} from")
    assert check[0].endswith("/nvidia/cuda_runtime/lib/libcudart.so.12")
    assert check[1].startswith("gpu-check: FAIL: no NVIDIA driver on this node")


def test_cu13_nvcc_answers_from_cuda_home(gpu_work: Path, trixie_target: Path,
                                          trixie: Replica) -> None:
    # as users write it: the nvcc wheel named in packages, cuda.nvcc not set
    lock = hand_lock("cu13", ("nvidia-cuda-runtime", "nvidia-cuda-nvcc"), trixie_target,
                     wheels_gpu("13", nvcc=False))
    bundle = packed(gpu_work, lock, trixie_target)
    script = """set -e
sh cu13.run --prefix ~/envs/cu13 >/dev/null
. ~/envs/cu13/activate
nvcc -V
[ "$(command -v nvcc)" = "$CUDA_HOME/bin/nvcc" ]
deactivate
! command -v nvcc
"""
    proc = trixie.run(script, [(bundle, "/home/user/cu13.run")])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    nvcc = version_of(lock, "nvidia-cuda-nvcc")
    assert f"release {'.'.join(nvcc.split('.')[:2])}, V{nvcc}" in proc.stdout


def test_local_toolkit_is_found_through_cuda_home_and_ld_library_path(
        gpu_work: Path, trixie_target: Path, trixie: Replica) -> None:
    tk, cudnn = make_local_toolkit(gpu_work / "toolkits")
    gpu = GpuPlan(framework="tensorflow-gpu", framework_version="1.11.0", cuda="9.0",
                  cudnn="7", cuda_source="toolkit", min_driver="384.81",
                  toolkit_path=str(tk), cudnn_path=str(cudnn), nvcc=True)
    bundle = packed(gpu_work, hand_lock("cuda9", (), trixie_target, gpu), trixie_target)
    script = f"""set -e
sh cuda9.run --prefix ~/envs/cuda9 >/dev/null
mkdir -p ~/site/lib64 && cp ~/envs/cuda9/cuda/lib64/libcudart.so.9.0.176 ~/site/lib64/
LD_LIBRARY_PATH=$HOME/site/lib64; export LD_LIBRARY_PATH
. ~/envs/cuda9/activate 2> warned
nvcc -V
grep CUDNN_MAJOR -A 2 "$CUDA_HOME/include/cudnn.h"
python -c "{CUDART_VERSION}" libcudart.so.9.0
echo "LD=$LD_LIBRARY_PATH"
deactivate
echo "LD=$LD_LIBRARY_PATH"
mv ~/envs/cuda9 ~/envs/moved
~/envs/moved/bin/gapship-rehome >/dev/null
GAPSHIP_ISOLATE=1 . ~/envs/moved/activate 2> isolated
python -c "{CUDART_VERSION}" libcudart.so.9.0
echo "LD=$LD_LIBRARY_PATH"
"""
    proc = trixie.run(script, [(bundle, "/home/user/cuda9.run")])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    assert "release 9.0, V9.0.176" in out
    defines = [ln.split()[1:] for ln in out.splitlines() if ln.startswith("#define")]
    assert defines == [["CUDNN_MAJOR", "7"], ["CUDNN_MINOR", "6"], ["CUDNN_PATCHLEVEL", "5"]]
    assert out.count("cudart 0 9000") == 2
    lds = [ln.removeprefix("LD=") for ln in out.splitlines() if ln.startswith("LD=")]
    assert lds == ["/home/user/envs/cuda9/cuda/lib64:/home/user/site/lib64",
                   "/home/user/site/lib64", "/home/user/envs/moved/cuda/lib64"]
    warned = (trixie.home / "warned").read_text().splitlines()
    assert len(warned) == 1 and "/home/user/site/lib64" in warned[0]
    assert "left /home/user/site/lib64 out" in (trixie.home / "isolated").read_text()
    manifest = json.loads((trixie.home / "envs/moved/gapship/manifest.json").read_text())
    assert not any(f["path"].endswith(".a") or "/stubs/" in f["path"]
                   for f in manifest["files"])
