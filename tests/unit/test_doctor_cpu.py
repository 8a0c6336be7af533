"""The CPU check: cpu_needs.json against /proc/cpuinfo-style files."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from gapship.node import cpu
from gapship.node.base import FAIL, PASS, WARN

V1 = "fpu vme de pse tsc msr pae mce cx8 apic sep mtrr cmov pat mmx fxsr sse sse2 syscall nx lm"
V2 = V1 + " pni ssse3 cx16 sse4_1 sse4_2 popcnt lahf_lm"
V3 = V2 + " avx avx2 bmi1 bmi2 f16c fma abm movbe xsave"


def cpuinfo(tmp_path: Path, flags: str) -> str:
    path = tmp_path / "cpuinfo"
    path.write_text(f"processor\t: 0\nmodel name\t: Test CPU\nflags\t\t: {flags}\n\n"
                    f"processor\t: 1\nmodel name\t: Test CPU\nflags\t\t: {flags}\n")
    return str(path)


def prefix_with(tmp_path: Path, needs: list[dict[str, Any]]) -> str:
    meta = tmp_path / "env" / "gapship"
    meta.mkdir(parents=True)
    (meta / "cpu_needs.json").write_text(json.dumps({"schema_version": 1, "needs": needs}))
    return str(tmp_path / "env")


TF: dict[str, Any] = {
    "distribution": "tensorflow", "version": "2.17.0", "flags": ["avx"], "x86_64_level": None,
    "reason": "TensorFlow >= 1.6 prebuilt wheels use AVX", "source": "TF RELEASE.md 1.6.0",
    "verified": True}
NUMPY: dict[str, Any] = {
    "distribution": "numpy", "version": "2.4.0", "flags": [], "x86_64_level": "x86-64-v2",
    "reason": "NumPy >= 2.4 baseline", "source": "numpy PR 28896", "verified": True}
HINT: dict[str, Any] = {
    "distribution": "torch", "version": "2.9.0", "flags": ["avx2"], "x86_64_level": None,
    "reason": "proposal", "source": "pytorch#94021", "verified": False}


def test_levels() -> None:
    assert cpu.x86_64_level(set(V1.split())) == 1
    assert cpu.x86_64_level(set(V2.split())) == 2
    assert cpu.x86_64_level(set(V3.split())) == 3
    assert cpu.parse_level("x86-64-v2") == cpu.parse_level("v2") == cpu.parse_level(2) == 2
    assert cpu.flag_name("SSE4.2") == "sse4_2" and cpu.flag_name("sse3") == "pni"


def test_an_old_cpu_fails_verified_needs_and_warns_on_hints(tmp_path: Path) -> None:
    prefix = prefix_with(tmp_path, [TF, NUMPY, HINT])
    checks = cpu.check_cpu(prefix, cpuinfo(tmp_path, V1), machine="x86_64")
    assert checks[0].status == PASS and checks[0].detail == "Test CPU, x86-64-v1"
    tf, numpy, hint = checks[1:]
    assert (tf.status, tf.name) == (FAIL, "tensorflow 2.17.0 needs avx")
    assert "lacks avx" in tf.detail and "TF RELEASE.md 1.6.0" in tf.detail
    assert tf.diagnosis == "illegal-instruction" and "Illegal instruction" in tf.remedy
    assert numpy.status == FAIL and numpy.name == "numpy 2.4.0 needs x86-64-v2"
    assert "pni" in numpy.facts["missing"] and "popcnt" in numpy.facts["missing"]
    assert hint.status == WARN and "unverified" in hint.detail
    assert cpu.missing_by_distribution([TF, HINT], set(V1.split())) == {
        "tensorflow": ["avx"], "torch": ["avx2"]}


def test_a_new_cpu_passes(tmp_path: Path) -> None:
    prefix = prefix_with(tmp_path, [TF, NUMPY, HINT])
    checks = cpu.check_cpu(prefix, cpuinfo(tmp_path, V3), machine="x86_64")
    assert [c.status for c in checks] == [PASS] * 4


def test_no_needs_recorded_and_other_machines(tmp_path: Path) -> None:
    (check,) = cpu.check_cpu(str(tmp_path), cpuinfo(tmp_path, V1), machine="x86_64")
    assert check.status == PASS and "no instruction-set needs recorded" in check.detail
    prefix = prefix_with(tmp_path, [TF])
    arm = cpu.check_cpu(prefix, cpuinfo(tmp_path, "fp asimd"), machine="aarch64")
    assert [c.status for c in arm] == [PASS, PASS] and "does not apply" in arm[1].detail
    (unreadable,) = cpu.check_cpu(prefix, str(tmp_path / "missing"), machine="x86_64")
    assert unreadable.status == WARN
