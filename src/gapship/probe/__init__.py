"""The probe: a POSIX sh script run on the target, and the TargetInfo it produces.

The script (probe.sh beside this file) is shipped verbatim: `gapship probe --script`. What it
prints is described by schema.json beside it.
"""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from gapship.errors import TargetError

SCHEMA_VERSION = 1


def probe_script() -> str:
    """The text of probe.sh, exactly as it runs on the target."""
    return resources.files(__package__).joinpath("probe.sh").read_text(encoding="utf-8")


def target_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of target.json, schema_version 1 (schema.json here)."""
    text = resources.files(__package__).joinpath("schema.json").read_text(encoding="utf-8")
    schema: dict[str, Any] = json.loads(text)
    return schema


def _version_tuple(text: str | None) -> tuple[int, ...] | None:
    if not text:
        return None
    try:
        return tuple(int(p) for p in text.split("."))
    except ValueError:
        return None


@dataclass(frozen=True)
class TargetInfo:
    """What gapship knows of the target machine. ``None`` means unknown, never a guess."""

    arch: str | None
    os_id: str | None
    os_version: str | None
    os_pretty: str | None
    libc_family: str | None
    glibc_version: tuple[int, ...] | None
    glibcxx_version: tuple[int, ...] | None
    cpu_flags: tuple[str, ...]
    x86_64_level: int | None
    home: str | None
    home_free_kb: int | None
    raw: dict[str, Any]

    @property
    def glibc(self) -> str | None:
        return ".".join(map(str, self.glibc_version)) if self.glibc_version else None

    @property
    def glibcxx(self) -> str | None:
        return ".".join(map(str, self.glibcxx_version)) if self.glibcxx_version else None

    def describe(self) -> str:
        """One line: the OS, arch and C library."""
        os_name = self.os_pretty or f"{self.os_id or '?'} {self.os_version or ''}".strip()
        libc = f"{self.libc_family or 'libc?'} {self.glibc or ''}".strip()
        return f"{os_name}, {self.arch or 'arch?'}, {libc}"


def _get(data: dict[str, Any], section: str, key: str) -> Any:
    value = data.get(section)
    return value.get(key) if isinstance(value, dict) else None


def parse_target(data: Any, source: str = "target.json") -> TargetInfo:
    """Validate a probe result and return a TargetInfo. Raises TargetError in one line."""
    if not isinstance(data, dict):
        raise TargetError(f"{source}: not a probe result (a JSON object is expected).",
                          "Run `sh probe.sh > target.json` on the target again.")
    version = data.get("schema_version")
    if version != SCHEMA_VERSION:
        raise TargetError(
            f"{source}: unknown schema_version {version!r} (this gapship reads {SCHEMA_VERSION}).",
            "Probe the target again with `gapship probe --script > probe.sh` from this gapship.",
        )
    problems = []
    for section in ("os", "libc", "cpu", "storage"):
        if not isinstance(data.get(section), dict):
            problems.append(f"section `{section}` is missing")
    if problems:
        raise TargetError(f"{source}: " + "; ".join(problems) + ".",
                          "The file is truncated or edited; probe the target again.")
    flags = _get(data, "cpu", "flags") or []
    level = _get(data, "cpu", "x86_64_level")
    free = _get(data, "storage", "home_free_kb")
    return TargetInfo(
        arch=_get(data, "os", "arch"),
        os_id=_get(data, "os", "id"),
        os_version=_get(data, "os", "version_id"),
        os_pretty=_get(data, "os", "pretty_name"),
        libc_family=_get(data, "libc", "family"),
        glibc_version=_version_tuple(_get(data, "libc", "version"))
        if _get(data, "libc", "family") == "glibc" else None,
        glibcxx_version=_version_tuple(_get(data, "libc", "glibcxx")),
        cpu_flags=tuple(str(f) for f in flags),
        x86_64_level=level if isinstance(level, int) else None,
        home=_get(data, "storage", "home"),
        home_free_kb=free if isinstance(free, int) else None,
        raw=data,
    )


def load_target(path: Path) -> TargetInfo:
    """Read target.json. Truncated, non-JSON or unknown-schema files raise TargetError."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise TargetError(f"{path}: no such file.",
                          "Run `sh probe.sh > target.json` on the target and copy it here, "
                          "or use `--target local`.") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise TargetError(f"{path}: cannot be read ({exc}).") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise TargetError(f"{path}: not valid JSON (truncated or not a probe result: {exc.msg} "
                          f"at line {exc.lineno}).",
                          "Copy target.json from the target again.") from None
    return parse_target(data, str(path))


def run_probe(directory: str | None = None, redact: bool = False,
              env: dict[str, str] | None = None) -> dict[str, Any]:
    """Run probe.sh on this machine with /bin/sh and return its JSON."""
    args = ["/bin/sh", "-s", "--"]
    if redact:
        args.append("--redact")
    if directory:
        args.append(directory)
    proc = subprocess.run(args, input=probe_script(), capture_output=True, text=True,
                          env=env if env is not None else dict(os.environ), timeout=120)
    try:
        data: dict[str, Any] = json.loads(proc.stdout)
    except json.JSONDecodeError:
        raise TargetError(f"the probe printed no valid JSON (exit {proc.returncode}): "
                          f"{proc.stderr.strip()[:200]}") from None
    return data


def resolve_target(arg: str) -> TargetInfo:
    """`--target` value: a path to target.json, or `local` for this machine."""
    if arg == "local":
        return parse_target(run_probe(), "local probe")
    return load_target(Path(arg))
