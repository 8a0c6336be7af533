"""The smoke run's choices and verdicts, without entering a replica (those run in
tests/integration/test_smoke_run.py)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path, PurePosixPath
from typing import Any

import pytest

from gapship import verify
from gapship.probe import TargetInfo, parse_target
from gapship.providers.python import PythonInstall, TargetPython
from gapship.replica import describe_rootfs, rootfs_dir

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "targets"
HOST = PythonInstall(version="3.11.7", executable=Path("/opt/py/bin/python3.11"),
                     prefix=Path("/opt/py"), stdlib=Path("/opt/py/lib/python3.11"),
                     platstdlib=Path("/opt/py/lib/python3.11"), shared=True)
BUILDER = (2, 36)


def recorded(name: str) -> TargetInfo:
    return parse_target(json.loads((FIXTURES / name / "expected.json").read_text()), name)


@pytest.fixture(autouse=True)
def empty_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """No rootfs cached, unless a test puts one there."""
    monkeypatch.setenv("GAPSHIP_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


def fake_rootfs(path: Path, pretty: str) -> Path:
    (path / "bin").mkdir(parents=True)
    (path / "bin" / "sh").write_text("")
    (path / "etc").mkdir()
    (path / "etc" / "os-release").write_text(f'NAME="x"\nPRETTY_NAME="{pretty}"\n')
    return path


# ---------------------------------------------------------------- which replica stands in

def test_a_target_at_least_as_new_as_the_builder_gets_this_machine() -> None:
    chosen = verify.choose_stand_in(recorded("qemu-v1"), HOST, BUILDER)  # Debian 12, 2.36
    assert isinstance(chosen, verify.StandIn)
    assert chosen.os == "host" and chosen.rootfs == Path("/")
    assert chosen.described == "this machine's / (glibc 2.36, the builder's files hidden)"


def test_an_older_target_without_a_cached_rootfs_is_skipped_saying_why() -> None:
    why = verify.choose_stand_in(recorded("cpu-noavx2"), HOST, BUILDER)  # Debian 11, 2.31
    assert why == ("the target's glibc 2.31 is older than this builder's 2.36 and no rootfs "
                   "of its release is cached (--twin-root DIR gives one)")


def test_the_minbase_rootfs_of_the_targets_release_comes_first() -> None:
    fake_rootfs(rootfs_dir("bullseye"), "Debian GNU/Linux 11 (bullseye)")
    chosen = verify.choose_stand_in(recorded("cpu-noavx2"), HOST, BUILDER)
    assert isinstance(chosen, verify.StandIn)
    assert (chosen.os, chosen.rootfs) == ("bullseye", rootfs_dir("bullseye"))
    assert chosen.described == "a Debian 11 (bullseye) minbase replica"


def test_a_twin_interpreter_brings_its_rootfs(tmp_path: Path) -> None:
    root = fake_rootfs(tmp_path / "rocky", "Rocky Linux 8.8 (Green Obsidian)")
    python = PythonInstall(version="3.6.8", executable=root / "usr/bin/python3.6",
                           prefix=root / "usr", stdlib=root / "usr/lib/python3.6",
                           platstdlib=root / "usr/lib64/python3.6", shared=True, sysroot=root)
    chosen = verify.choose_stand_in(recorded("rocky8-a100"), python, BUILDER)
    assert isinstance(chosen, verify.StandIn)
    assert (chosen.os, chosen.rootfs) == ("twin", root)
    assert chosen.described == "a Rocky Linux 8.8 (Green Obsidian) replica (twin rootfs)"


def test_the_targets_own_python_and_musl_cannot_be_stood_in_for() -> None:
    own = TargetPython(version="3.9.2", executable=PurePosixPath("/usr/bin/python3.9"))
    why = verify.choose_stand_in(recorded("login-cpu"), own, BUILDER)
    assert why == ("the environment runs on the target's own Python (/usr/bin/python3.9), "
                   "which is not on this builder")
    why = verify.choose_stand_in(recorded("alpine-musl"), HOST, BUILDER)
    assert why == "the target's C library is musl 1.2.4; no replica here has it"


def test_describe_rootfs_falls_back_to_the_directory_name(tmp_path: Path) -> None:
    assert describe_rootfs(tmp_path / "bookworm") == "bookworm"


def test_builder_glibc_reads_this_machine() -> None:
    found = verify.builder_glibc()
    assert found is None or (len(found) >= 2 and found[0] == 2)


# ---------------------------------------------------------------- the doctor's verdict

STAND_IN = verify.StandIn("bullseye", Path("/x"), "a Debian 11 (bullseye) minbase replica")


def check(group: str, name: str, status: str = "pass", detail: str = "", remedy: str = "",
          **facts: Any) -> dict[str, Any]:
    out = {"group": group, "name": name, "status": status, "detail": detail, "remedy": remedy}
    if facts:
        out["facts"] = facts
    return out


def report(*checks: dict[str, Any]) -> dict[str, Any]:
    return {"schema_version": 1, "ok": True, "checks": list(checks)}


def test_a_passing_doctor_says_what_was_proven() -> None:
    run = verify.judge(report(
        check("interpreter", "python 3.9.2"),
        check("libraries", "library closure", detail="86 ELF files: ...", elf_files=86),
        check("stdlib", "ssl"), check("stdlib", "sqlite3"),
        check("imports", "numpy (numpy 2.0.2)"), check("imports", "requests (requests 2.32)"),
        check("gpu", "GPU checks", "skip")), STAND_IN, 1.24, "demo")
    assert (run.ran, run.replica, run.imports, run.stdlib, run.elf_files) == (
        True, "bullseye", 2, 2, 86)
    assert run.proven() == (
        "imports (2 modules of the shipped packages, 2 of the standard library) and the "
        "library closure (86 ELF files) checked in a Debian 11 (bullseye) minbase replica, "
        "offline as uid 1000 (1.2 s)")
    assert run.to_json()["skipped"] is None and run.to_json()["seconds"] == 1.24


def test_failing_imports_refuse_naming_each_with_its_remedy() -> None:
    with pytest.raises(verify.SmokeRunFailed) as caught:
        verify.judge(report(
            check("imports", "numpy (numpy 2.0.2)"),
            check("imports", "requests (requests 2.32.3)", "fail",
                  "ModuleNotFoundError: No module named 'idna'",
                  "idna is missing from the install: install the bundle again."),
            check("libraries", "libgomp.so.1", "fail", "not found; needed by lib/x.so",
                  "Install libgomp1 on the node.")), STAND_IN, 1.0, "demo")
    err = caught.value
    assert [f.name for f in err.failures] == ["requests (requests 2.32.3)", "libgomp.so.1"]
    assert err.message == (
        "the smoke run refused demo: 2 checks failed in a Debian 11 (bullseye) minbase "
        "replica (imports requests (requests 2.32.3), libraries libgomp.so.1); no bundle was "
        "written.")
    lines = err.hint.splitlines()
    assert lines[0] == ("- imports: requests (requests 2.32.3): ModuleNotFoundError: No "
                        "module named 'idna' (fix: idna is missing from the install: install "
                        "the bundle again.)")
    assert lines[1].startswith("  - libraries: libgomp.so.1: not found")
    assert "--no-verify" in lines[-1]


def test_failures_about_this_machine_do_not_refuse_the_bundle() -> None:
    run = verify.judge(report(
        check("cpu", "cpu", "fail", "this CPU lacks avx512f", "Pack for this CPU."),
        check("imports", "numpy (numpy 2.0.2)")), STAND_IN, 1.0, "demo")
    assert run.ran and run.not_judged == ("cpu: cpu: this CPU lacks avx512f "
                                          "(fix: Pack for this CPU.)",)


def test_an_import_that_needs_only_the_nvidia_driver_does_not_refuse() -> None:
    """TensorFlow 1.x GPU builds open libcuda.so.1 at import: the replica has no driver, the
    GPU node has."""
    failed = check("imports", "tensorflow (tensorflow-gpu 1.11.0)", "fail",
                   "ImportError: libcuda.so.1: cannot open shared object file", "Run it on a "
                   "GPU node.")
    failed["diagnosis"] = verify.NO_DRIVER
    run = verify.judge(report(failed, check("imports", "numpy (numpy 1.14.5)")), STAND_IN,
                       1.0, "tf")
    assert run.ran and len(run.not_judged) == 1 and "libcuda.so.1" in run.not_judged[0]


def test_a_doctor_that_cannot_start_is_quoted() -> None:
    proc = subprocess.CompletedProcess(
        ["doctor"], 2, "", "gapship-doctor: FAIL interpreter: bin/python3 cannot start: "
        "GLIBC_2.38 not found\n  cause: the interpreter was built for a newer glibc\n")
    with pytest.raises(verify._Unreadable, match=r"GLIBC_2\.38 not found"):
        verify.read_report(proc)


def test_skipped_runs_say_why_in_one_line() -> None:
    assert verify.skipped("--no-verify").proven() == "smoke run skipped: --no-verify"
    assert verify.skipped("x").to_json()["ran"] is False


def test_a_users_twin_root_comes_before_the_cached_minbase(tmp_path: Path) -> None:
    fake_rootfs(rootfs_dir("bullseye"), "Debian GNU/Linux 11 (bullseye)")
    root = fake_rootfs(tmp_path / "mine", "Debian GNU/Linux 11 (bullseye)")
    chosen = verify.choose_stand_in(recorded("cpu-noavx2"), twin_python(root), BUILDER)
    assert isinstance(chosen, verify.StandIn) and (chosen.os, chosen.rootfs) == ("twin", root)
    # gapship's own twin rootfs carries python3 and its libraries: the minbase is stricter
    ours = fake_rootfs(rootfs_dir("bullseye", "python"), "Debian GNU/Linux 11 (bullseye)")
    chosen = verify.choose_stand_in(recorded("cpu-noavx2"), twin_python(ours), BUILDER)
    assert isinstance(chosen, verify.StandIn) and chosen.os == "bullseye"


def twin_python(root: Path) -> PythonInstall:
    return PythonInstall(version="3.9.2", executable=root / "usr/bin/python3.9",
                         prefix=root / "usr", stdlib=root / "usr/lib/python3.9",
                         platstdlib=root / "usr/lib/python3.9", shared=False, sysroot=root)


# ---------------------------------------------------------------- the run, through a fake bwrap

def fake_bwrap(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, body: str) -> None:
    """bwrap that ignores its arguments and runs ``body`` (sh) instead of the replica."""
    script = tmp_path / "bwrap"
    script.write_text(f"#!/bin/sh\n{body}\n")
    script.chmod(0o755)
    monkeypatch.setattr("gapship.replica.shutil.which",
                        lambda name: str(script) if name == "bwrap" else None)
    monkeypatch.setattr(verify, "builder_glibc", lambda: BUILDER)


def test_the_doctors_report_from_the_replica_is_judged(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    doctor = json.dumps(report(check("imports", "numpy (numpy 2.0.2)"),
                               check("stdlib", "ssl")))
    fake_bwrap(tmp_path, monkeypatch, f"cat <<'EOF'\n{doctor}\nEOF\nexit 0")
    run = verify.smoke_run(tmp_path, "demo", recorded("qemu-v1"), HOST)
    assert run.ran and run.replica == "host" and (run.imports, run.stdlib) == (1, 1)


def test_a_doctor_that_cannot_start_refuses(tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    fake_bwrap(tmp_path, monkeypatch, "echo 'gapship-doctor: FAIL interpreter: "
               "bin/python3 cannot start: GLIBC_2.38 not found' >&2; exit 2")
    with pytest.raises(verify.SmokeRunFailed) as caught:
        verify.smoke_run(tmp_path, "demo", recorded("qemu-v1"), HOST)
    assert "GLIBC_2.38 not found" in caught.value.hint


def test_a_replica_that_cannot_be_entered_skips_saying_why(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake_bwrap(tmp_path, monkeypatch,
               "echo 'bwrap: setting up uid map: Permission denied' >&2; exit 1")
    run = verify.smoke_run(tmp_path, "demo", recorded("qemu-v1"), HOST)
    assert not run.ran
    assert run.skipped == ("the replica could not be entered (bwrap: setting up uid map: "
                           "Permission denied); the static checks ran")


def test_no_bubblewrap_skips_saying_what_to_install(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("gapship.replica.shutil.which", lambda name: None)
    monkeypatch.setattr(verify, "builder_glibc", lambda: BUILDER)
    run = verify.smoke_run(tmp_path, "demo", recorded("qemu-v1"), HOST)
    assert not run.ran and "bubblewrap" in run.skipped and "apt-get install" in run.skipped
