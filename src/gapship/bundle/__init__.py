"""Tree -> a self-extracting ``.run``: a POSIX sh installer with a compressed tar payload
appended (zstd or parallel gzip, see ``codec``), and, when signed, a signature of both after
them. Split (``split=BYTES``), the payload is cut into ``NAME.part-001 ...`` beside the
``.run``, whose header lists each part's size and sha256 (so the signature covers the parts);
after the header comes the same index as plain text (a ``.run`` cut short is caught by its
size, not only by the shell).

The header's values have fixed widths, so the header is written first with placeholders,
the payload is streamed after it (hashing as it goes), and the header is then rewritten in
place with the payload's size and sha256. The file appears under its name only when complete.
"""

from __future__ import annotations

import errno
import hashlib
import os
import re
import stat
import tarfile
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import BinaryIO, Protocol

from gapship import ui
from gapship.bundle import signing
from gapship.bundle.codec import Codec, codec_level, compressor
from gapship.errors import BundleError
from gapship.node import layout

_WIDTH = 20
# a split bundle has at most this many parts (part numbers keep 3 digits up to 999)
MAX_PARTS = 9999
_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}


def parse_size(text: str) -> int:
    """``--split`` sizes: a whole number of bytes, or with a K, M, G or T suffix (powers of
    1024; ``1G``, ``500M``); anything else is refused in one line."""
    match = re.fullmatch(r"\s*(\d+)\s*([KMGT]?)(?:i?B)?\s*", text, flags=re.IGNORECASE)
    if match is None or int(match.group(1)) == 0:
        raise BundleError(f"--split {text!r} is not a part size.",
                          "Give a whole number of bytes with an optional K, M or G suffix, "
                          "as in --split 1G or --split 500M.")
    return int(match.group(1)) * _UNITS[match.group(2).upper()]


def part_stem(out: Path) -> str:
    """NAME of NAME.run, whose parts are NAME.part-001 ..."""
    return out.name[:-len(".run")] if out.name.endswith(".run") and out.name != ".run" \
        else out.name


@dataclass(frozen=True)
class Part:
    path: Path
    size: int
    sha256: str


@dataclass(frozen=True)
class BundleInfo:
    path: Path
    size: int
    payload_sha256: str
    installed_bytes: int
    installed_kb: int
    file_count: int
    file_sha256: str
    signed: bool
    codec: str
    level: int
    # the payload's parts beside the .run (empty: the payload is inside it)
    parts: tuple[Part, ...] = ()


def _template() -> str:
    return resources.files(__package__).joinpath("installer.sh").read_text(encoding="utf-8")


def render_header(*, name: str, version: str, python: str, header_bytes: int,
                  payload_bytes: int, sha256: str, installed_kb: int, file_count: int,
                  signature_bytes: int = 0, codec: str = "gzip", parts: str = "",
                  trailer_bytes: int = 0) -> bytes:
    """The installer text with its values filled in; the length does not depend on numbers."""
    def num(value: int) -> str:
        text = str(value)
        if len(text) > _WIDTH:
            raise BundleError(f"{value} does not fit the bundle header.")
        return text.ljust(_WIDTH)

    values = {
        "@NAME@": f"'{name}'", "@CODEC@": f"'{codec}'",
        "@VERSION@": f"'{version}'", "@PYTHON@": f"'{python}'",
        "@HEADER_BYTES@": num(header_bytes), "@PAYLOAD_BYTES@": num(payload_bytes),
        "@PAYLOAD_SHA256@": sha256.ljust(64), "@INSTALLED_KB@": num(installed_kb),
        "@FILE_COUNT@": num(file_count), "@SIGNATURE_BYTES@": num(signature_bytes),
        "@PARTS@": _sh_quote(parts), "@TRAILER_BYTES@": num(trailer_bytes),
    }
    text = _template()
    for key, value in values.items():
        text = text.replace(key, value)
    return text.encode("utf-8")


