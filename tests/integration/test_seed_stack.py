"""The seed stack of issue 12: tensorflow-gpu 1.11 (named in packages, so promoted to the
framework) on a local CUDA 9.0 toolkit + cuDNN 7, packed for a minbase Debian target that has
no libgomp.so.1, installed offline as uid 1000, then judged by its own doctor.

Why the trixie replica stands in for bullseye: the issue names a bullseye minbase target, but
tensorflow-gpu 1.11 needs Python < 3.7 and no Python 3.6 for Debian 11 can be had on this
builder offline (pyenv's 3.6.15 needs GLIBC_2.36 and bullseye has 2.31, python-build-standalone
has no 3.6, bullseye ships 3.9, and no 3.6 archive or bionic twin rootfs is here). Pack refuses
that in one line naming the ways out, which is asserted first. Trixie is debootstrapped minbase
too and lacks libgomp.so.1 just as bullseye does (asserted from both probes' library lists),
and its glibc 2.41 runs the builder's 3.6.15: for what is checked here (libgomp grafted at pack
time, the doctor's CUDA 9 verdict) it is the same target.

The toolkit is the gcc-built fake of tests/unit/test_cuda_view.py, plus empty-but-named
libcublas/libcufft/libcurand/libcusolver.so.9.0 (a soname and nothing TensorFlow uses): pack
resolves every NEEDED as the target's loader will and would refuse a toolkit without them, so
that the doctor, not pack, meets what the fake toolkit lacks: its symbols. The replica has no
NVIDIA driver either; a fake libcuda.so.1 that defines the driver API the framework binds to
(cuInit says "no device", as on a login node) comes first on LD_LIBRARY_PATH, as a site's
driver module puts it, so that the driver is not what fails.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest

from gapship.probe import load_target
from gapship.replica import Replica
from tests.conftest import gapship, require_tool
from tests.unit.test_cuda_view import compile_lib, make_local_toolkit

# what TensorFlow 1.11's libraries NEED from CUDA 9.0 that make_local_toolkit does not build
EMPTY_CUDA9 = ("libcublas", "libcufft", "libcurand", "libcusolver")
CUDA9_LIBRARY = re.compile(r"^lib(cudart|cublas|cufft|curand|cusolver|cudnn)\.so\.(9\.0|7)$")
# the driver API (cuInit, cuMemAlloc_v2 ...), not the runtime's cuda*/cublas*/cudnn* names
DRIVER_SYMBOL = re.compile(r"^cu[A-Z]\w*$")
TOOLKIT_REMEDY = 'cuda = { path = "/usr/local/cuda-9.0" }'
TF_LIBRARIES = ("tensorflow/libtensorflow_framework.so",
                "tensorflow/python/_pywrap_tensorflow_internal.so")


def seed_toolkit(base: Path) -> tuple[Path, Path]:
    """The fake CUDA 9.0 toolkit and cuDNN 7, with the rest of what TensorFlow 1.11 names."""
    tk, cudnn = make_local_toolkit(base)
    lib64 = tk / "lib64"
    for stem in EMPTY_CUDA9:
        real = lib64 / f"{stem}.so.9.0.176"
        compile_lib(real, f"int {stem}_is_a_fake(void) {{ return 9000; }}\n", f"{stem}.so.9.0")
        (lib64 / f"{stem}.so.9.0").symlink_to(real.name)
        (lib64 / f"{stem}.so").symlink_to(f"{stem}.so.9.0")
    return tk, cudnn


def dynamic_symbols(path: Path, which: str) -> set[str]:
    """nm -D names of ``path``: ``which`` is --undefined-only or --defined-only."""
    nm = require_tool("nm")
    out = subprocess.run([nm, "-D", which, str(path)], capture_output=True, text=True,
                         check=True).stdout
    return {line.split()[-1].split("@")[0] for line in out.splitlines() if line.strip()}


def fake_driver(dest: Path, site: Path) -> Path:
    """libcuda.so.1 defining every driver function the installed TensorFlow binds to."""
    wanted: set[str] = set()
    for rel in TF_LIBRARIES:
        wanted |= {s for s in dynamic_symbols(site / rel, "--undefined-only")
                   if DRIVER_SYMBOL.match(s)}
    special = {"cuInit": "int cuInit(unsigned flags) { return 100; }",  # NO_DEVICE
               "cuDriverGetVersion": "int cuDriverGetVersion(int *v) { *v = 9000; return 0; }",
               "cuDeviceGetCount": "int cuDeviceGetCount(int *n) { *n = 0; return 0; }"}
    source = [special.get(s, f"int {s}(void) {{ return 999; }}") for s in sorted(wanted)]
    assert "cuInit" in wanted, "TensorFlow 1.11 binds to the driver API"
    return compile_lib(dest / "libcuda.so.1", "\n".join(source) + "\n", "libcuda.so.1")


@pytest.fixture(scope="module")
def seed_env(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("seed")
    tk, cudnn = seed_toolkit(path / "toolkits")
    (path / "env.toml").write_text(
        'name = "tf11"\npython = "3.6"\npackages = ["tensorflow-gpu==1.11.0"]\n'
        f'cuda = {{ path = "{tk}" }}\ncudnn = {{ path = "{cudnn}" }}\n')
    return path


def test_bullseye_has_no_python_36_and_pack_names_the_ways_out(seed_env: Path,
                                                              bullseye_target: Path) -> None:
    bundle = seed_env / "bullseye.run"
    proc = gapship("pack", str(seed_env / "env.toml"), "--target", str(bullseye_target), "-o",
                   str(bundle), "--level", "1")
    assert proc.returncode != 0 and not bundle.exists()
    assert "Traceback" not in proc.stderr
    error = next(ln for ln in proc.stderr.splitlines() if ln.startswith("gapship: error:"))
    assert "Python 3.6" in error and "bullseye" in error
    assert "--python-archive" in proc.stderr and "--twin-root" in proc.stderr


def test_tf111_on_a_cuda9_toolkit_carries_libgomp_and_its_doctor_blames_the_toolkit(
        seed_env: Path, trixie_target: Path, bullseye_target: Path, trixie: Replica) -> None:
    for probe in (bullseye_target, trixie_target):  # trixie lacks libgomp as bullseye does
        libraries = load_target(probe).libraries
        assert libraries is not None and "libgomp.so.1" not in libraries, probe.name
    bundle = seed_env / "tf11.run"
    proc = gapship("pack", str(seed_env / "env.toml"), "--target", str(trixie_target), "-o",
                   str(bundle), "--level", "1")
    assert proc.returncode == 0, proc.stderr[-3000:]
    grafted = next(ln for ln in proc.stderr.splitlines() if "for the target:" in ln)
    assert "libgomp.so.1" in grafted.split(":", 1)[1].replace(",", " ").split()
    assert "libcu" not in grafted  # the toolkit's libraries ship as its own, not as grafts

    run = trixie.run("set -e\nid -u\nsh tf11.run --prefix ~/envs/tf11 >/dev/null 2>&1\n",
                     [(bundle, "/home/user/tf11.run")])
    assert run.returncode == 0 and run.stdout.split() == ["1000"], run.stdout + run.stderr
    prefix = trixie.home / "envs" / "tf11"
    assert (prefix / "lib" / "libgomp.so.1").is_file()
    site = prefix / "lib" / "python3.6" / "site-packages"
    fake_driver(trixie.home / "driver", site)

    script = """LD_LIBRARY_PATH=$HOME/driver; export LD_LIBRARY_PATH
