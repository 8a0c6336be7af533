"""pack's options that touch the user's files: refused before any work, nothing deleted."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import gapship
from tests.fixtures.targets import fixture_target_path


@pytest.mark.parametrize("kind", ["files", "a file", "a link"])
def test_keep_tree_never_replaces_what_is_not_a_staged_tree(tmp_path: Path, kind: str) -> None:
    spec = tmp_path / "env.toml"
    spec.write_text('name = "x"\npackages = ["six"]\n')
    keep = tmp_path / "my work"
    if kind == "files":
        keep.mkdir()
        (keep / "notes.txt").write_text("mine")
    elif kind == "a file":
        keep.write_text("mine")
    else:
        (tmp_path / "elsewhere").mkdir()
        keep.symlink_to(tmp_path / "elsewhere")
    proc = gapship("pack", str(spec), "--target", str(fixture_target_path("rocky8-a100")),
                   "--keep-tree", str(keep), "-o", str(tmp_path / "x.run"))
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    error = [ln for ln in proc.stderr.splitlines() if ln.startswith("gapship: error:")]
    assert len(error) == 1 and "--keep-tree" in error[0] and "left as" in error[0]
    assert not (tmp_path / "x.run").exists()
    if kind == "files":
        assert (keep / "notes.txt").read_text() == "mine"
    elif kind == "a file":
        assert keep.read_text() == "mine"
    else:
        assert keep.is_symlink()
