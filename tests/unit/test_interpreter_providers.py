"""Interpreter providers: which source `auto` picks for each recorded target and why, the
target's own Python, twin releases, archives, and the pieces that resolve inside a rootfs."""

from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path, PurePosixPath
from typing import Any

import pytest

from gapship import providers
from gapship.activate import install_target_files
from gapship.cli.python_options import python_spec
from gapship.errors import CompatError, SpecError, StageError
from gapship.files import sha256_file
from gapship.node.elf import VersionNeeds, read_elf
from gapship.node.loader import Loader, real_path
from gapship.pack import interpreter_for_lock, provide
from gapship.plan import Lock
from gapship.probe import TargetInfo, parse_target
from gapship.providers import build, standalone, twin
from gapship.providers.python import PythonInstall, TargetPython, find_host_python
from gapship.spec import PythonSpec, parse_spec
from gapship.stage.relocate import neutral_prefix, replace_c_strings
from tests.conftest import require

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "targets"


def recorded(name: str) -> TargetInfo:
    return parse_target(json.loads((FIXTURES / name / "expected.json").read_text()), name)


def target(os_id: str, version: str, glibc_version: str | None,
           pythons: list[dict[str, str]] | None = None, libc: str = "glibc") -> TargetInfo:
    return parse_target({
        "schema_version": 1,
        "os": {"id": os_id, "version_id": version, "arch": "x86_64"},
        "libc": {"family": libc, "version": glibc_version, "glibcxx": "3.4.28"},
        "cpu": {"flags": []}, "storage": {}, "pythons": pythons or []})


# ---------------------------------------------------------------- auto, per recorded target

HOST = PythonInstall(version="3.11.7", executable=Path("/opt/py/bin/python3.11"),
                     prefix=Path("/opt/py"), stdlib=Path("/opt/py/lib/python3.11"),
                     platstdlib=Path("/opt/py/lib/python3.11"), shared=True)


