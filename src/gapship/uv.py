"""Running uv, the resolver and installer gapship uses for the target's platform."""

from __future__ import annotations

from gapship.cache import cache_dir
from gapship.tools import hermetic_env


def uv_bin() -> str:
    """The uv binary: the one installed with gapship, else uv on PATH."""
    try:
        from uv import find_uv_bin

        return str(find_uv_bin())
    except (ImportError, FileNotFoundError):
        return "uv"


def uv_env() -> dict[str, str]:
    """The environment uv runs in: hermetic, gapship's cache, no progress bars."""
    env = hermetic_env()
    env.setdefault("UV_CACHE_DIR", str(cache_dir() / "uv"))
    env["UV_NO_PROGRESS"] = "1"
    return env


def uv_error(stderr: str) -> str:
    """The one line of uv's stderr that says why it failed."""
    lines = [ln.strip() for ln in stderr.splitlines() if ln.strip()]
    causes = [ln.removeprefix("cause:").strip() for ln in lines if ln.startswith("cause:")]
    errors = [ln.removeprefix("error:").strip() for ln in lines if ln.startswith("error:")]
    return (causes or errors or lines or ["uv failed without a message"])[-1]
