"""The stdlib ELF reader and ld.so emulation (builder and doctor), against pyelftools,
ldconfig and gcc."""

from __future__ import annotations

import shutil
import struct
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from elftools.elf.dynamic import DynamicSection
from elftools.elf.elffile import ELFFile
from elftools.elf.gnuversions import GNUVerDefSection, GNUVerNeedSection

from gapship.node import elf as elfmod
from gapship.node.loader import Loader, read_ld_cache
from tests.conftest import require, require_python, require_tool
from tests.unit.doctor_fakes.build import MAP_V2, PKGDEP_V2, cc, shared

SRC = Path(__file__).resolve().parents[2] / "src" / "gapship" / "node"


def system_elf_files(limit: int = 150) -> list[Path]:
    paths = sorted(Path("/usr/lib/x86_64-linux-gnu").glob("*.so*"))
    paths += sorted(Path("/usr/bin").iterdir())
    return [p for p in paths if p.is_file() and not p.is_symlink()][:limit]


def wheel_elf_files(per_place: int = 30) -> list[Path]:
    """What the builder reads: the interpreter (executable, libpython, lib-dynload) and
    installed wheels, auditwheel-repaired ones first (RPATHs, SONAMEs, their own copies of
    libgfortran and libquadmath with version definitions)."""
    base = Path(sys.base_prefix)
    stdlib = base / "lib" / f"python{sys.version_info[0]}.{sys.version_info[1]}"
    places = [base / "bin", base / "lib", stdlib / "lib-dynload"]
    for site in dict.fromkeys([stdlib / "site-packages",
                               Path(pytest.__file__).resolve().parents[1]]):
        repaired = sorted(site.glob("*.libs"))
        places += repaired + [site / d.name.removesuffix(".libs") for d in repaired] + [site]
    paths: dict[Path, None] = {}
    for place in places:
        deep = place.name.endswith("-packages") or place.name.endswith(".libs")
        found = elfmod.iter_elf_paths(place) if deep or place.name != "lib" else (
            str(p) for p in place.glob("libpython3*.so*"))
        for count, path in enumerate(found):
            if count >= per_place:
                break
            if place.name != "bin" or "python" in path:
                paths.setdefault(Path(path))
    return list(paths)


def with_pyelftools(path: Path) -> dict[str, Any] | None:
    """The oracle: the dynamic-linking facts of ``path`` as pyelftools reads them."""
    facts: dict[str, Any] = {"needed": [], "soname": None, "rpath": [], "runpath": [],
                             "version_needs": {}, "version_defs": set(), "nodeflib": False}
    with path.open("rb") as fh:
        elf = ELFFile(fh)
        if elf["e_type"] not in ("ET_EXEC", "ET_DYN"):
            return None
        facts["machine"] = elf["e_machine"]
        facts["interp"] = next((seg.get_interp_name() for seg in elf.iter_segments()
                                if seg["p_type"] == "PT_INTERP"), None)
        for section in elf.iter_sections():
            if isinstance(section, DynamicSection):
                for tag in section.iter_tags():
                    kind = tag.entry.d_tag
                    if kind == "DT_NEEDED":
                        facts["needed"].append(tag.needed)
                    elif kind == "DT_SONAME":
                        facts["soname"] = tag.soname
                    elif kind == "DT_RPATH":
                        facts["rpath"] += tag.rpath.split(":")
                    elif kind == "DT_RUNPATH":
                        facts["runpath"] += tag.runpath.split(":")
                    elif kind == "DT_FLAGS_1":
                        facts["nodeflib"] = bool(tag.entry.d_val & elfmod.DF_1_NODEFLIB)
            elif isinstance(section, GNUVerNeedSection):
                for verneed, auxes in section.iter_versions():
                    facts["version_needs"].setdefault(verneed.name, []).extend(
                        (aux.name, bool(aux.entry.vna_flags & elfmod.VER_FLG_WEAK))
                        for aux in auxes)
            elif isinstance(section, GNUVerDefSection):
                for verdef, auxes in section.iter_versions():
                    if not verdef.entry.vd_flags & elfmod.VER_FLG_BASE:
                        facts["version_defs"].add(next(iter(auxes)).name)
    return facts


@pytest.mark.parametrize("files", [system_elf_files, wheel_elf_files])
def test_reads_what_pyelftools_reads(files: Callable[[], list[Path]]) -> None:
    compared = 0
    for path in files():
        mine = elfmod.read_elf(str(path))
        if mine is None or not mine.dynamic:
            continue
        ref = with_pyelftools(path)
        assert ref is not None, path
        compared += 1
        assert mine.needed == ref["needed"], path
        assert mine.soname == ref["soname"], path
        assert mine.rpath == ref["rpath"], path
        assert mine.runpath == ref["runpath"], path
        assert mine.nodeflib == ref["nodeflib"], path
        assert mine.interp == ref["interp"], path
        assert mine.version_needs == ref["version_needs"], path
        assert mine.version_defs == ref["version_defs"], path
        assert elfmod.MACHINES[mine.machine] == ref["machine"].removeprefix("EM_").lower()
    assert compared > 10


