"""The whole journey: probe in a replica, pack for it, install offline as uid 1000, use it."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from gapship.cache import cache_dir
from gapship.replica import Replica
from tests.conftest import gapship

IMPORTS = "import numpy, requests, ssl, sqlite3, ctypes, lzma, bz2, readline, uuid, decimal"


def test_trixie_install_use_move_rehome(trixie_bundle: tuple[Path, dict[str, object]],
                                        trixie: Replica) -> None:
    bundle, report = trixie_bundle
    assert report["platform"] == "x86_64-manylinux_2_40"
    script = f"""set -e
[ "$(id -u)" = 1000 ] && [ "$(readlink /bin/sh)" = dash ]
! touch /usr/x 2>/dev/null
! command -v python3
sh demo.run --prefix ~/envs/demo
. ~/envs/demo/activate
python -c "{IMPORTS}; print('imports ok')"
pip --version >/dev/null
gapship-doctor --json > doctor.json
deactivate
mv ~/envs/demo ~/envs/moved
~/envs/moved/bin/gapship-rehome
. ~/envs/moved/activate
python -c "{IMPORTS}; import numpy; print(numpy.__file__)"
gapship-doctor > doctor-moved.txt
"""
    proc = trixie.run(script, [(bundle, "/home/user/demo.run")])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "imports ok" in proc.stdout
    assert "/home/user/envs/moved/lib/python3" in proc.stdout
    doctor = json.loads((trixie.home / "doctor.json").read_text())
    assert doctor["ok"] and all(c["status"] == "pass" for c in doctor["checks"])
    assert {"numpy", "requests", "rich"} <= {c["name"].split()[0] for c in doctor["checks"]}
    assert "0 failed" in (trixie.home / "doctor-moved.txt").read_text()
    # no file of the installed tree names the builder
    needles = [str(cache_dir()), str(Path(report["bundle"]).parent)]  # type: ignore[arg-type]
    needles += ["/root/.pyenv"]
    for needle in needles:
        grep = subprocess.run(["grep", "-rlF", needle, str(trixie.home / "envs" / "moved")],
                              capture_output=True, text=True, check=False)
        assert grep.stdout == "", f"{needle} found in {grep.stdout}"


def test_bullseye_is_refused_before_any_bundle_exists(work: Path, bullseye_target: Path) -> None:
    out = work / "old.run"
    # the builder's own Python (auto would take a twin of bullseye: test_interpreters.py)
    proc = gapship("pack", str(work / "env.toml"), "--target", str(bullseye_target), "-o",
                   str(out), "--python", "host")
    assert proc.returncode == 1
    line = proc.stderr.strip().splitlines()[-2]
    assert "needs GLIBC_2." in line and "the target has glibc 2.31" in line
    assert "bin/python3" in line
    assert "twin" in proc.stderr and "python-build-standalone" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not out.exists() and not list(work.glob(".old.run*"))


def test_second_pack_downloads_nothing(work: Path, trixie_target: Path,
                                       trixie_bundle: tuple[Path, dict[str, object]]) -> None:
    proc = gapship("pack", str(work / "env.toml"), "--target", str(trixie_target), "-o",
                   str(work / "again.run"), "--json", "--level", "1")
    assert proc.returncode == 0, proc.stderr
    again = json.loads(proc.stdout)
    assert again["downloaded_bytes"] == 0
    assert again["cache_hits"] == len(again["packages"])
    assert again["packages"] == trixie_bundle[1]["packages"]
    # the trixie replica has no zstd command (its probe says so): gzip, at the level asked for
    assert again["codec"] == {"name": "gzip", "level": 1, "why": "the target has no zstd"}


def test_try_installs_and_checks_in_a_replica(
        trixie_bundle: tuple[Path, dict[str, object]]) -> None:
    proc = gapship("try", str(trixie_bundle[0]), "--os", "trixie", "--json")
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["install_rc"] == 0 and result["doctor_rc"] == 0
    assert result["doctor_report"]["ok"] is True


def test_damaged_bundle_in_the_replica(trixie_bundle: tuple[Path, dict[str, object]],
                                       trixie: Replica, work: Path) -> None:
    data = bytearray(trixie_bundle[0].read_bytes())
    data[len(data) // 2] ^= 0x01
    bad = work / "bad.run"
    bad.write_bytes(bytes(data))
    proc = trixie.run("sh bad.run --prefix ~/envs/bad", [(bad, "/home/user/bad.run")])
    assert proc.returncode != 0 and "damaged" in proc.stderr
    assert not (trixie.home / "envs").exists()


def test_no_bytecode_ships_no_pyc_and_python_compiles_on_first_use(
        work: Path, trixie_target: Path, trixie_bundle: tuple[Path, dict[str, object]],
        trixie: Replica) -> None:
    out = work / "nopyc.run"
    proc = gapship("pack", str(work / "env.toml"), "--target", str(trixie_target), "-o",
                   str(out), "--json", "--level", "1", "--no-bytecode")
    assert proc.returncode == 0, proc.stderr
    assert "no bytecode shipped (--no-bytecode)" in proc.stderr
    # the same packages, at the same level, without their .pyc
    assert out.stat().st_size < 0.9 * trixie_bundle[0].stat().st_size
    script = f"""set -e
sh nopyc.run --prefix ~/envs/nopyc
find ~/envs/nopyc/lib/python3*/site-packages -name '*.pyc' | wc -l > before.txt
. ~/envs/nopyc/activate
python -c "{IMPORTS}; print('imports ok')"
gapship-doctor --json > doctor.json
find ~/envs/nopyc -path '*/numpy/__pycache__/*.pyc' | wc -l > after.txt
"""
    ran = trixie.run(script, [(out, "/home/user/nopyc.run")])
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert "imports ok" in ran.stdout
    assert (trixie.home / "before.txt").read_text().strip() == "0"
    assert int((trixie.home / "after.txt").read_text()) > 0  # kept where the prefix is writable
    doctor = json.loads((trixie.home / "doctor.json").read_text())
    assert doctor["ok"], doctor


def test_no_bytecode_is_refused_for_a_read_only_image(work: Path) -> None:
    proc = gapship("pack", str(work / "env.toml"), "--no-bytecode", "--format", "squashfs",
                   "-o", str(work / "image.run"))
    assert proc.returncode != 0
    assert "read-only" in proc.stderr and "Leave out --no-bytecode" in proc.stderr
    assert "Traceback" not in proc.stderr and not (work / "image.run").exists()
