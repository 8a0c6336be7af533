"""Where gapship keeps what it downloads and builds, outside any project tree."""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    """``$GAPSHIP_CACHE_DIR``, else ``$XDG_CACHE_HOME/gapship``, else ``~/.cache/gapship``."""
    explicit = os.environ.get("GAPSHIP_CACHE_DIR")
    if explicit:
        return Path(explicit)
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg) if xdg else Path.home() / ".cache"
    return base / "gapship"
