"""probe.sh in the bullseye and trixie replicas (no Python there) under dash, bash and busybox
ash: its output is valid and says what the replica really has."""

from __future__ import annotations

import json
import os
import re
import tempfile
from pathlib import Path

import pytest

from gapship.node.elf import read_elf, version_key
from gapship.probe import target_schema
from gapship.replica import HOME, rootfs_dir
from tests.conftest import require, require_tool
from tests.fixtures.targets import schema_errors
from tests.integration.conftest import probe_in

LIBDIR = Path("usr/lib/x86_64-linux-gnu")


def os_release(root: Path) -> dict[str, str]:
    text = (root / "etc" / "os-release").read_text(encoding="utf-8")
    pairs = (line.split("=", 1) for line in text.splitlines() if "=" in line)
    return {k: v.strip('"') for k, v in pairs}


def glibc_of(root: Path) -> str:
    """The version libc.so.6 announces in its banner ("GNU C Library ... version 2.31")."""
    found = re.search(rb"GNU C Library [^\n]*?version (\d+\.\d+)",
                      (root / LIBDIR / "libc.so.6").read_bytes())
    assert found is not None
    return found.group(1).decode()


def newest_glibcxx(root: Path) -> str:
    names: list[bytes] = re.findall(rb"GLIBCXX_(\d+(?:\.\d+)+)\x00",
                                    (root / LIBDIR / "libstdc++.so.6").read_bytes())
    return max((n.decode() for n in names), key=lambda n: version_key(f"GLIBCXX_{n}"))


def shell_command(shell: str) -> tuple[str, list[tuple[Path, str]]]:
    """How the replica runs probe.sh with ``shell``; busybox is this machine's, bound in."""
    if shell != "busybox":
        return shell, []
    busybox = Path(require_tool("busybox"))
    info = read_elf(busybox.resolve())
    require(info is not None and not info.needed,
            "busybox must be static to run in a replica (apt-get install busybox-static)")
    return "/tmp/busybox sh", [(busybox, "/tmp/busybox")]


@pytest.mark.parametrize("shell", ["dash", "bash", "busybox"])
@pytest.mark.parametrize("release", ["bullseye", "trixie"])
def test_probe_in_a_replica_says_what_it_has(release: str, shell: str, tmp_path: Path) -> None:
    command, binds = shell_command(shell)
    data = json.loads(probe_in(release, tmp_path / "target.json", command, binds).read_text())
    assert schema_errors(data) == []
    root = rootfs_dir(release)

    release_info = os_release(root)
    assert data["os"]["id"] == release_info["ID"]
    assert data["os"]["version_id"] == release_info["VERSION_ID"]
    assert data["os"]["pretty_name"] == release_info["PRETTY_NAME"]
    assert data["os"]["arch"] == os.uname().machine
    assert data["libc"]["family"] == "glibc"
    assert data["libc"]["version"] == glibc_of(root)
    assert data["libc"]["glibcxx"] == newest_glibcxx(root)

    # the libraries the loader finds there: what pack checks the bundle's needs against
    libraries = data["libraries"]
    assert libraries["source"] == "ldconfig"  # /sbin is not on the user's PATH; found anyway
    on_disk = {p.name for d in (LIBDIR, Path("lib/x86_64-linux-gnu")) if (root / d).is_dir()
               for p in (root / d).iterdir() if p.name.startswith("lib") and ".so." in p.name}
    sonames = set(libraries["sonames"])
    assert {"libc.so.6", "libstdc++.so.6", "libz.so.1"} <= sonames
    assert {n for n in on_disk if n.count(".so.") == 1 and n.split(".so.")[1].isdigit()
            } <= sonames
    assert "libgomp.so.1" not in sonames and "libGL.so.1" not in sonames  # not in minbase

    host_flags = set()
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("flags"):
            host_flags = set(line.split(":", 1)[1].split())
            break
    # the replica shares this machine's CPU; the probe reports the flags its schema names
    reported = set(target_schema()["properties"]["cpu"]["properties"]["flags"]["items"]["enum"])
    assert set(data["cpu"]["flags"]) == reported & host_flags

    assert data["shells"] == {"bin_sh": (root / "bin" / "sh").readlink().name,
                              "login_shell": "sh"}
    assert data["pythons"] == []  # minbase has none: the probe needs no Python

    # the replica's home is a directory of this machine's temporary file system
    assert data["storage"]["home"] == HOME
    st = os.statvfs(tempfile.gettempdir())
    free_kb = st.f_bavail * st.f_frsize // 1024
    assert abs(data["storage"]["home_free_kb"] - free_kb) < 512 * 1024
    assert data["site"]["tools"]["tar"] is (root / "bin" / "tar").exists()
    assert data["nvidia"]["driver_version"] == _host_driver()


def _host_driver() -> str | None:
    """The replica sees this machine's /proc: its NVIDIA driver, if any."""
    path = Path("/proc/driver/nvidia/version")
    if not path.exists():
        return None
    found = re.search(r"Kernel Module.*\s(\d+\.\d+(?:\.\d+)?)\s", path.read_text())
    return found.group(1) if found else None