. ~/envs/tf11/activate 2>/dev/null
gapship-doctor --json > doctor.json
echo "doctor=$?"
"""
    run = trixie.run(script)
    assert "doctor=1" in run.stdout, run.stdout + run.stderr
    report = json.loads((trixie.home / "doctor.json").read_text())
    assert report["ok"] is False
    checks = report["checks"]
    closure = next(c for c in checks if c["name"] == "library closure")
    assert closure["status"] == "pass", closure  # libgomp.so.1 is found, in the prefix
    failing = [c for c in checks if c["status"] == "fail"]
    for check in failing:
        print(f"doctor FAIL [{check['group']}] {check['name']}: {check['detail']}\n"
              f"  remedy: {check['remedy']}")
    assert failing
    for check in failing:
        found = re.search(r"undefined symbol: (\S+), version (\S+)$", check["detail"])
        assert found, check
        symbol, library = found.groups()
        assert CUDA9_LIBRARY.match(library), check
        shipped = next((prefix / "cuda" / "lib64").glob(f"{library}*"))
        assert symbol not in dynamic_symbols(shipped.resolve(), "--defined-only"), check
        assert check.get("diagnosis") == "cuda-symbol-missing-toolkit", check
        assert "CUDA 9.0 stack" in check["remedy"] and TOOLKIT_REMEDY in check["remedy"]
        assert "-cu12" not in check["remedy"] and "nvidia-" not in check["remedy"]
