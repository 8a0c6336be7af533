"""Activation: one template per shell (sh, csh, fish), filled in on the target by
write-activation.sh; ``PREFIX/activate`` is read by every shell and sends each to its own.

The files here are shipped verbatim inside every bundle (``PREFIX/gapship/``), so the
installer and ``bin/gapship-rehome`` write activation files with no Python.
"""

from __future__ import annotations

from pathlib import Path

from gapship.shipped import install_shipped

# file in this package -> place in the environment tree, and its mode
TARGET_FILES = {
    "activate.in": ("gapship/activation/activate.in", 0o644),
    "activate.sh.in": ("gapship/activation/activate.sh.in", 0o644),
    "activate.csh.in": ("gapship/activation/activate.csh.in", 0o644),
    "activate.fish.in": ("gapship/activation/activate.fish.in", 0o644),
    "ld-library-path.sh": ("gapship/libexec/ld-library-path.sh", 0o755),
    "write-activation.sh": ("gapship/libexec/write-activation.sh", 0o755),
    "gapship-rehome.sh": ("bin/gapship-rehome", 0o755),
    "gapship-profile.sh": ("bin/gapship-profile", 0o755),
    "gapship-remove.sh": ("bin/gapship-remove", 0o755),
}


def install_target_files(root: Path) -> None:
    """Copy the activation machinery into a staged tree."""
    install_shipped(__package__, TARGET_FILES, root)
