"""env.toml -> a validated Spec.  Pure: reads only its input."""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from packaging.requirements import InvalidRequirement, Requirement

from gapship.errors import SpecError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - the builder on 3.10
    import tomli as tomllib

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_PYTHON = re.compile(r"^3\.(\d+)$")
_KNOWN_KEYS = ("name", "version", "python", "packages")

# What `gapship demo` and the README's first command pack when no spec is given.
DEFAULT_SPEC_TOML = """\
# A small CPU environment: gapship's built-in default.
name = "demo"
packages = ["numpy", "requests", "rich"]
"""


@dataclass(frozen=True)
class Spec:
    """What the user asked for.

    ``python`` is ``"3.X"`` or None for the builder's own interpreter version.
    """

    name: str
    version: str = "1.0"
    python: str | None = None
    packages: tuple[str, ...] = field(default_factory=tuple)

    @property
    def requirements(self) -> tuple[Requirement, ...]:
        return tuple(Requirement(p) for p in self.packages)


def parse_spec(text: str, source: str = "env.toml") -> Spec:
    """Parse and validate env.toml text. Raises SpecError naming the key and the problem."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise SpecError(
            f"{source}: not valid TOML ({exc}).", "Fix the syntax; see README for an example."
        ) from None
    return validate_spec(data, source)


def load_spec(path: Path) -> Spec:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SpecError(
            f"{path}: no such file.", "Write an env.toml (see `gapship demo`) or pass its path."
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SpecError(f"{path}: cannot be read ({exc}).") from None
    return parse_spec(text, str(path))


def validate_spec(data: dict[str, Any], source: str = "env.toml") -> Spec:
    """Check every key; collect all problems and raise once."""
    problems: list[str] = []
    unknown = sorted(set(data) - set(_KNOWN_KEYS))
    problems += [f"unknown key `{k}` (known: {', '.join(_KNOWN_KEYS)})" for k in unknown]

    name = data.get("name")
    if name is None:
        problems.append("key `name` is missing (a short name such as \"torch\")")
    elif not isinstance(name, str) or not _NAME.match(name):
        problems.append(
            f"key `name` = {name!r}: use letters, digits, '.', '_' or '-' (at most 64)"
        )

    version = data.get("version", "1.0")
    if not isinstance(version, str) or not _NAME.match(version):
        problems.append(f"key `version` = {version!r}: use a string such as \"1.0\"")

    python = data.get("python")
    if python is not None and (not isinstance(python, str) or not _PYTHON.match(python)):
        problems.append(f"key `python` = {python!r}: give a version such as \"3.11\"")
    elif python is not None and int(_PYTHON.match(python).group(1)) < 6:  # type: ignore[union-attr]
        problems.append(f"key `python` = {python!r}: gapship supports Python 3.6 and newer")

    packages = data.get("packages", [])
    if not isinstance(packages, list) or not all(isinstance(p, str) for p in packages):
        problems.append("key `packages` must be a list of requirement strings")
        packages = []
    for pkg in packages:
        try:
            Requirement(pkg)
        except InvalidRequirement as exc:
            problems.append(f"key `packages`: {pkg!r} is not a valid requirement ({exc})")

    if problems:
        raise SpecError(
            f"{source}: " + "; ".join(problems) + ".",
        )
    return Spec(
        name=str(name),
        version=str(version),
        python=python,
        packages=tuple(packages),
    )
