"""Lock -> verified wheel files in a content-addressed cache.

A file is stored under its sha256 once verified; a second pack of the same lock downloads
nothing. A checksum mismatch is fatal and nothing half-written is kept.
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import io
import os
import tempfile
import urllib.error
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gapship import ui
from gapship.cache import cache_dir
from gapship.errors import FetchError
from gapship.files import local_path
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
            local = local_path(f.url)
            if local is not None:
                src = local.open("rb")
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



class _HttpRange(io.RawIOBase):
    """A remote file read with HTTP Range requests: enough for zipfile to read a wheel's
    central directory (its file list and sizes) without downloading the wheel."""

    def __init__(self, url: str, size: int) -> None:
        self.url, self.size, self.pos = url, size, 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self.pos, io.SEEK_END: self.size}[whence]
        self.pos = max(0, base + offset)
        return self.pos

    def tell(self) -> int:
        return self.pos

    def readinto(self, buffer: Any) -> int:
        want = min(len(buffer), self.size - self.pos)
        if want <= 0:
            return 0
        req = urllib.request.Request(self.url, headers={
            "User-Agent": "gapship", "Range": f"bytes={self.pos}-{self.pos + want - 1}"})
        with urllib.request.urlopen(req, timeout=60) as resp:
            data = resp.read()
        if resp.status != 206:
            raise OSError("the server ignores Range requests")
        buffer[:len(data)] = data
        self.pos += len(data)
        return len(data)


def _installed_size(f: LockedFile) -> int | None:
    local = cached_path(f)
    given = local_path(f.url)
    try:
        if local.is_file():
            source: Any = local.open("rb")
        elif given is not None and given.is_file():
            source = given.open("rb")
        elif f.size and f.url.startswith(("http://", "https://")):
            source = io.BufferedReader(_HttpRange(f.url, f.size), buffer_size=1 << 18)
        else:
            return None
        with source, zipfile.ZipFile(source) as wheel:
            return sum(i.file_size for i in wheel.infolist())
    except (OSError, zipfile.BadZipFile, urllib.error.URLError, ValueError):
        return None


def installed_sizes(files: tuple[LockedFile, ...]) -> dict[str, int | None]:
    """Unpacked size of each wheel by sha256 (None when unknown), read from the wheels'
    central directories: from the cache, else a few HTTP Range requests per file."""
    wheels = [f for f in files if f.filename.endswith(".whl")]
    with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
        sizes = dict(zip((f.sha256 for f in wheels), pool.map(_installed_size, wheels),
                         strict=True))
    return {f.sha256: sizes.get(f.sha256) for f in files}
