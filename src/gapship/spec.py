"""env.toml -> a validated Spec.  Pure: reads only its input."""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from packaging.requirements import InvalidRequirement, Requirement

from gapship.compat import load as load_compat
from gapship.errors import SpecError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - the builder on 3.10
    import tomli as tomllib

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_PYTHON = re.compile(r"^3\.(\d+)$")
_KNOWN_KEYS = ("name", "version", "python", "packages", "framework", "cuda", "cudnn",
               "indexes", "find_links", "exclude", "compute")
# `framework = "none"`: a plain Python environment
NO_FRAMEWORK = "none"
PYTHON_SOURCES = ("auto", "host", "twin", "target", "standalone", "build")

# What `gapship demo` and the README's first command pack when no spec is given.
DEFAULT_SPEC_TOML = """\
# A small CPU environment: gapship's built-in default.
name = "demo"
packages = ["numpy", "requests", "rich"]
"""


@dataclass(frozen=True)
class PythonSpec:
    """Which interpreter: ``version`` "3.X" (None: the source's own), and where it comes from.

    ``source`` is auto, host, twin, target, standalone (with ``version``) or a path to a Python
    prefix or archive; ``archive`` a python-build-standalone archive already downloaded;
    ``twin_root`` a rootfs of the target's release that the user already has; for ``build``
    (CPython compiled for the target's glibc) ``release`` is an exact "3.X.Y", ``tarball`` its
    source tarball and ``deps_source`` a directory holding the libraries' tarballs (offline).
    """

    version: str | None = None
    source: str = "auto"
    archive: str | None = None
    twin_root: str | None = None
    tarball: str | None = None
    deps_source: str | None = None
    release: str | None = None


@dataclass(frozen=True)
class ToolkitSpec:
    """CUDA or cuDNN: "auto" (the plan decides), "none", a version, or a local directory."""

    version: str = "auto"
    path: str | None = None
    nvcc: bool = False

    @property
    def wanted(self) -> bool:
        return self.version != "none"


@dataclass(frozen=True)
class ComputeSpec:
    """What the user declares for the compute nodes when the probe ran on a login node."""

    driver: str | None = None
    compute_capabilities: tuple[str, ...] = ()