def test_version_definitions_of_libc() -> None:
    libc = elfmod.read_elf("/lib/x86_64-linux-gnu/libc.so.6")
    assert libc is not None
    assert libc.soname == "libc.so.6"
    assert {"GLIBC_2.2.5", "GLIBC_2.34"} <= libc.version_defs
    assert "libc.so.6" not in libc.version_defs  # the base version is the file's own name
    assert libc.abi == (64, "<", 62)


def test_rpath_runpath_and_versions_of_built_files(tmp_path: Path) -> None:
    dep = shared(tmp_path / "lib" / "libdep.so.1", PKGDEP_V2, versions=MAP_V2)
    main = "int pkgdep_two(void);\nint main(void) { return pkgdep_two(); }\n"
    old = cc(tmp_path / "old", main, f"-L{dep.parent}", "-l:libdep.so.1",
             "-Wl,--disable-new-dtags", "-Wl,-rpath,$ORIGIN/lib:/opt/x")
    new = cc(tmp_path / "new", main, f"-L{dep.parent}", "-l:libdep.so.1",
             "-Wl,--enable-new-dtags", "-Wl,-rpath,$ORIGIN/lib")
    nodeflib = shared(tmp_path / "libnodeflib.so", "int x(void) { return 0; }\n")
    subprocess.run([require_tool("patchelf"), "--no-default-lib", str(nodeflib)], check=True)
    lib = elfmod.read_elf(str(dep))
    assert lib is not None and lib.soname == "libdep.so.1"
    assert lib.version_defs == {"PKGDEP_1.0", "PKGDEP_2.0"}
    first = elfmod.read_elf(str(old))
    assert first is not None
    assert first.rpath == ["$ORIGIN/lib", "/opt/x"] and first.runpath == []
    assert first.interp == "/lib64/ld-linux-x86-64.so.2"
    assert ("PKGDEP_2.0", False) in first.version_needs["libdep.so.1"]
    second = elfmod.read_elf(str(new))
    assert second is not None
    assert second.runpath == ["$ORIGIN/lib"] and second.rpath == [] and not second.nodeflib
    flagged = elfmod.read_elf(str(nodeflib))
    assert flagged is not None and flagged.nodeflib


def test_not_elf_and_corrupt_files(tmp_path: Path) -> None:
    text = tmp_path / "notes.so"
    text.write_text("not an ELF file\n")
    assert elfmod.read_elf(str(text)) is None
    truncated = tmp_path / "libtrunc.so"
    truncated.write_bytes(Path("/lib/x86_64-linux-gnu/libc.so.6").read_bytes()[:4096])
    with pytest.raises(elfmod.ElfError):
        elfmod.read_elf(str(truncated))


def test_ld_so_cache_matches_ldconfig() -> None:
    ldconfig = shutil.which("ldconfig") or "/sbin/ldconfig"
    require(Path(ldconfig).exists(), "ldconfig is not installed")
    out = subprocess.run([ldconfig, "-p"], capture_output=True, text=True, check=True).stdout
    expected = set()
    for line in out.splitlines()[1:]:
        name, _, rest = line.strip().partition(" (")
        if "x86-64" in rest and "hwcap" not in rest:
            expected.add((name, rest.rsplit("=> ", 1)[1]))
    mine = {(name, path) for name, flags, path in read_ld_cache() if flags & 0xff00 == 0x300}
    assert expected and mine == expected


def _with_machine(src: Path, dest: Path, machine: int) -> Path:
    data = bytearray(src.read_bytes())
    data[18:20] = struct.pack("<H", machine)
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_bytes(bytes(data))
    return dest


