"""Files shipped verbatim into every environment tree (installer helpers, doctor, rehome)."""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path


def install_shipped(package: str, files: dict[str, tuple[str, int]], root: Path) -> None:
    """Copy ``files`` (name in ``package`` -> (place in the tree, mode)) into ``root``."""
    for name, (rel, mode) in files.items():
        dest = root / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        # a new file renamed into place: a staged file of that name may be a hard link
        # into uv's cache, which writing in place would change
        tmp = dest.with_name(f".{dest.name}.shipped")
        tmp.write_bytes(resources.files(package).joinpath(name).read_bytes())
        tmp.chmod(mode)
        os.replace(tmp, dest)