@dataclass(frozen=True)
class Spec:
    """What the user asked for.

    ``framework`` is a requirement such as ``torch>=2.4`` or ``tensorflow[and-cuda]==2.17.*``
    (None: a plain Python environment); its family is torch, tensorflow or jax.
    ``framework_in_packages``: env.toml named it in `packages`, not under `framework`.
    """

    name: str
    version: str = "1.0"
    python_spec: PythonSpec = field(default_factory=PythonSpec)
    packages: tuple[str, ...] = field(default_factory=tuple)
    framework: str | None = None
    cuda: ToolkitSpec = field(default_factory=ToolkitSpec)
    cudnn: ToolkitSpec = field(default_factory=ToolkitSpec)
    indexes: tuple[str, ...] = ()
    # folders of wheels (pip download -d, /opt/wheels) or pages listing them
    find_links: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    compute: ComputeSpec = field(default_factory=ComputeSpec)
    framework_in_packages: bool = False

    @property
    def python(self) -> str | None:
        """The Python version asked for ("3.X"), or None."""
        return self.python_spec.version

    @property
    def requirements(self) -> tuple[Requirement, ...]:
        return tuple(Requirement(p) for p in self.packages)

    @property
    def framework_requirement(self) -> Requirement | None:
        return Requirement(self.framework) if self.framework else None

    @property
    def framework_family(self) -> str | None:
        """torch, tensorflow or jax; None for a plain environment."""
        req = self.framework_requirement
        framework = load_compat().framework_named(req.name) if req else None
        return framework.family if framework else None


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
    spec = parse_spec(text, str(path))
    # a folder of wheels named relative to env.toml is found from any working directory
    here = path.parent.resolve()
    return replace(spec, find_links=tuple(
        str(here / link) if "://" not in link and not link.startswith(("/", "~")) else link
        for link in spec.find_links))


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

    python_spec = _python(data.get("python"), problems)

    packages = data.get("packages", [])
    if not isinstance(packages, list) or not all(isinstance(p, str) for p in packages):
        problems.append("key `packages` must be a list of requirement strings")
        packages = []
    for pkg in packages:
        try:
            Requirement(pkg)
        except InvalidRequirement as exc:
            problems.append(f"key `packages`: {pkg!r} is not a valid requirement ({exc})")

    framework = data.get("framework")
    if isinstance(framework, str) and framework.lower() == NO_FRAMEWORK:
        framework = None
    elif framework is not None:
        try:
            known = load_compat().framework_named(Requirement(framework).name) is not None
        except (InvalidRequirement, TypeError):
            known = False
        if not known:
            families = ", ".join(f.family for f in load_compat().frameworks)
            problems.append(f"key `framework` = {framework!r}: give {families} or "
                            f"{NO_FRAMEWORK}, with an optional version such as \"torch>=2.4\"")
    framework_in_packages = False
    if "framework" not in data:
        framework, packages = _framework_in_packages(packages, problems)
        framework_in_packages = framework is not None
    cuda = _toolkit("cuda", data.get("cuda"), problems)
    cudnn = _toolkit("cudnn", data.get("cudnn"), problems)
    indexes = _strings("indexes", data.get("indexes", []), problems)
    for url in indexes:
        if not re.match(r"^(https?|file)://", url):
            problems.append(f"key `indexes`: {url!r} is not an http(s) or file URL")
    find_links = _strings("find_links", data.get("find_links", []), problems)
    exclude = _strings("exclude", data.get("exclude", []), problems)
    compute = _compute(data.get("compute"), problems)

    if problems:
        raise SpecError(f"{source}: " + "; ".join(problems) + ".")
    return Spec(
        name=str(name),
        version=str(version),
        python_spec=python_spec,
        packages=tuple(packages),
        framework=framework,
        cuda=cuda,
        cudnn=cudnn,
        indexes=tuple(indexes),
        find_links=tuple(find_links),
        exclude=tuple(exclude),
        compute=compute,
        framework_in_packages=framework_in_packages,
    )


def _framework_in_packages(packages: list[str], problems: list[str]
                           ) -> tuple[str | None, list[str]]:
    """A framework's GPU build named in `packages` (torch, tensorflow-gpu==1.11.0,
    tensorflow[and-cuda], jax[cuda12]) is the framework, as if `framework` named it; the
    rest stay packages. Two named: refused (a `framework` key chooses, and wins)."""
    named = []
    for pkg in packages:
        try:
            if load_compat().gpu_framework(Requirement(pkg)) is not None:
                named.append(pkg)
        except InvalidRequirement:
            continue  # already a problem
    if len(named) > 1:
        problems.append(f"key `packages` names the GPU builds of {len(named)} frameworks "
                        f"({', '.join(named)}); gapship plans one GPU stack: set `framework` "
                        "to the one it is for (the others then stay packages)")
        return None, packages
    if not named:
        return None, packages
    return named[0], [p for p in packages if p != named[0]]


def _version_problem(key: str, value: object) -> str | None:
    if not isinstance(value, str) or not _PYTHON.match(value):
        return f"key `{key}` = {value!r}: give a version such as \"3.11\""
    if int(_PYTHON.match(value).group(1)) < 6:  # type: ignore[union-attr]
        return f"key `{key}` = {value!r}: gapship supports Python 3.6 and newer"
    return None


