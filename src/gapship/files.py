"""Files the builder writes: atomically (the old content or the new, never half), and hashed."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


def local_path(url: str) -> Path | None:
    """The file a ``file://`` URL or a plain path names (percent-escapes decoded, ~ expanded);
    None for a remote URL."""
    if url.startswith("file://"):
        return Path(urllib.parse.unquote(urllib.parse.urlsplit(url).path))
    if "://" in url:
        return None
    return Path(url).expanduser()


def sha256_file(path: Path) -> str:
    """The hex sha256 of a file's content, read in 1 MiB pieces."""
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def write_text(path: Path, text: str) -> None:
    """Write a text file atomically: the old content or the new, never half of it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_json(path: Path, data: Any) -> None:
    """Write JSON atomically (indented, keys sorted: stable across packs)."""
    write_text(path, json.dumps(data, indent=1, sort_keys=True) + "\n")


@contextmanager
def edited(path: Path) -> Iterator[Path]:
    """Edit ``path`` through a copy of its own: yields a copy beside it (content, mode and
    times) to change in place (patchelf, a rewrite), renamed over ``path`` when the block
    ends without error, removed otherwise.

    A staged file may be a hard link into uv's cache: written in place, it would change
    that cache and every environment linked to it. Every edit of a staged file goes
    through here (or through :func:`replace_bytes`).
    """
    tmp = path.with_name(f".{path.name}.{os.getpid()}.edit")
    try:
        shutil.copy2(path, tmp)
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def replace_bytes(path: Path, data: bytes, mode: int | None = None) -> None:
    """Give ``path`` the content ``data`` as a new file renamed over it (never written in
    place: see :func:`edited`), with ``mode`` or else the old file's permissions."""
    keep = mode if mode is not None else path.stat().st_mode & 0o7777
    tmp = path.with_name(f".{path.name}.{os.getpid()}.edit")
    try:
        tmp.write_bytes(data)
        os.chmod(tmp, keep)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
