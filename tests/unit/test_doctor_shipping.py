"""The doctor as shipped: installed into a prefix, run through bin/gapship-doctor (sh) on the
oldest and the newest Python it supports, with and without a (fake) NVIDIA driver."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

from gapship import doctor
from tests.conftest import require_python, require_tool
from tests.unit.doctor_fakes.build import fake_cuda

NODE = Path(doctor.__file__).resolve().parent.parent / "node"
# the oldest Python the doctor supports, and the builder's


def test_every_file_of_the_package_is_shipped() -> None:
    present = {p.name for p in NODE.iterdir() if p.is_file() and p.suffix in (".py", ".json")}
    assert set(doctor.NODE_FILES) == present


def test_the_builders_stubs_match_the_node_code() -> None:
    """The .pyi files beside the node's modules (types for the builder, never shipped) say
    what the code has, and mypy reads exactly those modules through them."""
    src, pyproject = NODE.parents[1], NODE.parents[2] / "pyproject.toml"
    modules = sorted(f"gapship.node.{p.stem}" for p in NODE.glob("*.pyi"))
    config = tomllib.loads(pyproject.read_text(encoding="utf-8"))
    followed = [name for o in config["tool"]["mypy"]["overrides"]
                if o.get("follow_imports") == "normal" for name in o["module"]]
    assert modules and sorted(followed) == modules
    assert not {f"{m.rsplit('.', 1)[1]}.pyi" for m in modules} & set(doctor.NODE_FILES)
    proc = subprocess.run([sys.executable, "-m", "mypy.stubtest", "--mypy-config-file",
                           str(pyproject), *modules],
                          capture_output=True, text=True, check=False,
                          env=dict(os.environ, MYPYPATH=str(src)), cwd=pyproject.parent)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def make_prefix(tmp_path: Path, python: str, driver: Path) -> Path:
    """A venv (so sys.prefix is the prefix) with the doctor, a package and CUDA libraries."""
    prefix = tmp_path / "env"
    subprocess.run([python, "-m", "venv", "--without-pip", str(prefix)], check=True)
    site = next(prefix.glob("lib/python3*/site-packages"))
    (site / "hello").mkdir()
    (site / "hello" / "__init__.py").write_text("GREETING = 'hi'\n")
    cuda_lib = site / "nvidia" / "cuda_runtime" / "lib"
    cuda_lib.mkdir(parents=True)
    shutil.copy(driver / "libcudart.so.12", cuda_lib / "libcudart.so.12")
    doctor.install_target_files(prefix)
    meta = prefix / "gapship"
    (meta / "environment.json").write_text(json.dumps({
        "site_packages": str(site.relative_to(prefix)),
        "distributions": [{"name": "hello", "version": "1.0", "imports": ["hello"]}]}))
    (meta / "gpu.json").write_text(json.dumps({
        "schema_version": 1, "framework": None, "cuda": "12.8", "cudnn": None,
        "cuda_source": "wheels", "min_driver": "525.60.13", "min_driver_cuda": 12080,
        "archs": None}))
    return prefix


def doctor_run(prefix: Path, *args: str, env: dict[str, str] | None = None,
               ) -> tuple[int, dict[str, Any]]:
    sh = require_tool("dash")
    full = {k: v for k, v in os.environ.items() if not k.startswith(("FAKE_", "CUDA_"))}
    full.pop("LD_LIBRARY_PATH", None)
    full.update(env or {})
    proc = subprocess.run([sh, str(prefix / "bin" / "gapship-doctor"), "--json", *args],
                          capture_output=True, text=True, env=full, check=False)
    assert proc.stdout.startswith("{"), proc.stderr
    return proc.returncode, json.loads(proc.stdout)


@pytest.mark.parametrize("which", ["3.6", "builder"])
def test_installed_doctor_runs(which: str, tmp_path: Path) -> None:
    python = sys.executable if which == "builder" else require_python(which)
    driver_dir = fake_cuda(tmp_path / "fakes")
    only_driver = tmp_path / "driver"
    only_driver.mkdir()
    shutil.copy(driver_dir / "libcuda.so.1", only_driver / "libcuda.so.1")
    prefix = make_prefix(tmp_path, python, driver_dir)

    rc, report = doctor_run(prefix, "--quick", env={"LD_LIBRARY_PATH": str(only_driver)})
    failing = [c for c in report["checks"]
               if c["status"] != "pass" and c["name"] != "nvidia_uvm"]  # /proc/modules may lack it
    assert rc == 0 and report["ok"], failing
    assert report["schema_version"] == 1 and report["exit_status"] == 0
    names = [c["name"] for c in report["checks"]]
    assert "hello (hello 1.0)" in names and "library closure" in names
    assert "vector add on GPU 0 (PTX JIT)" in names and "CUDA runtime 12.8" in names
    assert report["gpu"]["usable"] and report["gpu"]["driver_cuda"] == 12040

    # the same install on a node without the driver: one line for the GPU, still exit 0
    rc, report = doctor_run(prefix, "--quick")
    gpu_rows = [c for c in report["checks"] if c["group"] == "gpu"]
    assert rc == 0 and len(gpu_rows) == 1
    assert gpu_rows[0]["status"] == "warn" and gpu_rows[0]["diagnosis"] == "no-nvidia-driver"

    # a broken package makes exit 1 and names the cause
    (prefix / next(prefix.glob("lib/python3*/site-packages")).relative_to(prefix) / "hello"
     / "__init__.py").write_text("raise ImportError('numpy.core.multiarray failed to import')\n")
    rc, report = doctor_run(prefix, "--quick", "--no-gpu")
    (bad,) = [c for c in report["checks"] if c["status"] == "fail"]
    assert rc == 1 and bad["diagnosis"] == "numpy-abi" and "hello 1.0" in bad["remedy"]

    # no distribution found at all: one finding, site-packages is not on sys.path, and why
    site = next(prefix.glob("lib/python3*/site-packages"))
    site.rename(site.with_name("site-packages.moved"))
    rc, report = doctor_run(prefix, "--quick", "--no-gpu")
    (lost,) = [c for c in report["checks"] if c["status"] == "fail"]
    assert rc == 1 and lost["name"] == "site-packages on sys.path"
    assert f"{site} does not exist" in lost["detail"]
