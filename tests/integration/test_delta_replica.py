"""A delta of real packages where users meet it: A (numpy, requests, rich, tomli 2.0.1, six)
installed in the trixie replica as uid 1000, the delta to B (tomli upgraded, six removed, attrs
added) applied, gapship-doctor passes, and the tree is the one a full install of B gives."""

from __future__ import annotations

import json
from pathlib import Path

from gapship.replica import Replica
from tests.conftest import gapship
from tests.unit.test_delta import state

A = ('name = "demo"\nversion = "1.0"\n'
     'packages = ["numpy", "requests", "rich", "tomli==2.0.1", "six"]\n')
B = ('name = "demo"\nversion = "1.1"\n'
     'packages = ["numpy", "requests", "rich", "tomli==2.2.1", "attrs"]\n')


def test_delta_in_the_replica(work: Path, trixie_target: Path, trixie: Replica) -> None:
    (work / "a.toml").write_text(A)
    (work / "b.toml").write_text(B)
    sizes = {}
    for name in ("a", "b"):
        proc = gapship("pack", str(work / f"{name}.toml"), "--target", str(trixie_target), "-o",
                       str(work / f"{name}.run"), "--json", "--level", "1", "--no-verify")
        assert proc.returncode == 0, proc.stderr
        sizes[name] = json.loads(proc.stdout)["bundle_bytes"]
    proc = gapship("pack", str(work / "b.toml"), "--target", str(trixie_target), "--update-of",
                   str(work / "a.run"), "--json", "--no-verify", cwd=work)
    assert proc.returncode == 0, proc.stderr
    delta = work / "demo-1.0-to-1.1.run"
    assert json.loads(proc.stdout)["bundle"] == "demo-1.0-to-1.1.run" and delta.exists()
    assert delta.stat().st_size < sizes["b"] * 0.05, (delta.stat().st_size, sizes)
    binds = [(work / "a.run", "/home/user/a.run"), (work / "b.run", "/home/user/b.run"),
             (delta, "/home/user/d.run")]
    proc = trixie.run("sh a.run --prefix ~/envs/demo 2>/dev/null && sh d.run --prefix ~/envs/demo",
                      binds)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Updated demo from 1.0 to 1.1" in proc.stderr
    # before anything runs in it (and writes bytecode)
    updated = state(trixie.home / "envs" / "demo")
    script = """set -e
~/envs/demo/bin/gapship-doctor --json > doctor.json
. ~/envs/demo/activate
python -c "import tomli, attrs"
! python -c "import six" 2>/dev/null
deactivate
if sh d.run --prefix ~/envs/demo 2> again.err; then exit 7; fi
"""
    proc = trixie.run(script, binds)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    doctor = json.loads((trixie.home / "doctor.json").read_text())
    assert doctor["ok"], doctor
    assert "already holds demo 1.1" in (trixie.home / "again.err").read_text()
    proc = trixie.run("sh b.run --prefix ~/envs/demo --force", binds)
    assert proc.returncode == 0, proc.stderr
    full = state(trixie.home / "envs" / "demo")
    assert updated == full
