"""The doctor in offline replicas: no GPU, no driver, uid 1000, / read-only.

trixie: the demo bundle installed as a user would; every non-GPU check passes, the GPU
section is one line; a library deleted from the install is found and named.
bullseye (glibc 2.31): a library built on the builder (glibc 2.36) is found statically,
on Debian 11's own Python 3.9, with the remedy.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

from gapship import doctor
from gapship.cache import cache_dir
from gapship.replica import Replica, debian_mirror, replica
from tests.conftest import require, require_tool
from tests.integration.conftest import need_replica
from tests.unit.doctor_fakes.build import fake_cuda, shared

HOME = "/home/user"


def checks_of(report: dict[str, Any], group: str) -> list[dict[str, Any]]:
    return [c for c in report["checks"] if c["group"] == group]


def test_trixie_no_gpu_then_a_deleted_library(
        trixie_bundle: tuple[Path, dict[str, object]], trixie: Replica) -> None:
    bundle, _ = trixie_bundle
    fake_srun = trixie.home / "bin" / "srun"
    fake_srun.parent.mkdir()
    fake_srun.write_text("#!/bin/sh\nexit 0\n")
    fake_srun.chmod(0o755)
    fake_cuda(trixie.home / "fakes")  # a CUDA runtime stand-in (cudaRuntimeGetVersion: 12.8)
    script = """set -e
sh demo.run --prefix ~/envs/demo >/dev/null
rc=0; ~/envs/demo/bin/gapship-doctor --json > plain.json || rc=$?; echo "plain $rc"
printf '{"schema_version": 1, "framework": "torch", "cuda": "12.8", "cudnn": null,
 "cuda_source": "wheels", "min_driver": "525.60.13", "min_driver_cuda": 12080,
 "archs": null}\n' > ~/envs/demo/gapship/gpu.json
