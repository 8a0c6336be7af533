"""Relocation and planning pieces, on real files and real uv."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from gapship.errors import ResolveError
from gapship.plan import manylinux_tags, uv_platform
from gapship.stage import relocate


def test_c_strings_are_rewritten_in_place_and_keep_their_tails(tmp_path: Path) -> None:
    blob = tmp_path / "lib.so"
    blob.write_bytes(b"\x7fELF..\0/home/b/py/lib/python3.11\0other\0/home/b/py\0")
    n = relocate.replace_c_strings(blob, b"/home/b/py", b"/x")
    data = blob.read_bytes()
    assert n == 2 and len(data) == 50
    assert b"/x/lib/python3.11\0" in data and b"/home/b" not in data
    assert b"\0other\0" in data


def test_trampoline_script_runs_after_a_move(tmp_path: Path) -> None:
    bin_dir = tmp_path / "a" / "bin"
    bin_dir.mkdir(parents=True)
    (bin_dir / "python3").symlink_to(sys.executable)
    script = bin_dir / "hello"
    script.write_text(f"#!{sys.executable}\nimport sys\nprint('hi', sys.argv[1:])\n")
    assert relocate.rewrite_script(script)
    moved = tmp_path / "b"
    (tmp_path / "a").rename(moved)
    out = subprocess.run(["dash", "-c", f'"{moved}/bin/hello" 1 "2 3"'], capture_output=True,
                         text=True, check=False)
    assert out.stdout.strip() == "hi ['1', '2 3']", out.stderr


def test_scan_names_the_files_holding_a_builder_path(tmp_path: Path) -> None:
    (tmp_path / "ok.txt").write_text("nothing here")
    (tmp_path / "bad.py").write_text("PATH = '/srv/build/stage/x'")
    hits = relocate.files_containing(tmp_path, [b"/srv/build/stage"])
    assert hits == {"bad.py": ["/srv/build/stage"]}


def test_manylinux_tags_for_a_glibc() -> None:
    tags = manylinux_tags((2, 17), "x86_64")
    assert tags[:2] == ["manylinux_2_17_x86_64", "manylinux2014_x86_64"]
    assert "manylinux1_x86_64" in tags and "manylinux_2_28_x86_64" not in tags
    assert tags[-2:] == ["manylinux_2_5_x86_64", "manylinux1_x86_64"]  # the oldest there is
    assert "manylinux2010_x86_64" in manylinux_tags((2, 12), "x86_64")


@pytest.mark.parametrize(("glibc", "expected"), [
    ((2, 41), "x86_64-manylinux_2_40"), ((2, 31), "x86_64-manylinux_2_31"),
    ((2, 27), "x86_64-manylinux_2_17"),
])
def test_uv_platform_is_the_newest_the_target_allows(glibc: tuple[int, int], expected: str
                                                     ) -> None:
    assert uv_platform(glibc, "x86_64") == expected


def test_a_glibc_older_than_2_17_is_refused() -> None:
    with pytest.raises(ResolveError, match=r"older than 2\.17"):
        uv_platform((2, 12), "x86_64")
