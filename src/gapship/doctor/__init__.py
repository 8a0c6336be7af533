"""The doctor: shipped verbatim into every environment (stdlib-only, Python 3.6+)."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

TARGET_FILES = {
    "doctor.py": ("gapship/doctor.py", 0o644),
    "gapship-doctor.sh": ("bin/gapship-doctor", 0o755),
}


def install_target_files(root: Path) -> None:
    for name, (rel, mode) in TARGET_FILES.items():
        dest = root / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_bytes(resources.files(__package__).joinpath(name).read_bytes())
        dest.chmod(mode)