cudart=$(echo ~/envs/demo/lib/python3*/site-packages)/nvidia/cuda_runtime/lib
mkdir -p "$cudart" && cp fakes/libcudart.so.12 "$cudart/"
rc=0; PATH="$HOME/bin:$PATH" ~/envs/demo/bin/gapship-doctor --json > gpu.json || rc=$?
echo "gpu $rc"
lib=$(ls ~/envs/demo/lib/python3*/site-packages/numpy.libs/*.so* | head -n 1)
rm "$lib"; echo "deleted $(basename "$lib")"
rc=0; ~/envs/demo/bin/gapship-doctor > deleted.txt || rc=$?; echo "deleted-rc $rc"
~/envs/demo/bin/gapship-doctor --json > deleted.json || true
"""
    proc = trixie.run(script, [(bundle, f"{HOME}/demo.run")], timeout=900)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = dict(line.split(" ", 1) for line in proc.stdout.splitlines())

    plain = json.loads((trixie.home / "plain.json").read_text())
    assert lines["plain"] == "0" and plain["ok"] and plain["exit_status"] == 0
    not_passed = [c for c in plain["checks"] if c["status"] != "pass"]
    assert not_passed == []
    (driver,) = checks_of(plain, "gpu")
    assert driver["detail"] == ("no NVIDIA driver on this node (libcuda.so.1 not found); "
                                "this environment ships no GPU libraries")
    assert checks_of(plain, "libraries")[0]["name"] == "library closure"

    # the same node, for an environment that ships a CUDA stack: one line, and what to do
    gpu = json.loads((trixie.home / "gpu.json").read_text())
    assert lines["gpu"] == "0"
    (driver,) = checks_of(gpu, "gpu")
    assert driver["status"] == "warn" and driver["diagnosis"] == "no-nvidia-driver"
    assert driver["remedy"].endswith(
        "Run the doctor on a GPU node: srun -N 1 --gres=gpu:1 "
        f"{HOME}/envs/demo/bin/gapship-doctor")
    assert [c["status"] for c in gpu["checks"] if c["group"] != "gpu"] == \
        ["pass"] * (len(gpu["checks"]) - 1)
    assert [c["name"] for c in checks_of(gpu, "cuda")] == ["CUDA runtime 12.8"]

    deleted = lines["deleted"]
    assert lines["deleted-rc"] == "1"
    report = json.loads((trixie.home / "deleted.json").read_text())
    missing = next(c for c in checks_of(report, "libraries") if c["status"] == "fail")
    assert missing["name"] == f"{deleted} not found"
    assert missing["detail"].startswith("needed by numpy: lib/python3")
    assert missing["diagnosis"] == "missing-shared-object-deleted"
    assert "(numpy installed it) but the file is gone" in missing["remedy"]
    assert f"sh NAME.run --prefix {HOME}/envs/demo --force" in missing["remedy"]
    numpy_import = next(c for c in checks_of(report, "imports")
                        if c["name"].startswith("numpy (numpy "))
    assert numpy_import["status"] == "fail" and deleted in numpy_import["detail"]
    assert numpy_import["diagnosis"] == "missing-shared-object-deleted"
    text = (trixie.home / "deleted.txt").read_text()
    assert f"[FAIL] {deleted} not found: needed by numpy" in text
    assert "failed" in text.splitlines()[-1]


def bullseye_python() -> Path:
    """Debian 11's own Python 3.9, unpacked from its packages once (cached)."""
    dest = cache_dir() / "bullseye-python3.9"
    if (dest / "usr" / "bin" / "python3.9").exists():
        return dest
    apt_get, dpkg_deb = require_tool("apt-get"), require_tool("dpkg-deb")
    # Debian's current keyring (setup.sh installs debian-archive-keyring): the archive signs
    # old releases' indexes with today's keys, which a bullseye rootfs of its day lacks.
    keyring = Path("/usr/share/keyrings/debian-archive-keyring.gpg")
    require(keyring.is_file(), "debian-archive-keyring is not installed")
    work = dest.with_name(dest.name + ".work")
    shutil.rmtree(work, ignore_errors=True)
    for sub in ("etc/apt/preferences.d", "etc/apt/sources.list.d", "lists/partial",
                "archives/partial", "debs", "keys"):
        (work / sub).mkdir(parents=True, exist_ok=True)
    keys = work / "keys"
    shutil.copy(keyring, keys)
    (work / "status").write_text("")
    (work / "etc/apt/sources.list").write_text(f"deb {debian_mirror()} bullseye main\n")
    opts = ["-q", "-o", f"Dir={work}", "-o", f"Dir::State::status={work / 'status'}",
            "-o", f"Dir::State::Lists={work / 'lists'}",
            "-o", f"Dir::Cache::Archives={work / 'archives'}",
            "-o", f"Dir::Etc::TrustedParts={keys}", "-o", "Acquire::Languages=none"]
    got = subprocess.run([apt_get, *opts, "update"], capture_output=True, text=True,
                         check=False)
    require(got.returncode == 0, f"Debian's package archive is unreachable: {got.stderr[-300:]}")
    subprocess.run([apt_get, *opts, "download", "python3.9-minimal", "libpython3.9-minimal",
                    "libpython3.9-stdlib", "libexpat1"], cwd=work / "debs", check=True,
                   capture_output=True)
    unpacked = dest.with_name(dest.name + ".tmp")
    shutil.rmtree(unpacked, ignore_errors=True)
    for deb in sorted((work / "debs").glob("*.deb")):
        subprocess.run([dpkg_deb, "-x", str(deb), str(unpacked)], check=True)
    unpacked.rename(dest)
    shutil.rmtree(work)
    return dest


NEEDS_NEW_GLIBC = "#include <stdlib.h>\nunsigned fresh(void) { return arc4random(); }\n"


def bullseye_prefix(root: Path, debian: Path) -> Path:
    """An installed prefix on Debian 11's Python with one package built on the builder."""
    patchelf = require_tool("patchelf")
    prefix = root / "envs" / "old"
    (prefix / "bin").mkdir(parents=True)
    (prefix / "lib").mkdir()
    shutil.copy(debian / "usr/bin/python3.9", prefix / "bin" / "python3")
    shutil.copy(debian / "lib/x86_64-linux-gnu/libexpat.so.1", prefix / "lib")
    subprocess.run([patchelf, "--set-rpath", "$ORIGIN/../lib", str(prefix / "bin/python3")],
                   check=True)
    shutil.copytree(debian / "usr/lib/python3.9", prefix / "lib/python3.9", symlinks=True)
    # extension modules whose libraries are not in the minimal rootfs (their own finding)
    for needs_more in ("_decimal", "_curses", "_curses_panel", "readline", "_sqlite3"):
        for path in (prefix / "lib/python3.9/lib-dynload").glob(f"{needs_more}.*.so"):
            path.unlink()
    site = prefix / "lib/python3/dist-packages"
    shared(site / "fresh" / "libfresh.so", NEEDS_NEW_GLIBC)
    (site / "fresh" / "__init__.py").write_text(
        "import ctypes, os\nctypes.CDLL(os.path.join(os.path.dirname(__file__), "
        "'libfresh.so'))\n")
    info = site / "fresh-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: fresh\nVersion: 1.0\n\n")
    (info / "RECORD").write_text("fresh/__init__.py,,\nfresh/libfresh.so,,\n")
    doctor.install_target_files(prefix)
    (prefix / "gapship" / "environment.json").write_text(json.dumps({
        "site_packages": "lib/python3/dist-packages",
        "distributions": [{"name": "fresh", "version": "1.0", "imports": ["fresh"]}]}))
    return prefix


def test_bullseye_finds_a_library_needing_a_newer_glibc() -> None:
    need_replica("bullseye")
    debian = bullseye_python()
    with replica("bullseye") as rep:
        bullseye_prefix(rep.home, debian)
        proc = rep.run("rc=0; ~/envs/old/bin/gapship-doctor --json --quick > report.json "
                       "|| rc=$?; echo $rc; ~/envs/old/bin/python3 -c "
                       "'import sys; print(sys.version_info[:2], sys.prefix)'", timeout=300)
        assert proc.stdout.split("\n")[0] == "1", proc.stdout + proc.stderr
        assert f"(3, 9) {HOME}/envs/old" in proc.stdout
        report = json.loads((rep.home / "report.json").read_text())
    assert report["python"].startswith("3.9.")
    (closure,) = [c for c in report["checks"] if c["group"] == "libraries"]
    assert closure["status"] == "fail" and closure["name"] == \
        "GLIBC_2.36 not in this node's libc.so.6"
    assert closure["detail"] == ("needed by fresh: lib/python3/dist-packages/fresh/libfresh.so;"
                                 " libc.so.6 here is /lib/x86_64-linux-gnu/libc.so.6 "
                                 "(glibc 2.31), newest GLIBC_2.30")
    assert closure["diagnosis"] == "glibc-too-old"
    assert "pack again with --target" in closure["remedy"]
    (imported,) = [c for c in report["checks"] if c["group"] == "imports"]
    assert imported["status"] == "fail" and imported["diagnosis"] == "glibc-too-old"
    assert "version `GLIBC_2.36' not found" in imported["detail"]
    others = [c for c in report["checks"]
              if c["group"] not in ("libraries", "imports") and c["status"] == "fail"]
    assert others == []
