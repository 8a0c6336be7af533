"""Session fixtures: offline replicas (debootstrapped once, cached) and a real bundle."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from gapship.probe import probe_script
from gapship.providers import twin
from gapship.replica import Replica, replica, rootfs_dir
from tests.conftest import gapship, require, require_tool

SPEC = 'name = "demo"\npackages = ["numpy", "requests", "rich"]\n'


def need_replica(release: str) -> None:
    require_tool("bwrap")
    require((rootfs_dir(release) / "bin" / "sh").exists()
            or (os.geteuid() == 0 and shutil.which("debootstrap") is not None),
            f"the {release} replica needs root and debootstrap to build once")


@pytest.fixture(scope="session")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("e2e")
    (path / "env.toml").write_text(SPEC)
    return path


def probe_in(release: str, dest: Path, shell: str = "sh",
             binds: Sequence[tuple[Path, str]] = ()) -> Path:
    """Run probe.sh inside the replica with ``shell``, exactly as a user runs it on the target."""
    need_replica(release)
    with replica(release) as rep:
        (rep.home / "probe.sh").write_text(probe_script())
        proc = rep.run(f"{shell} probe.sh > target.json", binds)
        assert proc.returncode == 0, proc.stderr
        shutil.copy(rep.home / "target.json", dest)
    return dest


@pytest.fixture(scope="session")
def trixie_target(work: Path) -> Path:
    return probe_in("trixie", work / "trixie.json")


@pytest.fixture(scope="session")
def bullseye_target(work: Path) -> Path:
    return probe_in("bullseye", work / "bullseye.json")


@pytest.fixture(scope="session")
def trixie_bundle(work: Path, trixie_target: Path) -> tuple[Path, dict[str, object]]:
    out = work / "demo.run"
    proc = gapship("pack", str(work / "env.toml"), "--target", str(trixie_target), "-o",
                   str(out), "--json", "--level", "1")
    assert proc.returncode == 0, proc.stderr
    return out, json.loads(proc.stdout)


@pytest.fixture(scope="session")
def bullseye_python_rootfs() -> Path:
    """Debian 11 with its python3: the twin's rootfs, and a target that has a Python."""
    can_build = (rootfs_dir("bullseye", "python") / "bin" / "sh").exists() or (
        os.geteuid() == 0 and shutil.which("debootstrap") is not None)
    require(can_build, "the bullseye twin rootfs needs root and debootstrap once")
    need_replica("bullseye")
    release = next(r for r in twin.releases() if r.codename == "bullseye")
    return twin.twin_rootfs(release)


@pytest.fixture()
def trixie() -> Iterator[Replica]:
    need_replica("trixie")
    with replica("trixie") as rep:
        yield rep
