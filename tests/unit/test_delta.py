"""Delta bundles (pack --update-of OLD): a full install of A, the delta A->B applied to it, and
the result compared file by file with a full install of B at the same prefix. Real bundles, a
real sh, the environment's own python3 (this machine's, as a --python target environment would
link it) running the shipped apply program."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

from gapship import activate
from gapship.bundle import write_bundle
from gapship.bundle.codec import choose
from gapship.bundle.delta import plan_delta, read_old, write_delta
from gapship.errors import BundleError
from gapship.files import write_json
from gapship.node import layout
from gapship.stage.manifest import build_manifest
from tests.conftest import shell_argv
from tests.unit.test_installer import debris, install

# real bundles under every shell: tens of seconds, so out of the fast loop (CI runs them)
pytestmark = pytest.mark.slow

SITE = "lib/python3/site-packages"
# version -> {package: version}: B adds "added", upgrades "upgraded", removes "removed"
VERSIONS = {
    "1.0": {"kept": "1.0", "upgraded": "1.0", "removed": "1.0"},
    "2.0": {"kept": "1.0", "upgraded": "2.0", "added": "0.1"},
    "3.0": {"kept": "1.0", "upgraded": "3.0", "added": "0.1"},
}


def host_python() -> str:
    for candidate in ("/usr/bin/python3", "/usr/local/bin/python3"):
        if os.access(candidate, os.X_OK):
            return candidate
    pytest.skip("no python3 outside the venv")


def env_tree(root: Path, version: str) -> Path:
    """An environment of version ``version``: its packages as dist-info + module + bytecode."""
    (root / "bin").mkdir(parents=True)
    (root / "bin" / "python3").symlink_to(host_python())
    (root / "gapship").mkdir()
    (root / "gapship" / "name").write_text("tiny\n")
    (root / "gapship" / "version").write_text(version + "\n")
    for pkg, pkg_version in VERSIONS[version].items():
        mod = root / SITE / pkg
        (mod / "__pycache__").mkdir(parents=True)
        (mod / "__init__.py").write_text(f"VERSION = {pkg_version!r}\n")
        (mod / "__pycache__" / "__init__.cpython-311.pyc").write_bytes(
            hashlib.sha256(f"{pkg}{pkg_version}".encode()).digest() * 40)
        info = root / SITE / f"{pkg}-{pkg_version}.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Name: {pkg}\nVersion: {pkg_version}\n")
        (info / "RECORD").write_text(f"{pkg}/__init__.py,,\n")
    (root / SITE / "big.bin").write_bytes(b"\0x" * 300_000)  # unchanged, hard-linked
    (root / "bin" / "tool").symlink_to("python3")
    activate.install_target_files(root)
    write_json(root / layout.MANIFEST, build_manifest(root))
    return root


def full_bundle(tmp: Path, version: str) -> Path:
    tree = env_tree(tmp / f"tree-{version}", version)
    return write_bundle(tree, tmp / f"tiny-{version}.run", name="tiny", version=version,
                        python="3.11.7", installed_bytes=1, codec=choose("gzip", (), 1)).path


def delta_bundle(tmp: Path, old: Path, version: str) -> Path:
    tree = env_tree(tmp / f"delta-tree-{version}", version)
    base = read_old(old)
    info, _ = write_delta(tree, base, tmp / f"tiny-{base.version}-to-{version}.run",
                          name="tiny", version=version)
    return info.path


def apply(delta: Path, prefix: Path, env: dict[str, str] | None = None
          ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*shell_argv("dash"), str(delta), "--prefix", str(prefix)],
                          capture_output=True, text=True, timeout=120, check=False,
                          stdin=subprocess.DEVNULL, env=env)


def state(prefix: Path) -> dict[str, str]:
    """Every path under ``prefix``: a file's sha256 and mode, a link's target, or a dir."""
    out = {}
    for path in sorted(prefix.rglob("*")):
        rel = path.relative_to(prefix).as_posix()
        if path.is_symlink():
            out[rel] = "-> " + os.readlink(path)
        elif path.is_dir():
            out[rel] = "dir"
        else:
            out[rel] = f"{hashlib.sha256(path.read_bytes()).hexdigest()} " \
                       f"{oct(path.stat().st_mode & 0o7777)}"
    return out


def test_plan_names_added_upgraded_and_removed_files(tmp_path: Path) -> None:
    a = build_manifest(env_tree(tmp_path / "a", "1.0"))
    b = build_manifest(env_tree(tmp_path / "b", "2.0"))
    plan = plan_delta(a, b)
    assert f"{SITE}/added/__init__.py" in plan.changed
    assert f"{SITE}/upgraded-2.0.dist-info/METADATA" in plan.changed
    assert f"{SITE}/upgraded/__pycache__/__init__.cpython-311.pyc" in plan.changed
    assert f"{SITE}/removed/__init__.py" in plan.removed
    assert f"{SITE}/upgraded-1.0.dist-info/RECORD" in plan.removed
    assert "gapship/version" in plan.changed
    assert not [p for p in plan.changed if p.startswith(f"{SITE}/kept") or "big.bin" in p]
    assert plan.touched[f"{SITE}/upgraded/__init__.py"] == next(
        e["sha256"] for e in a["files"] if e["path"] == f"{SITE}/upgraded/__init__.py")


def test_delta_gives_the_same_tree_as_a_full_install(tmp_path: Path) -> None:
    old = full_bundle(tmp_path, "1.0")
    new = full_bundle(tmp_path, "2.0")
    prefix = tmp_path / "envs" / "tiny"
    assert install(new, prefix).returncode == 0
    want = state(prefix)
    shutil.rmtree(prefix)
    assert install(old, prefix).returncode == 0
    big_inode = (prefix / SITE / "big.bin").stat().st_ino
    delta = delta_bundle(tmp_path, old, "2.0")
    assert delta.stat().st_size < new.stat().st_size / 2
    proc = apply(delta, prefix)
    assert proc.returncode == 0, proc.stderr
    assert "Updated tiny from 1.0 to 2.0" in proc.stderr
    assert state(prefix) == want
    # the unchanged files were hard-linked, not copied
    assert (prefix / SITE / "big.bin").stat().st_ino == big_inode
    assert debris(prefix.parent) == []
    # from the manifest of the installed environment, the same delta
    again = tmp_path / "again"
    again.mkdir()
    base = read_old(prefix / layout.MANIFEST)
    assert base.version == "2.0" and base.name == "tiny"


def test_delta_to_an_environment_that_is_not_its_base_is_refused(tmp_path: Path) -> None:
    old = full_bundle(tmp_path, "1.0")
    b = full_bundle(tmp_path, "2.0")
    prefix = tmp_path / "env"
    assert install(old, prefix).returncode == 0
    before = state(prefix)
    delta = delta_bundle(tmp_path, b, "3.0")  # 2.0 -> 3.0
    proc = apply(delta, prefix)
    assert proc.returncode == 1
    line = proc.stderr.strip().splitlines()[-1]
    assert "updates tiny 2.0 to 3.0" in line and "holds tiny 1.0" in line, line
    assert state(prefix) == before and debris(tmp_path) == []


def test_a_modified_base_is_refused_naming_the_file(tmp_path: Path) -> None:
    old = full_bundle(tmp_path, "1.0")
    prefix = tmp_path / "env"
    assert install(old, prefix).returncode == 0
    (prefix / SITE / "upgraded" / "__init__.py").write_text("VERSION = 'patched'\n")
    before = state(prefix)
    proc = apply(delta_bundle(tmp_path, old, "2.0"), prefix)
    assert proc.returncode == 1
    assert f"{SITE}/upgraded/__init__.py changed since it was installed" in proc.stderr
    assert state(prefix) == before and debris(tmp_path) == []


def test_a_moved_base_needs_rehome_first(tmp_path: Path) -> None:
    old = full_bundle(tmp_path, "1.0")
    installed = tmp_path / "first"
    assert install(old, installed).returncode == 0
    moved = tmp_path / "moved"
    installed.rename(moved)
    delta = delta_bundle(tmp_path, old, "2.0")
    proc = apply(delta, moved)
    assert proc.returncode == 1
    assert f"was installed at {installed} and moved here without gapship-rehome" in proc.stderr
    rehome = subprocess.run(["sh", str(moved / "bin" / "gapship-rehome")], capture_output=True,
                            text=True, check=False)
    assert rehome.returncode == 0, rehome.stderr
    proc = apply(delta, moved)
    assert proc.returncode == 0, proc.stderr
    assert (moved / "gapship" / "version").read_text() == "2.0\n"


def test_a_damaged_delta_changes_nothing(tmp_path: Path) -> None:
    old = full_bundle(tmp_path, "1.0")
    prefix = tmp_path / "env"
    assert install(old, prefix).returncode == 0
    before = state(prefix)
    delta = delta_bundle(tmp_path, old, "2.0")
    data = bytearray(delta.read_bytes())
    data[-100] ^= 0xFF
    delta.write_bytes(bytes(data))
    proc = apply(delta, prefix)
    assert proc.returncode == 1 and "damaged" in proc.stderr
    assert state(prefix) == before


def test_the_same_version_is_refused_when_packing(tmp_path: Path) -> None:
    old = full_bundle(tmp_path, "1.0")
    with pytest.raises(BundleError, match=r"version 1\.0 already"):
        write_delta(env_tree(tmp_path / "same", "1.0"), read_old(old), tmp_path / "d.run",
                    name="tiny", version="1.0")


def test_kill_9_while_applying_leaves_the_old_environment_then_the_next_run_applies(
        tmp_path: Path) -> None:
    old = full_bundle(tmp_path, "1.0")
    prefix = tmp_path / "envs" / "tiny"
    assert install(old, prefix).returncode == 0
    before = state(prefix)
    tree = env_tree(tmp_path / "big-2.0", "2.0")
    (tree / SITE / "added" / "data.bin").write_bytes(os.urandom(60_000_000))
    write_json(tree / layout.MANIFEST, build_manifest(tree))
    delta, _ = write_delta(tree, read_old(old), tmp_path / "big.run", name="tiny", version="2.0")
    proc = subprocess.Popen([*shell_argv("dash"), str(delta.path), "--prefix", str(prefix)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    deadline = time.time() + 60
    while not list(prefix.parent.glob(".tiny.gapship-install.*/tree/lib")):
        assert proc.poll() is None and time.time() < deadline
        time.sleep(0.005)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    assert state(prefix) == before
    assert ".tiny.gapship-lock" in debris(prefix.parent)
    again = apply(delta.path, prefix)
    assert again.returncode == 0, again.stderr
    assert "removed the lock" in again.stderr and "left by an install that was killed" in \
        again.stderr
    assert (prefix / "gapship" / "version").read_text() == "2.0\n"
    assert debris(prefix.parent) == []


@pytest.mark.parametrize("codec", ["gzip", "zstd"])
def test_the_old_environment_is_read_from_a_run_split_or_not(tmp_path: Path, codec: str) -> None:
    tree = env_tree(tmp_path / "tree", "1.0")
    want = json.loads((tree / layout.MANIFEST).read_text())
    for name, split in (("whole", None), ("split", 64 * 1024)):
        run = write_bundle(tree, tmp_path / name / "tiny.run", name="tiny", version="1.0",
                           python="3.11.7", installed_bytes=1, codec=choose(codec, (), None),
                           split=split).path
        old = read_old(run)
        assert (old.name, old.version, old.manifest) == ("tiny", "1.0", want)
    with pytest.raises(BundleError, match="cannot read"):
        for part in (tmp_path / "split").glob("tiny.part-*"):
            part.unlink()
        read_old(tmp_path / "split" / "tiny.run")
