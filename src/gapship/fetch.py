"""Lock -> verified wheel files in a content-addressed cache.

A file is stored under its sha256 once verified; a second pack of the same lock downloads
nothing. A checksum mismatch is fatal and nothing half-written is kept.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from gapship import ui
from gapship.cache import cache_dir
from gapship.errors import FetchError
from gapship.plan import LockedFile

_CHUNK = 1 << 20


@dataclass(frozen=True)
class FetchResult:
    paths: tuple[Path, ...]
    downloaded_bytes: int
    cache_hits: int


def wheel_cache() -> Path:
    return cache_dir() / "wheels"


def cached_path(f: LockedFile) -> Path:
    return wheel_cache() / f.sha256[:2] / f.sha256 / f.filename


def _download(f: LockedFile, dest: Path, progress: ui.ByteProgress) -> int:
    dest.parent.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256()
    size = 0
    fd, tmp_name = tempfile.mkstemp(dir=dest.parent, prefix=".part-")
    try:
        with os.fdopen(fd, "wb") as out:
            if f.url.startswith("file://") or f.url.startswith("/"):
                src = open(f.url.removeprefix("file://"), "rb")  # noqa: SIM115
            else:
                req = urllib.request.Request(f.url, headers={"User-Agent": "gapship"})
                src = urllib.request.urlopen(req, timeout=60)
            with src:
                while chunk := src.read(_CHUNK):
                    out.write(chunk)
                    digest.update(chunk)
                    size += len(chunk)
                    progress.advance(len(chunk))
        if digest.hexdigest() != f.sha256:
            raise FetchError(
                f"{f.filename}: sha256 {digest.hexdigest()} does not match the lock's {f.sha256}.",
                "The download was damaged or the index changed the file; run again, and if it "
                "persists plan again.")
        os.replace(tmp_name, dest)
    except (urllib.error.URLError, OSError) as exc:
        raise FetchError(f"{f.filename}: download from {f.url} failed ({exc}).",
                         "Check the network or proxy settings and run again.") from None
    finally:
        if os.path.exists(tmp_name):
            os.unlink(tmp_name)
    return size


def fetch(files: tuple[LockedFile, ...]) -> FetchResult:
    """Make sure every locked file is in the cache, verified. Returns their paths."""
    missing = [f for f in files if not cached_path(f).is_file()]
    downloaded = 0
    if missing:
        total = sum(f.size for f in missing) or None
        with ui.byte_progress(f"downloading {len(missing)} files", total) as bar:
            for f in missing:
                bar.describe(f"downloading {f.filename}")
                downloaded += _download(f, cached_path(f), bar)
    return FetchResult(paths=tuple(cached_path(f) for f in files),
                       downloaded_bytes=downloaded, cache_hits=len(files) - len(missing))