def _sh_quote(text: str) -> str:
    return "'" + text.replace("'", "'\\''") + "'"


class _HashingWriter:
    """A write-only file object that hashes and counts what passes to ``out``."""

    def __init__(self, out: BinaryIO) -> None:
        self.out = out
        self.digest = hashlib.sha256()
        self.count = 0

    def write(self, data: bytes) -> int:
        self.out.write(data)
        self.digest.update(data)
        self.count += len(data)
        return len(data)

    def flush(self) -> None:
        self.out.flush()


class _Syncing:
    """A file written in order whose data goes to the disk as it comes, on a thread of its
    own (fdatasync every _SYNC_BYTES), so that the fsync before the rename finds little left."""

    def __init__(self, fh: BinaryIO) -> None:
        self.fh = fh
        self.unsynced = 0
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="gapship-sync")
        self.syncing: Future[None] | None = None

    def write(self, data: bytes) -> int:
        self.fh.write(data)
        self.unsynced += len(data)
        if self.unsynced >= _SYNC_BYTES and (self.syncing is None or self.syncing.done()):
            if self.syncing is not None:
                self.syncing.result()
            self.fh.flush()
            self.syncing = self.pool.submit(os.fdatasync, self.fh.fileno())
            self.unsynced = 0
        return len(data)

    def flush(self) -> None:
        self.fh.flush()

    def close(self) -> None:
        """Wait for the sync under way (its error, if any, is the bundle's)."""
        try:
            if self.syncing is not None:
                self.syncing.result()
        finally:
            self.pool.shutdown(wait=True)


class _PartWriter:
    """A write-only file object that cuts what it is given into files of ``size`` bytes,
    under temporary names in ``directory``, hashing each; ``finish`` names the parts."""

    def __init__(self, directory: Path, stem: str, size: int) -> None:
        self.directory, self.stem, self.size = directory, stem, size
        self.temps: list[Path] = []
        self.done: list[tuple[int, str]] = []
        self.fh: BinaryIO | None = None
        self.digest = hashlib.sha256()
        self.written = 0

    def _open(self) -> BinaryIO:
        if len(self.temps) >= MAX_PARTS:
            raise BundleError(f"the payload needs more than {MAX_PARTS} parts of "
                              f"{self.size} bytes.", "Give a larger --split size.")
        tmp = self.directory / f".{self.stem}.part-{len(self.temps) + 1}.gapship-tmp"
        self.temps.append(tmp)
        self.digest = hashlib.sha256()
        self.written = 0
        return tmp.open("wb")

    def _close_part(self) -> None:
        if self.fh is not None:
            self.fh.flush()
            os.fsync(self.fh.fileno())
            self.fh.close()
            self.fh = None
            self.done.append((self.written, self.digest.hexdigest()))

    def write(self, data: bytes) -> int:
        view = memoryview(data)
        while view:
            if self.fh is None:
                self.fh = self._open()
            take = min(len(view), self.size - self.written)
            self.fh.write(view[:take])
            self.digest.update(view[:take])
            self.written += take
            view = view[take:]
            if self.written == self.size:
                self._close_part()
        return len(data)

    def flush(self) -> None:
        if self.fh is not None:
            self.fh.flush()

    def finish(self) -> list[Part]:
        """Close the last part; the parts under their final names (not yet renamed)."""
        self._close_part()
        if not self.done:  # an empty payload still has one (empty) part
            self.fh = self._open()
            self._close_part()
        width = max(3, len(str(len(self.done))))
        return [Part(self.directory / f"{self.stem}.part-{i:0{width}d}", size, sha)
                for i, (size, sha) in enumerate(self.done, 1)]

    def discard(self) -> None:
        if self.fh is not None:
            self.fh.close()
            self.fh = None
        for tmp in self.temps:
            tmp.unlink(missing_ok=True)


