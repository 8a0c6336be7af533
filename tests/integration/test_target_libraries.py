"""Libraries the target lacks are found at pack time, not after the scp: opencv-python (which
needs libGL.so.1 and friends) for the minimal Debian replicas, judged against their probes."""

from __future__ import annotations

from pathlib import Path

import pytest

from gapship.replica import Replica
from tests.conftest import gapship

SPEC = 'name = "cv"\npackages = ["opencv-python"]\n'


@pytest.fixture(scope="module")
def cv_env(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("cv")
    (path / "env.toml").write_text(SPEC)
    return path


def test_what_trixie_lacks_is_grafted_and_cv2_imports_there(cv_env: Path, trixie_target: Path,
                                                            trixie: Replica) -> None:
    bundle = cv_env / "cv.run"
    proc = gapship("pack", str(cv_env / "env.toml"), "--target", str(trixie_target), "-o",
                   str(bundle), "--level", "1")
    assert proc.returncode == 0, proc.stderr[-3000:]
    grafted = next(ln for ln in proc.stderr.splitlines() if "for the target:" in ln)
    assert "libGL.so.1" in grafted and "libgthread-2.0.so.0" in grafted
    script = """set -e
sh cv.run --prefix ~/envs/cv >/dev/null 2>&1
. ~/envs/cv/activate
python -c 'import cv2; print("cv2", cv2.__version__)'
gapship-doctor --no-gpu >doctor.txt || { cat doctor.txt; exit 1; }
"""
    run = trixie.run(script, [(bundle, "/home/user/cv.run")])
    assert run.returncode == 0, run.stdout + run.stderr
    assert "cv2 " in run.stdout


def test_what_the_twin_lacks_is_refused_with_the_way_out(cv_env: Path, bullseye_target: Path,
                                                        bullseye_python_rootfs: Path) -> None:
    bundle = cv_env / "cvb.run"
    proc = gapship("pack", str(cv_env / "env.toml"), "--target", str(bullseye_target), "-o",
                   str(bundle), "--level", "1", "--python", "twin")
    assert proc.returncode != 0 and not bundle.exists()
    assert "Traceback" not in proc.stderr
    error = next(ln for ln in proc.stderr.splitlines() if ln.startswith("gapship: error:"))
    assert "libGL.so.1 is needed by" in error and "(opencv-python)" in error
    assert "Debian GNU/Linux 11 (bullseye)" in error and "has none to graft" in error
    assert "Use opencv-python-headless instead of opencv-python" in proc.stderr