def test_search_order_of_the_dynamic_loader(tmp_path: Path) -> None:
    """RPATH (no RUNPATH) > LD_LIBRARY_PATH > RUNPATH > cache > defaults; other ABIs skipped."""
    dep = shared(tmp_path / "build" / "libdep.so.1", PKGDEP_V2, versions=MAP_V2)
    for where in ("rpath", "llp", "runpath"):
        (tmp_path / where).mkdir()
        shutil.copy(dep, tmp_path / where / "libdep.so.1")
    main = "int pkgdep_two(void);\nint main(void) { return pkgdep_two(); }\n"
    with_rpath = elfmod.read_elf(str(cc(tmp_path / "a", main, f"-L{dep.parent}",
                                        "-l:libdep.so.1", "-Wl,--disable-new-dtags",
                                        "-Wl,-rpath,$ORIGIN/rpath")))
    with_runpath = elfmod.read_elf(str(cc(tmp_path / "b", main, f"-L{dep.parent}",
                                          "-l:libdep.so.1", "-Wl,--enable-new-dtags",
                                          "-Wl,-rpath,$ORIGIN/runpath")))
    assert with_rpath is not None and with_runpath is not None
    llp = str(tmp_path / "llp")
    assert Loader(llp).find("libdep.so.1", with_rpath) == (
        str(tmp_path / "rpath" / "libdep.so.1"), "RPATH of a")
    assert Loader(llp).find("libdep.so.1", with_runpath)[1] == "LD_LIBRARY_PATH"
    assert Loader("").find("libdep.so.1", with_runpath)[1] == "RUNPATH"
    assert Loader("").find("libc.so.6", with_runpath)[1] == "ld.so.cache"
    assert Loader("").find("libnothere.so.7", with_runpath) == (None, None)
    # a library of another machine in LD_LIBRARY_PATH is skipped, as ld.so skips it
    _with_machine(dep, tmp_path / "arm" / "libdep.so.1", 183)
    assert Loader(str(tmp_path / "arm")).find("libdep.so.1", with_runpath)[1] == "RUNPATH"
    # an object without RUNPATH also searches the RPATH of the object that loaded it
    plain = elfmod.read_elf(str(cc(tmp_path / "c", main, f"-L{dep.parent}",
                                   "-l:libdep.so.1")))
    assert plain is not None
    assert Loader("").find("libdep.so.1", plain) == (None, None)
    assert Loader("").find("libdep.so.1", plain, (with_rpath,))[1] == "RPATH of a"


def test_runs_on_python_36() -> None:
    python36 = require_python("3.6")
    code = ("import sys; sys.path.insert(0, sys.argv[1]); from node import elf, loader; "
            "libc = elf.read_elf('/lib/x86_64-linux-gnu/libc.so.6'); "
            "print(libc.soname, loader.Loader('').find('libm.so.6', libc)[1]); "
            "inside = loader.Loader('', sysroot='/tmp'); "
            "print(len(inside.closure(['/lib/x86_64-linux-gnu/libm.so.6'])), "
            "elf.version_needs({'/lib/x86_64-linux-gnu/libm.so.6': 'libm'}, "
            "lambda name: True).misfits((2, 0), None)[0].family)")
    proc = subprocess.run([python36, "-I", "-c", code, str(SRC.parent)], capture_output=True,
                          text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["libc.so.6", "ld.so.cache", "0", "GLIBC"]


def test_symbol_versions_compare_by_number() -> None:
    assert elfmod.version_key("GLIBC_2.34") == ("GLIBC", (2, 34))
    assert elfmod.version_key("GLIBCXX_3.4.30") == ("GLIBCXX", (3, 4, 30))
    assert elfmod.version_key("CXXABI_1.3.13") == ("CXXABI", (1, 3, 13))
    assert elfmod.version_key("GLIBC_PRIVATE") == ("GLIBC", ())
    assert elfmod.needs_newer("GLIBC_2.34", (2, 31)) and not elfmod.needs_newer((2, 31), (2, 31))
    assert elfmod.needs_newer("GLIBC_2.10", (2, 9))  # by number, not by text
    assert not elfmod.needs_newer("GLIBC_PRIVATE", (2, 31))
    assert not elfmod.needs_newer("GLIBC_2.99", None)  # unknown: not a misfit
    assert elfmod.newest_version({"GLIBC_2.2.5", "GLIBC_2.10", "GLIBC_2.9", "GLIBC_PRIVATE",
                                  "GLIBCXX_3.4.30"}, "GLIBC") == "GLIBC_2.10"
    needs = elfmod.VersionNeeds({(2, 17): ["a"], (2, 34): ["b", "c"]}, {(3, 4, 30): ["d"]})
    assert needs.misfits((2, 31), (3, 4, 30)) == [elfmod.Misfit("GLIBC", (2, 34), ["b", "c"])]
    assert [m.family for m in needs.misfits((2, 17), (3, 4, 28))] == ["GLIBC", "GLIBCXX"]
    assert needs.misfits(None, None) == []


def test_version_needs_of_system_libraries_only(tmp_path: Path) -> None:
    libm = "/lib/x86_64-linux-gnu/libm.so.6"
    (tmp_path / "notes.so").write_text("not ELF\n")
    files = {libm: "libm", str(tmp_path / "notes.so"): "notes"}
    needs = elfmod.version_needs(files, lambda name: name == "libc.so.6")
    assert needs.glibc and {f for fs in needs.glibc.values() for f in fs} == {"libm"}
    assert elfmod.version_needs(files, lambda name: False).glibc == {}


def test_gcc_is_there_for_these_tests() -> None:
    require_tool("gcc")
