"""The installer under hostile conditions, with real shells on real bundles: kill -9 and
SIGTERM at several points, two installs at once, stale locks and reused pids, a tmpfs too
small in blocks or inodes, a disk that fills up, noexec, and --force on a user's files."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import SHELLS, require, require_tool, shell_argv
from tests.unit.test_installer import bundle_of, debris, install

# fault injection: every kill point under every shell takes minutes (the fast loop skips it)
pytestmark = pytest.mark.slow

HOST = os.uname().nodename


def python3_of(prefix: Path) -> str:
    """The marker the environment's bin/python3 prints: which bundle is installed there."""
    return (prefix / "bin" / "python3").read_text().splitlines()[-1].removeprefix("echo ")


def make_env(prefix: Path, marker: str = "old") -> Path:
    """An installed gapship environment (what --force may replace)."""
    (prefix / "gapship").mkdir(parents=True)
    (prefix / "gapship" / "manifest.json").write_text("{}")
    (prefix / "bin").mkdir()
    (prefix / "bin" / "python3").write_text(f"#!/bin/sh\necho {marker}\n")
    return prefix


def start_time(pid: int) -> str:
    """The start time of a process, as the installer records it (field 22 of /proc/PID/stat)."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    return stat.rsplit(") ", 1)[1].split()[19]


def dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


# ---- defect 1: --force deletes any directory

@pytest.mark.parametrize("shell", SHELLS)
def test_force_never_replaces_a_directory_that_is_not_an_environment(tmp_path: Path,
                                                                     shell: str) -> None:
    work = tmp_path / "work"
    (work / "thesis").mkdir(parents=True)
    (work / "thesis" / "ch1.tex").write_text("years of it")
    (work / "notes.txt").write_text("more")
    proc = install(bundle_of(tmp_path), work, "--force", shell=shell)
    assert proc.returncode != 0
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert "not a gapship environment" in proc.stderr and "thesis" in proc.stderr
    assert (work / "thesis" / "ch1.tex").read_text() == "years of it"
    assert sorted(p.name for p in work.iterdir()) == ["notes.txt", "thesis"]
    assert debris(tmp_path) == []


def test_force_replaces_an_empty_directory_or_an_environment_but_not_a_file(tmp_path: Path
                                                                            ) -> None:
    bundle = bundle_of(tmp_path)
    empty = tmp_path / "empty"
    empty.mkdir()
    assert install(bundle, empty).returncode != 0
    assert install(bundle, empty, "--force").returncode == 0
    assert python3_of(empty) == "one"
    env = make_env(tmp_path / "env")
    assert install(bundle, env, "--force").returncode == 0
    assert python3_of(env) == "one"
    file = tmp_path / "file"
    file.write_text("mine")
    proc = install(bundle, file, "--force")
    assert proc.returncode != 0 and "is a file" in proc.stderr
    assert file.read_text() == "mine"


# ---- defect 2: no lock; existence checked only at the start

def test_a_second_install_while_the_first_runs_fails_cleanly(tmp_path: Path) -> None:
    prefix = tmp_path / "env"
    # the first install's check of bin/python3 starts a second install into the same prefix
    hook = ('[ -z "${OUTER-}" ] || { OUTER= dash "$BUNDLE" --prefix "$P" --force '
            '>"$T/second.err" 2>&1; echo $? > "$T/second.rc"; }')
    bundle = bundle_of(tmp_path, on_check=hook)
    env = {"PATH": "/usr/bin:/bin", "OUTER": "1", "BUNDLE": str(bundle), "P": str(prefix),
           "T": str(tmp_path)}
    first = subprocess.Popen(["dash", str(bundle), "--prefix", str(prefix)], env=env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    _, first_err = first.communicate(timeout=120)
    assert first.returncode == 0, first_err
    assert (tmp_path / "second.rc").read_text().strip() != "0"
    second = (tmp_path / "second.err").read_text()
    assert len(second.strip().splitlines()) == 1, second   # the refusal alone
    assert f"another install into {prefix} is running (pid {first.pid} on {HOST}" in second
    assert python3_of(prefix) == "one"
    assert debris(tmp_path) == []


def test_two_installs_started_together_one_wins(tmp_path: Path) -> None:
    prefix = tmp_path / "env"
    bundles = [bundle_of(tmp_path, marker=m, big=20_000_000) for m in ("one", "two")]
    procs = [subprocess.Popen(["dash", str(b), "--prefix", str(prefix)], text=True,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
             for b in bundles]
    results = [(p.wait(timeout=120), p.stderr.read() if p.stderr else "") for p in procs]
    assert sorted(rc == 0 for rc, _ in results) == [False, True], results
    winner = bundles[[rc for rc, _ in results].index(0)]
    loser = next(err for rc, err in results if rc != 0)
    assert "another install into" in loser or "already exists" in loser
    assert python3_of(prefix) == winner.name.removeprefix("tiny-").removesuffix(".run")
    assert debris(tmp_path) == []


def test_a_directory_created_at_the_prefix_during_the_install_is_left_alone(tmp_path: Path
                                                                           ) -> None:
    prefix = tmp_path / "env"
    hook = 'mkdir -p "$P" && echo draft > "$P/thesis.tex"'
    env = {"PATH": "/usr/bin:/bin", "P": str(prefix)}
    for extra in ((), ("--force",)):
        shutil.rmtree(prefix, ignore_errors=True)
        proc = install(bundle_of(tmp_path / f"b{len(extra)}", on_check=hook), prefix, *extra,
                       env=env)
        assert proc.returncode != 0
        assert "not a gapship environment (thesis.tex)" in proc.stderr.splitlines()[-1]
        assert sorted(p.name for p in prefix.iterdir()) == ["thesis.tex"]
        assert (prefix / "thesis.tex").read_text() == "draft\n"
        assert debris(tmp_path) == []


def lock_of(prefix: Path) -> Path:
    return prefix.parent / f".{prefix.name}.gapship-lock"


@pytest.mark.parametrize("shell", SHELLS)
@pytest.mark.parametrize("owner", ["dead", "reused"])
def test_a_stale_lock_is_taken_over_and_said_so(tmp_path: Path, owner: str, shell: str) -> None:
    prefix = tmp_path / "env"
    lock = lock_of(prefix)
    lock.mkdir()
    # a dead pid, or a live one whose start time shows it is another process now
    record = (f"{dead_pid()} - {HOST}" if owner == "dead"
              else f"{os.getpid()} {int(start_time(os.getpid())) + 1} {HOST}")
    (lock / "owner").write_text(record + "\n")
    proc = install(bundle_of(tmp_path), prefix, shell=shell)
    assert proc.returncode == 0, proc.stderr
    assert "removed the lock" in proc.stderr and "is not running" in proc.stderr
    assert debris(tmp_path) == []


@pytest.mark.parametrize("shell", SHELLS)
@pytest.mark.parametrize("owner", ["alive", "elsewhere", "container"])
def test_a_lock_that_may_be_held_is_respected(tmp_path: Path, owner: str, shell: str) -> None:
    prefix = tmp_path / "env"
    lock = lock_of(prefix)
    lock.mkdir()
    # a live process here; one on another host; one in another pid namespace of this host
    record = {"alive": f"{os.getpid()} {start_time(os.getpid())} {HOST}",
              "elsewhere": f"{dead_pid()} - login02.other.cluster",
              "container": f"{dead_pid()} - {HOST} 1"}[owner]
    (lock / "owner").write_text(record + "\n")
    proc = install(bundle_of(tmp_path), prefix, shell=shell)
    assert proc.returncode != 0
    assert "another install into" in proc.stderr and str(lock) in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1   # the refusal alone
    assert (lock / "owner").read_text() == record + "\n"
    assert not prefix.exists()


# ---- defect 3: kill -9 leaves debris that blocks later installs

FAULT_MV = r"""#!/bin/sh
# kill the installer's process group at a rename: FAULT=POINT:SIGNAL
case ${FAULT-} in
    mv-aside:*) case ${2-} in */old) kill -s "${FAULT#*:}" 0; sleep 5 ;; esac ;;
    mv-into-place:*) case ${1-} in */tree) kill -s "${FAULT#*:}" 0; sleep 5 ;; esac ;;
