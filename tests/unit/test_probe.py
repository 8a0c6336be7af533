from __future__ import annotations

import ast
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

import gapship as gapship_package
from gapship.errors import TargetError
from gapship.probe import load_target, parse_target, probe_script
from tests.conftest import SHELLS, gapship, shell_argv
from tests.fixtures.targets import fixture_target_path


def run_probe_with(argv: list[str], script: Path, env: dict[str, str] | None = None,
                   *args: str) -> dict[str, object]:
    proc = subprocess.run([*argv, str(script), *args], capture_output=True, text=True,
                          env=env, timeout=60, check=False, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, proc.stderr
    data: dict[str, object] = json.loads(proc.stdout)
    return data


@pytest.mark.slow  # the whole probe under every shell: half a minute
@pytest.mark.parametrize("shell", SHELLS)
def test_probe_runs_under_each_shell_and_matches_this_machine(shell: str, tmp_path: Path) -> None:
    script = tmp_path / "probe.sh"
    script.write_text(probe_script())

    def free_kb() -> int:
        st = os.statvfs(tmp_path)
        return st.f_bavail * st.f_frsize // 1024

    before = free_kb()
    data = run_probe_with(shell_argv(shell), script, None, str(tmp_path))
    after = free_kb()
    info = parse_target(data)
    assert info.arch == os.uname().machine
    libc = os.confstr("CS_GNU_LIBC_VERSION") or ""
    assert info.libc_family == "glibc" and info.glibc == libc.split()[-1]
    # other writers may change the disk while the probe runs: its figure lies between
    reported: int = data["storage"]["dir_free_kb"]  # type: ignore[index]
    assert min(before, after) - 64 * 1024 <= reported <= max(before, after) + 64 * 1024
    cpuinfo = Path("/proc/cpuinfo").read_text()
    assert ("avx2" in info.cpu_flags) == (" avx2" in cpuinfo)


def test_probe_time_limits_a_hanging_command(tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    hang = bin_dir / "nvidia-smi"
    hang.write_text("#!/bin/sh\nsleep 60\n")
    hang.chmod(0o755)
    script = tmp_path / "probe.sh"
    script.write_text(probe_script())
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "GAPSHIP_PROBE_TIMEOUT": "1", "HOME": "/"}
    proc = subprocess.run(["dash", str(script)], capture_output=True, text=True, env=env,
                          timeout=30, check=False)
    assert proc.returncode == 0
    assert json.loads(proc.stdout)["nvidia"]["gpus"] == []


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        ('{"schema_version": 1, "os": {', "not valid JSON"),
        ("hello", "not valid JSON"),
        ('{"schema_version": 99}', "unknown schema_version 99"),
        ('{"schema_version": 1, "os": {}}', "section `libc` is missing"),
    ],
)
def test_target_show_rejects_bad_files_in_one_line(tmp_path: Path, content: str,
                                                    fragment: str) -> None:
    path = tmp_path / "target.json"
    path.write_text(content)
    with pytest.raises(TargetError):
        load_target(path)
    proc = gapship("target", "show", str(path))
    assert proc.returncode != 0
    assert fragment in proc.stderr and "Traceback" not in proc.stderr


def test_target_show_summarises_a_local_probe(tmp_path: Path) -> None:
    out = tmp_path / "target.json"
    assert gapship("probe", "--local", "-o", str(out)).returncode == 0
    proc = gapship("target", "show", str(out))
    assert proc.returncode == 0 and "glibc" in proc.stdout
    proc = gapship("target", "show", str(out), "--json")
    assert json.loads(proc.stdout)["schema_version"] == 1


def test_probe_script_writes_the_exact_script(tmp_path: Path) -> None:
    proc = gapship("probe", "--script")
    assert proc.returncode == 0 and proc.stdout == probe_script()
    out = tmp_path / "probe.sh"
    assert gapship("probe", "--script", "-o", str(out)).returncode == 0
    assert out.read_text() == probe_script() and os.access(out, os.X_OK)
    assert probe_script().startswith("#!/bin/sh\n")


@pytest.mark.parametrize(
    ("machine", "fragments"),
    [
        ("ubuntu1604-k80", ["2 x Tesla K80 (compute capability unknown, 11 GiB)", "384.183",
                            "24 cores, x86-64-v2 (AVX, no AVX2)", "230.2 TiB free, lustre",
                            "Tcl modules (MODULEPATH /THL5/software/modulefiles:",
                            "srun, sbcast, sbatch", "nvidia_uvm       not loaded"]),
        ("rocky8-a100", ["8 x NVIDIA A100-SXM4-80GB (sm 8.0, 80 GiB)", "525.105.17",
                         "x86-64-v3 (AVX2)", "1200.0 TiB free, gpfs", "Lmod", "apptainer"]),
        ("login-cpu", ["GPUs             none found", "NVIDIA driver    none found", "Lmod",
                       "srun, sbcast, sbatch"]),
        ("alpine-musl", ["musl 1.2.4", "no libstdc++.so.6 found", "/tmp             noexec",
                         "Pythons          none"]),
    ],
)
def test_target_show_summarises_a_recorded_target(machine: str, fragments: list[str]) -> None:
    proc = gapship("target", "show", str(fixture_target_path(machine)),
                   env={**os.environ, "COLUMNS": "200"})
    assert proc.returncode == 0, proc.stderr
    for fragment in fragments:
        assert fragment in proc.stdout


def test_only_the_probe_reads_the_record_of_the_target() -> None:
    # TargetInfo's typed fields are the interface; the probe's JSON stays inside probe/
    src = Path(gapship_package.__file__).parent
    readers = []
    for path in sorted(src.rglob("*.py")):
        if path.is_relative_to(src / "probe"):
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Attribute) and node.attr in ("raw", "_record"):
                readers.append(f"{path.relative_to(src)}:{node.lineno}: .{node.attr}")
    assert readers == [], "read TargetInfo's typed fields instead of the probe's JSON"


def test_probe_reports_what_a_squashfs_image_needs_here(tmp_path: Path) -> None:
    script = tmp_path / "probe.sh"
    script.write_text(probe_script())
    data = run_probe_with(shell_argv("dash"), script)
    image = data["site"]["image"]  # type: ignore[index]
    for tool in ("squashfuse", "squashfuse_ll", "fusermount", "fusermount3"):
        assert image[tool] == (shutil.which(tool) is not None), tool
    assert image["dev_fuse"] == os.access("/dev/fuse", os.R_OK | os.W_OK)
    assert image["kernel_squashfs"] == ("squashfs" in Path("/proc/filesystems").read_text())
    site = parse_target(data).site
    assert site.can_mount_images() == bool(
        (shutil.which("squashfuse") or shutil.which("squashfuse_ll")) and image["dev_fuse"])
    # a record from a probe that did not ask says unknown, not "no"
    del data["site"]["image"]  # type: ignore[attr-defined]
    assert parse_target(data).site.can_mount_images() is None
