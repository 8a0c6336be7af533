"""A torch GPU environment from PyPI (torch's default CUDA build): packed for the trixie
replica, installed there offline as uid 1000, imported on CPU, and every CUDA library torch
loads found inside the prefix, checked statically with the doctor's own ld.so resolver.

The bundle is large (about 4 GB of wheels, 7 GB installed): one pack per session.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from gapship.node.closure import scan
from gapship.node.loader import Loader
from gapship.replica import Replica, replica
from tests.conftest import gapship
from tests.integration.conftest import need_replica

SPEC = """name = "torch"
framework = "torch"
# the replica has no GPU: these are the compute nodes the environment is for
compute = { driver = "550.54.15", compute_capability = ["9.0"] }
"""
CUDA_LIBRARIES = ("libcudart.so", "libcublas.so", "libcublasLt.so", "libcudnn.so",
                  "libnccl.so", "libnvrtc.so", "libcufft.so", "libcusparse.so", "libcurand.so")


@pytest.fixture(scope="module")
def torch_install(tmp_path_factory: pytest.TempPathFactory, trixie_target: Path
                  ) -> Iterator[tuple[Replica, dict[str, object], Path]]:
    need_replica("trixie")
    work = tmp_path_factory.mktemp("torch")
    (work / "env.toml").write_text(SPEC)
    lock = work / "torch.lock"
    proc = gapship("plan", str(work / "env.toml"), "--target", str(trixie_target), "-o",
                   str(lock))
    assert proc.returncode == 0, proc.stderr
    bundle = work / "torch.run"
    proc = gapship("pack", str(lock), "--target", str(trixie_target), "-o", str(bundle),
                   "--level", "1")
    assert proc.returncode == 0, proc.stderr
    with replica("trixie") as rep:
        proc = rep.run("sh torch.run --prefix ~/envs/torch", [(bundle, "/home/user/torch.run")])
        assert proc.returncode == 0, proc.stdout + proc.stderr
        bundle.unlink()  # 7 GB installed is enough on the disk
        yield rep, json.loads(lock.read_text()), rep.home / "envs" / "torch"


def test_torch_imports_on_cpu_with_the_planned_cuda(
        torch_install: tuple[Replica, dict[str, object], Path]) -> None:
    rep, lock, _ = torch_install
    gpu = lock["gpu"]
    assert isinstance(gpu, dict)
    proc = rep.run(". ~/envs/torch/activate && python -c 'import torch, json; print(json.dumps("
                   "[torch.__version__, torch.version.cuda, torch.cuda.is_available(), "
                   "float(torch.ones(3).sum())]))' && echo \"CUDA_HOME=$CUDA_HOME\"")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    version, cuda, available, total = json.loads(proc.stdout.splitlines()[0])
    assert version.startswith(str(gpu["framework_version"]).split("+")[0])
    assert cuda == gpu["cuda"] and available is False and total == 3.0
    assert "CUDA_HOME=/home/user/envs/torch/cuda" in proc.stdout


def test_every_cuda_library_torch_loads_resolves_inside_the_prefix(
        torch_install: tuple[Replica, dict[str, object], Path]) -> None:
    _, _, prefix = torch_install
    site = prefix / "lib" / "python3.11" / "site-packages"
    result = scan(str(prefix), Loader())
    assert result.files > 100 and not result.missing and not result.missing_versions
    # no CUDA library the prefix has is taken from the system instead
    assert not [n for n in result.outside if n.startswith(CUDA_LIBRARIES)], result.outside
    libtorch_cuda = site / "torch" / "lib" / "libtorch_cuda.so"
    needed = Loader().read(str(libtorch_cuda)).needed
    for lib in CUDA_LIBRARIES:
        names = [n for n in [*needed, *result.sonames] if n.startswith(lib)]
        assert names, f"{lib} is neither needed nor shipped"
        for name in names:
            where = result.sonames.get(name)
            assert where is not None and os.path.realpath(where).startswith(str(prefix)), name
    # the driver is the only thing left to the node
    assert set(result.driver_needed) <= {"libcuda.so.1", "libnvidia-ml.so.1"}


def test_the_doctor_passes_without_a_gpu_and_says_so_in_one_line(
        torch_install: tuple[Replica, dict[str, object], Path]) -> None:
    rep, _, _ = torch_install
    proc = rep.run("~/envs/torch/bin/gapship-doctor --json > doctor.json; echo rc=$?")
    report = json.loads((rep.home / "doctor.json").read_text())
    failed = [c for c in report["checks"] if c["status"] == "fail"]
    assert not failed, failed
    gpu = [c for c in report["checks"] if c["group"] == "gpu"]
    assert any("no NVIDIA driver" in (c["detail"] + c["name"]) for c in gpu), gpu
    assert "rc=0" in proc.stdout