esac
for d in /usr/bin /bin; do [ -x "$d/mv" ] && exec "$d/mv" "$@"; done
"""
FAULT_TAR = r"""#!/bin/sh
# kill the installer's process group once tar has begun to extract: FAULT=tar:SIGNAL
for d in /usr/bin /bin; do [ -x "$d/tar" ] && real=$d/tar && break; done
case ${FAULT-} in tar:*) ;; *) exec "$real" "$@" ;; esac
"$real" "$@" <&0 &
n=0
while [ ! -e bin/python3 ] && [ $n -lt 1000 ]; do sleep 0.01; n=$((n + 1)); done
kill -s "${FAULT#*:}" 0
sleep 5
"""


def fault_env(tmp: Path, fault: str) -> dict[str, str]:
    faults = tmp / "faults"
    faults.mkdir(exist_ok=True)
    for name, text in (("mv", FAULT_MV), ("tar", FAULT_TAR)):
        (faults / name).write_text(text)
        (faults / name).chmod(0o755)
    return {"PATH": f"{faults}:/usr/bin:/bin", "FAULT": fault}


def killed_install(bundle: Path, prefix: Path, env: dict[str, str], shell: str
                   ) -> subprocess.CompletedProcess[str]:
    # its own session: the fault kills the installer's whole process group, never pytest
    return subprocess.run([*shell_argv(shell), str(bundle), "--prefix", str(prefix), "--force"],
                          capture_output=True, text=True, timeout=60, check=False, env=env,
                          stdin=subprocess.DEVNULL, start_new_session=True)


@pytest.mark.parametrize("signal", ["KILL", "TERM"])
@pytest.mark.parametrize("point", ["tar", "check", "mv-aside", "mv-into-place"])
def test_a_killed_forced_install_never_loses_the_old_environment(tmp_path: Path, point: str,
                                                                 signal: str) -> None:
    killed_at(tmp_path, point, signal, "dash")


# busybox sh runs its own mv applet, which a fake mv on PATH cannot replace: there the kill
# comes at the check only
@pytest.mark.parametrize(("shell", "point"), [
    (shell, point) for shell in SHELLS for point in ("check", "mv-into-place")
    if not (shell == "busybox" and point.startswith("mv"))])
def test_kill_9_under_each_shell(tmp_path: Path, shell: str, point: str) -> None:
    killed_at(tmp_path, point, "KILL", shell)


def killed_at(tmp_path: Path, point: str, signal: str, shell: str) -> None:
    prefix = tmp_path / "env"
    assert install(bundle_of(tmp_path, marker="one"), prefix).returncode == 0
    # "check": killed while the installer tries the new bin/python3, before the renames
    second = bundle_of(tmp_path, marker="two", on_check=(
        'case ${FAULT-} in check:*) kill -s "${FAULT#*:}" 0; sleep 5 ;; esac'))
    proc = killed_install(second, prefix, fault_env(tmp_path, f"{point}:{signal}"), shell)
    assert proc.returncode != 0
    if signal == "TERM":
        # the installer's own cleanup: the old environment in place, nothing hidden left
        assert python3_of(prefix) == "one"
        assert debris(tmp_path) == []
        return
    left = debris(tmp_path)
    assert ".env.gapship-lock" in left and any(".env.gapship-install." in n for n in left)
    assert prefix.exists() == (point != "mv-into-place")
    # the next run without --force restores a hidden environment, cleans up, and refuses
    again = install(second, prefix, shell=shell)
    assert again.returncode != 0 and "already exists" in again.stderr
    assert python3_of(prefix) == "one"
    if point == "mv-into-place":
        assert "restored" in again.stderr
        assert debris(tmp_path) == []
    # and with --force it installs, saying in one line each what it removed
    forced = install(second, prefix, "--force", shell=shell)
    assert forced.returncode == 0, forced.stderr
    assert python3_of(prefix) == "two"
    assert debris(tmp_path) == []
    said = [ln for ln in forced.stderr.splitlines() if ln.startswith(("removed", "restored"))]
    assert len(said) == (0 if point == "mv-into-place" else 2), forced.stderr


@pytest.mark.parametrize("shell", SHELLS)
def test_debris_of_an_older_installer_is_cleaned_and_a_hidden_environment_restored(
        tmp_path: Path, shell: str) -> None:
    prefix = tmp_path / "env"
    pid = dead_pid()
    (tmp_path / f".env.gapship-new.{pid}" / "bin").mkdir(parents=True)
    (tmp_path / f".env.gapship-new.{pid}" / "data.bin").write_bytes(b"x" * 100_000)
    (tmp_path / f".env.gapship-status.{pid}").write_text("0\n")
    (tmp_path / f".env.gapship-status.{pid}.err").write_text("")
    make_env(tmp_path / f".env.gapship-old.{pid}", "hidden")
    # not ours to touch: another prefix's debris, and debris of a process that still runs
    (tmp_path / f".other.gapship-new.{pid}").mkdir()
    (tmp_path / f".env.gapship-new.{os.getpid()}").mkdir()
    proc = install(bundle_of(tmp_path), prefix, shell=shell)
    assert proc.returncode != 0 and "already exists" in proc.stderr
    assert python3_of(prefix) == "hidden"
    lines = proc.stderr.splitlines()
    assert sum(ln.startswith("removed") for ln in lines) == 3, proc.stderr
    assert sum(ln.startswith("restored") for ln in lines) == 1, proc.stderr
    assert debris(tmp_path) == sorted([f".env.gapship-new.{os.getpid()}",
                                       f".other.gapship-new.{pid}"])


def test_a_hidden_directory_that_is_not_an_environment_is_never_deleted(tmp_path: Path
                                                                         ) -> None:
    prefix = make_env(tmp_path / "env")
    hidden = tmp_path / f".env.gapship-old.{dead_pid()}"
    hidden.mkdir()
    (hidden / "thesis.tex").write_text("mine")
    proc = install(bundle_of(tmp_path), prefix, "--force")
    assert proc.returncode == 0, proc.stderr
    assert (hidden / "thesis.tex").read_text() == "mine"
    assert "left" in proc.stderr and "not a gapship environment" in proc.stderr


@pytest.mark.parametrize("shell", SHELLS)
def test_a_reused_pid_does_not_keep_debris_alive(tmp_path: Path, shell: str) -> None:
    prefix = tmp_path / "env"
    # debris whose recorded pid is alive now, but as another process (its start time differs)
    work = tmp_path / ".env.gapship-install.AbC123"
    (work / "tree").mkdir(parents=True)
    (work / "owner").write_text(f"{os.getpid()} {int(start_time(os.getpid())) + 1} {HOST}\n")
    proc = install(bundle_of(tmp_path), prefix, shell=shell)
    assert proc.returncode == 0, proc.stderr
    assert f"removed {work}" in proc.stderr
    assert debris(tmp_path) == []


# ---- defects 4 and 6: noexec, and a filesystem too small (a private tmpfs per test)

def in_tmpfs(tmp: Path, options: str, script: str, shell: str = "dash",
             env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run ``script`` (sh) with a fresh tmpfs mounted at $MNT, in a private mount namespace."""
    unshare = require_tool("unshare")
    mnt = tmp / "mnt"
    mnt.mkdir(exist_ok=True)
    ns = [unshare, "-m"] if os.geteuid() == 0 else [unshare, "-r", "-m"]
    probe = subprocess.run([*ns, "true"], capture_output=True, check=False)
    require(probe.returncode == 0, "unshare cannot make a mount namespace here "
            f"({probe.stderr.decode().strip()})")
    mount = 'mount -t tmpfs -o "$0" gapship-test "$MNT" && exec "$@"'
    return subprocess.run([*ns, "--", "sh", "-c", mount, options, *shell_argv(shell), "-c",
                           script], capture_output=True, text=True, timeout=120, check=False,
                          env={"PATH": "/usr/bin:/bin", "MNT": str(mnt), **(env or {})},
                          stdin=subprocess.DEVNULL)


