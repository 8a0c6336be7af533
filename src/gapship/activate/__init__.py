"""Activation: one template per shell, filled in on the target by write-activation.sh.

The files here are shipped verbatim inside every bundle (``PREFIX/gapship/``), so the
installer and ``bin/gapship-rehome`` write activation files with no Python.
"""

from __future__ import annotations

from pathlib import Path

from gapship.node import layout
from gapship.shipped import install_shipped

# file in this package -> place in the environment tree, and its mode
TARGET_FILES = {
    "activate.sh.in": (layout.ACTIVATION_TEMPLATE, 0o644),
    "write-activation.sh": (layout.WRITE_ACTIVATION, 0o755),
    "gapship-rehome.sh": (layout.REHOME, 0o755),
}


def install_target_files(root: Path) -> None:
    """Copy the activation machinery into a staged tree."""
    install_shipped(__package__, TARGET_FILES, root)
