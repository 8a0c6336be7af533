"""Tree -> a self-extracting ``.run``: a POSIX sh installer with a compressed tar payload
appended (zstd or parallel gzip, see ``codec``), and, when signed, a signature of both after
them.

The header's values have fixed widths, so the header is written first with placeholders,
the payload is streamed after it (hashing as it goes), and the header is then rewritten in
place with the payload's size and sha256. The file appears under its name only when complete.
"""

from __future__ import annotations

import hashlib
import os
import stat
import tarfile
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import BinaryIO

from gapship import ui
from gapship.bundle import signing
from gapship.bundle.codec import Codec, codec_level, compressor
from gapship.errors import BundleError
from gapship.node import layout

_WIDTH = 20


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


def _template() -> str:
    return resources.files(__package__).joinpath("installer.sh").read_text(encoding="utf-8")


def render_header(*, name: str, version: str, python: str, header_bytes: int,
                  payload_bytes: int, sha256: str, installed_kb: int, file_count: int,
                  signature_bytes: int = 0, codec: str = "gzip") -> bytes:
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
    }
    text = _template()
    for key, value in values.items():
        text = text.replace(key, value)
    return text.encode("utf-8")


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


def _members(tree: Path, listed: Sequence[Path] | None = None) -> list[Path]:
    """Every path in the tree, directories before their contents, the manifest last
    (``listed``: that list as the stage's one pass over the tree made it)."""
    if listed:
        return list(listed)
    paths = sorted(tree.rglob("*"), key=lambda p: p.relative_to(tree).as_posix())
    manifest = tree / layout.MANIFEST
    return [p for p in paths if p != manifest] + [manifest]


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


def _normalize(info: tarfile.TarInfo) -> tarfile.TarInfo:
    info.uid = info.gid = 0
    info.uname = info.gname = ""
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


def write_bundle(tree: Path, out: Path, *, name: str, version: str, python: str,
                 installed_bytes: int, codec: Codec | None = None,
                 sign_key: Path | None = None, members: Sequence[Path] | None = None
                 ) -> BundleInfo:
    """Write ``out`` atomically from the staged environment ``tree``, its payload compressed
    with ``codec`` (default: gzip at level 6, which every target unpacks); with ``sign_key``
    (a private key from `gapship keygen`), append the signature of its header and payload.
    ``members``: the tree's paths as the stage's one pass listed them (else walked here)."""
    if codec is None:
        codec = Codec(name="gzip", level=codec_level("gzip", None), reason="the default")
    if not (tree / layout.MANIFEST).is_file():
        raise BundleError(f"{tree} has no {layout.MANIFEST}; stage the tree first.")
    key = signing.load_private_key(sign_key) if sign_key is not None else None
    signature_bytes = signing.SIGNATURE_BYTES if key is not None else 0
    members = _members(tree, members)
    # the root directory itself is created too
    installed_kb = disk_usage_kb(members) + _BLOCK // 1024

    def header_for(header_bytes: int, payload_bytes: int, sha256: str) -> bytes:
        return render_header(name=name, version=version, python=python,
                             header_bytes=header_bytes, payload_bytes=payload_bytes,
                             sha256=sha256, installed_kb=installed_kb,
                             file_count=len(members), signature_bytes=signature_bytes,
                             codec=codec.name)

    placeholder = header_for(0, 0, "0" * 64)
    header_bytes = len(placeholder)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.gapship-tmp")
    try:
        with tmp.open("w+b") as fh:
            fh.write(placeholder)
            hashing = _HashingWriter(fh)
            stream = compressor(codec, hashing)
            try:
                with ui.byte_progress(f"packing {out.name} ({codec.name} -{codec.level})",
                                      installed_bytes) as bar, \
                        tarfile.TarFile(fileobj=stream, mode="w", format=tarfile.PAX_FORMAT,  # type: ignore[arg-type]
                                        copybufsize=_COPY_BUFFER) as tar:
                    for path in members:
                        info = _normalize(tar.gettarinfo(str(path),
                                                         path.relative_to(tree).as_posix()))
                        if info.islnk():  # hard links (staged from uv's cache) go as files
                            info.type, info.linkname = tarfile.REGTYPE, ""
                            info.size = path.stat().st_size
                        if info.isreg():
                            with path.open("rb") as src:
                                tar.addfile(info, src)
                            bar.advance(info.size)
                        else:
                            tar.addfile(info)
            except BaseException:
                stream.abort()
                raise
            stream.close()
            header = header_for(header_bytes, hashing.count, hashing.digest.hexdigest())
            if len(header) != header_bytes:
                raise BundleError("the bundle header changed length; this is a gapship bug.")
            fh.seek(0)
            fh.write(header)
            fh.flush()
            # one more pass: the sha256 of the whole file (and what the signature covers)
            whole = _file_digest(fh, header_bytes + hashing.count)
            if key is not None:
                signature = signing.sign_sha256(key, whole.digest())
                fh.seek(0, os.SEEK_END)
                fh.write(signature)
                whole.update(signature)
            fh.flush()
            os.fsync(fh.fileno())
        tmp.chmod(0o755)
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    return BundleInfo(path=out, size=out.stat().st_size, payload_sha256=hashing.digest.hexdigest(),
                      installed_bytes=installed_bytes, installed_kb=installed_kb,
                      file_count=len(members), file_sha256=whole.hexdigest(),
                      signed=key is not None, codec=codec.name, level=codec.level)