# after the install: its exit status, then what is left on the tmpfs (the tmpfs goes with
# the namespace)
INSTALL_AND_LIST = ('$SH "$B" --prefix "$MNT/env" $EXTRA; echo "rc=$?"; '
                    'ls -A "$MNT"; cat "$MNT/env/bin/python3" 2>/dev/null')


def tmpfs_install(tmp: Path, bundle: Path, options: str, shell: str = "dash",
                  setup: str = "", extra: str = "") -> tuple[int, list[str], str]:
    """(exit status, names left on the tmpfs, stderr) of an install into $MNT/env."""
    sh = " ".join(shell_argv(shell))
    proc = in_tmpfs(tmp, options, setup + INSTALL_AND_LIST, env={
        "B": str(bundle), "SH": sh, "EXTRA": extra})
    out = proc.stdout.splitlines()
    rcs = [ln for ln in out if ln.startswith("rc=")]
    assert rcs, proc.stdout + proc.stderr
    return int(rcs[0][3:]), out[out.index(rcs[0]) + 1:], proc.stderr


@pytest.mark.parametrize("shell", SHELLS)
def test_noexec_is_refused_and_leaves_nothing(tmp_path: Path, shell: str) -> None:
    rc, left, err = tmpfs_install(tmp_path, bundle_of(tmp_path), "noexec,size=16m", shell)
    assert rc != 0
    last = err.strip().splitlines()[-1]
    assert last.startswith("gapship installer") and "mounted noexec" in last, err
    assert left == []


