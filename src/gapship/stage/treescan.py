"""One pass over the staged tree: one walk lists every path, one read of each file feeds its
sha256 (the manifest), the builder-path scan and, for ELF files, the ELF parse (the closure
and glibc checks); the bundle writer takes the same list of members.

Files are read in fixed pieces (the needles are searched across piece boundaries with an
overlap of the longest needle less one byte), so memory stays flat whatever the file's size:
libtorch_cpu.so is read like a small file.
"""

from __future__ import annotations

import hashlib
import os
import stat
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gapship.node import elf as elfmod
from gapship.node import layout

CHUNK = 1 << 20


@dataclass
class FileFacts:
    """A regular file: what the manifest records and, when it is ELF, what it says."""

    size: int
    sha256: str
    mode: int
    elf: elfmod.ElfFile | elfmod.ElfError | None = None
    might_be_elf: bool = False  # a name and mode the doctor's closure scan opens


@dataclass
class TreeScan:
    """Every path under ``root`` (relative, in walk order: a directory's entries sorted by
    name, its files before its subdirectories' contents), with the facts of its files."""

    root: Path
    needles: tuple[bytes, ...]
    skip: tuple[str, ...]
    order: list[str] = field(default_factory=list)  # every path: dirs, files, links, other
    files: dict[str, FileFacts] = field(default_factory=dict)
    symlinks: dict[str, str] = field(default_factory=dict)  # rel -> link target
    hits: dict[str, list[str]] = field(default_factory=dict)  # rel -> needles it holds

    def elf_files(self) -> list[tuple[str, elfmod.ElfFile | elfmod.ElfError]]:
        """(rel, what it reads as) of every file that starts as ELF, in walk order."""
        return [(rel, facts.elf) for rel in self.order
                if (facts := self.files.get(rel)) is not None and facts.elf is not None]

    def closure_paths(self) -> list[str]:
        """The absolute paths the closure scan resolves (``iter_elf_paths`` of the tree)."""
        return [os.path.join(self.root, rel) for rel in self.order
                if (facts := self.files.get(rel)) is not None and facts.elf is not None
                and facts.might_be_elf]

    def members(self, last: str | None = None) -> list[Path]:
        """Every path, directories before their contents (sorted as text), ``last`` last."""
        rels = sorted(r for r in self.order if r != last)
        return [self.root / r for r in rels] + ([self.root / last] if last else [])

    def manifest(self, exclude: str = layout.MANIFEST) -> dict[str, Any]:
        """The manifest (as manifest.build_manifest writes it) from what the pass read."""
        files: list[dict[str, Any]] = []
        links: list[dict[str, str]] = []
        total = 0
        # sorted as pathlib sorts paths: by their parts
        for rel in sorted(self.order, key=lambda r: r.split("/")):
            if rel == exclude:
                continue
            if rel in self.symlinks:
                links.append({"path": rel, "target": self.symlinks[rel]})
            elif (facts := self.files.get(rel)) is not None:
                total += facts.size
                files.append({"path": rel, "size": facts.size, "sha256": facts.sha256,
                              "mode": oct(stat.S_IMODE(facts.mode))})
        return {"manifest_version": layout.MANIFEST_VERSION, "total_bytes": total,
                "files": files, "symlinks": links}

    def escaping_symlinks(self) -> list[str]:
        """Symlinks that are absolute or point outside the tree (they would dangle)."""
        root = self.root.resolve()
        bad = []
        for rel, target in self.symlinks.items():
            resolved = ((self.root / rel).parent / target).resolve()
            if os.path.isabs(target) or not resolved.is_relative_to(root):
                bad.append(rel)
        return sorted(bad)

    def update(self, paths: Iterable[Path]) -> None:
        """Read again files changed (patched) or added (grafted) since the pass."""
        for path in map(Path.absolute, paths):
            rel = path.relative_to(self.root).as_posix()
            parts = rel.split("/")
            for i in range(1, len(parts)):  # a new file's new directories
                parent = "/".join(parts[:i])
                if parent not in self.order:
                    self.order.append(parent)
            if rel not in self.files and rel not in self.order:
                self.order.append(rel)
            self.hits.pop(rel, None)
            self._read(rel, path.lstat())

    def _read(self, rel: str, st: os.stat_result) -> None:
        path = os.path.join(self.root, rel)
        name = rel.rsplit("/", 1)[-1]
        needles = () if rel in self.skip or st.st_size == 0 else self.needles
        found, digest, elf = read_file(path, needles)
        self.files[rel] = FileFacts(size=st.st_size, sha256=digest, mode=st.st_mode, elf=elf,
                                    might_be_elf=elfmod.might_be_elf(name, st.st_mode))
        if found:
            self.hits[rel] = [n.decode(errors="replace") for n in found]


def read_file(path: str, needles: Sequence[bytes] = ()
              ) -> tuple[list[bytes], str, elfmod.ElfFile | elfmod.ElfError | None]:
    """One read of a file: the needles it holds (in ``needles``' order), its sha256 and, when
    it starts as ELF, its ElfFile (or the ElfError that says why it cannot be read)."""
    needles = [n for n in needles if n]
    overlap = max((len(n) for n in needles), default=1) - 1
    left = list(needles)
    digest = hashlib.sha256()
    elf: elfmod.ElfFile | elfmod.ElfError | None = None
    with open(path, "rb") as fh:
        chunk = fh.read(CHUNK)
        if chunk[:4] == elfmod.ELF_MAGIC:
            try:
                elf = elfmod.parse_elf(fh, path)
            except elfmod.ElfError as exc:
                elf = exc
            fh.seek(len(chunk))
        tail = b""
        while chunk:
            digest.update(chunk)
            if left:
                window = tail + chunk
                left = [n for n in left if window.find(n) == -1]
                tail = window[-overlap:] if overlap else b""
            chunk = fh.read(CHUNK)
    return [n for n in needles if n not in left], digest.hexdigest(), elf


def scan_tree(root: Path, needles: Sequence[bytes] = (), skip: Sequence[str] = ()) -> TreeScan:
    """Walk ``root`` once and read each regular file once (see the module's text).
    ``needles``: builder paths to look for; ``skip``: relative paths not looked into."""
    result = TreeScan(root=root.absolute(), needles=tuple(n for n in needles if n),
                      skip=tuple(skip))

    def walk(directory: str, prefix: str) -> None:
        with os.scandir(directory) as it:
            entries = sorted(it, key=lambda e: e.name)
        subdirs = []
        for entry in entries:
            rel = prefix + entry.name
            result.order.append(rel)
            if entry.is_symlink():
                result.symlinks[rel] = os.readlink(entry.path)
            elif entry.is_dir(follow_symlinks=False):
                subdirs.append((entry.path, rel + "/"))
            elif entry.is_file(follow_symlinks=False):
                result._read(rel, entry.stat(follow_symlinks=False))
        for path, sub in subdirs:
            walk(path, sub)

    walk(str(result.root), "")
    return result
