"""Activation: one template per shell (sh, csh, fish), filled in on the target by
write-activation.sh; ``PREFIX/activate`` is read by every shell and sends each to its own.

The files here are shipped verbatim inside every bundle (``PREFIX/gapship/``), so the
installer and ``bin/gapship-rehome`` write activation files with no Python.
"""

from __future__ import annotations

from pathlib import Path

from gapship.node import layout
from gapship.shipped import install_shipped

# file in this package -> place in the environment tree, and its mode
TARGET_FILES = {
    "activate.in": (layout.ACTIVATE_DISPATCH_TEMPLATE, 0o644),
    "activate.sh.in": (layout.ACTIVATION_TEMPLATE, 0o644),
    "activate.csh.in": (layout.ACTIVATION_TEMPLATE_CSH, 0o644),
    "activate.fish.in": (layout.ACTIVATION_TEMPLATE_FISH, 0o644),
    "ld-library-path.sh": (layout.LD_LIBRARY_PATH_HELPER, 0o755),
    "write-activation.sh": (layout.WRITE_ACTIVATION, 0o755),
    "gapship-rehome.sh": (layout.REHOME, 0o755),
    "gapship-profile.sh": (layout.PROFILE, 0o755),
    "gapship-remove.sh": (layout.REMOVE, 0o755),
}


def install_target_files(root: Path) -> None:
    """Copy the activation machinery into a staged tree."""
    install_shipped(__package__, TARGET_FILES, root)
