"""The doctor: shipped verbatim into every environment (stdlib-only, Python 3.6+)."""

from __future__ import annotations

from pathlib import Path

from gapship.shipped import install_shipped

TARGET_FILES = {
    "doctor.py": ("gapship/doctor.py", 0o644),
    "gapship-doctor.sh": ("bin/gapship-doctor", 0o755),
}


def install_target_files(root: Path) -> None:
    install_shipped(__package__, TARGET_FILES, root)
