"""The payload's compression: zstd (multi-threaded) where the target has a zstd command, else
gzip cut into independent members compressed in parallel (every gzip, busybox's too, reads
concatenated members as one stream).

Both are deterministic: equal input gives equal bytes whatever the number of threads. zstd's
multi-threaded mode cuts its jobs by size, not by thread count; the gzip pieces are fixed
4 MiB cuts of the tar stream, each compressed alone with a fixed header (mtime 0).
"""

from __future__ import annotations

import os
import zlib
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import IO, Protocol, cast

import zstandard

from gapship.errors import BundleError

CODECS = ("zstd", "gzip")
# (lowest, highest, default) level of each codec; --level means the codec's own scale
# gzip at 4, as conda-pack and venv-pack: 2x level 6's speed for 4% more bytes (torch CPU)
LEVELS = {"zstd": (1, 19, 3), "gzip": (1, 9, 4)}
PIECE = 4 << 20
# worker threads at most: past 8 the disk is the limit, and each thread holds pieces in memory
# (pack's peak stays near 100 MB); the output does not depend on the number
MAX_THREADS = 8


def threads() -> int:
    return max(1, min(os.cpu_count() or 1, MAX_THREADS))


class Sink(Protocol):
    def write(self, data: bytes) -> int: ...


@dataclass(frozen=True)
class Codec:
    name: str  # zstd, gzip: the command the installer runs (as NAME -dc)
    level: int
    # why this codec: "the target has zstd", "--codec gzip" ...
    reason: str


def codec_level(name: str, level: int | None) -> int:
    low, high, default = LEVELS[name]
    if level is None:
        return default
    if not low <= level <= high:
        raise BundleError(f"--level {level} is outside {name}'s levels ({low}-{high}).",
                          f"Give a level from {low} to {high}, or leave --level out "
                          f"({name}'s default is {default}).")
    return level


def choose(requested: str, tools: tuple[tuple[str, bool], ...], level: int | None) -> Codec:
    """The codec for a target whose probe found ``tools`` ((command, found) pairs; empty for
    a target.json from an older probe): ``auto`` takes zstd only where the probe found it."""
    if requested not in ("auto", *CODECS):
        raise BundleError(f"unknown codec {requested!r}.", "Use --codec auto, zstd or gzip.")
    found = dict(tools)
    if requested == "auto":
        if found.get("zstd"):
            name, reason = "zstd", "the target has zstd"
        elif "zstd" in found:
            name, reason = "gzip", "the target has no zstd"
        else:
            name, reason = "gzip", "the target's probe did not record its tools"
    else:
        name, reason = requested, f"--codec {requested}"
        if found.get(requested) is False:
            raise BundleError(f"the target has no {requested} command (target.json), so it "
                              f"could not unpack a {requested} bundle.",
                              "Leave --codec out (auto), or use --codec gzip.")
    return Codec(name=name, level=codec_level(name, level), reason=reason)


class Compressor(Protocol):
    """A write-only file object for tarfile: write, tell (bytes taken in), close, abort."""

    def write(self, data: bytes) -> int: ...

    def tell(self) -> int: ...

    def close(self) -> None: ...

    def abort(self) -> None: ...


# zstd's multi-threaded jobs: its default (8 MiB at level 3) holds ~50 MB with two threads;
# 4 MiB holds half that for 0.5% more bytes (torch CPU)
ZSTD_JOB = 4 << 20


class ZstdStream:
    """zstd with a worker thread per CPU (up to MAX_THREADS), a checksum in the frame."""

    def __init__(self, out: Sink, level: int, workers: int | None = None) -> None:
        params = zstandard.ZstdCompressionParameters.from_level(
            level, threads=workers or threads(), job_size=ZSTD_JOB, write_checksum=True)
        self.writer = zstandard.ZstdCompressor(compression_params=params).stream_writer(
            cast(IO[bytes], out), closefd=False, write_return_read=True)
        self.taken = 0

    def write(self, data: bytes) -> int:
        self.taken += len(data)
        return int(self.writer.write(data))

    def tell(self) -> int:
        return self.taken

    def close(self) -> None:
        self.writer.flush(zstandard.FLUSH_FRAME)

    def abort(self) -> None:
        """Nothing to release: the writer's threads end with it."""


def _gzip_member(piece: bytes, level: int) -> bytes:
    # wbits 31: a gzip header (mtime 0, no name) and trailer around raw deflate
    compressor = zlib.compressobj(level, zlib.DEFLATED, 31)
    return compressor.compress(piece) + compressor.flush()


class ParallelGzip:
    """The stream cut into fixed pieces, each one gzip member compressed on a thread of a
    pool (zlib releases the GIL), written in order; at most threads + 1 pieces in memory."""

    def __init__(self, out: Sink, level: int, workers: int | None = None,
                 piece: int = PIECE) -> None:
        self.out = out
        self.level = level
        self.piece = piece
        self.threads = workers or threads()
        self.pool = ThreadPoolExecutor(max_workers=self.threads,
                                       thread_name_prefix="gapship-gzip")
        self.pending: deque[Future[bytes]] = deque()
        self.buffer = bytearray()
        self.taken = 0

    def tell(self) -> int:
        return self.taken

    def write(self, data: bytes) -> int:
        self.taken += len(data)
        self.buffer += data
        while len(self.buffer) >= self.piece:
            with memoryview(self.buffer) as view:  # one copy of the piece, not two
                piece = bytes(view[:self.piece])
            del self.buffer[:self.piece]
            self._submit(piece)
        return len(data)

    def _submit(self, piece: bytes) -> None:
        self.pending.append(self.pool.submit(_gzip_member, piece, self.level))
        while len(self.pending) > self.threads:
            self.out.write(self.pending.popleft().result())

    def close(self) -> None:
        try:
            if self.buffer or not self.pending:  # an empty stream is still one member
                self._submit(bytes(self.buffer))
                self.buffer.clear()
            while self.pending:
                self.out.write(self.pending.popleft().result())
        finally:
            self.abort()

    def abort(self) -> None:
        for future in self.pending:
            future.cancel()
        self.pending.clear()
        self.pool.shutdown(wait=True)


def compressor(codec: Codec, out: Sink) -> Compressor:
    if codec.name == "zstd":
        return ZstdStream(out, codec.level)
    return ParallelGzip(out, codec.level)
