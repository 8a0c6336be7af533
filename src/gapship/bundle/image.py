"""``gapship pack --format squashfs``: the staged tree as one SquashFS image, carried in the same
self-checking ``.run``.

The bundle's payload is a small *carrier* tree: the image (``PREFIX/image.sqsh``), the
environment's ``gapship/`` records (manifest, activation templates, the doctor's package) and
the image's own sh tools. The installer verifies and places it like any environment (size,
checksum, space, lock, atomic rename); then ``gapship/libexec/image-install.sh`` writes the
activation for the mount point, and ``PREFIX/activate`` mounts the image with squashfuse when it
is not mounted yet. One file on a parallel filesystem instead of tens of thousands: every
``stat`` and ``open`` of an import is served by the node's FUSE daemon, not the metadata server.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from gapship import ui
from gapship.errors import BundleError
from gapship.node import layout
from gapship.shipped import install_shipped
from gapship.tools import hermetic_env, tool_path

FORMATS = ("directory", "squashfs")
# gzip: every squashfuse and every kernel with squashfs reads it (zstd needs squashfuse built
# with libzstd, and Linux 4.14)
COMPRESSION = "gzip"
IMAGE_FILES = {
    "image-install.sh": (layout.IMAGE_INSTALL, 0o755),
    "image-activate.in": (layout.IMAGE_ACTIVATE_TEMPLATE, 0o644),
    "image-mount.sh": (layout.MOUNT, 0o755),
    "image-umount.sh": (layout.UMOUNT, 0o755),
    "image-doctor.sh": (layout.DOCTOR, 0o755),
}


def make_image(tree: Path, image: Path, compression: str = COMPRESSION) -> None:
    """``tree`` -> a SquashFS image at ``image`` (mksquashfs, files owned by root, no xattrs)."""
    mksquashfs = tool_path("mksquashfs")
    if mksquashfs is None:
        raise BundleError("mksquashfs not found: install squashfs-tools (apt install "
                          "squashfs-tools), or pack without --format squashfs.")
    image.unlink(missing_ok=True)
    proc = subprocess.run([mksquashfs, str(tree), str(image), "-comp", compression,
                           "-noappend", "-all-root", "-no-xattrs", "-no-progress", "-quiet"],
                          capture_output=True, text=True, check=False, env=hermetic_env())
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:]
        raise BundleError(f"mksquashfs failed on {tree}: {' '.join(tail) or proc.returncode}"
                          " (free space in the cache directory?)")


def image_carrier(tree: Path, work: Path) -> Path:
    """The tree the ``.run`` carries for ``--format squashfs``: the image and small files."""
    if (tree / layout.BASE_PYTHON).exists():
        raise BundleError("--format squashfs cannot carry an environment tied to the target's "
                          "own Python (--python target): pack it as a directory, or choose "
                          "another --python.")
    carrier = work / "image-carrier"
    shutil.rmtree(carrier, ignore_errors=True)
    carrier.mkdir(parents=True)
    ui.step("writing the SquashFS image (mksquashfs, gzip)")
    make_image(tree, carrier / layout.IMAGE)
    shutil.copytree(tree / layout.DIRECTORY, carrier / layout.DIRECTORY, symlinks=True)
    install_shipped(__package__, IMAGE_FILES, carrier)
    # gapship-nodes beside them: every node's doctor through bin/gapship-doctor, which mounts
    install_shipped("gapship.doctor", {"gapship-nodes.sh": (layout.NODES, 0o755)}, carrier)
    return carrier
