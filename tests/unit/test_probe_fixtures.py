"""probe.sh replayed on every recorded machine (tests/fixtures/targets) under dash, bash, ksh and
busybox ash: it prints exactly the recorded target.json, which the schema accepts."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any, NamedTuple

import pytest

from gapship.probe import FoundFile, Gpu, ProbedPython, parse_target
from tests.fixtures.targets import (
    TARGETS,
    fixture_env,
    fixture_names,
    fixture_target,
    replay_fixture,
    schema_errors,
)

REPLAY_SHELLS = ["dash", "bash", "busybox", "ksh"]
STAMP = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ")


class Facts(NamedTuple):
    """What is known of each recorded machine, independently of its expected.json."""

    os: tuple[str, str]
    libc: tuple[str, str]
    glibcxx: str | None
    level: int
    avx2: bool
    driver: str | None
    gpus: tuple[str, ...]
    compute_capability: str | None
    uvm: bool
    modules: str | None
    slurm: bool


MACHINES = {
    "ubuntu1604-k80": Facts(("ubuntu", "16.04"), ("glibc", "2.23"), "3.4.21", 2, False,
                            "384.183", ("Tesla K80",) * 2, None, False, "tcl", True),
    "centos7-v100": Facts(("centos", "7"), ("glibc", "2.17"), "3.4.19", 4, True, "470.182.03",
                          ("Tesla V100-SXM2-32GB",) * 4, None, True, "lmod", True),
    "rocky8-a100": Facts(("rocky", "8.8"), ("glibc", "2.28"), "3.4.25", 3, True, "525.105.17",
                         ("NVIDIA A100-SXM4-80GB",) * 8, "8.0", True, "lmod", True),
    "ubuntu2204-h100": Facts(("ubuntu", "22.04"), ("glibc", "2.35"), "3.4.30", 4, True,
                             "550.54.15", ("NVIDIA H100 80GB HBM3",), "9.0", True, None, False),
    "login-cpu": Facts(("rocky", "9.3"), ("glibc", "2.34"), "3.4.29", 3, True, None, (), None,
                       False, "lmod", True),
    "cpu-noavx2": Facts(("debian", "11"), ("glibc", "2.31"), "3.4.28", 2, False, None, (), None,
                        False, None, False),
    "qemu-v1": Facts(("debian", "12"), ("glibc", "2.36"), "3.4.30", 1, False, None, (), None,
                     False, None, False),
    "alpine-musl": Facts(("alpine", "3.19.1"), ("musl", "1.2.4"), None, 3, True, None, (), None,
                         False, None, False),
}


def test_every_named_machine_is_recorded() -> None:
    # the planner's tests load these by name
    assert fixture_names() == sorted(MACHINES)


@pytest.mark.parametrize("shell", REPLAY_SHELLS)
@pytest.mark.parametrize("name", sorted(MACHINES))
def test_replay_prints_the_recorded_target(name: str, shell: str) -> None:
    proc = replay_fixture(name, shell)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    data = json.loads(proc.stdout)
    assert STAMP.fullmatch(data["collected_at"])
    expected = fixture_target(name)
    data["collected_at"] = expected["collected_at"]
    assert data == expected
    assert schema_errors(data) == []


@pytest.mark.parametrize("name", sorted(MACHINES))
def test_recorded_target_holds_the_machines_facts(name: str) -> None:
    facts = MACHINES[name]
    data = fixture_target(name)
    assert schema_errors(data) == []
    info = parse_target(data, name)
    assert (info.os_id, info.os_version) == facts.os
    assert info.libc == " ".join(facts.libc)
    assert info.glibcxx == facts.glibcxx
    assert info.x86_64_level == facts.level
    assert ("avx2" in info.cpu_flags) == facts.avx2
    assert info.driver_version == (dotted(facts.driver) if facts.driver else None)
    assert tuple(g.name for g in info.gpus) == facts.gpus
    expected_cc = dotted(facts.compute_capability) if facts.compute_capability else None
    assert {g.compute_capability for g in info.gpus} <= {expected_cc}
    assert info.uvm_loaded is facts.uvm
    assert info.site.module_system == facts.modules
    assert ("srun" in info.site.schedulers) == facts.slurm
    assert info.to_json() == data


def dotted(text: str) -> tuple[int, ...]:
    return tuple(int(p) for p in text.split("."))


def test_the_record_is_typed_from_every_section() -> None:
    info = parse_target(fixture_target("rocky8-a100"), "rocky8-a100")
    assert info.gpus[0] == Gpu("NVIDIA A100-SXM4-80GB", (8, 0), 81920)
    assert info.driver_version == (525, 105, 17)
    assert info.glibc_version == (2, 28) and info.libc_version == (2, 28)
    assert all(isinstance(p, ProbedPython) and p.path.startswith("/") for p in info.pythons)
    assert all(isinstance(t, FoundFile) for t in info.cuda_toolkits + info.cudnn_headers)
    assert info.site.container_runtime == "apptainer"
    assert dict(info.site.tools)["tar"] is True
    musl = parse_target(fixture_target("alpine-musl"), "alpine-musl")
    assert (musl.libc_version, musl.glibc_version) == ((1, 2, 4), None)


def test_sections_an_older_probe_lacks_are_unknown() -> None:
    data = fixture_target("rocky8-a100")
    for section in ("nvidia", "pythons", "site", "shells", "host", "memory_kb", "libraries"):
        del data[section]
    del data["libc"]["cxxabi"], data["libc"]["gcc"]
    data["nvidia"] = {"gpus": [{"name": "Tesla K80"}, "junk"]}
    info = parse_target(data, "old")
    # a probe 1 result: no library list, which is not the same as an empty one
    assert info.libraries is None and info.cxxabi_version is None
    assert info.gpus == (Gpu("Tesla K80", None, None),)
    assert (info.driver_version, info.uvm_loaded, info.memory_kb, info.bin_sh) == (None,) * 4
    assert info.pythons == () and info.site.tools == () and info.site.schedulers == ()


def test_the_libraries_the_loader_finds_are_typed() -> None:
    info = parse_target(fixture_target("centos7-v100"), "centos7")
    assert info.libraries_source == "directories"
    assert info.libraries is not None and "libstdc++.so.6" in info.libraries
    assert info.cxxabi_version == (1, 3, 7)


def test_the_record_is_kept_apart_from_its_readers() -> None:
    data = fixture_target("ubuntu2204-h100")
    info = parse_target(data, "h100")
    data["nvidia"]["driver_version"] = "1.0"
    info.to_json()["nvidia"]["driver_version"] = "2.0"
    assert info.to_json()["nvidia"]["driver_version"] == "550.54.15"


@pytest.mark.parametrize("name", sorted(MACHINES))
def test_replay_prints_no_environment_value_but_modulepath(name: str) -> None:
    env = fixture_env(TARGETS / name)
    out = replay_fixture(name, "dash").stdout
    assert env["SECRET_TOKEN"] not in out
    assert json.loads(out)["site"]["modulepath"] == env.get("MODULEPATH")


def copy_machine(name: str, tmp_path: Path) -> Path:
    dest = tmp_path / name
    shutil.copytree(TARGETS / name, dest, symlinks=True)
    return dest


def replay_json(machine: Path) -> dict[str, Any]:
    proc = replay_fixture(machine, "dash")
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr
    data: dict[str, Any] = json.loads(proc.stdout)
    assert schema_errors(data) == []
    return data


def test_without_os_release_redhat_release_names_the_system(tmp_path: Path) -> None:
    machine = copy_machine("centos7-v100", tmp_path)
    (machine / "root" / "etc" / "os-release").unlink()
    assert replay_json(machine)["os"] == {
        "id": "centos", "version_id": "7.9.2009",
        "pretty_name": "CentOS Linux release 7.9.2009 (Core)",
        "kernel": "3.10.0-1160.88.1.el7.x86_64", "arch": "x86_64"}


def test_without_os_release_lsb_release_names_the_system(tmp_path: Path) -> None:
    machine = copy_machine("ubuntu1604-k80", tmp_path)
    (machine / "root" / "etc" / "os-release").unlink()
    os_info = replay_json(machine)["os"]
    assert (os_info["id"], os_info["version_id"], os_info["pretty_name"]) == (
        "ubuntu", "16.04", "Ubuntu 16.04.7 LTS")


def test_nothing_known_of_the_os_is_null(tmp_path: Path) -> None:
    machine = copy_machine("ubuntu1604-k80", tmp_path)
    for name in ("os-release", "lsb-release"):
        (machine / "root" / "etc" / name).unlink()
    (machine / "bin" / "uname").unlink()
    assert set(replay_json(machine)["os"].values()) == {None}


def test_an_nvidia_smi_that_cannot_reach_the_driver_gives_no_gpus(tmp_path: Path) -> None:
    machine = copy_machine("rocky8-a100", tmp_path)
    smi = machine / "bin" / "nvidia-smi"
    smi.write_text("#!/bin/sh\necho 'NVIDIA-SMI has failed because it couldn'\"'\"'t communicate "
                   "with the NVIDIA driver. Make sure that the latest NVIDIA driver is installed "
                   "and running.'\nexit 9\n")
    nv = replay_json(machine)["nvidia"]
    assert nv["gpus"] == [] and nv["driver_version"] == "525.105.17"


def test_musl_is_known_by_its_loader_when_ldd_is_missing(tmp_path: Path) -> None:
    machine = copy_machine("alpine-musl", tmp_path)
    (machine / "bin" / "ldd").unlink()
    assert replay_json(machine)["libc"] == {"family": "musl", "version": None, "glibcxx": None,
                                            "cxxabi": None, "gcc": None, "libstdcxx": None}


@pytest.mark.parametrize(
    ("path", "value"),
    [
        (("cpu", "x86_64_level"), 5),
        (("nvidia", "gpus", 0, "compute_capability"), "sm_80"),
        (("nvidia", "driver_version"), "525.105.17 "),
        (("libc", "family"), "uclibc"),
        (("storage", "home_free_kb"), "12 GB"),
        (("site", "tools", "zstd"), None),
        (("site", "secret"), "x"),
    ],
)
def test_schema_rejects_what_the_probe_never_prints(path: tuple[str | int, ...],
                                                    value: object) -> None:
    data = fixture_target("rocky8-a100")
    node: Any = data
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    assert schema_errors(data) != []


def test_schema_requires_every_field() -> None:
    data = fixture_target("login-cpu")
    del data["storage"]["tmp_noexec"]
    assert any("tmp_noexec" in e for e in schema_errors(data))
