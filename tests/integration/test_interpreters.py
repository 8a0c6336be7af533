"""Interpreter sources end to end: pack with each, install offline in a replica, use it.

- twin: bullseye (glibc 2.31, no Python) gets Debian 11's own python3.9 and its libraries;
- target: a bullseye with python3 gets only packages, tied to /usr/bin/python3.9;
- the seed's era: Python 3.6 with tensorflow 1.11 (CPU) in trixie;
- standalone: an archive of python-build-standalone's install_only layout, given as a file
  and through `uv python install` from a local download list;
- auto: for bullseye it passes over host (glibc), standalone (offline) and target (none).
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from gapship.cache import cache_dir
from gapship.files import sha256_file
from gapship.probe import probe_script
from gapship.replica import Replica, replica
from tests.conftest import gapship, require
from tests.integration.conftest import need_replica
from tests.integration.standalone_archive import make_install_only_archive

SPEC = 'name = "demo"\npackages = ["numpy", "requests"]\n'
IMPORTS = "import numpy, requests, ssl, sqlite3, ctypes, lzma, bz2, platform"
PYENV = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv")) / "versions"


@pytest.fixture(scope="module")
def here(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("interpreters")
    (path / "env.toml").write_text(SPEC)
    return path


def pack(here: Path, target: Path, out: str, *options: str, spec: str = "env.toml",
         env: dict[str, str] | None = None) -> tuple[Path, dict[str, object], str]:
    bundle = here / out
    proc = gapship("pack", str(here / spec), "--target", str(target), "-o", str(bundle),
                   "--json", "--level", "1", *options,
                   env={**os.environ, **(env or {})})
    assert proc.returncode == 0, proc.stderr[-3000:]
    return bundle, json.loads(proc.stdout), proc.stderr


def install_and_use(rep: Replica, bundle: Path, check: str = "", imports: str = IMPORTS) -> str:
    """Install as uid 1000 with / read-only and no network; import, doctor, move, rehome."""
    script = f"""set -e
