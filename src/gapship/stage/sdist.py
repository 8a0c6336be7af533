"""Source archives -> pure-Python wheels, for old Pythons where a package never had a wheel.

The plan allows a source archive only when no wheel exists at all (termcolor 1.1.0 for
Python 3.6, say). It is built here on the builder, once (cached by the archive's sha256),
and refused unless the result is pure Python: compiled code must come from a wheel built
for the target.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

from packaging.utils import parse_wheel_filename

from gapship import ui
from gapship.cache import cache_dir
from gapship.errors import StageError
from gapship.files import sha256_file
from gapship.uv import uv_bin, uv_env

_SDIST_SUFFIXES = (".tar.gz", ".zip", ".tar.bz2", ".tgz")


def is_sdist(path: Path) -> bool:
    return path.name.endswith(_SDIST_SUFFIXES)


def build_pure_wheel(sdist: Path) -> Path:
    """Build (or reuse) the wheel of ``sdist``; StageError unless it is pure Python."""
    out_dir = cache_dir() / "built" / sha256_file(sdist)
    built = sorted(out_dir.glob("*.whl")) if out_dir.is_dir() else []
    if not built:
        ui.step(f"building {sdist.name} (no wheel exists for this Python)")
        out_dir.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=out_dir.parent, prefix=".build-"))
        try:
            proc = subprocess.run([uv_bin(), "build", "--wheel", "--out-dir", str(tmp),
                                   str(sdist)], capture_output=True, text=True, env=uv_env(),
                                  check=False)
            if proc.returncode != 0 or not any(tmp.glob("*.whl")):
                tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
                raise StageError(f"{sdist.name} has no wheel for the target's Python and "
                                 f"building one failed: {tail[0]}",
                                 "Pin a version of it that has a wheel.")
            tmp.rename(out_dir)  # complete or absent: never a half-built cache entry
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        built = sorted(out_dir.glob("*.whl"))
    wheel = built[0]
    _, _, _, tags = parse_wheel_filename(wheel.name)
    if any(t.abi != "none" or t.platform != "any" for t in tags):
        shutil.rmtree(out_dir, ignore_errors=True)
        raise StageError(f"{sdist.name} builds a compiled wheel ({wheel.name}); gapship ships "
                         "compiled code only from wheels built for the target.",
                         "Pin a version of it that has a manylinux wheel.")
    return wheel


def build_pure_wheels(paths: list[Path]) -> list[Path]:
    """Every fetched file as an installable wheel (sdists built into pure-Python wheels)."""
    return [build_pure_wheel(p) if is_sdist(p) else p for p in paths]