def remove_stale_parts(out: Path, keep: int) -> list[Path]:
    """Remove STEM.part-NNN beside ``out`` numbered above ``keep`` (what an earlier pack with
    more parts left); only names of exactly that pattern are touched."""
    pattern = re.compile(re.escape(part_stem(out)) + r"\.part-(\d{3,})")
    removed = []
    for path in out.parent.iterdir():
        match = pattern.fullmatch(path.name)
        if match and int(match.group(1)) > keep and path.is_file() and not path.is_symlink():
            path.unlink()
            removed.append(path)
    return sorted(removed)


def parts_index(parts: list[Part]) -> str:
    """One line a part: SIZE SHA256 NAME (the name last, so that it may hold spaces)."""
    return "".join(f"{p.size} {p.sha256} {p.path.name}\n" for p in parts)


def _members(tree: Path, listed: Sequence[Path] | None = None) -> list[Path]:
    """Every path in the tree, directories before their contents, the manifest last
    (``listed``: that list as the stage's one pass over the tree made it)."""
    if listed:
        return list(listed)
    paths = sorted(tree.rglob("*"), key=lambda p: p.relative_to(tree).as_posix())
    manifest = tree / layout.MANIFEST
    return [p for p in paths if p != manifest] + [manifest]


# the bundle's data goes to the disk in steps of this size while it is written
_SYNC_BYTES = 64 << 20
# tarfile copies each file in pieces of this size to the compressor
_COPY_BUFFER = 1 << 20
_BLOCK = 4096
# a symlink whose target fits in the inode (ext4: under 60 bytes) takes no block
_FAST_SYMLINK = 60


