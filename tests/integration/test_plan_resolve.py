"""Real resolution against PyPI (through uv's cache) for the stacks the plan must serve."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from gapship.compat import load as load_compat
from gapship.plan import Lock, plan
from gapship.probe import parse_target
from gapship.spec import parse_spec
from tests.conftest import gapship
from tests.fixtures.targets import fixture_target, fixture_target_path


def plan_for(machine: str, toml: str, python: str) -> Lock:
    spec = parse_spec('name = "x"\n' + toml)
    return plan(spec, parse_target(fixture_target(machine)), python, "host",
                extra_requirements=("pip",))


def files_by_name(lock: Lock) -> dict[str, str]:
    return {f.name: f.filename for f in lock.files}


def test_numpy_for_python_39_on_glibc_217() -> None:
    lock = plan_for("centos7-v100", 'packages = ["numpy"]', "3.9.18")
    assert lock.platform_tag == "x86_64-manylinux_2_17"
    numpy = files_by_name(lock)["numpy"]
    assert "-cp39-cp39-" in numpy and ("manylinux2014" in numpy or "manylinux_2_17" in numpy)
    assert all(len(f.sha256) == 64 and f.url.startswith("https://") for f in lock.files)


def test_torch_default_cuda_build_for_h100_with_driver_550() -> None:
    lock = plan_for("ubuntu2204-h100", 'framework = "torch"', "3.11.7")
    names = files_by_name(lock)
    assert lock.gpu is not None and lock.gpu.cuda == "12.8" and lock.gpu.framework == "torch"
    assert "nvidia-cuda-runtime-cu12" in names and "nvidia-cudnn-cu12" in names
    torch = next(f for f in lock.files if f.name == "torch")
    assert torch.version.startswith("2.10.")
    # PyPI's torch 2.11 carries CUDA 13, which driver 550 cannot run
    skipped = next(d for d in lock.decisions if d.what == "torch 2.11")
    assert "CUDA 13.0 needs driver >= 580.65.06" in skipped.why


def test_a_build_that_resolves_to_another_cuda_than_the_data_says_is_rejected(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """If the compat data were wrong about PyPI's default build, the resolved wheels win."""
    data = load_compat()
    newest = data.torch[0]
    wrong = replace(newest, variants=tuple(
        replace(v, pypi_default=v.tag == "cu128") for v in newest.variants))
    monkeypatch.setattr("gapship.plan.load_compat",
                        lambda: replace(data, torch=(wrong, *data.torch[1:])))
    lock = plan_for("ubuntu2204-h100", 'framework = "torch"', "3.11.7")
    rejected = next(d for d in lock.decisions if d.what == f"torch {newest.version} with CUDA 12.8")
    assert "carry CUDA 13.0" in rejected.why and rejected.fact == "resolution"
    assert lock.gpu is not None and lock.gpu.cuda == "12.8"
    assert next(f for f in lock.files if f.name == "torch").version.startswith("2.10.")


def test_tensorflow_and_cuda_217_puts_every_nvidia_lib_dir_on_the_library_path() -> None:
    lock = plan_for("ubuntu2204-h100", 'framework = "tensorflow[and-cuda]==2.17.*"', "3.11.7")
    names = files_by_name(lock)
    assert names["tensorflow"].startswith("tensorflow-2.17.")
    assert "nvidia-cudnn-cu12" in names and "nvidia-cublas-cu12" in names
    assert lock.gpu is not None and lock.gpu.cuda_source == "wheels"
    site = "lib/python3.11/site-packages"
    assert f"{site}/nvidia/cudnn/lib" in lock.gpu.ld_library_path
    assert f"{site}/nvidia/cuda_runtime/lib" in lock.gpu.ld_library_path


def test_jax_cuda12() -> None:
    lock = plan_for("ubuntu2204-h100", 'framework = "jax[cuda12]"', "3.11.7")
    names = files_by_name(lock)
    assert {"jax", "jaxlib", "jax-cuda12-plugin", "jax-cuda12-pjrt"} <= set(names)
    assert lock.gpu is not None and lock.gpu.cuda is not None
    assert lock.gpu.cuda.startswith("12.")


def test_the_seeds_stack_tensorflow_gpu_111_on_python_36() -> None:
    lock = plan_for("ubuntu1604-k80", 'framework = "tensorflow-gpu==1.11.0"', "3.6.15")
    names = files_by_name(lock)
    assert names["tensorflow-gpu"] == "tensorflow_gpu-1.11.0-cp36-cp36m-manylinux1_x86_64.whl"
    assert names["termcolor"].endswith(".tar.gz")  # never had a wheel: built at pack time
    gpu = lock.gpu
    assert gpu is not None and (gpu.cuda, gpu.cudnn, gpu.cuda_source) == ("9.0", "7", "toolkit")
    assert any("no wheel provides them" in w and "cuda = { path" in w for w in lock.warnings)


