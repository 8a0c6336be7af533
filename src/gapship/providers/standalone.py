"""Interpreters from a directory or an archive: python-build-standalone builds, any prefix.

A python-build-standalone ``install_only`` archive holds ``python/bin/python3``,
``python/lib/libpython3.X.so*`` and ``python/lib/python3.X/``; it is built for glibc 2.17
and relocatable. It comes from ``uv python install`` (online) or a file already downloaded.
Archives are unpacked once into gapship's cache, under their sha256.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tarfile
import tempfile
from pathlib import Path

from gapship import ui
from gapship.cache import cache_dir
from gapship.errors import StageError
from gapship.files import sha256_file
from gapship.providers.python import PythonInstall, first_python, query_python
from gapship.uv import uv_bin, uv_env

ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar.xz", ".txz", ".tar.bz2", ".tar")


def python_cache() -> Path:
    """Where unpacked archives and uv-installed interpreters live."""
    return cache_dir() / "python"


def is_archive(path: Path) -> bool:
    return path.is_file() and path.name.endswith(ARCHIVE_SUFFIXES)


def from_prefix(prefix: Path, minor: str | None = None) -> PythonInstall:
    """The CPython installed under ``prefix`` (``bin/python3.X`` or ``bin/python3``)."""
    # the real place: sysconfig data and libraries name it, not a symlink on the way
    prefix = prefix.resolve()
    names = [f"python{minor}"] if minor else []
    names += sorted((p.name for p in (prefix / "bin").glob("python3.*")
                     if p.name[len("python3."):].isdigit()), reverse=True)
    names.append("python3")
    found = first_python((prefix / "bin" / name for name in names), minor)
    if found is not None:
        return found
    wanted = f"CPython {minor}" if minor else "a CPython"
    raise StageError(f"{prefix} holds no {wanted} that runs here (looked for bin/python3*).",
                     "Give the prefix of a Python install (the directory that holds bin/ and "
                     "lib/), or a python-build-standalone install_only archive.")


def _safe_members(tar: tarfile.TarFile, dest: Path) -> list[tarfile.TarInfo]:
    """Members that stay inside ``dest``; the archive is refused otherwise."""
    root = dest.resolve()
    members = tar.getmembers()
    for member in members:
        target = (root / member.name).resolve()
        if not target.is_relative_to(root) or member.isdev():
            raise StageError(f"the archive holds {member.name!r}, which would land outside "
                             "its directory.", "Use an archive from python-build-standalone.")
        if member.issym() and (member.linkname.startswith("/") or not (
                target.parent / member.linkname).resolve().is_relative_to(root)):
            raise StageError(f"the archive's symlink {member.name!r} points outside it.",
                             "Use an archive from python-build-standalone.")
    return members


def unpack_archive(archive: Path) -> Path:
    """Unpack ``archive`` once into the cache; return the directory it was unpacked into."""
    if not archive.is_file():
        raise StageError(f"{archive}: no such file.",
                         "Give the path of a python-build-standalone install_only archive.")
    digest = sha256_file(archive)
    dest = python_cache() / "archives" / digest[:24]
    if (dest / ".gapship-complete").exists():
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".unpack-", dir=dest.parent))
    ui.step(f"unpacking {archive.name} (once; cached in {dest})")
    try:
        try:
            with tarfile.open(archive, "r:*") as tar:
                # members are checked above; the "tar" filter refuses the rest where it exists
                extra = {"filter": "tar"} if hasattr(tarfile, "tar_filter") else {}
                tar.extractall(tmp, members=_safe_members(tar, tmp), **extra)  # type: ignore[arg-type]
        except (tarfile.TarError, EOFError, OSError) as exc:
            raise StageError(f"{archive}: not a readable tar archive ({exc}).",
                             "Download it again, or give an unpacked prefix instead.") from None
        (tmp / ".gapship-complete").write_text(f"{archive.name}\n", encoding="utf-8")
        shutil.rmtree(dest, ignore_errors=True)
        os.replace(tmp, dest)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return dest


def archive_prefix(unpacked: Path) -> Path:
    """The Python prefix inside an unpacked archive: ``python/``, one top directory, or itself."""
    if (unpacked / "python" / "bin").is_dir():
        return unpacked / "python"
    tops = [p for p in unpacked.iterdir() if p.is_dir()]
    if len(tops) == 1 and (tops[0] / "bin").is_dir():
        return tops[0]
    return unpacked


def from_archive(archive: Path, minor: str | None = None) -> PythonInstall:
    """The interpreter of a python-build-standalone (or similar) archive."""
    return from_prefix(archive_prefix(unpack_archive(archive)), minor)


def from_path(path: Path, minor: str | None = None) -> PythonInstall:
    """A prefix directory or an archive, whichever ``path`` is."""
    if path.is_dir():
        return from_prefix(path, minor)
    if is_archive(path):
        return from_archive(path, minor)
    raise StageError(f"{path} is neither a Python prefix directory nor a tar archive.",
                     "Give the directory that holds bin/python3, or an install_only "
                     f"archive ({', '.join(ARCHIVE_SUFFIXES)}).")


def _uv_python_env() -> dict[str, str]:
    env = uv_env()
    env.setdefault("UV_PYTHON_INSTALL_DIR", str(python_cache() / "uv"))
    return env


def uv_downloadable(minor: str) -> bool:
    """Whether this uv knows a python-build-standalone build of ``minor`` for this machine."""
    proc = subprocess.run([uv_bin(), "python", "list", minor, "--only-downloads",
                           "--output-format", "json"], capture_output=True, text=True,
                          env=_uv_python_env(), check=False)
    try:
        found = json.loads(proc.stdout)
    except json.JSONDecodeError:
        return False
    return any(entry.get("implementation") == "cpython" for entry in found)


def from_uv(minor: str) -> PythonInstall:
    """python-build-standalone ``minor`` through ``uv python install`` (cached by uv)."""
    env = _uv_python_env()
    ui.step(f"uv python install {minor} (python-build-standalone, into "
            f"{env['UV_PYTHON_INSTALL_DIR']})")
    proc = subprocess.run([uv_bin(), "python", "install", minor, "--no-bin"],
                          capture_output=True, text=True, env=env, check=False)
    if proc.returncode != 0:
        lines = [ln.strip().removeprefix("cause:").strip() for ln in proc.stderr.splitlines()
                 if ln.strip()]
        # the last cause, with a download URL shortened to its file name
        why = re.sub(r"\S+://\S+/", "", lines[-1]) if lines else "no message"
        raise StageError(
            f"uv python install {minor} failed: {why}",
            "Download cpython-" + minor + ".*-x86_64-unknown-linux-gnu-install_only.tar.gz from "
            "python-build-standalone's releases and pass it with --python-archive FILE.")
    found = subprocess.run([uv_bin(), "python", "find", "--managed-python", minor],
                           capture_output=True, text=True, env=env, check=False)
    exe = Path(found.stdout.strip())
    # uv answers through a cpython-3.X symlink; its sysconfig data names the real directory
    info = query_python(exe.resolve()) if found.returncode == 0 and exe.name else None
    if info is None:
        raise StageError(f"uv installed Python {minor} but it cannot be found or run "
                         f"({found.stderr.strip()[-200:]}).",
                         "Run `uv python find --managed-python " + minor + "` to see why.")
    return info