def test_many_small_files_count_in_blocks(tmp_path: Path) -> None:
    # 600 one-byte files: 600 bytes, but 2.4 MB on disk (4 KiB each)
    bundle = bundle_of(tmp_path, small_files=600)
    info = subprocess.run(["dash", str(bundle), "--info"], capture_output=True, text=True,
                          check=False).stdout
    found = re.search(r"installed size: (\d+) KB in (\d+) files", info)
    assert found is not None, info
    du = subprocess.run(["du", "-sk", str(tmp_path / "tree-one")], capture_output=True,
                        text=True, check=True).stdout.split()[0]
    assert int(found.group(1)) >= int(du) >= 2400
    assert int(found.group(2)) > 600
    rc, left, err = tmpfs_install(tmp_path, bundle, "size=2m")
    assert rc != 0 and left == []
    assert "not enough space on" in err and err.strip().splitlines()[-1].count("\n") == 0


def test_too_few_inodes_is_refused_before_extracting(tmp_path: Path) -> None:
    rc, left, err = tmpfs_install(tmp_path, bundle_of(tmp_path, small_files=300),
                                  "size=64m,nr_inodes=200")
    assert rc != 0 and left == []
    assert "not enough inodes on" in err


def understate_size(bundle: Path) -> None:
    """Make the header claim 1 KB, as when the disk fills up after the check."""
    data = bundle.read_bytes()
    found = re.search(rb"GAPSHIP_INSTALLED_KB=(\d+ *)\n", data)
    assert found is not None
    width = len(found.group(1))
    bundle.write_bytes(data[:found.start(1)] + b"1".ljust(width) + data[found.end(1):])


