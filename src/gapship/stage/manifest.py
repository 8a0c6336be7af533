"""The tree's manifest (path, size, sha256, mode of every file) and its distribution list."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from gapship.stage.treescan import scan_tree


def build_manifest(tree: Path) -> dict[str, Any]:
    """Every file and symlink under ``tree`` (the manifest itself excluded)."""
    return scan_tree(tree).manifest()


def _record_paths(dist_info: Path) -> list[tuple[str, int]]:
    record = dist_info / "RECORD"
    if not record.exists():
        return []
    out = []
    for line in record.read_text(encoding="utf-8").splitlines():
        parts = line.rsplit(",", 2)
        if len(parts) == 3 and parts[0]:
            out.append((parts[0].strip('"'), int(parts[2]) if parts[2].isdigit() else 0))
    return out


def import_names(dist_info: Path) -> list[str]:
    """The top-level modules a distribution provides (top_level.txt, else its RECORD)."""
    top_level = dist_info / "top_level.txt"
    if top_level.exists():
        names = [n.strip() for n in top_level.read_text(encoding="utf-8").splitlines()]
    else:
        names = []
        for rel, _ in _record_paths(dist_info):
            first = rel.split("/", 1)[0]
            if "/" in rel:
                names.append(first)
            elif first.endswith(".py"):
                names.append(first[:-3])
            elif first.endswith(".so"):
                names.append(first.split(".", 1)[0])
    return sorted({n for n in names if n.isidentifier() and n not in ("bin", "__pycache__")})


def distributions(site: Path) -> list[dict[str, Any]]:
    """name, version, import names and installed size of every distribution in ``site``."""
    out = []
    for dist_info in sorted(site.glob("*.dist-info")):
        meta = (dist_info / "METADATA").read_text(encoding="utf-8", errors="replace")
        fields = dict(line.split(": ", 1) for line in meta.splitlines()[:20] if ": " in line)
        size = sum(s for _, s in _record_paths(dist_info))
        out.append({"name": fields.get("Name", dist_info.name),
                    "version": fields.get("Version", ""),
                    "imports": import_names(dist_info), "size": size})
    return out