sh {bundle.name} --prefix ~/envs/e 2>install.log
. ~/envs/e/activate
python -c "{imports}; print('python', platform.python_version())"
{check}
gapship-doctor --json > doctor.json || {{ gapship-doctor; exit 1; }}
deactivate
mv ~/envs/e ~/envs/moved && ~/envs/moved/bin/gapship-rehome >/dev/null
. ~/envs/moved/activate
python -c "import numpy, ssl; print(numpy.__file__)"
"""
    proc = rep.run(script, [(bundle, f"/home/user/{bundle.name}")])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "/home/user/envs/moved/lib/python3" in proc.stdout
    doctor = json.loads((rep.home / "doctor.json").read_text())
    assert doctor["ok"], [c for c in doctor["checks"] if c["status"] == "fail"]
    for needle in (str(cache_dir()), "/root/.pyenv", str(Path(__file__).parent)):
        grep = subprocess.run(["grep", "-rlF", needle, str(rep.home / "envs" / "moved")],
                              capture_output=True, text=True, check=False)
        assert grep.stdout == "", f"{needle} found in {grep.stdout}"
    return proc.stdout


def activated_venv(here: Path) -> dict[str, str]:
    """What a builder shell holds after `. .venv/bin/activate` plus the usual leftovers: none
    of it may change what is packed (Debian's site.py reads VIRTUAL_ENV, for one)."""
    venv = here / "builder-venv"
    if not venv.exists():
        subprocess.run(["python3", "-m", "venv", "--without-pip", str(venv)], check=True)
    junk = here / "builder-junk"
    (junk / "numpy").mkdir(parents=True, exist_ok=True)
    (junk / "numpy" / "__init__.py").write_text("raise ImportError('the builder numpy')\n")
    return {"VIRTUAL_ENV": str(venv), "PATH": f"{venv}/bin:{os.environ['PATH']}",
            "PYTHONPATH": str(junk), "PYTHONUSERBASE": str(junk), "PYTHONNOUSERSITE": "",
            "CONDA_PREFIX": str(junk), "CONDA_DEFAULT_ENV": "base",
            "LD_LIBRARY_PATH": str(junk)}


@pytest.fixture()
def bullseye() -> Iterator[Replica]:
    need_replica("bullseye")
    with replica("bullseye") as rep:
        yield rep


def test_twin_serves_bullseye_without_python(here: Path, bullseye_target: Path,
                                             bullseye_python_rootfs: Path,
                                             bullseye: Replica) -> None:
    bundle, report, stderr = pack(here, bullseye_target, "twin.run", "--python", "twin",
                                  env=activated_venv(here))
    assert "Python 3.9.2 from twin" in stderr
    assert report["python"] == "3.9.2" and report["platform"] == "x86_64-manylinux_2_31"
    assert "grafted" in stderr and "libssl.so.1.1" in stderr  # bullseye's, not the builder's
    assert bullseye.run("command -v python3 || command -v python").returncode != 0
    out = install_and_use(bullseye, bundle)
    assert "python 3.9.2" in out


def test_auto_passes_over_what_cannot_serve_bullseye(here: Path, bullseye_target: Path,
                                                     bullseye_python_rootfs: Path) -> None:
    _, report, stderr = pack(here, bullseye_target, "auto.run", env={"UV_OFFLINE": "1"})
    line = next(ln for ln in stderr.splitlines() if "from twin" in ln)
    assert "not host: Python 3." in line and "needs GLIBC_2.3" in line
    assert "the target has 2.31" in line
    assert "not standalone: uv python install" in line
    assert "not target: the probe found no Python 3.6 or newer on the target" in line
    assert report["python"] == "3.9.2"


def probe_rootfs(rootfs: Path, dest: Path) -> Path:
    with replica("twin", rootfs=rootfs) as rep:
        (rep.home / "probe.sh").write_text(probe_script())
        proc = rep.run("sh probe.sh > target.json")
        assert proc.returncode == 0, proc.stderr
        shutil.copy(rep.home / "target.json", dest)
    return dest


def test_target_python_ships_only_packages(here: Path, bullseye_python_rootfs: Path) -> None:
    target = probe_rootfs(bullseye_python_rootfs, here / "bullseye-python.json")
    assert {"path": "/usr/bin/python3.9", "version": "3.9.2"} in json.loads(
        target.read_text())["pythons"]
    bundle, report, stderr = pack(here, target, "target.run", "--python", "target")
    assert "Python 3.9.2 from target" in stderr and "no interpreter ships" in stderr
    with replica("twin", rootfs=bullseye_python_rootfs) as rep:
        check = """[ "$(readlink ~/envs/e/bin/python3)" = /usr/bin/python3.9 ]
[ ! -e ~/envs/e/lib/libpython3.9.so.1.0 ] && [ ! -e ~/envs/e/lib/python3.9/os.py ]
python -c "import sys; assert sys.base_prefix == '/usr' and sys.prefix.endswith('envs/e')"
pip --version"""
        out = install_and_use(rep, bundle, check=check)
    assert "python 3.9.2" in out and "envs/e/lib/python3.9/site-packages/pip" in out
    assert int(str(report["installed_bytes"])) < 100e6


def test_python_3_6_with_tensorflow_1_11(here: Path, trixie_target: Path) -> None:
    require((PYENV / "3.6.15" / "bin" / "python3.6").exists(), "pyenv's Python 3.6 is needed")
    (here / "tf.toml").write_text('name = "tf111"\npython = "3.6"\n'
                                  'packages = ["tensorflow==1.11.0", "numpy==1.14.5"]\n')
    bundle, report, stderr = pack(here, trixie_target, "tf.run", spec="tf.toml")
    assert "Python 3.6.15 from host" in stderr
    assert {p["name"]: p["version"] for p in report["packages"]}["tensorflow"] == "1.11.0"  # type: ignore[attr-defined]
    need_replica("trixie")
    with replica("trixie") as rep:
        check = ('python -c "import tensorflow as tf; s = tf.Session(); '
                 'print(\'tf\', tf.__version__, s.run(tf.add(tf.constant(2), tf.constant(3))))"'
                 " 2>/dev/null")
        out = install_and_use(rep, bundle, check=check, imports=IMPORTS.replace(
            "requests, ", ""))
    assert "python 3.6.15" in out and "tf 1.11.0 5" in out


@pytest.fixture(scope="module")
def install_only_archive(here: Path) -> Path:
    prefix = PYENV / "3.9.18"
    require((prefix / "bin" / "python3.9").exists(), "pyenv's Python 3.9 is needed")
    return make_install_only_archive(prefix, here / "cpython-3.9.18-install_only.tar.gz")


def test_python_archive_of_the_install_only_layout(here: Path, trixie_target: Path,
                                                   install_only_archive: Path) -> None:
    bundle, report, stderr = pack(here, trixie_target, "archive.run", "--python-archive",
                                  str(install_only_archive))
    assert "Python 3.9.18 from standalone" in stderr and report["python"] == "3.9.18"
    need_replica("trixie")
    with replica("trixie") as rep:
        out = install_and_use(rep, bundle)
    assert "python 3.9.18" in out


def test_uv_python_install_from_a_local_download_list(here: Path, trixie_target: Path,
                                                      install_only_archive: Path) -> None:
    """`--python standalone:3.9` through `uv python install`, its download list pointing at
    the local archive (uv checks the sha256 the list gives)."""
    downloads = here / "downloads.json"
    downloads.write_text(json.dumps({"cpython-3.9.18-linux-x86_64-gnu": {
        "name": "cpython", "arch": {"family": "x86_64", "variant": None}, "os": "linux",
        "libc": "gnu", "major": 3, "minor": 9, "patch": 18, "prerelease": "",
        "url": install_only_archive.as_uri(), "sha256": sha256_file(install_only_archive),
        "variant": None}}))
    installs = here / "uv-pythons"
    _, report, stderr = pack(here, trixie_target, "uv.run", "--python", "standalone:3.9",
                             env={"UV_PYTHON_DOWNLOADS_JSON_URL": str(downloads),
                                  "UV_PYTHON_INSTALL_DIR": str(installs)})
    assert f"uv python install 3.9 (python-build-standalone, into {installs})" in stderr
    assert "Python 3.9.18 from standalone" in stderr and report["python"] == "3.9.18"
    assert list(installs.glob("cpython-3.9.18-linux-x86_64-gnu/bin/python3.9"))


def test_the_pack_command_that_plan_prints_works_as_printed(here: Path, bullseye_target: Path,
                                                            bullseye_python_rootfs: Path
                                                            ) -> None:
    """plan --twin-root ROOT -o e.lock, then the printed `gapship pack e.lock --target T`: the
    lock says where its interpreter is. The target's OS is one gapship has no twin of, so
    only the rootfs given at plan time can serve it (as for a builder without root)."""
    probe = json.loads(bullseye_target.read_text())
    probe["os"]["id"] = "mylinux"
    (here / "mylinux.json").write_text(json.dumps(probe))
    proc = gapship("plan", "env.toml", "--target", "mylinux.json", "--twin-root",
                   str(bullseye_python_rootfs), "-o", "e.lock", cwd=here)
    assert proc.returncode == 0, proc.stderr[-3000:]
    hint = next(ln for ln in proc.stdout.splitlines() if ln.startswith("wrote e.lock: `"))
    command = shlex.split(hint.split("`")[1])
    assert command == ["gapship", "pack", "e.lock", "--target", "mylinux.json"]
    locked = json.loads((here / "e.lock").read_text())["interpreter"]
    assert locked["source"] == "twin" and locked["twin_root"] == str(bullseye_python_rootfs)
    (here / "demo.run").unlink(missing_ok=True)
    packed = gapship(*command[1:], "--level", "1", cwd=here)
    assert packed.returncode == 0, packed.stderr[-3000:]
    assert f"Python 3.9.2 from twin (--twin-root {bullseye_python_rootfs}), as the lock says" \
        in packed.stderr
    assert (here / "demo.run").is_file()