@pytest.mark.parametrize("shell", SHELLS)
def test_a_disk_that_fills_up_says_so_in_one_line(tmp_path: Path, shell: str) -> None:
    bundle = bundle_of(tmp_path, big=3_000_000)
    understate_size(bundle)
    rc, left, err = tmpfs_install(tmp_path, bundle, "size=2m", shell)
    assert rc != 0 and left == []
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert "not enough space" in lines[-1] and "ENOSPC" in lines[-1], err
    assert not any("I/O error" in ln or "tar: exit" in ln for ln in lines), err
    assert not any("extracting: done" in ln for ln in lines), err


def test_debris_on_a_tight_disk_is_removed_before_the_space_check(tmp_path: Path) -> None:
    pid = dead_pid()
    setup = (f'mkdir "$MNT/.env.gapship-new.{pid}" && '
             f'head -c 2500000 /dev/zero > "$MNT/.env.gapship-new.{pid}/data.bin" && ')
    rc, left, err = tmpfs_install(tmp_path, bundle_of(tmp_path), "size=3m", setup=setup)
    assert rc == 0, err
    assert left[0] == "env" and left[-1] == "echo one", left
    assert f"removed {tmp_path}/mnt/.env.gapship-new.{pid}" in err



@pytest.mark.parametrize("split", [None, 1 << 20])
def test_a_pack_onto_a_full_disk_says_so_in_one_line(tmp_path: Path, split: int | None) -> None:
    """The bundle (or its parts) does not fit where -o points: one line that says so and what
    to do, no traceback, nothing left there."""
    import sys
    tree = tmp_path / "tree"
    (tree / "gapship").mkdir(parents=True)
    (tree / "data.bin").write_bytes(os.urandom(6_000_000))  # incompressible: 6 MB
    (tree / "gapship" / "manifest.json").write_text("{}\n")
    code = ("import sys\nfrom pathlib import Path\nfrom gapship.bundle import write_bundle\n"
            "from gapship.bundle.codec import choose\nfrom gapship.errors import BundleError\n"
            "try:\n"
            f"    write_bundle(Path({str(tree)!r}), Path(sys.argv[1]) / 'big.run', name='big',"
            " version='1', python='3.11.7', installed_bytes=1,"
            f" codec=choose('gzip', (), 1), split={split})\n"
            "except BundleError as exc:\n"
            "    print('ERROR', exc.message)\n    print('NEXT', exc.hint)\n")
    proc = in_tmpfs(tmp_path, "size=2m", f'{sys.executable} -c "$CODE" "$MNT"; echo "left:";'
                    ' ls -A "$MNT"', env={"CODE": code})
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = proc.stdout.splitlines()
    error = next(ln for ln in lines if ln.startswith("ERROR "))
    assert "not enough space in" in error and "big.run" in error, proc.stdout
    assert next(ln for ln in lines if ln.startswith("NEXT ")).endswith("elsewhere with -o.")
    assert lines[-1] == "left:", proc.stdout  # no temporary file, no part
