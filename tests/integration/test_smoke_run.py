"""The smoke run: the staged tree's doctor in a replica of the target, before the bundle.

A demo pack passes it and says so, last; a tree broken on purpose (a dependency deleted after
staging, through the stage seam) is refused with no bundle written and the failing import
named; --no-verify writes that same bundle.
"""

from __future__ import annotations

import dataclasses
import json
import re
import shutil
from pathlib import Path
from typing import Any

import pytest

from gapship import cli
from gapship import pack as pack_module
from gapship.replica import rootfs_dir
from gapship.stage import StagedTree
from tests.conftest import gapship, require, require_tool
from tests.integration.conftest import need_replica


def test_trixie_pack_passes_the_smoke_run_and_says_so(
        trixie_bundle: tuple[Path, dict[str, Any]]) -> None:
    bundle, report = trixie_bundle
    assert bundle.exists()
    smoke = report["smoke_run"]
    # the cached minbase rootfs of the target's own release stands in for it
    assert smoke["ran"] and smoke["replica"] == "trixie" and smoke["skipped"] is None
    assert smoke["imports"] >= 11 and smoke["stdlib"] > 5 and smoke["elf_files"] > 50
    assert report["proven"][-1].startswith("imports (")
    assert "checked in a Debian 13 (trixie) minbase replica, offline as uid 1000" in \
        report["proven"][-1]


def test_a_pack_for_this_machine_is_proven_in_its_own_root(work: Path) -> None:
    """No rootfs of this machine's release is cached: its own / stands in, home hidden."""
    require_tool("bwrap")
    out = work / "local.run"
    proc = gapship("pack", str(work / "env.toml"), "--target", "local", "-o", str(out),
                   "--level", "1")
    assert proc.returncode == 0, proc.stderr
    last = proc.stdout.strip().splitlines()
    assert last[-4] == "proven (before the bundle was written):"
    assert last[-3].startswith("  - the GLIBC_/GLIBCXX_ needs of every ELF file checked")
    assert last[-2].startswith("  - closure of ") and "the target's" in last[-2]
    if (rootfs_dir("bookworm") / "bin" / "sh").exists():
        assert "bookworm" in last[-1]
    else:
        assert "checked in this machine's / (glibc 2." in last[-1]
        assert "the builder's files hidden), offline as uid 1000" in last[-1]


def test_a_twin_pack_is_proven_in_a_replica_of_its_release(work: Path,
                                                            bullseye_target: Path) -> None:
    """Debian 11 with the twin's python3.9: proven in the bullseye minbase rootfs, which is
    stricter than the twin's own (that one carries python3 and the libraries it pulls in)."""
    need_replica("bullseye")
    require((rootfs_dir("bullseye", "python") / "bin" / "sh").exists(),
            "the bullseye twin rootfs needs root and debootstrap once")
    out = work / "twin.run"
    proc = gapship("pack", str(work / "env.toml"), "--target", str(bullseye_target), "-o",
                   str(out), "--python", "twin", "--level", "1", "--json")
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout)
    assert report["python"] == "3.9.2" and report["smoke_run"]["replica"] == "bullseye"
    assert report["proven"][0].endswith("the probe's glibc 2.31 and libstdc++ (GLIBCXX_3.4.28)")
    assert report["proven"][1].startswith("closure of ")
    assert re.search(r"against the target's [\d,]+ libraries \(target\.json\)",
                     report["proven"][1])
    assert "checked in a Debian 11 (bullseye) minbase replica" in report["proven"][2]


@pytest.fixture()
def broken_stage(monkeypatch: pytest.MonkeyPatch) -> None:
    """Stage as usual, then delete idna (a dependency of requests) from the tree."""
    real = pack_module.stage_environment

    def stage_then_break(*args: Any, **kwargs: Any) -> StagedTree:
        tree = real(*args, **kwargs)
        shutil.rmtree(tree.path / tree.site_packages / "idna")
        # the stage's list of the tree's paths (the bundle's members) loses them too
        return dataclasses.replace(tree, members=tuple(p for p in tree.members
                                                       if p.exists() or p.is_symlink()))

    monkeypatch.setattr(pack_module, "stage_environment", stage_then_break)


def test_a_broken_tree_is_refused_naming_the_failing_import(
        work: Path, trixie_target: Path, broken_stage: None,
        capsys: pytest.CaptureFixture[str]) -> None:
    out = work / "broken.run"
    # the smoke run goes on while the bundle is written: an earlier bundle stays as it was
    out.write_text("an earlier bundle\n")
    code = cli.main(["pack", str(work / "env.toml"), "--target", str(trixie_target), "-o",
                     str(out), "--level", "1", "--json"])
    captured = capsys.readouterr()
    err = captured.err
    assert code == 1
    assert out.read_text() == "an earlier bundle\n" and not list(work.glob(".broken.run*"))
    head = next(ln for ln in err.splitlines() if "gapship: error:" in ln)
    assert "the smoke run refused demo:" in head and "no bundle was written" in head
    assert "Debian 13 (trixie) minbase replica" in head
    failing = [ln for ln in err.splitlines() if ln.startswith("  - ")]
    assert any(ln.startswith("  - imports: idna (idna ") for ln in failing), err
    assert any("requests (requests " in ln and "idna" in ln for ln in failing), err
    assert "--no-verify" in err and "Traceback" not in err
    refused = json.loads(captured.out)
    assert refused["bundle"] is None and refused["refused"]["replica"] == "trixie"
    assert {f["name"].split()[0] for f in refused["refused"]["failures"]} == {"idna", "requests"}


def test_no_verify_writes_the_bundle_anyway(work: Path, trixie_target: Path,
                                            broken_stage: None,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    out = work / "unverified.run"
    code = cli.main(["pack", str(work / "env.toml"), "--target", str(trixie_target), "-o",
                     str(out), "--level", "1", "--no-verify", "--json"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert out.exists()
    report = json.loads(captured.out)
    assert report["smoke_run"] == {
        "ran": False, "replica": None, "described": "", "imports": 0, "stdlib": 0,
        "elf_files": None, "not_judged": [], "seconds": 0.0, "skipped": "--no-verify"}
    assert report["proven"][-1] == "smoke run skipped: --no-verify"
    assert "smoke run:" not in captured.err