@pytest.mark.parametrize(("packages", "fragment"), [
    ('["gapship-no-such-package-x"]', "gapship-no-such-package-x"),
    ('["numpy==99.0"]', "numpy==99.0"),
])
def test_unknown_package_or_impossible_constraint_is_one_line(tmp_path: Path, packages: str,
                                                              fragment: str) -> None:
    spec = tmp_path / "env.toml"
    spec.write_text(f'name = "x"\npackages = {packages}\n')
    proc = gapship("plan", str(spec), "--target", str(fixture_target_path("rocky8-a100")))
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    error = [ln for ln in proc.stderr.splitlines() if ln.startswith("gapship: error:")]
    assert len(error) == 1 and fragment in error[0]


def test_plan_writes_a_lock_that_pack_ships_exactly(tmp_path: Path) -> None:
    spec = tmp_path / "env.toml"
    spec.write_text('name = "small"\npackages = ["six", "termcolor"]\n')
    lock_path = tmp_path / "gapship.lock"
    proc = gapship("plan", str(spec), "--target", "local", "-o", str(lock_path), "--json")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["installed_bytes"] > 0 and report["download_bytes"] > 0
    lock = Lock.from_json(lock_path.read_text())
    out = tmp_path / "small.run"
    proc = gapship("pack", str(lock_path), "--target", "local", "-o", str(out), "--json")
    assert proc.returncode == 0, proc.stderr
    shipped = {(p["name"].lower(), p["version"]) for p in json.loads(proc.stdout)["packages"]}
    assert shipped == {(f.name.lower(), f.version) for f in lock.files}


def _write_wheel(folder: Path, name: str, version: str, payload: bytes) -> Path:
    """A real pure-Python wheel (METADATA, WHEEL, RECORD) that no index has."""
    import base64
    import hashlib
    import zipfile

    folder.mkdir(parents=True, exist_ok=True)
    dist = f"{name}-{version}.dist-info"
    files = {
        f"{name}/__init__.py": b"VALUE = 42\n",
        f"{name}/blob.bin": payload,
        f"{dist}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n".encode(),
        f"{dist}/WHEEL": b"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\n"
                         b"Tag: py3-none-any\n",
        f"{dist}/top_level.txt": f"{name}\n".encode(),
    }
    record = []
    for path, data in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record.append(f"{path},sha256={digest},{len(data)}")
    record.append(f"{dist}/RECORD,,")
    files[f"{dist}/RECORD"] = ("\n".join(record) + "\n").encode()
    wheel = folder / f"{name}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w", zipfile.ZIP_DEFLATED) as zf:
        for path, data in files.items():
            zf.writestr(path, data)
    return wheel


def test_a_wheelhouse_named_in_find_links_is_planned_counted_and_shipped(tmp_path: Path
                                                                         ) -> None:
    # a folder with a space, named relative to env.toml, run from another directory
    project = tmp_path / "my project"
    wheel = _write_wheel(project / "local wheels", "gslocal", "1.2.3", bytes(range(256)) * 8192)
    spec = project / "env.toml"
    spec.write_text('name = "local"\npackages = ["gslocal", "six"]\n'
                    'find_links = ["local wheels"]\n')
    lock_path = tmp_path / "gapship.lock"
    proc = gapship("plan", str(spec), "--target", "local", "-o", str(lock_path), "--json")
    assert proc.returncode == 0, proc.stderr
    lock = Lock.from_json(lock_path.read_text())
    local = next(f for f in lock.files if f.name == "gslocal")
    assert local.url.startswith("file://") and local.version == "1.2.3"
    # the plan counts the local wheel's bytes (a wheelhouse's torch is not 0 MB)
    assert local.size == wheel.stat().st_size
    assert local.installed_size is not None and local.installed_size > 2_000_000
    report = json.loads(proc.stdout)
    assert report["installed_bytes"] >= local.installed_size
    assert report["download_bytes"] >= local.size
    out = tmp_path / "local.run"
    proc = gapship("pack", str(lock_path), "--target", "local", "-o", str(out), "--json")
    assert proc.returncode == 0, proc.stderr
    shipped = {p["name"].lower(): p["version"] for p in json.loads(proc.stdout)["packages"]}
    assert shipped["gslocal"] == "1.2.3"


def test_a_find_links_folder_that_is_not_there_is_one_line(tmp_path: Path) -> None:
    spec = tmp_path / "env.toml"
    spec.write_text('name = "x"\npackages = ["six"]\nfind_links = ["no-such-wheels"]\n')
    proc = gapship("plan", str(spec), "--target", str(fixture_target_path("rocky8-a100")))
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    error = [ln for ln in proc.stderr.splitlines() if ln.startswith("gapship: error:")]
    assert len(error) == 1 and "no-such-wheels is not a folder of wheels" in error[0]
