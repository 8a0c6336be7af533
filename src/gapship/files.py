"""Files the builder writes: atomically (the old content or the new, never half), and hashed."""

from __future__ import annotations

import hashlib
import json
import os
import urllib.parse
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
