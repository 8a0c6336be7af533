from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from gapship.errors import TargetError
from gapship.probe import load_target, parse_target, probe_script
from tests.conftest import SHELLS, gapship, shell_argv


def run_probe_with(argv: list[str], script: Path, env: dict[str, str] | None = None,
                   *args: str) -> dict[str, object]:
    proc = subprocess.run([*argv, str(script), *args], capture_output=True, text=True,
                          env=env, timeout=60, check=False, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, proc.stderr
    data: dict[str, object] = json.loads(proc.stdout)
    return data


@pytest.mark.parametrize("shell", SHELLS)
def test_probe_runs_under_each_shell_and_matches_this_machine(shell: str, tmp_path: Path) -> None:
    script = tmp_path / "probe.sh"
    script.write_text(probe_script())
    data = run_probe_with(shell_argv(shell), script, None, str(tmp_path))
    info = parse_target(data)
    assert info.arch == os.uname().machine
    libc = os.confstr("CS_GNU_LIBC_VERSION") or ""
    assert info.libc_family == "glibc" and info.glibc == libc.split()[-1]
    st = os.statvfs(tmp_path)
    free_kb = st.f_bavail * st.f_frsize // 1024
    assert abs(data["storage"]["dir_free_kb"] - free_kb) < 512 * 1024  # type: ignore[index]
    cpuinfo = Path("/proc/cpuinfo").read_text()
    assert ("avx2" in info.cpu_flags) == (" avx2" in cpuinfo)


def test_probe_replays_a_recorded_machine(tmp_path: Path) -> None:
    """The seam: files under GAPSHIP_PROBE_ROOT, commands from a fixture bin on PATH."""
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    (root / "etc" / "os-release").write_text('ID=ubuntu\nVERSION_ID="16.04"\n'
                                             'PRETTY_NAME="Ubuntu 16.04.7 LTS"\n')
    (root / "proc" / "driver" / "nvidia").mkdir(parents=True)
    (root / "proc" / "driver" / "nvidia" / "version").write_text(
        "NVRM version: NVIDIA UNIX x86_64 Kernel Module  384.183  Thu Jul 16 2020\n")
    (root / "proc" / "cpuinfo").write_text(
        "processor\t: 0\nmodel name\t: Intel(R) Xeon(R) CPU E5-2692 v2\n"
        "flags\t\t: fpu sse2 ssse3 cx16 sse4_1 sse4_2 popcnt lahf_lm avx\n"
        "processor\t: 1\n")
    (root / "proc" / "modules").write_text("nvidia_uvm 1 0 - Live 0x0\nnvidia 2 0 - Live 0x0\n")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "getconf").write_text("#!/bin/sh\necho 'glibc 2.23'\n")
    (bin_dir / "nvidia-smi").write_text(
        "#!/bin/sh\necho 'Tesla K80, 3.7, 11441, 384.183'\necho 'Tesla K80, 3.7, 11441, 384.183'\n")
    for f in bin_dir.iterdir():
        f.chmod(0o755)
    script = tmp_path / "probe.sh"
    script.write_text(probe_script())
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "GAPSHIP_PROBE_ROOT": str(root),
           "HOME": str(tmp_path)}
    data = run_probe_with(["dash"], script, env, "--redact")
    assert data["os"]["id"] == "ubuntu" and data["os"]["version_id"] == "16.04"  # type: ignore[index]
    assert data["libc"] == {"family": "glibc", "version": "2.23", "glibcxx": None,
                            "libstdcxx": None}
    assert data["cpu"]["cores"] == 2 and data["cpu"]["x86_64_level"] == 2  # type: ignore[index]
    assert "avx2" not in data["cpu"]["flags"]  # type: ignore[index]
    nv = data["nvidia"]
    assert nv["driver_version"] == "384.183" and nv["uvm_loaded"] is True  # type: ignore[index]
    assert nv["gpus"][0] == {"name": "Tesla K80", "compute_capability": "3.7",  # type: ignore[index]
                             "memory_mib": 11441}
    assert data["host"] == {"hostname": None, "user": None}


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
