"""Spec + Target -> Lock: the exact files that will ship, and the decisions behind them.

Resolution runs uv for the *target* (its Python version, a manylinux tag that its glibc
allows, binary wheels only); the wheel of each package is then chosen here with the target's
full tag list, so what ships is exactly what the lock names.
"""

from __future__ import annotations

import functools
import json
import os
import re
import subprocess
import sys
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from packaging import tags
from packaging.utils import InvalidWheelFilename, parse_wheel_filename

from gapship.cache import cache_dir
from gapship.errors import ResolveError, SpecError
from gapship.probe import TargetInfo
from gapship.spec import Spec

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

LOCK_VERSION = 1
# manylinux tags older than the PEP 600 names, and the glibc each one means.
_LEGACY_MANYLINUX = {17: "manylinux2014", 12: "manylinux2010", 5: "manylinux1"}


@dataclass(frozen=True)
class Decision:
    """One choice the plan made: what, the value, and why."""

    what: str
    value: str
    why: str


@dataclass(frozen=True)
class LockedFile:
    """One wheel that ships: exactly this file, checked by sha256."""

    name: str
    version: str
    filename: str
    url: str
    sha256: str
    size: int


@dataclass(frozen=True)
class GpuPlan:
    """The GPU stack the plan chose; written to PREFIX/gapship/gpu.json for the doctor.

    ``cuda_source`` is "wheels" (NVIDIA's pip wheels) or "toolkit" (a local directory at
    ``toolkit_path``, cuDNN from ``cudnn_path`` when it is elsewhere). ``archs`` are the
    framework build's GPU architectures ("sm_80", "compute_90" for PTX), when known.
    """

    framework: str | None
    framework_version: str | None
    cuda: str | None
    cudnn: str | None
    cuda_source: str | None
    min_driver: str | None
    archs: tuple[str, ...] | None = None
    toolkit_path: str | None = None
    cudnn_path: str | None = None
    nvcc: bool = False
    ld_library_path: tuple[str, ...] = ()
    xla_cuda_data_dir: bool = False

    def doctor_json(self) -> dict[str, Any]:
        """The facts the doctor compares the node with (gpu.json, schema 1)."""
        major_minor = [int(p) for p in (self.cuda or "0.0").split(".")[:2]] + [0]
        return {"schema_version": 1, "framework": self.framework, "cuda": self.cuda,
                "cudnn": self.cudnn, "cuda_source": self.cuda_source,
                "min_driver": self.min_driver,
                "min_driver_cuda": major_minor[0] * 1000 + major_minor[1] * 10
                if self.cuda else None,
                "archs": list(self.archs) if self.archs is not None else None}


@dataclass(frozen=True)
class Lock:
    """What was planned is exactly what ships: every file, the interpreter, the platform."""

    name: str
    env_version: str
    python_version: str
    python_source: str
    platform_tag: str
    requirements: tuple[str, ...]
    files: tuple[LockedFile, ...]
    decisions: tuple[Decision, ...] = field(default_factory=tuple)
    gpu: GpuPlan | None = None
    lock_version: int = LOCK_VERSION

    @property
    def python_minor(self) -> str:
        return ".".join(self.python_version.split(".")[:2])

    @property
    def download_size(self) -> int:
        return sum(f.size for f in self.files)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_json(cls, text: str, source: str = "gapship.lock") -> Lock:
        try:
            data: dict[str, Any] = json.loads(text)
            if data.get("lock_version") != LOCK_VERSION:
                raise SpecError(f"{source}: lock_version {data.get('lock_version')!r} is not "
                                f"{LOCK_VERSION}.", "Plan again with this gapship.")
            return cls(
                name=data["name"],
                env_version=data["env_version"],
                python_version=data["python_version"],
                python_source=data["python_source"],
                platform_tag=data["platform_tag"],
                requirements=tuple(data["requirements"]),
                files=tuple(LockedFile(**f) for f in data["files"]),
                decisions=tuple(Decision(**d) for d in data.get("decisions", [])),
                gpu=_gpu_from_json(data.get("gpu")),
            )
        except (json.JSONDecodeError, KeyError, TypeError) as exc:
            raise SpecError(f"{source}: not a gapship lock ({exc}).",
                            "Write one with `gapship plan ... -o gapship.lock`.") from None


def _gpu_from_json(data: dict[str, Any] | None) -> GpuPlan | None:
    if data is None:
        return None
    return GpuPlan(**{**data, "archs": tuple(data["archs"]) if data.get("archs") is not None
                      else None, "ld_library_path": tuple(data.get("ld_library_path", ()))})


def manylinux_tags(glibc: tuple[int, ...], arch: str) -> list[str]:
    """Every manylinux platform tag a target with this glibc accepts, best first."""
    major, minor = glibc[0], glibc[1]
    if major != 2:
        return []
    out: list[str] = []
    for n in range(minor, 4, -1):
        out.append(f"manylinux_2_{n}_{arch}")
        if n in _LEGACY_MANYLINUX:
            out.append(f"{_LEGACY_MANYLINUX[n]}_{arch}")
    return out


def target_tags(python_version: str, glibc: tuple[int, ...], arch: str) -> list[tags.Tag]:
    """The wheel tags a CPython of ``python_version`` on this target accepts, best first."""
    py = tuple(int(p) for p in python_version.split(".")[:2])
    platforms = manylinux_tags(glibc, arch)
    abi = f"cp{py[0]}{py[1]}"
    return [*tags.cpython_tags(py, [abi, "abi3", "none"], platforms),
            *tags.compatible_tags(py, abi, platforms)]


