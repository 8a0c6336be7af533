"""The closure against the target at pack time: real ELF files built here, a builder root
filesystem to graft from, and a target that has only what its probe listed."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from gapship.errors import CompatError
from gapship.node.closure import scan
from gapship.node.elf import read_elf
from gapship.node.loader import Loader
from gapship.probe import TargetInfo, parse_target
from gapship.stage.target_closure import check_against_target
from tests.fixtures.targets import fixture_target
from tests.unit.doctor_fakes.build import SITE, cc, fake_prefix, shared

# what every glibc target has, and the fake prefix's own files need
BASE = frozenset({"libc.so.6", "libm.so.6", "libdl.so.2", "libpthread.so.0"})
NEEDS_NEW_GLIBC = "#include <stdlib.h>\nunsigned fresh(void) { return arc4random(); }\n"


def debian11(libraries: frozenset[str] | None = BASE) -> TargetInfo:
    """The recorded Debian 11 machine (glibc 2.31), with the library list given."""
    return dataclasses.replace(parse_target(fixture_target("cpu-noavx2")), libraries=libraries)


def with_extension(tmp: Path, needs: str, source: str = "int wanted(void) { return 1; }\n",
                   dist: str = "pkg", rpath: bool = False, symbol: str = "wanted"
                   ) -> tuple[Path, Path]:
    """A staged tree whose ``dist`` has an extension needing ``needs``, and a builder root
    filesystem that has ``needs`` in its default directory (built from ``source``)."""
    tree = fake_prefix(tmp / "tree")
    sysroot = tmp / "builder"
    lib = shared(sysroot / "usr" / "lib" / "x86_64-linux-gnu" / needs, source)
    tags = "--disable-new-dtags" if rpath else "--enable-new-dtags"
    shared(tree / SITE / "pkg" / "_gl.so",
           f"unsigned {symbol}(void);\nunsigned gl(void) {{ return {symbol}(); }}\n",
           f"-L{lib.parent}", f"-l:{needs}", f"-Wl,{tags}", "-Wl,-rpath,$ORIGIN")
    if dist != "pkg":
        info = tree / SITE / "pkg-1.0.dist-info"
        info.rename(tree / SITE / f"{dist}-1.0.dist-info")
        meta = tree / SITE / f"{dist}-1.0.dist-info" / "METADATA"
        meta.write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 1.0\n\n")
    record = next((tree / SITE).glob("*.dist-info")) / "RECORD"
    record.write_text(record.read_text() + "pkg/_gl.so,,\n")
    return tree, sysroot


def test_a_library_the_target_lacks_is_grafted_and_found_there(tmp_path: Path) -> None:
    tree, sysroot = with_extension(tmp_path, "libwanted.so.1")
    report = check_against_target(tree, debian11(), sysroot)
    assert report.grafted == ("libwanted.so.1",)
    assert (tree / "lib" / "libwanted.so.1").is_file()
    ext = read_elf(tree / SITE / "pkg" / "_gl.so")
    assert ext is not None and ext.runpath == ["$ORIGIN", "$ORIGIN/../../.."]
    # the node's own resolver, on this machine as it will be there, finds it inside the tree
    assert scan(str(tree), Loader("")).missing == {}
    # python3, its libpyfake, the two extensions, libpkgdep, and the grafted library
    assert "closure of 6 ELF files checked against the target's 4 libraries" in report.summary()
    assert "grafted libwanted.so.1" in report.summary()


def test_a_file_with_dt_rpath_keeps_it(tmp_path: Path) -> None:
    tree, sysroot = with_extension(tmp_path, "libwanted.so.1", rpath=True)
    check_against_target(tree, debian11(), sysroot)
    ext = read_elf(tree / SITE / "pkg" / "_gl.so")
    assert ext is not None and ext.runpath == []
    assert ext.rpath == ["$ORIGIN", "$ORIGIN/../../.."]


def test_a_library_needing_a_newer_glibc_is_refused_by_name(tmp_path: Path) -> None:
    tree, sysroot = with_extension(tmp_path, "libfresh.so.1", NEEDS_NEW_GLIBC, symbol="fresh")
    with pytest.raises(CompatError) as err:
        check_against_target(tree, debian11(), sysroot)
    text = str(err.value)
    assert "libfresh.so.1 is needed by lib/python3.11/site-packages/pkg/_gl.so (pkg)" in text
    assert "needs GLIBC_2.36 (the target has 2.31)" in text
    assert not (tree / "lib" / "libfresh.so.1").exists()


def test_a_library_nowhere_is_refused_with_the_way_out(tmp_path: Path) -> None:
    tree, sysroot = with_extension(tmp_path, "libGL.so.1", dist="opencv-python")
    (sysroot / "usr" / "lib" / "x86_64-linux-gnu" / "libGL.so.1").unlink()
    with pytest.raises(CompatError) as err:
        check_against_target(tree, debian11(), sysroot)
    assert "libGL.so.1 is needed by" in str(err.value)
    assert "(opencv-python)" in str(err.value)
    assert f"the interpreter's root filesystem ({sysroot}) has none to graft" in str(err.value)
    assert err.value.hint is not None
    assert "Use opencv-python-headless instead of opencv-python" in err.value.hint


def test_what_the_target_lists_is_not_grafted(tmp_path: Path) -> None:
    tree, sysroot = with_extension(tmp_path, "libwanted.so.1")
    report = check_against_target(tree, debian11(BASE | {"libwanted.so.1"}), sysroot)
    assert report.grafted == () and not (tree / "lib" / "libwanted.so.1").exists()


def test_an_older_probe_assumes_only_what_every_glibc_system_has(tmp_path: Path) -> None:
    tree, sysroot = with_extension(tmp_path, "libwanted.so.1")
    report = check_against_target(tree, debian11(None), sysroot)
    assert report.target_libraries is None and report.grafted == ("libwanted.so.1",)
    assert "probe the target again" in report.summary()


def test_the_drivers_libraries_are_left_to_the_node(tmp_path: Path) -> None:
    tree, sysroot = with_extension(tmp_path, "libcuda.so.1")
    report = check_against_target(tree, debian11(), sysroot)
    assert report.grafted == () and not (tree / "lib" / "libcuda.so.1").exists()


def test_every_library_that_cannot_be_had_is_named_at_once(tmp_path: Path) -> None:
    tree, sysroot = with_extension(tmp_path, "libGL.so.1", dist="opencv-python")
    shared(tree / SITE / "pkg" / "_omp.so", "int omp_x(void);\nint f(void) { return omp_x(); }\n",
           f"-L{sysroot / 'usr/lib/x86_64-linux-gnu'}", "-l:libGL.so.1")
    (sysroot / "usr" / "lib" / "x86_64-linux-gnu" / "libGL.so.1").unlink()
    shared(tmp_path / "elsewhere" / "libgomp.so.1", "int omp_x(void) { return 0; }\n")
    shared(tree / SITE / "pkg" / "_par.so", "int omp_x(void);\nint g(void) { return omp_x(); }\n",
           f"-L{tmp_path / 'elsewhere'}", "-l:libgomp.so.1")
    with pytest.raises(CompatError) as err:
        check_against_target(tree, debian11(), sysroot)
    assert str(err.value).count("libGL.so.1 is needed by") == 1
    assert "also missing: libgomp.so.1 (the environment)" in str(err.value)


def test_a_test_program_that_misses_its_packages_own_library_is_a_warning(tmp_path: Path
                                                                         ) -> None:
    # torch 2.13's torch/bin/test_shim: RUNPATH $ORIGIN, needs libc10.so from torch/lib
    tree = fake_prefix(tmp_path / "tree")
    lib = shared(tree / SITE / "pkg" / "lib" / "libc10.so", "int c10(void) { return 1; }\n")
    program = cc(tree / SITE / "pkg" / "bin" / "test_shim",
                 "int c10(void);\nint main(void) { return c10() - 1; }\n",
                 f"-L{lib.parent}", "-l:libc10.so", "-Wl,--enable-new-dtags",
                 "-Wl,-rpath,$ORIGIN")
    report = check_against_target(tree, debian11(), tmp_path / "builder")
    assert report.grafted == () and not (tree / "lib" / "libc10.so").exists()
    [warning] = report.warnings
    rel = program.relative_to(tree).as_posix()
    assert warning.startswith(f"{rel} needs libc10.so, which the environment has at "
                              f"{lib.relative_to(tree).as_posix()} but not on its library "
                              "search path")
    # the node's scan finds the same gap (its doctor warns: the bundle has the library)
    assert scan(str(tree), Loader("")).missing == {"libc10.so": [str(program)]}