def disk_usage_kb(members: list[Path]) -> int:
    """KiB the tree takes once extracted, as du counts it: each file, directory and long
    symlink rounded up to 4 KiB blocks. Files hard-linked together (or to uv's cache) are
    stored as regular files, so each counts."""
    blocks = 0
    for path in members:
        st = path.lstat()
        if stat.S_ISLNK(st.st_mode):
            blocks += 1 if len(os.readlink(path)) >= _FAST_SYMLINK else 0
            continue
        # a directory of many entries takes more than one block, here as on the target
        size = max(_BLOCK, st.st_size) if stat.S_ISDIR(st.st_mode) else st.st_size
        blocks += -(-size // _BLOCK)
    return blocks * _BLOCK // 1024


def _tarinfo(path: Path, arcname: str) -> tarfile.TarInfo:
    """The member for ``path`` from one lstat: owner root (0, no names), whole-second mtime
    (a fraction would cost every member a pax header), hard links as plain files."""
    st = path.lstat()
    info = tarfile.TarInfo(arcname)
    info.mode = stat.S_IMODE(st.st_mode)
    info.mtime = int(st.st_mtime)
    if stat.S_ISREG(st.st_mode):
        info.size = st.st_size
    elif stat.S_ISDIR(st.st_mode):
        info.type = tarfile.DIRTYPE
    elif stat.S_ISLNK(st.st_mode):
        info.type, info.linkname = tarfile.SYMTYPE, os.readlink(path)
    else:
        raise BundleError(f"{arcname} in the staged tree is neither a file, a directory nor "
                          "a symlink; this is a gapship bug.")
    return info


def _file_digest(fh: BinaryIO, size: int) -> hashlib._Hash:
    """sha256 of the first ``size`` bytes of an open file."""
    fh.seek(0)
    digest = hashlib.sha256()
    left = size
    while left:
        chunk = fh.read(min(left, 1 << 20))
        if not chunk:
            raise BundleError("the bundle changed while it was being signed; this is a bug.")
        digest.update(chunk)
        left -= len(chunk)
    return digest


def _write_failed(out: Path, exc: OSError) -> BundleError:
    """A disk that filled (or refused) while the bundle was written, in one line."""
    where = out.parent.resolve()
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return BundleError(f"not enough space in {where} for {out.name} ({exc.strerror}); "
                           "nothing was written there.",
                           "Free some space, or write the bundle elsewhere with -o.")
    about = f" ({exc.filename})" if exc.filename else ""
    return BundleError(f"writing {out.name} in {where} failed: {exc.strerror}{about}; "
                       "nothing was written there.",
                       "Check that the directory is writable and the disk is healthy, or "
                       "write the bundle elsewhere with -o.")


class Gate(Protocol):
    """What must pass before a bundle takes its name (it runs while the bundle is written)."""

    def poll(self) -> None:
        """Raise its error if it has failed by now; return at once otherwise."""

    def result(self) -> object:
        """Wait for it; raise its error if it failed."""


def _write_tar(tree: Path, members: list[Path], stream: BinaryIO, label: str,
               installed_bytes: int, gate: Gate | None = None) -> None:
    """The members as a POSIX (pax) tar stream, the bytes tarfile.TarFile writes (its headers,
    512-byte blocks, two empty blocks and the record padding at the end), without its
    per-member work; small writes reach ``stream`` gathered into pieces of _COPY_BUFFER."""
    pending: list[bytes] = []
    pending_bytes = 0
    offset = 0

    def put(data: bytes) -> None:
        nonlocal pending_bytes, offset
        offset += len(data)
        if len(data) >= _COPY_BUFFER:
            flush()
            stream.write(data)
            return
        pending.append(data)
        pending_bytes += len(data)
        if pending_bytes >= _COPY_BUFFER:
            flush()

    def flush() -> None:
        nonlocal pending_bytes
        if pending:
            stream.write(b"".join(pending))
            pending.clear()
            pending_bytes = 0

    root = str(tree)
    with ui.byte_progress(label, installed_bytes) as bar:
        for path in members:
            name = str(path)
            info = _tarinfo(path, name[len(root) + 1:] if name.startswith(root + "/")
                            else path.relative_to(tree).as_posix())
            put(info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape"))
            if info.isreg():
                left = info.size
                with open(name, "rb") as src:
                    while left:
                        chunk = src.read(min(left, _COPY_BUFFER))
                        if not chunk:
                            raise BundleError(f"{info.name} shrank while it was being packed; "
                                              "nothing was written.", "Pack again.")
                        put(chunk)
                        left -= len(chunk)
                if info.size % tarfile.BLOCKSIZE:
                    put(tarfile.NUL * (tarfile.BLOCKSIZE - info.size % tarfile.BLOCKSIZE))
                bar.advance(info.size)
            if gate is not None:
                gate.poll()
        put(tarfile.NUL * (2 * tarfile.BLOCKSIZE))
        if offset % tarfile.RECORDSIZE:
            put(tarfile.NUL * (tarfile.RECORDSIZE - offset % tarfile.RECORDSIZE))
        flush()


def write_bundle(tree: Path, out: Path, *, name: str, version: str, python: str,
                 installed_bytes: int, codec: Codec | None = None,
                 sign_key: Path | None = None, split: int | None = None,
                 members: Sequence[Path] | None = None, gate: Gate | None = None) -> BundleInfo:
    """Write ``out`` atomically from the staged environment ``tree``, its payload compressed
    with ``codec`` (default: gzip at level 4, which every target unpacks); with ``sign_key``
    (a private key from `gapship keygen`), append the signature of its header and payload.
    With ``split`` (bytes), the payload goes into parts of that size beside ``out``.
    ``members``: the tree's paths as the stage's one pass listed them (else walked here).
    ``gate``: what runs beside the writing (the smoke run); its failure stops the writing, and
    the bundle takes its name only once it passed."""
    if codec is None:
        codec = Codec(name="gzip", level=codec_level("gzip", None), reason="the default")
    if not (tree / layout.MANIFEST).is_file():
        raise BundleError(f"{tree} has no {layout.MANIFEST}; stage the tree first.")
    if split is not None and split <= 0:
        raise BundleError(f"a part size of {split} bytes is no size.", "Give --split 1G or so.")
    if "\n" in out.name:
        raise BundleError("the bundle's name holds a line break.", "Choose another --output.")
    key = signing.load_private_key(sign_key) if sign_key is not None else None
    signature_bytes = signing.SIGNATURE_BYTES if key is not None else 0
    members = _members(tree, members)
    # the root directory itself is created too
    installed_kb = disk_usage_kb(members) + _BLOCK // 1024

    def header_for(header_bytes: int, payload_bytes: int, sha256: str, parts: str = "",
                   trailer_bytes: int = 0) -> bytes:
        return render_header(name=name, version=version, python=python,
                             header_bytes=header_bytes, payload_bytes=payload_bytes,
                             sha256=sha256, installed_kb=installed_kb,
                             file_count=len(members), signature_bytes=signature_bytes,
                             codec=codec.name, parts=parts, trailer_bytes=trailer_bytes)

    label = f"packing {out.name} ({codec.name} -{codec.level})"
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.gapship-tmp")
    splitter = _PartWriter(out.parent, part_stem(out), split) if split is not None else None
    parts: list[Part] = []
    try:
        with tmp.open("w+b") as fh:
            if splitter is None:
                placeholder = header_for(0, 0, "0" * 64)
                header_bytes = len(placeholder)
                fh.write(placeholder)
            syncing = _Syncing(fh)
            hashing = _HashingWriter(splitter if splitter is not None  # type: ignore[arg-type]
                                     else syncing)
            stream = compressor(codec, hashing)
            try:
                try:
                    _write_tar(tree, members, stream, label,  # type: ignore[arg-type]
                               installed_bytes, gate)
                except BaseException:
                    stream.abort()
                    raise
                stream.close()
            finally:
                syncing.close()
            sha = hashing.digest.hexdigest()
            if splitter is None:
                header = header_for(header_bytes, hashing.count, sha)
                if len(header) != header_bytes:
                    raise BundleError("the bundle header changed length; this is a gapship bug.")
                fh.seek(0)
                fh.write(header)
                inline = hashing.count
            else:
                parts = splitter.finish()
                index = parts_index(parts)
                trailer = ("# gapship split bundle: its payload is in these parts "
                           "(size sha256 name)\n" + index).encode("utf-8")
                header_bytes = len(header_for(0, hashing.count, sha, index, len(trailer)))
                header = header_for(header_bytes, hashing.count, sha, index, len(trailer))
                if len(header) != header_bytes:
                    raise BundleError("the bundle header changed length; this is a gapship bug.")
                fh.write(header + trailer)
                inline = len(trailer)
            fh.flush()
            # one more pass: the sha256 of the whole file (and what the signature covers)
            whole = _file_digest(fh, header_bytes + inline)
            if key is not None:
                signature = signing.sign_sha256(key, whole.digest())
                fh.seek(0, os.SEEK_END)
                fh.write(signature)
                whole.update(signature)
            fh.flush()
            os.fsync(fh.fileno())
        if gate is not None:
            gate.result()
        tmp.chmod(0o755)
        if splitter is not None:
            for temp, part in zip(splitter.temps, parts, strict=True):
                os.replace(temp, part.path)
        os.replace(tmp, out)
        remove_stale_parts(out, len(parts))
    except OSError as exc:
        raise _write_failed(out, exc) from exc
    finally:
        tmp.unlink(missing_ok=True)
        if splitter is not None:
            splitter.discard()
    return BundleInfo(path=out, size=out.stat().st_size, payload_sha256=sha,
                      installed_bytes=installed_bytes, installed_kb=installed_kb,
                      file_count=len(members), file_sha256=whole.hexdigest(),
                      signed=key is not None, codec=codec.name, level=codec.level,
                      parts=tuple(parts))
