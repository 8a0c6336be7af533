"""A delta bundle: what changed between an installed environment (OLD: its ``.run``, or its
PREFIX/gapship/manifest.json with gapship/version beside it) and a newly staged tree.

NAME-OLD-to-NEW.run is a sh header (``delta.sh``), then the apply program (gapship.node's
``delta_apply.py``, run on the target with the environment's own python3), then a gzip tar:
``delta.json`` first (versions, the new manifest, the files changed and removed, the old
sha256 of every path the delta touches, the new tree's directories), then ``tree/...``: the
files and symlinks that are new or differ (by path, sha256, mode or link target).
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import re
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import IO, Any

import zstandard

from gapship.bundle import BundleInfo, _HashingWriter, _sh_quote, _tarinfo
from gapship.errors import BundleError
from gapship.node import layout

DELTA_VERSION = 1
_WIDTH = 20
_HEADER_VALUE = re.compile(rb"^(GAPSHIP_[A-Z0-9_]+)=(.*)$", re.MULTILINE)


@dataclass(frozen=True)
class OldEnvironment:
    name: str
    version: str
    manifest: dict[str, Any]


def _header_values(data: bytes) -> dict[str, str]:
    values = {}
    for key, raw in _HEADER_VALUE.findall(data):
        text = raw.decode("utf-8", "replace").strip()
        if text.startswith("'") and text.endswith("'") and len(text) >= 2:
            text = text[1:-1].replace("'\\''", "'")
        values[key.decode()] = text
    return values


class _Concat(io.RawIOBase):
    """The payload of a .run, from the file or from its parts, as one stream."""

    def __init__(self, run: Path, values: dict[str, str], head: bytes) -> None:
        self.files: list[tuple[Path, int, int]] = []
        trailer = int(values.get("GAPSHIP_TRAILER_BYTES") or 0)
        if trailer > 0:
            # the index after the header: a comment line, then SIZE SHA256 NAME a line
            start = int(values["GAPSHIP_HEADER_BYTES"])
            index = head[start:start + trailer].decode("utf-8").splitlines()[1:]
            for line in index:
                size, _, name = line.split(" ", 2)
                self.files.append((run.parent / name, 0, int(size)))
        else:
            self.files.append((run, int(values["GAPSHIP_HEADER_BYTES"]),
                               int(values["GAPSHIP_PAYLOAD_BYTES"])))
        self.fh: IO[bytes] | None = None
        self.left = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        while True:
            if self.fh is None or self.left == 0:
                if self.fh is not None:
                    self.fh.close()
                    self.fh = None
                if not self.files:
                    return 0
                path, offset, self.left = self.files.pop(0)
                try:
                    self.fh = path.open("rb")
                except OSError as exc:
                    raise BundleError(f"cannot read {path}: {exc.strerror}.",
                                      "Give --update-of the .run with its parts beside it.") \
                        from exc
                self.fh.seek(offset)
            data = self.fh.read(min(len(buffer), self.left))
            if not data:
                raise BundleError("the old bundle is cut short.", "Give the complete .run.")
            self.left -= len(data)
            buffer[:len(data)] = data
            return len(data)


def _decompressed(raw: IO[bytes], codec: str) -> IO[bytes]:
    if codec == "zstd":
        return zstandard.ZstdDecompressor().stream_reader(raw, read_across_frames=True)
    return gzip.GzipFile(fileobj=raw, mode="rb")  # type: ignore[return-value]


def read_old(path: Path) -> OldEnvironment:
    """The name, version and manifest of what is installed, from its .run (read through to its
    last member, the manifest) or from PREFIX/gapship/manifest.json."""
    try:
        head = path.read_bytes()[:65536] if path.suffix == ".run" else b""
    except OSError as exc:
        raise BundleError(f"cannot read {path}: {exc.strerror}.",
                          f"Give --update-of the .run or PREFIX/{layout.MANIFEST} of what "
                          "is installed.") from exc
    if head.startswith(b"#!/bin/sh\n{\n# gapship self-extracting"):
        first = _header_values(head)
        header_bytes = int(first["GAPSHIP_HEADER_BYTES"])
        trailer = int(first.get("GAPSHIP_TRAILER_BYTES") or 0)
        with path.open("rb") as fh:
            head = fh.read(header_bytes + trailer)
        values = _header_values(head[:header_bytes])
        wanted = {layout.MANIFEST: b"", layout.VERSION: b""}
        raw = io.BufferedReader(_Concat(path, values, head), 1 << 20)
        with tarfile.open(fileobj=_decompressed(raw, values["GAPSHIP_CODEC"]), mode="r|") as tar:
            for member in tar:
                if member.name in wanted:
                    extracted = tar.extractfile(member)
                    assert extracted is not None
                    wanted[member.name] = extracted.read()
        manifest = json.loads(wanted[layout.MANIFEST])
        return OldEnvironment(values["GAPSHIP_NAME"], values["GAPSHIP_VERSION"], manifest)
    if path.name == "manifest.json":
        version_file = path.parent / "version"
        name_file = path.parent / "name"
        try:
            manifest = json.loads(path.read_text(encoding="utf-8"))
            version = version_file.read_text(encoding="utf-8").strip()
            name = name_file.read_text(encoding="utf-8").strip()
        except (OSError, ValueError) as exc:
            raise BundleError(f"cannot read the installed environment's records beside {path} "
                              f"({exc}).", f"Give PREFIX/{layout.MANIFEST} of an installed "
                              f"environment ({layout.VERSION} and {layout.NAME} beside it), or "
                              "its .run.") from exc
        return OldEnvironment(name, version, manifest)
    raise BundleError(f"{path} is neither a gapship .run nor a {layout.MANIFEST}.",
                      f"Give --update-of the .run or PREFIX/{layout.MANIFEST} of what is "
                      "installed.")


@dataclass(frozen=True)
class DeltaPlan:
    changed: list[str]  # files and symlinks the delta carries
    removed: list[str]  # paths of OLD that are not in NEW (or change kind)
    touched: dict[str, str]  # path in OLD -> its sha256 ("" for symlinks): checked on the target


def plan_delta(old: dict[str, Any], new: dict[str, Any]) -> DeltaPlan:
    def entries(manifest: dict[str, Any]) -> dict[str, dict[str, Any]]:
        out = {e["path"]: e for e in manifest["files"]}
        out.update((e["path"], e) for e in manifest["symlinks"])
        return out

    before, after = entries(old), entries(new)
    changed = sorted(p for p, e in after.items() if before.get(p) != e)
    removed = sorted(p for p in before if p not in after)
    touched = {p: str(before[p].get("sha256", "")) for p in [*changed, *removed] if p in before}
    return DeltaPlan(changed, removed, touched)


def _dirs(tree: Path) -> list[str]:
    return sorted(p.relative_to(tree).as_posix() for p in tree.rglob("*")
                  if p.is_dir() and not p.is_symlink())


def _render(values: dict[str, str]) -> bytes:
    text = resources.files(__package__).joinpath("delta.sh").read_text(encoding="utf-8")
    for key, value in values.items():
        text = text.replace(key, value)
    return text.encode("utf-8")


def _members(tree: Path, paths: list[str]) -> Iterator[Path]:
    for rel in paths:
        yield tree / rel


def write_delta(tree: Path, old: OldEnvironment, out: Path, *, name: str,
                version: str) -> tuple[BundleInfo, DeltaPlan]:
    """Write the delta from ``old`` to the staged ``tree`` atomically at ``out``."""
    if old.name != name:
        raise BundleError(f"--update-of names the environment {old.name}, and this is {name}.",
                          "Give the .run or manifest of an installed " + name + ".")
    if old.version == version:
        raise BundleError(f"the installed {name} is version {version} already, as this one.",
                          "Raise version in env.toml, so that the delta can tell them apart.")
    new_manifest = json.loads((tree / layout.MANIFEST).read_text(encoding="utf-8"))
    plan = plan_delta(old.manifest, new_manifest)
    delta = {"delta_version": DELTA_VERSION, "name": name, "old_version": old.version,
             "new_version": version, "changed": plan.changed, "removed": plan.removed,
             "touched": plan.touched, "dirs": _dirs(tree), "manifest": new_manifest,
             # the environment's own paths, from layout (the apply program has no layout)
             "paths": {"manifest": layout.MANIFEST, "version": layout.VERSION,
                       "prefix_record": layout.PREFIX_RECORD,
                       "write_activation": layout.WRITE_ACTIVATION}}
    apply_program = resources.files("gapship.node").joinpath("delta_apply.py").read_bytes()
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.gapship-tmp")
    tmp_payload = out.with_name(f".{out.name}.payload.gapship-tmp")
    try:
        # the payload goes to a file first (a torch upgrade carries GBs), hashed as it is written
        with tmp_payload.open("w+b") as raw:
            hashing = _HashingWriter(raw)
            with gzip.GzipFile(fileobj=hashing, mode="wb", mtime=0, compresslevel=6) as gz, \
                    tarfile.open(fileobj=gz, mode="w|", format=tarfile.PAX_FORMAT) as tar:
                data = json.dumps(delta, indent=0, sort_keys=True).encode()
                info = tarfile.TarInfo("delta.json")  # owner 0, no names, mtime 0
                info.size = len(data)
                info.mode = 0o644
                tar.addfile(info, io.BytesIO(data))
                for rel in [*plan.changed, layout.MANIFEST]:
                    path = tree / rel
                    member = _tarinfo(path, f"tree/{rel}")
                    if member.isreg():
                        with path.open("rb") as src:
                            tar.addfile(member, src)
                    else:
                        tar.addfile(member)
            payload_bytes, payload_sha = hashing.count, hashing.digest.hexdigest()

            def num(value: int) -> str:
                return str(value).ljust(_WIDTH)

            def header(header_bytes: int) -> bytes:
                return _render({
                    "@NAME@": _sh_quote(name), "@OLD_VERSION@": _sh_quote(old.version),
                    "@NEW_VERSION@": _sh_quote(version), "@HEADER_BYTES@": num(header_bytes),
                    "@APPLY_BYTES@": num(len(apply_program)),
                    "@APPLY_SHA256@": hashlib.sha256(apply_program).hexdigest(),
                    "@PAYLOAD_BYTES@": num(payload_bytes), "@PAYLOAD_SHA256@": payload_sha,
                    "@CHANGED@": num(len(plan.changed)), "@REMOVED@": num(len(plan.removed))})

            head = header(len(header(0)))
            whole = hashlib.sha256(head + apply_program)
            with tmp.open("wb") as fh:
                fh.write(head + apply_program)
                raw.seek(0)
                for chunk in iter(lambda: raw.read(1 << 20), b""):
                    fh.write(chunk)
                    whole.update(chunk)
                fh.flush()
                os.fsync(fh.fileno())
        tmp.chmod(0o755)
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
        tmp_payload.unlink(missing_ok=True)
    files = len(new_manifest["files"]) + len(new_manifest["symlinks"])
    info_out = BundleInfo(path=out, size=out.stat().st_size, payload_sha256=payload_sha,
                          installed_bytes=int(new_manifest.get("total_bytes", 0)),
                          installed_kb=0, file_count=files, file_sha256=whole.hexdigest(),
                          signed=False, codec="gzip", level=6)
    return info_out, plan


def delta_name(name: str, old_version: str, new_version: str) -> str:
    return f"{name}-{old_version}-to-{new_version}.run"
