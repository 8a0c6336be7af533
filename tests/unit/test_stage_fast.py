"""Packing fast without changing what is packed: the bytecode cache, staging by hard links
from uv's cache, and the one pass over the staged tree (real compileall, uv, patchelf)."""

from __future__ import annotations

import hashlib
import os
import py_compile
import shutil
import stat
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import pytest

from gapship.bundle import _members, write_bundle
from gapship.bundle.codec import Codec
from gapship.files import edited, sha256_file, write_json
from gapship.node import elf as elfmod
from gapship.node import layout
from gapship.plan import Lock
from gapship.stage import _install_wheels, bytecode, relocate, target_closure, treescan
from gapship.stage.manifest import build_manifest
from tests.conftest import require, require_tool
from tests.unit.test_installer import install, make_tree

COMPILER = Path(sys.executable)


def _sources(root: Path) -> Path:
    """A lib/ tree as compileall meets it: nested packages, one 12 levels deep, a module
    that does not compile, a linked module, a read-only one."""
    pkg = root / "lib" / "python3.x" / "site-packages" / "pkg"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text('"""doc"""\nfrom .mod import f\n')
    (pkg / "mod.py").write_text("X = (1, 2.5, 'text', b'raw')\n\ndef f(a, *, b=3):\n"
                                "    return [i * a for i in range(b)]\n")
    (pkg / "ro.py").write_text("Y = 1\n")
    (pkg / "ro.py").chmod(0o444)
    (pkg / "link.py").symlink_to("mod.py")
    (pkg / "py2.py").write_text('print "py2 test data"\n')
    deep = pkg.joinpath(*"abcdefghijkl")
    deep.mkdir(parents=True)
    (deep / "deep.py").write_text("Z = 'deep'\n")
    (root / "lib" / "notes.txt").write_text("not python\n")
    # a wheel that ships its own up-to-date .pyc: compileall leaves it as it is
    (pkg / "shipped.py").write_text("S = 'shipped'\n")
    py_compile.compile(str(pkg / "shipped.py"), dfile="/where/the/wheel/was/built.py",
                       doraise=True)
    return root / "lib"


def _compileall(lib: Path) -> None:
    proc = subprocess.run([str(COMPILER), "-I", "-B", "-m", "compileall", "-q", "-j", "0",
                           "-d", "/lib", str(lib)], capture_output=True, text=True, check=False)
    assert proc.returncode in (0, 1), proc.stderr


def _bytecode(lib: Path) -> dict[str, tuple[bytes, int]]:
    return {p.relative_to(lib).as_posix(): (p.read_bytes(), stat.S_IMODE(p.stat().st_mode))
            for p in sorted(lib.rglob("*.pyc"))}


