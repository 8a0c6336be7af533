"""Shared test helpers: real tools, skipped locally when missing, failing in CI (CI=true)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from gapship.errors import GapshipError
from gapship.providers.python import find_host_python
from gapship.tools import tool_path

IN_CI = os.environ.get("CI", "").lower() == "true"

# Where PYTHONDONTWRITEBYTECODE is set (these sandboxes set it), nothing writes a .pyc, so every
# pytest process (each xdist worker too) and every `python -m gapship.cli` a test starts
# compiles gapship and the rewritten test modules again: seconds a run. Written here, the
# caches (in __pycache__/, which git ignores) serve those processes; the environment, and so
# what the tests start, is left as it is.
sys.dont_write_bytecode = False
ROOT = Path(__file__).resolve().parent.parent


def require(condition: bool, why: str) -> None:
    """Skip when a tool or resource is missing, except in CI where that is a failure."""
    if condition:
        return
    if IN_CI:
        pytest.fail(f"CI must provide this: {why}")
    pytest.skip(why)


def require_tool(name: str) -> str:
    """A tool the tests run, found the way gapship finds its own (beside its interpreter, then
    PATH), so that a test never depends on what an earlier session left on PATH."""
    path = tool_path(name)
    require(path is not None, f"{name} is not installed")
    assert path is not None
    return path


def require_python(minor: str) -> str:
    """A CPython ``minor`` on this machine, found the way gapship finds the builder's own
    (pyenv, uv's Pythons, /usr/local/bin, /usr/bin, PATH)."""
    try:
        return str(find_host_python(minor).executable)
    except GapshipError:
        require(False, f"no Python {minor} on this machine (pyenv, uv or the system's)")
        raise


def gapship(*args: str, **kwargs: object) -> subprocess.CompletedProcess[str]:
    """Run the real CLI in a subprocess, as a user would."""
    return subprocess.run([sys.executable, "-m", "gapship.cli", *args], capture_output=True,
                          text=True, check=False, **kwargs)  # type: ignore[call-overload]


SHELLS = ["dash", "bash", "ksh", "zsh", "mksh", "busybox"]


def shell_argv(name: str) -> list[str]:
    """argv prefix that runs a script with the named shell (busybox as its ash)."""
    path = require_tool(name)
    return [path, "sh"] if name == "busybox" else [path]


# What each integration module needs, as pytest markers (see README, "The fast loop"):
# replica = bubblewrap + a debootstrapped rootfs; network = PyPI through the cache;
# slow = minutes (a few unit modules mark themselves slow too: fault injection under every
# shell). A new integration module must say what it needs here.
INTEGRATION_MARKS: dict[str, tuple[str, ...]] = {
    "test_delta_replica": ("replica", "network", "slow"),
    "test_doctor_replica": ("replica", "network", "slow"),
    "test_end_to_end": ("replica", "network", "slow"),
    "test_gpu_stack": ("replica", "network", "slow"),
    "test_image": ("network", "slow"),
    "test_installer_replica": ("replica",),
    "test_build_python": ("replica", "network", "slow"),
    "test_interpreters": ("replica", "network", "slow"),
    "test_parts_replica": ("replica",),
    "test_plan_resolve": ("network",),
    "test_probe_replica": ("replica",),
    "test_seed_stack": ("replica", "network", "slow"),
    "test_slurm_nodes": ("network", "slow"),
    "test_smoke_run": ("replica", "network", "slow"),
    "test_target_libraries": ("replica", "network", "slow"),
    "test_torch_gpu": ("replica", "network", "slow"),
}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        path = Path(str(item.fspath))
        if path.parent.name != "integration":
            continue
        marks = INTEGRATION_MARKS.get(path.stem)
        if marks is None:
            raise pytest.UsageError(f"{path.name}: add it to INTEGRATION_MARKS in "
                                    "tests/conftest.py with the markers it needs")
        for mark in marks:
            item.add_marker(mark)
