"""``gapship pack --format squashfs``: the tree as one SquashFS image in the same self-checking
.run; installed, activation mounts it with squashfuse and imports run from the mount.

The mounts run as root on this builder: here /dev/fuse is open to root only (on a cluster
node it is 0666 and squashfuse runs as the user through the setuid fusermount)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import gapship, require, require_tool

SPEC = 'name = "demo"\npackages = ["numpy", "requests", "rich"]\n'


@pytest.fixture(scope="module")
def image_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    require_tool("mksquashfs")
    work = tmp_path_factory.mktemp("image")
    (work / "env.toml").write_text(SPEC)
    probe = gapship("probe", "--local")
    assert probe.returncode == 0, probe.stderr
    (work / "host.json").write_text(probe.stdout)
    out = work / "demo.run"
    proc = gapship("pack", str(work / "env.toml"), "--target", str(work / "host.json"),
                   "-o", str(out), "--level", "1", "--format", "squashfs")
    assert proc.returncode == 0, proc.stderr
    return out


@pytest.fixture()
def installed(image_bundle: Path, tmp_path: Path) -> Iterator[Path]:
    require_tool("squashfuse")
    require(Path("/dev/fuse").exists(), "this machine has no /dev/fuse")
    prefix = tmp_path / "envs" / "demo"
    mnt = tmp_path / "mnt"
    proc = subprocess.run(["sh", str(image_bundle), "--prefix", str(prefix)],
                          env=_env(mnt), capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    yield prefix
    subprocess.run([str(prefix / "bin" / "gapship-umount")], capture_output=True, check=False)


def _env(mnt: Path, path: str = "/usr/local/bin:/usr/bin:/bin") -> dict[str, str]:
    return {"PATH": path, "HOME": str(mnt.parent), "GAPSHIP_MOUNT": str(mnt),
            "LANG": "C.UTF-8"}


def _mounted(mnt: Path) -> bool:
    return any(line.split()[1] == str(mnt) for line in Path("/proc/mounts").read_text()
               .splitlines())


def test_the_prefix_holds_the_image_and_a_few_small_files(installed: Path) -> None:
    files = [p for p in installed.rglob("*") if p.is_file()]
    image = installed / "image.sqsh"
    assert image.read_bytes()[:4] == b"hsqs"  # SquashFS's magic
    # the tens of thousands of files are inside the image: beside it, the records only
    assert len(files) < 80
    assert not (installed / "lib").exists() and not (installed / "bin" / "python3").exists()


@pytest.mark.parametrize("shell", ["dash", "bash"])
def test_activation_mounts_the_image_and_imports_run_from_it(installed: Path, shell: str,
                                                             tmp_path: Path) -> None:
    mnt = tmp_path / "mnt"
    script = (f". {installed}/activate || exit 9\n"
              "python -c 'import numpy, rich, sys; print(\"PREFIX=\" + sys.prefix); "
              "print(\"NUMPY=\" + numpy.__file__)'\n"
              "deactivate\n"
              f'case $PATH in *{mnt}*) echo STILL ;; *) echo DEACTIVATED ;; esac\n')
    proc = subprocess.run([require_tool(shell), "-c", script], env=_env(mnt),
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    assert f"PREFIX={mnt}" in lines
    assert any(x.startswith(f"NUMPY={mnt}/lib/") for x in lines)
    assert "DEACTIVATED" in lines
    # deactivate leaves it mounted, for other shells; a second activation reuses the mount
    assert _mounted(mnt)
    again = subprocess.run([require_tool(shell), "-c", f". {installed}/activate && python "
                            "-c 'import numpy'"], env=_env(mnt), capture_output=True,
                           text=True, check=False)
    assert again.returncode == 0 and again.stderr == "", again.stderr
    # the doctor of the environment inside the image
    doctor = subprocess.run([str(installed / "bin" / "gapship-doctor"), "--quick", "--json"],
                            env=_env(mnt), capture_output=True, text=True, check=False)
    assert doctor.returncode == 0, doctor.stdout[-2000:] + doctor.stderr
    # gapship-umount unmounts it, and says so; a second time there is nothing to do
    umount = subprocess.run([str(installed / "bin" / "gapship-umount")], capture_output=True,
                            text=True, check=False)
    assert umount.returncode == 0 and f"unmounted {mnt}" in umount.stdout
    assert not _mounted(mnt)
    umount = subprocess.run([str(installed / "bin" / "gapship-umount")], capture_output=True,
                            text=True, check=False)
    assert "is not mounted; nothing to do" in umount.stdout


def test_without_fuse_activation_says_what_to_do_instead(installed: Path,
                                                          tmp_path: Path) -> None:
    bin_dir = tmp_path / "no-fuse-bin"  # the tools activation runs, and no squashfuse
    bin_dir.mkdir()
    for tool in ("sh", "dirname", "sed", "cat", "ls", "mkdir", "grep", "rmdir", "tail"):
        (bin_dir / tool).symlink_to(require_tool(tool))
    mnt = tmp_path / "mnt"
    proc = subprocess.run([require_tool("dash"), "-c", f". {installed}/activate; echo rc=$?"],
                          env=_env(mnt, str(bin_dir)), capture_output=True, text=True,
                          check=False)
    assert "rc=1" in proc.stdout
    assert f"cannot mount {installed}/image.sqsh here: squashfuse is not installed" in proc.stderr
    assert f"apptainer exec --bind {installed}/image.sqsh:{mnt}:image-src=/" in proc.stderr
    assert "pack the environment as a directory (without --format squashfs)" in proc.stderr
    assert not _mounted(mnt)


def _squashfuse_pid(mnt: Path) -> int:
    """The daemon serving ``mnt`` (its command line names the mount point)."""
    for proc in Path("/proc").iterdir():
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if proc.name.isdigit() and str(mnt).encode() in argv and b"squashfuse" in argv[0]:
            return int(proc.name)
    raise AssertionError(f"no squashfuse serves {mnt}")


def test_ranks_activating_at_once_share_one_mount_and_a_dead_mount_is_remounted(
        installed: Path, tmp_path: Path) -> None:
    mnt = tmp_path / "mnt"
    script = f". {installed}/activate && python -c 'import numpy' && echo OK"
    shells = [subprocess.Popen([require_tool("dash"), "-c", script], env=_env(mnt),
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
              for _ in range(4)]
    outs = [p.communicate(timeout=300) for p in shells]
    assert all(out.strip() == "OK" for out, _ in outs), outs
    mounts = [line for line in Path("/proc/mounts").read_text().splitlines()
              if line.split()[1] == str(mnt)]
    assert len(mounts) == 1, mounts
    # the daemon dies (a node's OOM killer): the next activation finds the mount dead and
    # mounts the image again
    os.kill(_squashfuse_pid(mnt), signal.SIGKILL)
    time.sleep(0.5)
    proc = subprocess.run([require_tool("dash"), "-c", script], env=_env(mnt),
                          capture_output=True, text=True, check=False)
    assert proc.stdout.strip() == "OK", proc.stderr
    assert _squashfuse_pid(mnt) > 0


def test_try_runs_the_image_bundles_doctor_in_a_replica(image_bundle: Path) -> None:
    require_tool("bwrap")
    require_tool("squashfuse")
    before = Path("/proc/mounts").read_text()
    proc = gapship("try", str(image_bundle), "--json")
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    # said in one line: where the image was mounted, and why
    assert "the image is mounted with squashfuse on this builder" in proc.stderr
    assert "its user namespace allows no FUSE mount" in proc.stderr
    data = json.loads(proc.stdout)
    assert data["install_rc"] == 0 and data["doctor_rc"] == 0
    # imports of the shipped packages ran inside the replica, from the image
    assert "numpy" in json.dumps(data)
    assert Path("/proc/mounts").read_text().count("squashfuse") == before.count("squashfuse")