@pytest.fixture()
def builder(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """A builder whose Python needs GLIBC_2.36, that is offline, with no twin rootfs cached."""
    state: dict[str, Any] = {"twins": []}
    monkeypatch.setattr(providers, "find_host_python", lambda minor: HOST)
    monkeypatch.setattr(providers, "interpreter_needs", lambda python: VersionNeeds(
        glibc={(2, 36): ["bin/python3.11"]}, glibcxx={}))
    monkeypatch.setattr(providers, "uv_downloadable", lambda minor: True)

    def offline(minor: str) -> PythonInstall:
        raise StageError(f"uv python install {minor} failed: dns error")

    monkeypatch.setattr(providers, "from_uv", offline)

    def twin_rootfs(release: twin.TwinRelease) -> Path:
        state["twins"].append(release.codename)
        return Path("/rootfs") / release.codename

    monkeypatch.setattr(twin, "twin_rootfs", twin_rootfs)
    monkeypatch.setattr(twin, "twin_python", lambda root, minor: PythonInstall(
        version="3.9.2", executable=root / "usr/bin/python3.9", prefix=root / "usr",
        stdlib=root / "usr/lib/python3.9", platstdlib=root / "usr/lib/python3.9",
        shared=True, sysroot=root))
    monkeypatch.setattr(twin, "build_blocker", lambda release: None)

    def no_sources(version: str | None, glibc: tuple[int, ...] | None, **given: Any
                   ) -> PythonInstall:
        state.setdefault("builds", []).append((version, glibc))
        raise build.BuildError(f"the source of python {version} is not here")

    monkeypatch.setattr(build, "build_python", no_sources)
    return state


@pytest.mark.parametrize(("name", "source", "python"), [
    ("qemu-v1", "host", "3.11.7"),                 # glibc 2.36: the builder's Python fits
    ("cpu-noavx2", "target", "/usr/bin/python3.9"),
    ("login-cpu", "target", "/usr/bin/python3.9"),
    ("rocky8-a100", "target", "/usr/bin/python3.11"),
    ("ubuntu2204-h100", "target", "/usr/bin/python3.10"),
    ("centos7-v100", "target", "/opt/anaconda3/bin/python3"),
])
def test_auto_picks_the_first_source_that_fits_and_says_why(
        builder: dict[str, Any], name: str, source: str, python: str) -> None:
    choice = providers.choose_python(PythonSpec(), recorded(name))
    assert choice.source == source
    if source == "host":
        assert choice.interpreter is HOST and "glibc needs are within" in choice.reason
    else:
        assert isinstance(choice.interpreter, TargetPython)
        assert str(choice.interpreter.executable) == python
        # the reason names what was passed over, and why
        assert "not host: Python 3.11.7 needs GLIBC_2.36; the target has" in choice.reason
        assert "not standalone: uv python install 3.11 failed" in choice.reason


def test_auto_takes_a_twin_when_the_target_has_no_usable_python(
        builder: dict[str, Any]) -> None:
    bullseye = target("debian", "11", "2.31")
    choice = providers.choose_python(PythonSpec(), bullseye)
    assert choice.source == "twin" and builder["twins"] == ["bullseye"]
    assert "not target: the probe found no Python 3.6 or newer" in choice.reason
    # a version the release does not ship: no twin, one message for all four
    with pytest.raises(StageError) as err:
        providers.choose_python(PythonSpec(version="3.6"), bullseye)
    text = err.value.message
    assert text.startswith("no interpreter source can give Python 3.6 for")
    for part in ("host: Python 3.11.7 needs GLIBC_2.36", "standalone: uv python install 3.6",
                 "target: the probe found no Python 3.6", "twin: Debian 11 (bullseye) ships "
                 "Python 3.9, not 3.6"):
        assert part in text
    assert "--python-archive" in err.value.hint


def test_auto_explains_why_nothing_serves_old_or_musl_targets(builder: dict[str, Any]) -> None:
    with pytest.raises(StageError) as err:
        providers.choose_python(PythonSpec(), recorded("ubuntu1604-k80"))
    assert "target: the probe found no Python 3.6 or newer on the target (it has 3.5.2" in \
        err.value.message
    assert "twin: Ubuntu 16.04 (xenial) ships Python 3.5; gapship environments need 3.6" in \
        err.value.message
    with pytest.raises(StageError) as err:
        providers.choose_python(PythonSpec(), recorded("alpine-musl"))
    assert "host: the target's C library is musl" in err.value.message
    assert "twin: the target's C library is musl" in err.value.message
    assert builder["twins"] == []


def test_an_explicit_source_that_cannot_serve_says_so(builder: dict[str, Any]) -> None:
    with pytest.raises(StageError) as err:
        providers.choose_python(PythonSpec(source="target", version="3.12"),
                                recorded("cpu-noavx2"))
    assert err.value.message == ("--python target: the probe found no Python 3.12 on the target "
                                 "(it has 3.9.2 (/usr/bin/python3), 3.9.2 (/usr/bin/python3.9)).")
    # an explicit host is taken as asked; the staged tree's glibc check refuses it later
    assert providers.choose_python(PythonSpec(source="host"), recorded("cpu-noavx2")).interpreter \
        is HOST


# ---------------------------------------------------------------- the target's own Python

def test_target_python_prefers_the_versioned_name_of_the_wanted_version() -> None:
    tgt = recorded("rocky8-a100")
    assert providers.target_python(tgt, "3.6") == TargetPython(
        "3.6.8", PurePosixPath("/usr/bin/python3.6"))
    assert providers.target_python(tgt, None).executable == PurePosixPath("/usr/bin/python3.11")


# ---------------------------------------------------------------- twins

def test_twin_releases_map_probe_os_to_codename_and_mirror(monkeypatch: pytest.MonkeyPatch
                                                           ) -> None:
    found = {(r.os, r.version): r for r in twin.releases()}
    assert twin.release_for(target("debian", "11", "2.31")) == found[("debian", "11")]
    assert found[("debian", "12")].codename == "bookworm"
    assert found[("debian", "13")].codename == "trixie"
    focal = twin.release_for(target("ubuntu", "20.04", "2.31"))
    assert focal is not None and (focal.codename, focal.python) == ("focal", "3.8")
    # the glibc of each release is the compat data's OS table, not a copy of it
    assert (focal.glibc, found[("ubuntu", "19.10")].glibc) == ("2.31", "2.30")
    monkeypatch.setenv("GAPSHIP_UBUNTU_MIRROR", "http://mirror.example/ubuntu")
    assert focal.mirror == "http://mirror.example/ubuntu"
    eoan = found[("ubuntu", "19.10")]
    assert eoan.mirror == "http://old-releases.ubuntu.com/ubuntu"
    assert found[("debian", "11")].mirror is None  # the replica's GAPSHIP_DEBIAN_MIRROR
    assert twin.release_for(target("centos", "7", "2.17")) is None
    assert "needs a known Debian or Ubuntu release; the target runs centos 7" in str(
        twin.unavailable(target("centos", "7", "2.17"), None, None))


def test_twin_rootfs_failure_names_the_mirror_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    from gapship.errors import ReplicaError

    def fail(*args: object, **kwargs: object) -> Path:
        raise ReplicaError("debootstrap of focal from http://archive.ubuntu.com/ubuntu failed: "
                           "E: Failed getting release file")

    monkeypatch.setattr(twin, "ensure_rootfs", fail)
    focal = twin.release_for(target("ubuntu", "20.04", "2.31"))
    assert focal is not None
    with pytest.raises(StageError) as err:
        twin.twin_rootfs(focal)
    assert "cannot build the Ubuntu 20.04 (focal) twin" in err.value.message
    assert "GAPSHIP_UBUNTU_MIRROR" in err.value.hint and "--twin-root" in err.value.hint


# ---------------------------------------------------------------- inside a rootfs

def test_paths_and_libraries_resolve_inside_a_sysroot(tmp_path: Path) -> None:
    """A rootfs without ld.so.cache: its ld.so.conf dirs, then its default dirs."""
    some_lib = Path(sys.executable).resolve()
    lib = Path(real_path("/lib/x86_64-linux-gnu/libz.so.1"))
    root = tmp_path / "rootfs"
    libdir = root / "usr" / "lib" / "x86_64-linux-gnu"
    libdir.mkdir(parents=True)
    (root / "lib").symlink_to("usr/lib")  # merged /usr, as Debian has it
    (root / "etc" / "ld.so.conf.d").mkdir(parents=True)
    (root / "etc" / "ld.so.conf").write_text("include /etc/ld.so.conf.d/*.conf\n")
    (root / "etc" / "ld.so.conf.d" / "extra.conf").write_text("/opt/extra/lib\n")
    (root / "opt" / "extra" / "lib").mkdir(parents=True)
    real_lib = root / "opt" / "extra" / "lib" / "libfoo.so.1.2"
    shutil.copy(lib, real_lib)
    (root / "opt" / "extra" / "lib" / "libfoo.so.1").symlink_to("/opt/extra/lib/libfoo.so.1.2")
    shutil.copy(lib, libdir / "libbar.so.3")
    (libdir / "libtext.so.4").write_bytes(b"not ELF: ld.so skips it")
    info = read_elf(some_lib)
    assert info is not None
    loader = Loader("", sysroot=root)
    found, how = loader.find("libfoo.so.1", info)
    assert (found, how) == (str(root / "opt" / "extra" / "lib" / "libfoo.so.1"),
                            "default directory")
    # the absolute link is read inside the rootfs, not on the builder
    assert loader.real_path(found) == str(real_lib)
    bar, _ = loader.find("libbar.so.3", info)
    assert bar is not None and bar.startswith(str(root) + "/")
    assert real_path(bar, root) == str(libdir / "libbar.so.3")
    assert loader.find("libtext.so.4", info) == (None, None)
    assert loader.find("libnone.so.1", info) == (None, None)
    # a file outside the root is read as it is on the builder
    assert real_path(some_lib, root) == str(some_lib)


def test_a_sysroot_ld_so_cache_is_read_inside_it(tmp_path: Path) -> None:
    """The rootfs's /etc/ld.so.cache names paths inside it; they are re-rooted."""
    require(Path("/etc/ld.so.cache").is_file(), "this builder has no ld.so.cache")
    root = tmp_path / "rootfs"
    (root / "etc").mkdir(parents=True)
    shutil.copy("/etc/ld.so.cache", root / "etc" / "ld.so.cache")
    info = read_elf(Path(sys.executable).resolve())
    assert info is not None
    loader = Loader("", sysroot=root)
    assert loader.find("libc.so.6", info) == (None, None)  # the cache's file is not there
    libc = Loader("").find("libc.so.6", info)[0]
    assert libc is not None
    inside = root / libc.lstrip("/")
    inside.parent.mkdir(parents=True)
    shutil.copy(libc, inside)
    assert Loader("", sysroot=root).find("libc.so.6", info) == (str(inside), "ld.so.cache")


def test_neutral_prefix_keeps_merged_string_tails(tmp_path: Path) -> None:
    old = b"/root/.pyenv/versions/3.9.18"
    blob = tmp_path / "libpython.so"
    # PY_VERSION "3.9.18" shares its bytes with the end of the prefix string
    blob.write_bytes(b"\0" + old + b"\0" + old + b"/lib/python3.9\0")
    version_at = 1 + len(old) - len(b"3.9.18")
    assert replace_c_strings(blob, old, neutral_prefix(old)) == 2
    data = blob.read_bytes()
    assert data[version_at:].split(b"\0")[0] == b"3.9.18"
    assert b"/root" not in data and b"/gapship-moved" in data
    assert b"/lib/python3.9\0" in data and len(neutral_prefix(old)) == len(old)


# ---------------------------------------------------------------- archives and prefixes

def test_archives_that_escape_their_directory_are_refused(tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GAPSHIP_CACHE_DIR", str(tmp_path / "cache"))
    bad = tmp_path / "bad.tar.gz"
    with tarfile.open(bad, "w:gz") as tar:
        data = b"x"
        member = tarfile.TarInfo("../../escape")
        member.size = len(data)
        tar.addfile(member, io.BytesIO(data))
    with pytest.raises(StageError, match="would land outside"):
        standalone.from_archive(bad)
    assert not (tmp_path / "escape").exists()
    with pytest.raises(StageError, match="neither a Python prefix directory nor a tar archive"):
        standalone.from_path(tmp_path / "bad.zip")


def test_a_prefix_is_asked_for_its_python(tmp_path: Path) -> None:
    host = find_host_python(None)
    found = standalone.from_prefix(host.prefix)
    assert found.prefix == host.prefix and found.version == host.version
    with pytest.raises(StageError, match=r"holds no CPython 3\.99"):
        standalone.from_prefix(host.prefix, "3.99")


def test_a_path_source_is_kept_by_name_for_the_lock() -> None:
    host = find_host_python(None)
    choice = providers.choose_python(PythonSpec(source=str(host.prefix)),
                                     target("debian", "13", "2.41"))
    assert choice.source == str(host.prefix) and choice.reason == f"the Python at {host.prefix}"
    assert isinstance(choice.interpreter, PythonInstall)
    assert choice.interpreter.version == host.version


def test_interpreter_needs_cover_the_closure_of_the_host_python() -> None:
    needs = providers.interpreter_needs(find_host_python(None))
    files = {f for paths in needs.glibc.values() for f in paths}
    newest = needs.newest_glibc()
    assert newest is not None and newest >= (2, 17)
    assert any(f.startswith("python3") for f in files)
    assert any(f.startswith("libpython3") or f.startswith("_ssl") for f in files)


# ---------------------------------------------------------------- command line

def args(**kw: str | None) -> argparse.Namespace:
    base: dict[str, str | None] = {"python": None, "python_archive": None, "twin_root": None,
                                   "python_source": None, "deps_source": None}
    return argparse.Namespace(**{**base, **kw})


def test_python_options_override_the_spec() -> None:
    spec = PythonSpec(version="3.9")
    assert python_spec(args(), spec) is None
    assert python_spec(args(python="standalone:3.6"), spec) == PythonSpec("3.6", "standalone")
    assert python_spec(args(python_archive="/a.tar.gz"), spec) == PythonSpec(
        "3.9", "standalone", archive="/a.tar.gz")
    assert python_spec(args(twin_root="/srv/rootfs"), spec) == PythonSpec(
        "3.9", "twin", twin_root="/srv/rootfs")
    assert python_spec(args(python="./py"), spec) == PythonSpec("3.9", "./py")
    with pytest.raises(SpecError, match="not a source"):
        python_spec(args(python="conda"), spec)
    # build: a version or an exact release; a source tarball or the libraries' implies it
    assert python_spec(args(python="build:3.6"), spec) == PythonSpec("3.6", "build")
    assert python_spec(args(python="build:3.11.9"), spec) == PythonSpec(
        "3.11", "build", release="3.11.9")
    assert python_spec(args(python_source="/Python-3.9.2.tgz", deps_source="/deps"), spec) == \
        PythonSpec("3.9", "build", tarball="/Python-3.9.2.tgz", deps_source="/deps")
    assert parse_spec('name = "seed"\npython = { version = "3.6", source = "build" }\n'
                      ).python_spec == \
        PythonSpec("3.6", "build")


# ---------------------------------------------------------------- tied to the target's Python

def test_install_ties_the_environment_to_the_target_python(tmp_path: Path) -> None:
    """write-activation.sh links bin/python3 to the recorded interpreter; pyvenv.cfg does the
    rest, with no venv module: the interpreter takes the tree as its prefix."""
    tree = tmp_path / "env"
    (tree / "gapship").mkdir(parents=True)
    (tree / "bin").mkdir()
    install_target_files(tree)
    (tree / "gapship" / "name").write_text("demo\n")
    base = Path(sys.base_prefix) / "bin" / f"python{sys.version_info[0]}.{sys.version_info[1]}"
    (tree / "gapship" / "base-python").write_text(f"{base}\n")
    (tree / "pyvenv.cfg").write_text(f"home = {base.parent}\ninclude-system-site-packages = "
                                     "false\n")
    site = tree / "lib" / f"python{sys.version_info[0]}.{sys.version_info[1]}" / "site-packages"
    site.mkdir(parents=True)
    (site / "marker_mod.py").write_text("")
    script = tree / "gapship" / "libexec" / "write-activation.sh"
    proc = subprocess.run(["dash", str(script), str(tree), str(tree)], capture_output=True,
                          text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    assert os.readlink(tree / "bin" / "python3") == str(base)
    out = subprocess.run([str(tree / "bin" / "python3"), "-I", "-c",
                          "import sys, marker_mod; print(sys.prefix)"],
                         capture_output=True, text=True, check=False, env={})
    assert out.stdout.strip() == str(tree), out.stderr
    (tree / "gapship" / "base-python").write_text("/nonexistent/python3.9\n")
    proc = subprocess.run(["dash", str(script), str(tree), str(tree)], capture_output=True,
                          text=True, check=False)
    assert proc.returncode == 1
    assert "runs on /nonexistent/python3.9, which is not on this machine" in proc.stderr


# ---------------------------------------------------------------- what a lock records

def lock_of(choice: providers.PythonChoice) -> Lock:
    return Lock(name="e", env_version="1.0", python_version=choice.version,
                python_source=choice.source, platform_tag="x86_64-manylinux_2_31",
                requirements=(), files=(), interpreter=choice.locator)


def test_a_lock_records_where_its_interpreter_was_found(builder: dict[str, Any],
                                                        tmp_path: Path) -> None:
    (tmp_path / "rootfs" / "usr").mkdir(parents=True)
    unknown_os = target("mylinux", "1", "2.31")
    choice = providers.choose_python(PythonSpec(twin_root=str(tmp_path / "rootfs"),
                                                source="twin"), unknown_os)
    lock = lock_of(choice)
    again = Lock.from_json(lock.to_json())
    assert again == lock and again.interpreter is not None
    assert again.interpreter.twin_root == str(tmp_path / "rootfs")
    assert again.interpreter.describe() == f"twin (--twin-root {tmp_path / 'rootfs'})"
    built = providers.choose_python(PythonSpec(source="twin"), target("debian", "11", "2.31"))
    assert built.locator == providers.PythonLocator("twin", "3.9.2", twin_release="bullseye")
    # locks written before the locator stay readable
    old = json.loads(lock.to_json())
    del old["interpreter"]
    assert Lock.from_json(json.dumps(old)).interpreter is None


def test_pack_of_a_lock_takes_the_interpreter_from_where_the_lock_says(
        builder: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    asked: list[PythonSpec] = []
    real_choose = providers.choose_python

    def choose(want: PythonSpec, machine: TargetInfo) -> providers.PythonChoice:
        asked.append(want)
        return real_choose(want, machine)

    (tmp_path / "rootfs" / "usr").mkdir(parents=True)
    unknown_os = target("mylinux", "1", "2.31")
    lock = lock_of(real_choose(PythonSpec(twin_root=str(tmp_path / "rootfs"), source="twin"),
                               unknown_os))
    monkeypatch.setattr(providers, "choose_python", choose)
    # before: `--python twin` for an OS without a known release, the rootfs forgotten
    assert isinstance(interpreter_for_lock(lock, PythonSpec(), unknown_os), PythonInstall)
    assert asked[-1].twin_root == str(tmp_path / "rootfs") and asked[-1].source == "twin"
    assert asked[-1].version == "3.9"
    # the command line names another place for it
    (tmp_path / "other" / "usr").mkdir(parents=True)
    interpreter_for_lock(lock, PythonSpec(twin_root=str(tmp_path / "other")), unknown_os)
    assert asked[-1].twin_root == str(tmp_path / "other")
    # a twin that was debootstrapped is the target's release: another target is refused
    bullseye = target("debian", "11", "2.31")
    built = lock_of(real_choose(PythonSpec(source="twin"), bullseye))
    interpreter_for_lock(built, PythonSpec(), bullseye)
    with pytest.raises(StageError, match="the lock's Python comes from a bullseye twin"):
        interpreter_for_lock(built, PythonSpec(), target("debian", "12", "2.36"))


def test_a_lock_planned_with_an_archive_refuses_another_archive(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    archive, other = tmp_path / "a.tar.gz", tmp_path / "b.tar.gz"
    archive.write_bytes(b"planned")
    other.write_bytes(b"another")
    locator = providers.PythonLocator("standalone", "3.6.15", archive=str(archive),
                                      archive_sha256=sha256_file(archive))
    lock = Lock(name="e", env_version="1.0", python_version="3.6.15",
                python_source="standalone", platform_tag="x86_64-manylinux_2_31",
                requirements=(), files=(), interpreter=locator)
    asked: list[PythonSpec] = []
    monkeypatch.setattr(providers, "choose_python", lambda want, machine: asked.append(want)
                        or providers.PythonChoice("standalone", HOST, "test"))
    bullseye = target("debian", "11", "2.31")
    interpreter_for_lock(lock, PythonSpec(), bullseye)
    assert asked[-1].archive == str(archive) and asked[-1].version == "3.6"
    with pytest.raises(StageError, match="is not the archive the lock was planned with"):
        interpreter_for_lock(lock, PythonSpec(archive=str(other)), bullseye)


# ---------------------------------------------------------------- the framework's Python first

@pytest.fixture()
def fetched(builder: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The versions `uv python install` is asked for (it fails: the builder is offline)."""
    asked: list[str] = []

    def download(minor: str) -> PythonInstall:
        asked.append(minor)
        raise StageError(f"uv python install {minor} failed: offline")

    monkeypatch.setattr(providers, "from_uv", download)
    return asked


def test_a_python_the_framework_rejects_is_refused_before_any_interpreter_is_fetched(
        builder: dict[str, Any], fetched: list[str]) -> None:
    bullseye = recorded("cpu-noavx2")  # Debian 11: its twin ships Python 3.9
    tf111 = 'name = "x"\npackages = ["tensorflow-gpu==1.11.0"]\n'
    for toml in (tf111 + 'python = "3.9"\n',
                 tf111 + 'python = { version = "3.9", source = "standalone" }\n'):
        with pytest.raises(CompatError) as err:
            provide(parse_spec(toml), bullseye)
        assert err.value.message == ("`tensorflow-gpu==1.11.0` runs on Python 3.6, not 3.9 "
                                     "(asked for in env.toml or --python; compat data: "
                                     "tested-builds).")
        assert 'Set python = "3.6" in env.toml' in err.value.hint
    # no version asked: the twin's release decides it, and no twin is built for it
    with pytest.raises(CompatError) as err:
        provide(parse_spec(tf111 + 'python = { source = "twin" }\n'), bullseye)
    assert "runs on Python 3.6, not 3.9 (the twin of Debian 11 (bullseye) ships it" in \
        err.value.message
    assert builder["twins"] == [] and fetched == []
    # a Python it runs on goes on to the providers
    with pytest.raises(StageError, match=r"no interpreter source can give Python 3\.6"):
        provide(parse_spec(tf111 + 'python = "3.6"\n'), bullseye)
    assert fetched == ["3.6"]


# ---------------------------------------------------------------- ways out that can work

def test_python_3_6_for_debian_11_names_only_ways_that_can_work(
        builder: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    """Debian 11 ships 3.9, the builder's Pythons need a newer glibc, python-build-standalone
    has no 3.6: the way out is an archive built for glibc <= 2.31 or a rootfs of a release
    that ships 3.6 with such a glibc (Ubuntu 18.04/18.10), never the target's own release."""
    monkeypatch.setattr(providers, "uv_downloadable", lambda minor: minor != "3.6")
    bullseye = recorded("cpu-noavx2")
    tf111 = parse_spec('name = "x"\npython = "3.6"\npackages = ["tensorflow-gpu==1.11.0"]\n')
    with pytest.raises(StageError) as err:
        provide(tf111, bullseye)  # the framework runs on 3.6 only
    for part in ("host: Python 3.11.7 needs GLIBC_2.36", "standalone: python-build-standalone "
                 "has no 3.6 build", "twin: Debian 11 (bullseye) ships Python 3.9, not 3.6"):
        assert part in err.value.message
    hint = err.value.hint
    assert hint.startswith("Give --python-archive FILE (an install_only archive of Python 3.6")
    assert "built for glibc <= 2.31)" in hint
    assert ("--twin-root DIR (a rootfs of Ubuntu 18.04 (bionic) or Ubuntu 18.10 (cosmic), which "
            "ship Python 3.6 with glibc 2.27 or 2.28, not newer than the target's 2.31") in hint
    assert "debootstrap --include=python3,python3-distutils bionic DIR" in hint
    # a build from the 3.6 source tarball, for the target's glibc, always can
    assert ("--python build:3.6 --python-source FILE (the CPython 3.6 source tarball, "
            "Python-3.6.Y.tgz from python.org: gapship compiles it for glibc 2.31)") in hint
    for dead_end in ("target's release", "Debian 11", "another version", "python = \"3.9\"",
                     "--python host"):
        assert dead_end not in hint, dead_end
    # every release the hint names does ship 3.6 with a glibc the target has
    named = [r for r in twin.releases() if r.describe() in hint]
    assert named and all(r.python == "3.6" and r.glibc <= "2.31" for r in named)
    # without a framework, the target's own 3.9 works too, and so it is named
    with pytest.raises(StageError) as err:
        providers.choose_python(PythonSpec(version="3.6"), bullseye)
    assert 'or python = "3.9" in env.toml (the target\'s own /usr/bin/python3.9, --python ' \
        "target)" in err.value.hint
    # an explicit source that cannot serve names the same ways
    with pytest.raises(StageError) as err:
        providers.choose_python(PythonSpec(version="3.6", source="twin"), bullseye, ("3.6",))
    assert "Ubuntu 18.04 (bionic)" in err.value.hint and "3.9" not in err.value.hint


def test_auto_with_no_version_passes_over_pythons_the_framework_rejects_before_fetching(
        builder: dict[str, Any], fetched: list[str]) -> None:
    tf111 = parse_spec('name = "x"\npackages = ["tensorflow-gpu==1.11.0"]\n')
    with pytest.raises(StageError) as err:
        provide(tf111, recorded("cpu-noavx2"))
    text = err.value.message
    assert text.startswith("no interpreter source can give Python 3.6 for Debian")
    for part in ("standalone: it gives Python 3.11; the framework runs on 3.6",
                 "target: it gives Python 3.9.2; the framework runs on 3.6",
                 "twin: it gives Python 3.9; the framework runs on 3.6"):
        assert part in text
    assert fetched == [] and builder["twins"] == []
    assert "Ubuntu 18.04 (bionic)" in err.value.hint
    bionic = target("ubuntu", "18.04", "2.27",
                    [{"path": "/usr/bin/python3.6", "version": "3.6.9"}])
    choice = provide(tf111, bionic).python
    assert choice.source == "target" and choice.version == "3.6.9" and fetched == []