def test_cached_bytecode_is_byte_identical_to_a_fresh_compileall(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    fresh = _sources(tmp_path / "fresh")
    cold = tmp_path / "cold" / "lib"
    shutil.copytree(fresh, cold, symlinks=True)
    _compileall(fresh)
    expected = _bytecode(fresh)
    assert len(expected) == 6 and not any("py2" in k for k in expected)
    assert b"/where/the/wheel" in expected[
        "python3.x/site-packages/pkg/__pycache__/shipped.cpython-311.pyc"][0]

    first = bytecode.precompile(COMPILER, cold, cache)
    assert (first.compiled, first.cached, first.failed, first.skipped) == (5, 0, 1, 1)
    assert _bytecode(cold) == expected

    # a later pack: the same sources, new mtimes (a fresh install): nothing is compiled
    warm = _sources(tmp_path / "warm")
    for path in warm.rglob("*.py"):
        os.utime(path, (1_700_000_000, 1_700_000_000), follow_symlinks=False)
    again = tmp_path / "again" / "lib"
    shutil.copytree(warm, again, symlinks=True)
    second = bytecode.precompile(COMPILER, warm, cache)
    assert (second.compiled, second.cached, second.failed) == (1, 5, 1)  # shipped.py's .pyc
    # is out of date after the mtime change: compiled now, as compileall does
    _compileall(again)
    assert _bytecode(warm) == _bytecode(again) != expected  # the header holds the mtime


def test_bytecode_for_sources_of_one_mtime_is_linked_from_the_cache(tmp_path: Path) -> None:
    """The stage gives every source one mtime: a warm pack links each .pyc from the cache
    (no copy), byte-identical to compileall; a kept tree's .pyc edited in place is caught."""
    cache = tmp_path / "cache"

    def staged(name: str) -> Path:
        lib = _sources(tmp_path / name)
        for path in lib.rglob("*.py"):
            if not path.is_symlink():
                os.utime(path, (946_684_800, 946_684_800))
        return lib

    # shipped.py's .pyc (from its wheel) is out of date once its source has the stage's
    # mtime: compileall compiles it again, each time, and it is not for the cache
    first = bytecode.precompile(COMPILER, staged("one"), cache)
    assert (first.compiled, first.cached) == (6, 0)
    two = staged("two")
    fresh = tmp_path / "fresh" / "lib"
    shutil.copytree(two, fresh, symlinks=True)
    second = bytecode.precompile(COMPILER, two, cache)
    assert (second.compiled, second.cached, second.failed) == (1, 5, 1)
    _compileall(fresh)
    assert _bytecode(two) == _bytecode(fresh)
    entries = {p.stat().st_ino: p for p in cache.rglob("*.pyc")}
    linked = [p for p in two.rglob("*.pyc") if p.stat().st_ino in entries]
    assert len(linked) == 5
    # a .pyc edited in place through a linked tree changes the entry: the next pack sees it
    # (its sha256 is not its name's) and compiles that source again
    victim = linked[0]
    data = bytearray(victim.read_bytes())
    data[20] ^= 0xFF
    with victim.open("r+b") as fh:  # in place, as an editor that keeps the inode writes
        fh.write(data)
    three = staged("three")
    again = bytecode.precompile(COMPILER, three, cache)
    assert (again.compiled, again.cached) == (2, 4)
    fresh3 = tmp_path / "fresh3" / "lib"
    shutil.copytree(staged("four"), fresh3, symlinks=True)
    _compileall(fresh3)
    assert _bytecode(three) == _bytecode(fresh3)


def test_a_damaged_cache_entry_is_compiled_again_not_used(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    bytecode.precompile(COMPILER, _sources(tmp_path / "one"), cache)
    entries = [p for p in cache.rglob("*") if p.is_file() and not p.name.endswith(".fail")]
    assert len(entries) == 5
    entries[0].write_bytes(entries[0].read_bytes()[:-7])  # cut short
    data = bytearray(entries[1].read_bytes())
    data[20] ^= 0xFF  # one changed byte
    entries[1].write_bytes(bytes(data))
    two = _sources(tmp_path / "two")
    fresh = tmp_path / "fresh" / "lib"
    shutil.copytree(two, fresh, symlinks=True)
    done = bytecode.precompile(COMPILER, two, cache)
    assert (done.compiled, done.cached) == (2, 3)
    _compileall(fresh)
    assert _bytecode(two) == _bytecode(fresh)
    assert not [p for p in cache.rglob("*.tmp")]


def _wheel(where: Path) -> Path:
    """A small wheel with a console script (its RECORD and script get rewritten)."""
    path = where / "hello-1.0-py3-none-any.whl"
    files = {
        "hello/__init__.py": "def main():\n    print('hello')\n",
        "hello-1.0.dist-info/METADATA": "Metadata-Version: 2.1\nName: hello\nVersion: 1.0\n",
        "hello-1.0.dist-info/WHEEL": "Wheel-Version: 1.0\nGenerator: test\n"
                                     "Root-Is-Purelib: true\nTag: py3-none-any\n",
        "hello-1.0.dist-info/entry_points.txt": "[console_scripts]\nhello = hello:main\n",
    }
    record = [f"{name},sha256={hashlib.sha256(text.encode()).hexdigest()},{len(text)}"
              for name, text in files.items()]
    so = _some_library().read_bytes()  # a library the stage patches (an added RUNPATH)
    record.append(f"hello/_native.so,sha256={hashlib.sha256(so).hexdigest()},{len(so)}")
    with zipfile.ZipFile(path, "w") as zf:
        for name, text in files.items():
            zf.writestr(name, text)
        zf.writestr("hello/_native.so", so)
        zf.writestr("hello-1.0.dist-info/RECORD", "\n".join([*record,
                                                             "hello-1.0.dist-info/RECORD,,"]))
    return path


def _some_library() -> Path:
    return next(Path(p) for p in elfmod.iter_elf_paths(Path(sys.base_prefix) / "lib")
                if ".so" in p)


def _cache_state(root: Path) -> dict[str, tuple[str, int]]:
    return {p.relative_to(root).as_posix(): (sha256_file(p), p.stat().st_mode)
            for p in sorted(root.rglob("*")) if p.is_file() and not p.is_symlink()}


def test_staging_links_from_uvs_cache_and_never_changes_it(tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch
                                                           ) -> None:
    require_tool("patchelf")
    monkeypatch.setenv("GAPSHIP_CACHE_DIR", str(tmp_path / "gapship"))
    monkeypatch.delenv("UV_CACHE_DIR", raising=False)
    wheel = _wheel(tmp_path)
    lock = cast(Lock, SimpleNamespace(python_version="3.11",
                                      platform_tag="manylinux_2_28_x86_64"))

    def stage(name: str) -> Path:
        tree = tmp_path / "gapship" / "stage" / name
        site = tree / "lib" / "python3.11" / "site-packages"
        site.mkdir(parents=True)
        (tree / "bin").mkdir()
        _install_wheels(lock, [wheel], site, tree)
        for script in (tree / "bin").iterdir():
            relocate.rewrite_script(script)
        return tree

    stage("first")  # fills uv's cache
    uv_cache = tmp_path / "gapship" / "uv"
    before = _cache_state(uv_cache)
    tree = stage("second")
    site = tree / "lib" / "python3.11" / "site-packages"
    linked = site / "hello" / "__init__.py"
    assert linked.stat().st_nlink > 1, "the wheel's files were copied, not hard-linked"
    record = site / "hello-1.0.dist-info" / "RECORD"
    lines = record.read_text().splitlines()
    assert "../../../bin/hello,," in lines and not [ln for ln in lines if ln.startswith("bin/")]
    assert (tree / "bin" / "hello").read_bytes().startswith(relocate.TRAMPOLINE.encode())
    native = site / "hello" / "_native.so"
    assert native.stat().st_nlink > 1
    target_closure._add_runpath(native, tree / "lib")  # patchelf, as a graft does
    assert "$ORIGIN/../../.." in (elfmod.read_elf(native) or pytest.fail("not ELF")).runpath
    # an edit through files.edited never reaches the other names of the inode
    with edited(linked) as work:
        work.write_text("changed = True\n")
    assert linked.read_text() == "changed = True\n" and linked.stat().st_nlink == 1
    assert _cache_state(uv_cache) == before


def test_patchelf_edits_a_copy_of_a_hard_linked_library(tmp_path: Path) -> None:
    require_tool("patchelf")
    lib = _some_library()
    cached = tmp_path / "cache" / "libx.so"
    cached.parent.mkdir()
    shutil.copy2(lib, cached)
    staged = tmp_path / "tree" / "lib" / "libx.so"
    staged.parent.mkdir(parents=True)
    os.link(cached, staged)
    before = sha256_file(cached)
    target_closure._add_runpath(staged, staged.parent / "grafted")
    assert sha256_file(cached) == before
    assert "$ORIGIN/grafted" in (elfmod.read_elf(staged) or pytest.fail("not ELF")).runpath


def _tree(root: Path) -> Path:
    """A tree with what the pass must get right: a needle across a piece boundary, an ELF
    file, links, an empty file, a hard link, nested directories."""
    (root / "lib" / "pkg").mkdir(parents=True)
    (root / "bin").mkdir()
    big = bytearray(b"\0" * (treescan.CHUNK + 4096))
    needle = b"/srv/build/stage"
    big[treescan.CHUNK - 5:treescan.CHUNK - 5 + len(needle)] = needle
    (root / "lib" / "pkg" / "big.bin").write_bytes(bytes(big))
    (root / "lib" / "pkg" / "clean.txt").write_text("nothing here\n")
    (root / "lib" / "pkg-extra").mkdir()
    (root / "lib" / "pkg-extra" / "x.py").write_text("P = '/srv/build/stage/x'\n")
    (root / "lib" / "empty").write_bytes(b"")
    shutil.copy2(_some_library(), root / "lib" / "pkg" / "libthing.so")
    os.link(root / "lib" / "pkg" / "clean.txt", root / "lib" / "pkg" / "same.txt")
    (root / "lib" / "pkg" / "up").symlink_to("../pkg-extra")
    (root / "bin" / "py").symlink_to("../lib/pkg/libthing.so")
    return root


def _old_manifest(tree: Path) -> dict[str, Any]:
    """The manifest as it was computed before the one pass (rglob, a sha256 per file)."""
    files, links, total = [], [], 0
    for path in sorted(tree.rglob("*")):
        rel = path.relative_to(tree).as_posix()
        if path.is_symlink():
            links.append({"path": rel, "target": os.readlink(path)})
        elif path.is_file():
            st = path.stat()
            total += st.st_size
            files.append({"path": rel, "size": st.st_size, "sha256": sha256_file(path),
                          "mode": oct(stat.S_IMODE(st.st_mode))})
    return {"manifest_version": layout.MANIFEST_VERSION, "total_bytes": total, "files": files,
            "symlinks": links}


def test_one_pass_gives_what_each_separate_pass_gave(tmp_path: Path) -> None:
    tree = _tree(tmp_path / "tree")
    scanned = treescan.scan_tree(tree, [b"/srv/build/stage", b"/nowhere/at/all"],
                                 skip=("lib/pkg-extra/x.py",))
    assert scanned.hits == {"lib/pkg/big.bin": ["/srv/build/stage"]}
    assert relocate.files_containing(tree, [b"/srv/build/stage"]) == {
        "lib/pkg/big.bin": ["/srv/build/stage"], "lib/pkg-extra/x.py": ["/srv/build/stage"]}
    assert scanned.manifest() == _old_manifest(tree) == build_manifest(tree)
    assert scanned.closure_paths() == list(elfmod.iter_elf_paths(str(tree)))
    elfs = dict(scanned.elf_files())
    assert list(elfs) == ["lib/pkg/libthing.so"]
    fresh = elfmod.read_elf(tree / "lib" / "pkg" / "libthing.so")
    assert isinstance(elfs["lib/pkg/libthing.so"], elfmod.ElfFile) and fresh is not None
    assert elfs["lib/pkg/libthing.so"].needed == fresh.needed
    (tree / layout.MANIFEST).parent.mkdir(parents=True, exist_ok=True)
    (tree / layout.MANIFEST).write_text("{}")
    listed = treescan.scan_tree(tree).members(last=layout.MANIFEST)
    assert listed == _members(tree)


def test_reading_a_huge_file_takes_fixed_memory(tmp_path: Path) -> None:
    huge = tmp_path / "libhuge.so"
    with huge.open("wb") as fh:
        fh.truncate(400 << 20)  # sparse: 400 MiB read, no disk used
    code = ("import resource, sys\nfrom gapship.stage.treescan import read_file\n"
            "before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
            f"found, digest, elf = read_file({str(huge)!r}, [b'/srv/build'])\n"
            "after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
            "print((after - before) // 1024, digest)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.split()
    grown_mb, digest = int(out[0]), out[1]
    assert grown_mb < 16, f"reading 400 MiB grew the process by {grown_mb} MB"
    assert digest == hashlib.sha256(b"\0" * (400 << 20)).hexdigest()


def test_hard_linked_files_install_as_separate_files(tmp_path: Path) -> None:
    tree = make_tree(tmp_path / "tree", big=50_000)
    outside = tmp_path / "cache-copy"
    os.link(tree / "data.bin", outside)  # as a staged file linked to uv's cache
    os.link(tree / "data.bin", tree / "bin" / "data-again.bin")
    write_json(tree / layout.MANIFEST, build_manifest(tree))
    scanned = treescan.scan_tree(tree)
    members = scanned.members(last=layout.MANIFEST)
    size = sum(f.stat().st_size for f in tree.rglob("*") if f.is_file())
    bundle = write_bundle(tree, tmp_path / "tiny.run", name="tiny", version="1.0",
                          python="3.11.7", installed_bytes=size,
                          codec=Codec(name="gzip", level=1, reason="test"), members=members)
    assert bundle.file_count == len(members)
    prefix = tmp_path / "envs" / "tiny"
    proc = install(bundle.path, prefix)
    assert proc.returncode == 0, proc.stderr
    one, two = prefix / "data.bin", prefix / "bin" / "data-again.bin"
    assert one.read_bytes() == two.read_bytes() == outside.read_bytes()
    assert one.stat().st_ino != two.stat().st_ino


def test_staging_copies_where_hard_links_cannot_reach(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    shm = Path("/dev/shm")
    require(shm.is_dir() and os.access(shm, os.W_OK)
            and shm.stat().st_dev != tmp_path.stat().st_dev,
            "/dev/shm, another filesystem than the tests' temporary directory")
    monkeypatch.setenv("GAPSHIP_CACHE_DIR", str(tmp_path / "gapship"))
    monkeypatch.delenv("UV_CACHE_DIR", raising=False)
    lock = cast(Lock, SimpleNamespace(python_version="3.11",
                                      platform_tag="manylinux_2_28_x86_64"))
    tree = Path(tempfile.mkdtemp(dir=shm))
    try:
        site = tree / "lib" / "python3.11" / "site-packages"
        site.mkdir(parents=True)
        (tree / "bin").mkdir()
        _install_wheels(lock, [_wheel(tmp_path)], site, tree)
        installed = site / "hello" / "__init__.py"
        assert installed.read_text().startswith("def main")
        assert installed.stat().st_nlink == 1
        assert (tree / "bin" / "hello").is_file()
    finally:
        shutil.rmtree(tree)


def test_the_tar_stream_is_the_one_tarfile_writes(tmp_path: Path) -> None:
    """The bundle's lean tar writer gives tarfile's own bytes, for every kind of member: long
    and non-ASCII names (pax headers), sizes on and off a block, links, hard links."""
    import io
    import tarfile

    from gapship.bundle import _tarinfo, _write_tar
    tree = tmp_path / "tree"
    deep = tree / ("d" * 60) / ("e" * 60)
    deep.mkdir(parents=True)
    (deep / "long-name.py").write_text("x = 1\n")
    (tree / "naïve.txt").write_text("non-ascii\n")
    (tree / "empty").write_bytes(b"")
    (tree / "block").write_bytes(b"b" * 512)
    (tree / "big").write_bytes(os.urandom(3_000_000))
    (tree / "run.sh").write_text("#!/bin/sh\n")
    (tree / "run.sh").chmod(0o755)
    (tree / "link").symlink_to("block")
    os.link(tree / "block", tree / "hard")
    members = sorted(tree.rglob("*"))
    ours = io.BytesIO()
    _write_tar(tree, members, ours, "test", 1)  # type: ignore[arg-type]
    theirs = io.BytesIO()
    with tarfile.TarFile(fileobj=theirs, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for path in members:
            info = _tarinfo(path, path.relative_to(tree).as_posix())
            if info.isreg():
                with path.open("rb") as src:
                    tar.addfile(info, src)
            else:
                tar.addfile(info)
    assert ours.getvalue() == theirs.getvalue()
    with tarfile.open(fileobj=io.BytesIO(ours.getvalue())) as back:
        names = back.getnames()
        assert f"{'d' * 60}/{'e' * 60}/long-name.py" in names and "naïve.txt" in names
        hard = back.getmember("hard")
        assert hard.isreg() and hard.size == 512  # a hard link goes as a file


def test_two_packs_at_once_share_the_bytecode_cache(tmp_path: Path) -> None:
    """Two packs compiling the same sources into one cold cache at the same moment: each
    tree gets compileall's bytes, and the cache is left whole (no half-written entry)."""
    from concurrent.futures import ThreadPoolExecutor
    cache = tmp_path / "cache"
    libs = [_sources(tmp_path / name) for name in ("one", "two")]
    fresh = tmp_path / "fresh" / "lib"
    shutil.copytree(libs[0], fresh, symlinks=True)
    _compileall(fresh)
    with ThreadPoolExecutor(max_workers=2) as pool:
        done = list(pool.map(lambda lib: bytecode.precompile(COMPILER, lib, cache), libs))
    assert all(d.compiled + d.cached == 5 for d in done)
    for lib in libs:
        assert _bytecode(lib) == _bytecode(fresh)
    assert not list(cache.rglob("*.tmp"))
    # and a third pack takes every module from what they left
    third = bytecode.precompile(COMPILER, _sources(tmp_path / "three"), cache)
    assert (third.compiled, third.cached) == (0, 5)
