"""Activation: one template per shell, filled in on the target by write-activation.sh.

The files here are shipped verbatim inside every bundle (``PREFIX/gapship/``), so the
installer and ``bin/gapship-rehome`` write activation files with no Python.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

# file in this package -> place in the environment tree, and its mode
TARGET_FILES = {
    "activate.sh.in": ("gapship/activation/activate.sh.in", 0o644),
    "write-activation.sh": ("gapship/libexec/write-activation.sh", 0o755),
    "gapship-rehome.sh": ("bin/gapship-rehome", 0o755),
}


def install_target_files(root: Path) -> None:
    """Copy the activation machinery into a staged tree."""
    for name, (rel, mode) in TARGET_FILES.items():
        dest = root / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_bytes(resources.files(__package__).joinpath(name).read_bytes())
        dest.chmod(mode)
