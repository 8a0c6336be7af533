"""Precompiled bytecode for the tree, from a cache shared by every pack.

``python -m compileall -d /lib`` of a torch environment takes ~24 s at every pack. The
worker (bytecode_worker.py, run by the interpreter that compiles) finds and compiles the
files as compileall does, and keeps each .pyc under cache_dir()/bytecode keyed by the
interpreter's identity, the name its code objects carry and the source's sha256: a warm
pack links (or copies) them, and compiles only sources it has not met (a new wheel, another
interpreter).
"""

from __future__ import annotations

import hashlib
import json
import subprocess
from dataclasses import dataclass
from pathlib import Path

from gapship.cache import cache_dir
from gapship.errors import StageError
from gapship.files import sha256_file
from gapship.tools import hermetic_env

WORKER = Path(__file__).with_name("bytecode_worker.py")
DDIR = "/lib"  # the files as they are named on the target, relative to the prefix


@dataclass(frozen=True)
class Compiled:
    files: int
    cached: int  # copied from the cache
    compiled: int  # compiled now (and kept)
    failed: int  # do not compile (py2 test data): they stay uncompiled, as with compileall
    skipped: int = 0  # a wheel shipped their .pyc, up to date: left alone, as compileall does

    def describe(self) -> str:
        return (f"{self.files} modules: {self.cached} from the bytecode cache, "
                f"{self.compiled} compiled" + (f", {self.failed} do not compile"
                                               if self.failed else ""))


def bytecode_cache() -> Path:
    # v2: entries are the .pyc files themselves, linked into trees (v1 held .pyc + sha256)
    return cache_dir() / "bytecode-v2"


def interpreter_identity(compiler: Path) -> str:
    """The sha256 of the compiling interpreter's executable (the worker adds its version,
    magic number and flags): another build of the same version compiles into other entries."""
    digest = hashlib.sha256(sha256_file(compiler.resolve()).encode())
    return digest.hexdigest()


def precompile(compiler: Path, lib: Path, cache: Path | None = None) -> Compiled:
    """Write __pycache__/*.pyc for every .py under ``lib`` as ``compileall -d /lib`` would,
    taking what the cache has. Raises StageError when the interpreter itself fails."""
    cache = cache or bytecode_cache()
    cache.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run([str(compiler), "-I", "-B", str(WORKER), str(cache), str(lib), DDIR,
                           interpreter_identity(compiler)],
                          capture_output=True, text=True, check=False, env=hermetic_env())
    if proc.returncode != 0:
        raise StageError(f"precompiling bytecode failed: {proc.stderr.strip()[-300:]}")
    try:
        counts = json.loads(proc.stdout.strip().splitlines()[-1])
        return Compiled(files=int(counts["files"]), cached=int(counts["cached"]),
                        compiled=int(counts["compiled"]), failed=int(counts["failed"]),
                        skipped=int(counts.get("skipped", 0)))
    except (ValueError, KeyError, IndexError) as exc:
        raise StageError(f"precompiling bytecode said nothing readable: {proc.stdout[-200:]}"
                         ) from exc
