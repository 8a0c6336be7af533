"""`--python build:3.X`: CPython compiled with zig for glibc 2.17, end to end.

The sources are the upstream release tarballs inside Debian's source packages (the only
place this builder reaches them): fetched once into ~/.cache/gapship/sources (outside the
clone) and given offline, as --python-source and --deps-source. The build itself is cached
in gapship's cache, so only the first run of this module compiles (about half an hour on
two cores); later runs take the cached build, as a second pack does.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from gapship.compat import is_system_library
from gapship.node.elf import iter_elf_paths, version_needs
from gapship.providers import build
from gapship.providers.python import PythonInstall
from gapship.replica import replica
from tests.conftest import gapship, require_tool
from tests.integration.conftest import need_replica
from tests.integration.test_interpreters import install_and_use

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "targets"
SOURCES = Path.home() / ".cache" / "gapship" / "sources"
VERSION = "3.11.2"
STDLIB = ("ssl, hashlib, sqlite3, ctypes, lzma, bz2, zlib, decimal, readline, uuid, "
          "platform")
CHECK = (f"import {STDLIB}; ssl.create_default_context(); hashlib.sha3_256(b''); "
         "hashlib.blake2b(b''); sqlite3.connect(':memory:').execute('select 1'); "
         "ctypes.CDLL(None); lzma.compress(b'x'); bz2.compress(b'x'); zlib.crc32(b'x'); "
         "print('stdlib ok', ssl.OPENSSL_VERSION)")


def _debian(source: build.Source) -> str:
    return next(u for u in source.urls if "deb.debian.org" in u)


@pytest.fixture(scope="session")
def sources() -> Path:
    """The pinned sources of CPython 3.11 and its libraries, fetched once from Debian."""
    SOURCES.mkdir(parents=True, exist_ok=True)
    python = build.python_sources()[VERSION]
    for source in [python, *build.library_sources()]:
        name = _debian(source).rsplit("/", 1)[1]
        if not (SOURCES / name).is_file():
            part = SOURCES / f".{name}.part"
            urllib.request.urlretrieve(_debian(source), part)
            part.replace(SOURCES / name)
    return SOURCES


@pytest.fixture(scope="session")
def built(sources: Path) -> tuple[PythonInstall, float]:
    """CPython 3.11 for glibc 2.17 (built once; the cache's afterwards), and how long it took."""
    require_tool("tclsh")  # SQLite's full source makes its amalgamation with it
    started = time.monotonic()
    python = build.build_python(VERSION, (2, 17), offline=True, deps_source=sources,
                                python_tarball=sources / "python3.11_3.11.2.orig.tar.gz")
    return python, time.monotonic() - started


def test_every_elf_file_needs_at_most_glibc_2_17(built: tuple[PythonInstall, float]) -> None:
    python, _ = built
    files = {Path(p): p for p in iter_elf_paths(python.prefix)}
    assert len(files) > 50  # the interpreter and every extension module
    needs = version_needs(files, is_system_library)
    assert needs.newest_glibc() is not None and needs.newest_glibc() <= (2, 17), {
        v: f[:3] for v, f in needs.glibc.items() if v > (2, 17)}
    assert needs.glibcxx == {}
    # the install_only layout, with the libraries inside the extension modules
    assert (python.prefix / "bin" / "python3.11").is_file()
    assert (python.prefix / "include" / "python3.11" / "Python.h").is_file()
    dynload = python.prefix / "lib" / "python3.11" / "lib-dynload"
    ldd = subprocess.run(["ldd", *map(str, dynload.glob("_ssl*.so"))], capture_output=True,
                         text=True, check=True).stdout
    assert "libssl" not in ldd and "libcrypto" not in ldd


def test_its_standard_library_is_complete(built: tuple[PythonInstall, float]) -> None:
    python, _ = built
    proc = subprocess.run([str(python.executable), "-I", "-c", CHECK], capture_output=True,
                          text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    assert "stdlib ok OpenSSL 3.0" in proc.stdout


def test_a_second_build_is_the_cached_one(sources: Path, built: tuple[PythonInstall, float]
                                          ) -> None:
    started = time.monotonic()
    again = build.build_python(VERSION, (2, 17), offline=True, deps_source=sources,
                               python_tarball=sources / "python3.11_3.11.2.orig.tar.gz")
    assert again.executable == built[0].executable
    assert time.monotonic() - started < 30


def _pack(here: Path, target: Path, out: str, sources: Path) -> tuple[Path, dict[str, object],
                                                                         str, float]:
    started = time.monotonic()
    proc = gapship("pack", str(here / "env.toml"), "--target", str(target), "-o",
                   str(here / out), "--json", "--level", "1", "--python", "build:3.11",
                   "--python-source", str(sources / "python3.11_3.11.2.orig.tar.gz"),
                   "--deps-source", str(sources), env=dict(os.environ))
    assert proc.returncode == 0, proc.stderr[-3000:]
    return here / out, json.loads(proc.stdout), proc.stderr, time.monotonic() - started


@pytest.fixture(scope="module")
def here(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("build")
    (path / "env.toml").write_text('name = "built"\npackages = ["numpy", "requests"]\n')
    return path


def test_packs_for_centos7(here: Path, sources: Path, built: tuple[PythonInstall, float]
                          ) -> None:
    """The CentOS 7 fixture (glibc 2.17), where no other source serves 3.11: the pack takes
    the cached build, and every ELF file it ships needs at most GLIBC_2.17."""
    tree = here / "centos7-tree"
    # the recorded machine's root holds only libstdc++; a CentOS 7 minimal install has the GCC
    # runtime and zlib too (the @core group), which numpy's wheel leaves to the system
    target = json.loads((FIXTURES / "centos7-v100" / "expected.json").read_text())
    target["libraries"]["sonames"] += ["libgcc_s.so.1", "libz.so.1"]
    (here / "centos7.json").write_text(json.dumps(target))
    proc = gapship("pack", str(here / "env.toml"), "--target", str(here / "centos7.json"),
                   "--json", "-o",
                   str(here / "centos7.run"), "--keep-tree", str(tree),
                   "--python", "build:3.11", "--python-source",
                   str(sources / "python3.11_3.11.2.orig.tar.gz"), "--deps-source", str(sources))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Python 3.11.2 from build" in proc.stderr and "(cached in" in proc.stderr
    files = {Path(p): p for p in iter_elf_paths(tree)}
    assert any("numpy" in str(p) for p in files)
    needs = version_needs(files, is_system_library)
    assert needs.newest_glibc() is not None and needs.newest_glibc() <= (2, 17), {
        v: f[:3] for v, f in needs.glibc.items() if v > (2, 17)}


@pytest.mark.parametrize("release", ["bullseye", "trixie"])
def test_works_in_a_replica_as_uid_1000(here: Path, sources: Path, release: str,
                                        built: tuple[PythonInstall, float],
                                        bullseye_target: Path, trixie_target: Path) -> None:
    target = {"bullseye": bullseye_target, "trixie": trixie_target}[release]
    bundle, report, stderr, seconds = _pack(here, target, f"{release}.run", sources)
    assert "Python 3.11.2 from build" in stderr and report["python"] == "3.11.2"
    need_replica(release)
    with replica(release) as rep:
        out = install_and_use(rep, bundle, check=f'python -c "{CHECK}"',
                              imports="import numpy, requests, platform")
    assert "python 3.11.2" in out and "stdlib ok OpenSSL 3.0" in out
    print(f"pack with a cached build: {seconds:.0f} s; bundle {bundle.stat().st_size} bytes")
