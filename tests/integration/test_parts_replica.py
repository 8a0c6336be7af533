"""A split bundle (pack --split) where users meet it: in the trixie replica, as uid 1000 with `/`
read-only, dash as /bin/sh and no network. The .run and its parts are bound in read-only, as
from a shared transfer directory; every missing or damaged part is named in one line before
anything is written, then the good set installs from another directory (--parts, with a space
in its name)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from gapship.replica import HOME, Replica
from tests.integration.test_installer_replica import run
from tests.unit.test_installer import debris
from tests.unit.test_installer_parts import damage, split_bundle

pytestmark = pytest.mark.replica

PREFIX = f"{HOME}/envs/tiny"

SCRIPT = """
sh tiny.run --prefix "$P"; echo "rc=$?"
sh tiny.run --prefix "$P" --parts "$HOME/in coming/bad"; echo "rc=$?"
sh cut.run --prefix "$P" --parts "$HOME/in coming/good"; echo "rc=$?"
ls -A "$HOME/envs" 2>/dev/null | wc -l
sh tiny.run --check --parts "$HOME/in coming/good" || exit 3
sh tiny.run --prefix "$P" --parts "$HOME/in coming/good" || exit 4
id -u
. "$P/activate" && python3
"""


def test_a_split_bundle_in_the_replica(trixie: Replica, tmp_path: Path) -> None:
    info = split_bundle(tmp_path / "build", big=3_000_000, split=512 * 1024)
    assert len(info.parts) >= 6
    good = tmp_path / "good"
    bad = tmp_path / "bad"
    good.mkdir()
    bad.mkdir()
    for part in info.parts:
        shutil.copy(part.path, good / part.path.name)
        shutil.copy(part.path, bad / part.path.name)
    (bad / info.parts[1].path.name).unlink()
    damage(bad / info.parts[4].path.name)
    cut = tmp_path / "cut.run"
    cut.write_bytes(info.path.read_bytes()[:-5])
    binds = [(info.path, f"{HOME}/tiny.run"), (cut, f"{HOME}/cut.run"),
             (good, f"{HOME}/in coming/good"), (bad, f"{HOME}/in coming/bad")]
    proc = run(trixie, SCRIPT, binds, env={"P": PREFIX})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.split() == ["rc=1", "rc=1", "rc=1", "0", "1000", "one"], \
        proc.stdout + proc.stderr
    refusals = [ln for ln in proc.stderr.splitlines() if ln.startswith("gapship installer")]
    assert len(refusals) == 3, proc.stderr
    # next to the .run there are no parts: all named, and where they were looked for
    assert f"looked in {HOME}" in refusals[0] and "send them again" in refusals[0]
    assert all(f"{p.path.name} is missing" in refusals[0] for p in info.parts)
    assert ("tiny.part-002 is missing, tiny.part-005 is damaged (sha256 "
            in refusals[1]) and "send them again; nothing was installed" in refusals[1]
    assert "damaged" in refusals[2] and "Send cut.run again" in refusals[2]
    assert "every part is complete, checksums ok" in proc.stderr
    envs = trixie.home / "envs"
    assert len((envs / "tiny" / "data.bin").read_bytes()) == 3_000_000
    assert debris(envs) == []
