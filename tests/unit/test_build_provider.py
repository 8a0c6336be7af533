"""The build provider's refusals and choices, without compiling: pinned sources and their
checksums, offline sources, source tarballs given by hand, the glibc it builds for, and
`auto` trying it last. (The build itself: tests/integration/test_build_python.py.)"""

from __future__ import annotations

import hashlib
import io
import tarfile
from pathlib import Path
from typing import Any

import pytest

from gapship import providers
from gapship.errors import StageError
from gapship.node.elf import VersionNeeds
from gapship.providers import build
from gapship.providers.python import PythonInstall
from gapship.spec import PythonSpec
from tests.unit.test_interpreter_providers import builder, recorded  # noqa: F401


@pytest.fixture(autouse=True)
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("GAPSHIP_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


def tarball(path: Path, top: str, body: bytes = b"int main;\n") -> Path:
    with tarfile.open(path, "w:gz") as tar:
        info = tarfile.TarInfo(f"{top}/configure")
        info.size = len(body)
        tar.addfile(info, io.BytesIO(body))
    return path


def source(path: Path, **kw: Any) -> build.Source:
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    fields: dict[str, Any] = {"name": "zlib", "version": "1.3", "names": (path.name,),
                              "sha256": digest, "urls": ()}
    return build.Source(**{**fields, **kw})


def test_every_pinned_source_names_its_files_and_a_sha256() -> None:
    sources = [*build.python_sources().values(), *build.library_sources()]
    assert {s.name for s in build.library_sources()} >= {
        "zlib", "bzip2", "xz", "libffi", "openssl", "sqlite", "ncurses", "readline"}
    for s in sources:
        assert s.names and len(s.sha256) == 64 and all(u.startswith("https://") for u in s.urls)
    assert build.pinned_python("3.11") == build.python_sources()["3.11.2"]
    assert build.pinned_python("3.4") is None


def test_a_checksum_mismatch_is_fatal_and_nothing_is_cached(tmp_path: Path,
                                                            cache: Path) -> None:
    good = tarball(tmp_path / "zlib-1.3.tar.gz", "zlib-1.3")
    pinned = source(good)
    assert build.obtain(pinned, tmp_path, offline=True).read_bytes() == good.read_bytes()
    other = tarball(tmp_path / "other" / "zlib-1.3.tar.gz", "zlib-1.3", b"changed\n") \
        if (tmp_path / "other").mkdir() is None else None
    assert other is not None
    wrong = source(other, sha256="0" * 64)
    with pytest.raises(build.BuildError) as err:
        build.obtain(wrong, tmp_path / "other", offline=True)
    assert "does not match the pinned " + "0" * 64 + " of zlib 1.3" in err.value.message
    assert not list((cache / "sources").glob("00/*/*"))
    # a download (here a file:// URL) is checked the same way
    with pytest.raises(build.BuildError, match="does not match the pinned"):
        build.obtain(source(other, sha256="1" * 64, urls=(f"file://{other}",)), None,
                     offline=False)
    fetched = build.obtain(source(other, urls=(f"file://{other}",)), None, offline=False)
    assert fetched.is_relative_to(cache / "sources") and fetched.read_bytes() == \
        other.read_bytes()


def test_a_missing_source_offline_says_which_file_and_where_to_get_it(tmp_path: Path) -> None:
    pinned = build.library_sources()[0]
    with pytest.raises(build.BuildError) as err:
        build.obtain(pinned, tmp_path, offline=True)
    assert err.value.message == (f"the source of {pinned.name} {pinned.version} is not here "
                                 f"(looked for {' or '.join(pinned.names)} in {tmp_path}).")
    assert pinned.urls[0] in err.value.hint and "--deps-source" in err.value.hint


def test_a_source_tarball_given_by_hand_is_checked(tmp_path: Path) -> None:
    given = tarball(tmp_path / "Python-3.8.7.tgz", "Python-3.8.7")
    assert build.python_source("3.8", given, offline=True).version == "3.8.7"
    with pytest.raises(build.BuildError, match=r"holds Python 3\.8\.7, not 3\.6"):
        build.python_source("3.6", given, offline=True)
    with pytest.raises(build.BuildError, match="not a CPython source tarball"):
        build.python_source(None, tarball(tmp_path / "x.tgz", "numpy-1.0"), offline=True)
    # the name of a pinned release with other bytes: a mismatch
    fake = tarball(tmp_path / "Python-3.11.2.tgz", "Python-3.11.2")
    with pytest.raises(build.BuildError, match="does not match the pinned"):
        build.python_source("3.11", fake, offline=True)
    with pytest.raises(build.BuildError, match=r"pins no CPython 3\.4 source"):
        build.python_source("3.4", None, offline=True)


def test_it_builds_for_the_targets_glibc_but_never_older_than_2_17() -> None:
    assert build.build_glibc((2, 12)) == (2, 17)
    assert build.build_glibc((2, 31)) == (2, 31)
    assert build.build_glibc(None) == (2, 17)


def test_a_build_for_an_older_glibc_serves_a_newer_target() -> None:
    """One CPython built for 2.17 runs on bullseye (2.31) and trixie (2.41) too: a second
    target takes it instead of building again; a build for a newer glibc never serves."""
    source = build.python_sources()["3.11.2"]
    for glibc in ((2, 17), (2, 36)):
        dest = build._python_dest(source, glibc)
        (dest / "python").mkdir(parents=True)
        (dest / ".gapship-complete").write_text("done\n")
    assert build._cached_older(source, (2, 31)) == build._python_dest(source, (2, 17))
    assert build._cached_older(source, (2, 41)) == build._python_dest(source, (2, 36))
    assert build._cached_older(source, (2, 17)) is None
    # an incomplete build, or one from other recipes or sources (another key), is not taken
    (build._python_dest(source, (2, 17)) / ".gapship-complete").unlink()
    other = build.build_root() / "python-3.11.2-glibc2.28-0123abcd"
    (other / "python").mkdir(parents=True)
    (other / ".gapship-complete").write_text("done\n")
    assert build._cached_older(source, (2, 31)) is None


def test_auto_tries_the_build_last(builder: dict[str, Any],  # noqa: F811
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """Nothing else serves 3.11 on CentOS 7 here: auto passes over the others and tries the
    build last, for glibc 2.17; an explicit build:3.11.2 builds that release."""
    assert providers.AUTO_ORDER[-1] == "build"
    centos7 = recorded("centos7-v100")
    with pytest.raises(StageError) as err:
        providers.choose_python(PythonSpec(version="3.11"), centos7)
    text = err.value.message
    assert text.index("twin:") < text.index("build: the source of python 3.11.2 is not here")
    assert builder["builds"] == [("3.11.2", centos7.glibc_version)]
    built = PythonInstall(version="3.11.2", executable=Path("/b/bin/python3.11"),
                          prefix=Path("/b"), stdlib=Path("/b/lib/python3.11"),
                          platstdlib=Path("/b/lib/python3.11"), shared=False)
    monkeypatch.setattr(build, "build_python", lambda *a, **kw: built)
    monkeypatch.setattr(providers, "interpreter_needs", lambda python: VersionNeeds(
        glibc={(2, 17) if python is built else (2, 36): ["bin/python3.11"]}, glibcxx={}))
    choice = providers.choose_python(PythonSpec(version="3.11"), centos7)
    assert choice.source == "build" and choice.interpreter is built
    assert "compiled from source" in choice.reason and "not twin" in choice.reason


def test_the_seeds_python_3_6_on_centos7_names_the_build_from_a_source_tarball(
        builder: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    """The seed's row: 3.6 + tensorflow-gpu 1.11 on CentOS 7 (glibc 2.17). Nothing here
    serves 3.6 and gapship pins no 3.6 source: the refusal says the build takes the release
    tarball, for glibc 2.17 (the build itself: tests/integration/test_build_python.py)."""
    monkeypatch.setattr(build, "build_python", REAL_BUILD)
    monkeypatch.setattr(providers, "uv_downloadable", lambda minor: minor != "3.6")
    centos7 = recorded("centos7-v100")
    with pytest.raises(StageError) as err:
        providers.choose_python(PythonSpec(version="3.6", source="build"), centos7)
    assert err.value.message.startswith("--python build: gapship pins no CPython 3.6 source")
    assert "--python build:3.6 --python-source FILE (the CPython 3.6 source tarball, " \
        "Python-3.6.Y.tgz from python.org: gapship compiles it for glibc 2.17)" in err.value.hint


REAL_BUILD = build.build_python


def test_a_failing_step_names_itself_its_log_and_the_compilers_error(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    script = tmp_path / "recipe.sh"
    script.write_text('echo "checking for cc... yes"\necho "zlib.c:3:1: error: expected \';\'"\n'
                      'for i in 1 2 3 4 5 6 7 8; do echo "make: leaving $i"; done\nexit 2\n')
    monkeypatch.setattr(build, "_script", lambda name: script)
    with pytest.raises(build.BuildError) as err:
        build._run_step("build_libraries.sh", "zlib", "zlib 1.3", tmp_path, {}, tmp_path / "logs")
    message = err.value.message
    assert "\n" not in message
    assert message.startswith(f"building CPython: step zlib failed (exit 2; log "
                              f"{tmp_path / 'logs' / 'zlib.log'}): zlib.c:3:1: error: expected")
    assert message.endswith("make: leaving 8") and "leaving 2" not in message


def test_the_builders_paths_leave_the_install(tmp_path: Path) -> None:
    root = tmp_path / "cache" / "build"
    prefix = tmp_path / "python"
    (prefix / "lib").mkdir(parents=True)
    sysconfig = prefix / "lib" / "_sysconfigdata.py"
    sysconfig.write_text(f"CC = '{root}/tools/cc -pthread'\nCPPFLAGS = '-I{root}/deps/include'\n")
    module = prefix / "lib" / "_ssl.so"
    modules = f"{root}/deps/lib/ossl-modules".encode()
    module.write_bytes(b"\x7fELF\0" + modules + b"\0tail\0")
    (prefix / "lib" / "clean.py").write_text("x = 1\n")
    assert build.scrub(prefix, root) == 2
    assert sysconfig.read_text() == "CC = 'cc -pthread'\nCPPFLAGS = '-I/build/deps/include'\n"
    data = module.read_bytes()
    assert len(data) == len(modules) + 11 and str(root).encode() not in data
    assert data.startswith(b"\x7fELF\0/gapship-build/") and b"//deps/lib/ossl-modules\0tail" \
        in data