@functools.cache
def uv_manylinux_minors() -> tuple[int, ...]:
    """The manylinux_2_NN values this uv accepts for --python-platform, read from uv itself."""
    proc = subprocess.run([uv_bin(), "pip", "compile", "--help"], capture_output=True, text=True,
                          check=False)
    found = sorted({int(m) for m in re.findall(r"x86_64-manylinux_2_(\d+)", proc.stdout)})
    return tuple(found) or (17, 28)


def uv_platform(glibc: tuple[int, ...], arch: str) -> str:
    """The newest uv --python-platform whose glibc the target has."""
    usable = [n for n in uv_manylinux_minors() if (2, n) <= tuple(glibc[:2])]
    if not usable:
        raise ResolveError(
            f"the target's glibc {'.'.join(map(str, glibc))} is older than 2.17, the oldest "
            "manylinux that the resolver serves.",
            "Such a target needs packages built for it; ask the site for a newer OS.")
    return f"{arch}-manylinux_2_{usable[-1]}"


def uv_bin() -> str:
    """The uv binary: the one installed with gapship, else uv on PATH."""
    try:
        from uv import find_uv_bin

        return str(find_uv_bin())
    except (ImportError, FileNotFoundError):
        return "uv"


def uv_env() -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("UV_CACHE_DIR", str(cache_dir() / "uv"))
    env["UV_NO_PROGRESS"] = "1"
    return env


def _uv_error(stderr: str) -> str:
    lines = [ln.strip() for ln in stderr.splitlines() if ln.strip()]
    causes = [ln.removeprefix("cause:").strip() for ln in lines if ln.startswith("cause:")]
    errors = [ln.removeprefix("error:").strip() for ln in lines if ln.startswith("error:")]
    return (causes or errors or lines or ["uv failed without a message"])[-1]


def resolve(requirements: tuple[str, ...], python_version: str, target: TargetInfo
            ) -> tuple[tuple[LockedFile, ...], str]:
    """Resolve requirements for the target with uv; return the chosen wheels and the tag."""
    if target.libc_family != "glibc" or not target.glibc_version:
        raise ResolveError(
            f"the target's C library is {target.libc_family or 'unknown'}; gapship ships "
            "manylinux (glibc) environments.",
            "Probe a glibc machine, or check that the probe ran on the target itself.")
    arch = target.arch or "x86_64"
    platform = uv_platform(target.glibc_version, arch)
    if not requirements:
        return (), platform
    with tempfile.TemporaryDirectory(prefix="gapship-resolve-") as tmp:
        req = Path(tmp, "requirements.in")
        req.write_text("\n".join(requirements) + "\n", encoding="utf-8")
        out = Path(tmp, "pylock.toml")
        cmd = [uv_bin(), "pip", "compile", str(req), "--python-version", python_version,
               "--python-platform", platform, "--only-binary", ":all:",
               "--format", "pylock.toml", "-o", str(out), "--no-header", "--quiet"]
        proc = subprocess.run(cmd, capture_output=True, text=True, env=uv_env(), check=False)
        if proc.returncode != 0:
            raise ResolveError(
                f"cannot resolve {', '.join(requirements)} for Python {python_version} on "
                f"{platform}: {_uv_error(proc.stderr)}",
                "Check the package names and versions, or relax a constraint.")
        pylock = tomllib.loads(out.read_text(encoding="utf-8"))
    wanted = target_tags(python_version, target.glibc_version, arch)
    return tuple(_choose_wheel(p, wanted) for p in pylock.get("packages", [])), platform


def _choose_wheel(package: dict[str, Any], wanted: list[tags.Tag]) -> LockedFile:
    rank = {t: i for i, t in enumerate(wanted)}
    best: tuple[int, dict[str, Any]] | None = None
    for wheel in package.get("wheels", []):
        filename = wheel.get("name") or wheel["url"].rsplit("/", 1)[-1]
        try:
            _, _, _, wheel_tags = parse_wheel_filename(filename)
        except InvalidWheelFilename:
            continue
        score = min((rank[t] for t in wheel_tags if t in rank), default=None)
        if score is not None and (best is None or score < best[0]):
            best = (score, {**wheel, "name": filename})
    if best is None:
        raise ResolveError(f"{package['name']} {package.get('version', '')}: no wheel fits the "
                           "target's Python and glibc.", "Pin another version of it.")
    wheel = best[1]
    return LockedFile(name=package["name"], version=str(package.get("version", "")),
                      filename=wheel["name"], url=wheel["url"],
                      sha256=wheel["hashes"]["sha256"], size=int(wheel.get("size") or 0))


def plan(spec: Spec, target: TargetInfo, python_version: str, python_source: str,
         extra_requirements: tuple[str, ...] = ()) -> Lock:
    """Decide and resolve; pure apart from the resolver call."""
    requirements = tuple(spec.packages) + tuple(
        r for r in extra_requirements if r not in spec.packages)
    files, platform = resolve(requirements, python_version, target)
    decisions = (
        Decision("python", python_version,
                 f"from the {python_source} interpreter"
                 + (f" (env.toml asks for {spec.python})" if spec.python else "")),
        Decision("platform", platform,
                 f"the target has glibc {target.glibc}: wheels up to manylinux_2_"
                 f"{target.glibc_version[1] if target.glibc_version else '?'} fit"),
    )
    return Lock(name=spec.name, env_version=spec.version, python_version=python_version,
                python_source=python_source, platform_tag=platform,
                requirements=requirements, files=files, decisions=decisions)