def _python(value: object, problems: list[str]) -> PythonSpec:
    """`python = "3.11"` or `python = { version = "3.11", source = "twin" }`."""
    if value is None:
        return PythonSpec()
    if not isinstance(value, dict):
        problem = _version_problem("python", value)
        if problem:
            problems.append(problem)
            return PythonSpec()
        return PythonSpec(version=str(value))
    known = ("version", "source", "archive", "twin_root", "tarball", "deps_source")
    problems += [f"unknown key `python.{k}` (known: {', '.join(known)})"
                 for k in sorted(set(value) - set(known))]
    version = value.get("version")
    if version is not None and (problem := _version_problem("python.version", version)):
        problems.append(problem)
        version = None
    source = value.get("source", "auto")
    if not isinstance(source, str) or not source or (
            source not in PYTHON_SOURCES and not source.startswith(("/", "./", "~"))):
        problems.append(f"key `python.source` = {source!r}: use one of "
                        f"{', '.join(PYTHON_SOURCES)} or a path to a Python prefix or archive")
        source = "auto"
    paths = {key: value.get(key) for key in ("archive", "twin_root", "tarball", "deps_source")}
    for key, item in paths.items():
        if item is not None and not isinstance(item, str):
            problems.append(f"key `python.{key}` must be a path")
            paths[key] = None
    return PythonSpec(version=version, source=source, **paths)


def _toolkit(key: str, value: object, problems: list[str]) -> ToolkitSpec:
    """`cuda = "auto" | "none" | "12.6"` or `cuda = { version/path = ..., nvcc = true }`."""
    if value is None:
        return ToolkitSpec()
    if isinstance(value, str):
        value = {"version": value}
    if not isinstance(value, dict):
        problems.append(f"key `{key}`: give \"auto\", \"none\", a version, or "
                        f"{{ path = \"/usr/local/{key}\" }}")
        return ToolkitSpec()
    known = ("version", "path", "nvcc")
    problems += [f"unknown key `{key}.{k}` (known: {', '.join(known)})"
                 for k in sorted(set(value) - set(known))]
    version, path, nvcc = value.get("version", "auto"), value.get("path"), value.get("nvcc", False)
    if not isinstance(version, str) or not re.match(r"^(auto|none|\d+(\.\d+){0,3})$", version):
        problems.append(f"key `{key}.version` = {version!r}: use \"auto\", \"none\" or a "
                        "version such as \"12.6\"")
        version = "auto"
    if path is not None and (not isinstance(path, str) or not path):
        problems.append(f"key `{key}.path` must be a directory path")
        path = None
    if not isinstance(nvcc, bool):
        problems.append(f"key `{key}.nvcc` must be true or false")
        nvcc = False
    return ToolkitSpec(version=version, path=path, nvcc=nvcc)


def _strings(key: str, value: object, problems: list[str]) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        problems.append(f"key `{key}` must be a list of strings")
        return []
    return [str(v) for v in value]


def _compute(value: object, problems: list[str]) -> ComputeSpec:
    """`compute = { driver = "550.54.15", compute_capability = ["9.0"] }`."""
    if value is None:
        return ComputeSpec()
    if not isinstance(value, dict):
        problems.append("key `compute` must be a table such as "
                        "{ driver = \"550.54.15\", compute_capability = [\"9.0\"] }")
        return ComputeSpec()
    known = ("driver", "compute_capability")
    problems += [f"unknown key `compute.{k}` (known: {', '.join(known)})"
                 for k in sorted(set(value) - set(known))]
    driver = value.get("driver")
    if driver is not None and (not isinstance(driver, str)
                               or not re.match(r"^\d+(\.\d+){0,2}$", driver)):
        problems.append(f"key `compute.driver` = {driver!r}: give a version such as \"550.54.15\"")
        driver = None
    ccs = value.get("compute_capability", [])
    if isinstance(ccs, str):
        ccs = [ccs]
    if not isinstance(ccs, list) or not all(isinstance(c, str) and re.match(r"^\d+\.\d$", c)
                                            for c in ccs):
        problems.append("key `compute.compute_capability` must list versions such as \"8.0\"")
        ccs = []
    return ComputeSpec(driver=driver, compute_capabilities=tuple(ccs))
