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


# kill -9 the whole install (its process group, as when a session dies) once the big file is
# being written, then run it again: one login, one pid namespace, as on the target
KILL_9_THEN_AGAIN = """
sh one.run --prefix "$P" 2>/dev/null || exit 3
setsid sh two.run --prefix "$P" --force 2>/dev/null &
pid=$!
n=0
until ls -d "$HOME"/envs/.tiny.gapship-install.*/tree/data.bin >/dev/null 2>&1; do
    n=$((n + 1)); [ $n -lt 2000 ] || exit 4; sleep 0.05
done
kill -s KILL -- -$pid
wait
ls -A "$HOME/envs" > "$HOME/left"
sh two.run --prefix "$P" --force 2> "$HOME/again.err" || exit 5
. "$P/activate" && python3
"""


def test_kill_9_in_the_middle_of_extraction_then_the_next_run(trixie: Replica,
                                                              tmp_path: Path) -> None:
    _, binds = bundles(tmp_path, one={}, two={"big": 60_000_000})
    proc = run(trixie, KILL_9_THEN_AGAIN, binds, env={"P": PREFIX})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.strip() == "two"
    left = (trixie.home / "left").read_text().split()
    assert ".tiny.gapship-lock" in left and any("gapship-install" in n for n in left), left
    said = [ln for ln in (trixie.home / "again.err").read_text().splitlines()
            if ln.startswith("removed")]
    assert len(said) == 2 and all("is not running" in ln for ln in said), said
    assert debris(trixie.home / "envs") == []


def test_a_lock_left_in_another_pid_namespace_is_not_taken_over(trixie: Replica,
                                                                tmp_path: Path) -> None:
    # killed in one container (a replica has its own pid namespace), run again in another
    # with the same host name: that pid cannot be looked up from here, so the lock stays
    _, binds = bundles(tmp_path, one={}, two={"big": 60_000_000})
    envs = trixie.home / "envs"
    assert run(trixie, f'sh one.run --prefix "{PREFIX}"', binds).returncode == 0
    proc = subprocess.Popen(command(trixie, f'sh two.run --prefix "{PREFIX}" --force', binds),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    deadline = time.time() + 120
    while not list(envs.glob(".tiny.gapship-install.*/tree/data.bin")):
        assert proc.poll() is None and time.time() < deadline
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    again = run(trixie, f'sh two.run --prefix "{PREFIX}" --force', binds)
    assert again.returncode != 0
    assert "in another container" in again.stderr and "rm -r" in again.stderr
    assert python3_of(envs / "tiny") == "one"


def test_two_installs_at_once_one_wins(trixie: Replica, tmp_path: Path) -> None:
    _, binds = bundles(tmp_path, one={"big": 20_000_000}, two={"big": 20_000_000})
    script = ('sh one.run --prefix "$P" 2> one.err & a=$!; sh two.run --prefix "$P" 2> two.err & '
              'b=$!; wait $a; echo "one=$?"; wait $b; echo "two=$?"')
    proc = run(trixie, script, binds, env={"P": PREFIX})
    rcs = dict(line.split("=") for line in proc.stdout.split())
    assert sorted(rcs.values()) == ["0", "1"], proc.stdout + proc.stderr
    loser = next(name for name, rc in rcs.items() if rc == "1")
    said = (trixie.home / f"{loser}.err").read_text()
    assert "another install into" in said or "already exists" in said
    winner = next(name for name, rc in rcs.items() if rc == "0")
    assert python3_of(trixie.home / "envs" / "tiny") == winner
    assert debris(trixie.home / "envs") == []


# kill -9 between the two renames (a fake mv on PATH kills the install's process group),
# then run again without and with --force
KILL_9_BETWEEN_RENAMES = """
sh one.run --prefix "$P" 2>/dev/null || exit 3
PATH="$HOME/faults:$PATH" FAULT=mv-into-place:KILL setsid -w sh two.run --prefix "$P" --force \
    2>/dev/null && exit 4
ls -A "$HOME/envs" > "$HOME/left"
sh two.run --prefix "$P" 2> "$HOME/again.err"; echo "again=$?"
sh two.run --prefix "$P" --force 2> "$HOME/forced.err"; echo "forced=$?"
"""


def test_kill_9_between_the_renames_then_the_next_run(trixie: Replica, tmp_path: Path) -> None:
    _, binds = bundles(tmp_path, one={}, two={})
    faults = trixie.home / "faults"
    faults.mkdir()
    (faults / "mv").write_text(FAULT_MV)
    (faults / "mv").chmod(0o755)
    proc = run(trixie, KILL_9_BETWEEN_RENAMES, binds, env={"P": PREFIX})
    assert proc.stdout.split() == ["again=1", "forced=0"], proc.stdout + proc.stderr
    # after the kill: the old environment hidden, the new one not yet in place
    left = (trixie.home / "left").read_text().split()
    assert "tiny" not in left and ".tiny.gapship-lock" in left, left
    again = (trixie.home / "again.err").read_text()
    assert any(ln.startswith(f"restored {PREFIX}") for ln in again.splitlines()), again
    assert "already exists" in again
    envs = trixie.home / "envs"
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


# the replica has gzip and no zstd, as a minimal Debian: a zstd bundle is refused before
# anything is written; a multi-member gzip bundle installs; one damaged in the middle of its
# payload (read once, hashed while it is extracted) leaves the environment as it was
CODECS_IN_THE_REPLICA = """
sh zstd.run --prefix "$P"; echo "rc=$?"; ls -A "$HOME/envs" 2>/dev/null | wc -l
sh gzip.run --prefix "$P" || exit 3
sh damaged.run --prefix "$P" --force; echo "rc=$?"
ls -A "$HOME/envs"
. "$P/activate" && python3
"""


def test_codecs_and_a_damaged_payload_in_the_replica(trixie: Replica, tmp_path: Path) -> None:
    made = {"zstd": bundle_of(tmp_path / "z", marker="z", codec="zstd"),
            "gzip": bundle_of(tmp_path / "g", marker="gzip", big=18_000_000),
            "damaged": bundle_of(tmp_path / "d", marker="damaged", big=2_000_000)}
    data = bytearray(made["damaged"].read_bytes())
    data[len(data) - 1_000_000] ^= 0xFF
    made["damaged"].write_bytes(bytes(data))
    binds = [(path, f"{HOME}/{name}.run") for name, path in made.items()]
    proc = run(trixie, CODECS_IN_THE_REPLICA, binds, env={"P": PREFIX})
    out = proc.stdout.split()
    assert proc.returncode == 0 and out == ["rc=1", "0", "rc=1", "tiny", "gzip"], \
        proc.stdout + proc.stderr
    refusals = [ln for ln in proc.stderr.splitlines() if ln.startswith("gapship installer")]
    assert len(refusals) == 2, proc.stderr
    assert "zstd-compressed" in refusals[0] and "--codec gzip" in refusals[0]
    assert "damaged" in refusals[1] and "Nothing was installed" in refusals[1]
