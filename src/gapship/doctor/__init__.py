"""The doctor: shipped verbatim into every environment (stdlib-only, Python 3.6+).

The checks live in ``gapship.node`` (with the ELF reader and the ld.so resolver the builder
uses too), which runs on the target's bundled interpreter and is installed as the package
``node`` in PREFIX/gapship/; ``bin/gapship-doctor`` (a POSIX sh wrapper) checks that the
interpreter starts, then runs ``node.main``.
"""

from __future__ import annotations

from pathlib import Path

from gapship.compat import FRAMEWORKS_FILE
from gapship.node import layout
from gapship.node.frameworks import TABLE_FILE
from gapship.shipped import install_shipped

# the files of gapship.node, installed in PREFIX/gapship/node/ (layout.NODE)
# delta_apply.py too: the program a delta bundle runs (it carries its own copy)
NODE_FILES = ("__init__.py", "archs.py", "base.py", "catalogue.py", "closure.py", "cpu.py",
              "delta_apply.py", "diagnoses.json", "elf.py", "environment.py", "frameworks.py",
              "fwprobe.py", "gpu.py", "imports.py", "layout.py", "loader.py", "main.py",
              "nodes.py", "owners.py")
TARGET_FILES = {"gapship-doctor.sh": (layout.DOCTOR, 0o755),
                "gapship-nodes.sh": (layout.NODES, 0o755)}


def install_target_files(root: Path) -> None:
    """Copy the doctor and its wrapper into a staged tree."""
    install_shipped(__package__, TARGET_FILES, root)
    install_shipped("gapship.node",
                    {name: (f"{layout.NODE}/{name}", 0o644) for name in NODE_FILES}, root)
    # the doctor's framework list is the compat data's, not a copy of it
    install_shipped("gapship.compat", {f"data/{FRAMEWORKS_FILE}": (f"{layout.NODE}/{TABLE_FILE}",
                                                                   0o644)}, root)
