"""The installer's failure modes where users meet them: in the trixie replica, as uid 1000 with
`/` read-only and dash as /bin/sh. kill -9 in the middle of extraction and between the two
renames (then the next run), a tmpfs too small, a disk that fills up, and noexec."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from gapship.replica import HOME, Replica
from tests.conftest import require
from tests.unit.test_installer import bundle_of, debris
from tests.unit.test_installer_faults import FAULT_MV, python3_of, understate_size

pytestmark = pytest.mark.replica

PREFIX = f"{HOME}/envs/tiny"


def command(rep: Replica, script: str, binds: list[tuple[Path, str]],
            mounts: tuple[str, ...] = (), env: dict[str, str] | None = None) -> list[str]:
    """The replica's bwrap command for ``script``, with extra bwrap mounts (a tmpfs)."""
    cmd = rep.command(["/bin/sh", "-c", script], binds, env)
    at = len(cmd) - 3
    cmd[at:at] = list(mounts)
    return cmd


def run(rep: Replica, script: str, binds: list[tuple[Path, str]], mounts: tuple[str, ...] = (),
        env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command(rep, script, binds, mounts, env), capture_output=True,
                          text=True, timeout=300, check=False, stdin=subprocess.DEVNULL)


def bundles(tmp: Path, **kinds: dict[str, int]) -> tuple[dict[str, Path], list[tuple[Path, str]]]:
    """Bundles built on the builder and bound into the replica's home as NAME.run."""
    made = {name: bundle_of(tmp / name, marker=name, **kw) for name, kw in kinds.items()}
    return made, [(path, f"{HOME}/{name}.run") for name, path in made.items()]


def test_kill_9_in_the_middle_of_extraction_then_the_next_run(trixie: Replica,
                                                              tmp_path: Path) -> None:
    _, binds = bundles(tmp_path, one={}, two={"big": 60_000_000})
    assert run(trixie, f'sh one.run --prefix "{PREFIX}"', binds).returncode == 0
    envs = trixie.home / "envs"
    # kill -9 the replica (and with it the installer) once the big file is being written
    proc = subprocess.Popen(command(trixie, f'sh two.run --prefix "{PREFIX}" --force', binds),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    deadline = time.time() + 120
    while not list(envs.glob(".tiny.gapship-install.*/tree/data.bin")):
        assert proc.poll() is None and time.time() < deadline
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    time.sleep(0.5)
    left = debris(envs)
    assert ".tiny.gapship-lock" in left and any("gapship-install" in n for n in left), left
    assert python3_of(envs / "tiny") == "one"
    # the next run: same host name, and its pids (a fresh pid namespace) reuse the dead ones
    again = run(trixie, f'sh two.run --prefix "{PREFIX}" --force && . "{PREFIX}/activate" '
                '&& python3', binds)
    assert again.returncode == 0, again.stderr
    assert again.stdout.strip() == "two"
    said = [ln for ln in again.stderr.splitlines() if ln.startswith("removed")]
    assert len(said) == 2 and "is not running" in said[0], again.stderr
    assert debris(envs) == []


def test_kill_9_between_the_renames_then_the_next_run(trixie: Replica, tmp_path: Path) -> None:
    _, binds = bundles(tmp_path, one={}, two={})
    faults = trixie.home / "faults"
    faults.mkdir()
    (faults / "mv").write_text(FAULT_MV)
    (faults / "mv").chmod(0o755)
    assert run(trixie, f'sh one.run --prefix "{PREFIX}"', binds).returncode == 0
    killed = run(trixie, f'sh two.run --prefix "{PREFIX}" --force', binds, env={
        "PATH": f"{HOME}/faults:/usr/bin:/bin", "FAULT": "mv-into-place:KILL"})
    assert killed.returncode != 0
    envs = trixie.home / "envs"
    assert not (envs / "tiny").exists()   # the old one hidden, the new one not yet in place
    again = run(trixie, f'sh two.run --prefix "{PREFIX}"', binds)
    assert again.returncode != 0 and "already exists" in again.stderr
    assert any(ln.startswith(f"restored {PREFIX}") for ln in again.stderr.splitlines())
    assert python3_of(envs / "tiny") == "one" and debris(envs) == []
    forced = run(trixie, f'sh two.run --prefix "{PREFIX}" --force', binds)
    assert forced.returncode == 0, forced.stderr
    assert python3_of(envs / "tiny") == "two" and debris(envs) == []


def test_a_tmpfs_too_small_is_refused_and_a_full_one_said_in_one_line(trixie: Replica,
                                                                     tmp_path: Path) -> None:
    made, binds = bundles(tmp_path, many={"small_files": 900}, full={"big": 4_000_000})
    understate_size(made["full"])
    script = ('sh many.run --prefix ~/small/env; echo "rc=$?"; '
              'sh full.run --prefix ~/small/env; echo "rc=$?"; ls -A ~/small')
    proc = run(trixie, script, binds, ("--size", str(3 << 20), "--tmpfs", f"{HOME}/small"))
    assert proc.stdout.split() == ["rc=1", "rc=1"], proc.stdout + proc.stderr
    refusals = [ln for ln in proc.stderr.splitlines() if ln.startswith("gapship installer")]
    assert len(refusals) == 2, proc.stderr
    assert f"not enough space on {HOME}/small:" in refusals[0]
    assert "while extracting (ENOSPC" in refusals[1]
    assert "I/O error" not in proc.stderr and "extracting: done" not in proc.stderr


def test_noexec_is_refused_and_leaves_nothing(trixie: Replica, tmp_path: Path) -> None:
    require(os.geteuid() == 0, "mounting a noexec tmpfs for the replica needs root")
    _, binds = bundles(tmp_path, one={})
    mnt = tmp_path / "noexec"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "noexec,size=16m", "gapship-test", str(mnt)],
                   check=True)
    try:
        proc = run(trixie, 'sh one.run --prefix ~/nx/env', binds, ("--bind", str(mnt),
                                                                    f"{HOME}/nx"))
        assert proc.returncode != 0
        last = proc.stderr.strip().splitlines()[-1]
        assert "mounted noexec" in last and "Nothing was installed" in last, proc.stderr
        assert list(mnt.iterdir()) == []
    finally:
        subprocess.run(["umount", str(mnt)], check=False)
