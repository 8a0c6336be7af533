"""Build an archive in python-build-standalone's ``install_only`` layout from a local prefix.

Real python-build-standalone archives cannot be downloaded in this project's test
environment, so the tests make one of the same shape: a top-level ``python/`` with
``bin/python3.X``, ``lib/libpython3.X.so*`` and ``lib/python3.X/``, RUNPATH ``$ORIGIN/../lib``
and the builder's prefix gone from every file (python-build-standalone's is ``/install``).
"""

from __future__ import annotations

import shutil
import subprocess
import tarfile
import tempfile
from pathlib import Path

from gapship.stage.graft import elf_files
from gapship.stage.relocate import neutral_prefix, replace_c_strings
from gapship.tools import patchelf_bin

BUILD_PREFIX = "/install"


def make_install_only_archive(prefix: Path, dest: Path) -> Path:
    """Write ``dest`` (.tar.gz) from the CPython installed at ``prefix`` (shared build)."""
    exe = max(p for p in (prefix / "bin").glob("python3.*") if p.name[8:].isdigit())
    minor = exe.name.removeprefix("python")
    with tempfile.TemporaryDirectory() as tmp:
        top = Path(tmp, "python")
        (top / "bin").mkdir(parents=True)
        (top / "lib").mkdir()
        shutil.copy2(exe, top / "bin" / exe.name)
        (top / "bin" / "python3").symlink_to(exe.name)
        for lib in (prefix / "lib").glob(f"libpython{minor}*.so*"):
            shutil.copy2(lib, top / "lib" / lib.name, follow_symlinks=True)
        shutil.copytree(prefix / "lib" / f"python{minor}", top / "lib" / f"python{minor}",
                        ignore=shutil.ignore_patterns("site-packages", "test", "tests",
                                                      "__pycache__", "idlelib", "tkinter",
                                                      "config-*"))
        old = str(prefix).encode()
        for elf in elf_files(top):
            replace_c_strings(elf, old, neutral_prefix(old))
            edit = (["--set-rpath", "$ORIGIN/../lib"] if elf.parent.name in ("bin", "lib")
                    else ["--remove-rpath"])
            subprocess.run([patchelf_bin(), *edit, str(elf)], check=True)
        for data in (top / "lib" / f"python{minor}").glob("_sysconfigdata*.py"):
            data.write_text(data.read_text().replace(str(prefix), BUILD_PREFIX))
        with tarfile.open(dest, "w:gz", compresslevel=1) as tar:
            tar.add(top, arcname="python")
    return dest
