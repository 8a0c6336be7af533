"""Fixtures the unit modules share: one tiny environment, installed once per session (per
xdist worker) by the real installer, for the tests that only activate it and read it."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.unit.test_installer import bundle_of, install


def tree_state(root: Path) -> dict[str, tuple[int, int, int, str]]:
    """Every entry under ``root``: mode, size, mtime and link target, to see any change."""
    state = {}
    for path in sorted(root.rglob("*")):
        st = path.lstat()
        link = os.readlink(path) if path.is_symlink() else ""
        state[str(path.relative_to(root))] = (st.st_mode, st.st_size, st.st_mtime_ns, link)
    return state


def shared_install(tmp_path_factory: pytest.TempPathFactory, name: str) -> Iterator[Path]:
    """The tiny bundle of test_installer, installed by dash into ``.../name``. Shared: a test
    may activate it and read it, never change it (a test that moves, rehomes, removes or
    profiles an environment installs its own); the teardown checks that none did."""
    tmp = tmp_path_factory.mktemp("shared-env")
    prefix = tmp / name
    proc = install(bundle_of(tmp), prefix)
    assert proc.returncode == 0, proc.stderr
    installed = tree_state(prefix)
    yield prefix
    assert tree_state(prefix) == installed, f"a test changed the shared environment {prefix}"


@pytest.fixture(scope="session")
def tiny_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The shared tiny environment at a plain path (ksh's `command -v` quotes any other)."""
    yield from shared_install(tmp_path_factory, "env")


@pytest.fixture(scope="session")
def tiny_env_quoted(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The shared tiny environment with a quote and a space in its path, which must survive."""
    yield from shared_install(tmp_path_factory, "it's here")
