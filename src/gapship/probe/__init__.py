"""The probe: a POSIX sh script run on the target, and the TargetInfo it produces.

The script (probe.sh beside this file) is shipped verbatim: `gapship probe --script`. What it
prints is described by schema.json beside it.
"""

from __future__ import annotations

import copy
import json
import os
import re
import subprocess
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from gapship.errors import TargetError

SCHEMA_VERSION = 1
_DOTTED = re.compile(r"[0-9]+(\.[0-9]+)*")


def probe_script() -> str:
    """The text of probe.sh, exactly as it runs on the target."""
    return resources.files(__package__).joinpath("probe.sh").read_text(encoding="utf-8")


def target_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of target.json, schema_version 1 (schema.json here)."""
    text = resources.files(__package__).joinpath("schema.json").read_text(encoding="utf-8")
    schema: dict[str, Any] = json.loads(text)
    return schema


def _version_tuple(text: object) -> tuple[int, ...] | None:
    """``"2.31"`` -> (2, 31); None for anything but dotted numbers."""
    if not isinstance(text, str) or not _DOTTED.fullmatch(text):
        return None
    return tuple(int(p) for p in text.split("."))


def _dotted(version: tuple[int, ...]) -> str:
    return ".".join(map(str, version))


@dataclass(frozen=True)
class Gpu:
    """One GPU that nvidia-smi listed."""

    name: str
    compute_capability: tuple[int, int] | None  # None: nvidia-smi cannot tell (drivers < 510)
    memory_mib: int | None


@dataclass(frozen=True)
class FoundFile:
    """A file the probe found (a CUDA toolkit, a cuDNN header) and the version read from it."""

    path: str
    version: str | None  # dotted, as read; None where the file did not say


@dataclass(frozen=True)
class ProbedPython:
    """A Python interpreter the probe found on the target."""

    path: str  # absolute, on the target
    version: tuple[int, ...]  # (3, 9, 18)

    @property
    def minor(self) -> str:
        """``3.9``."""
        return _dotted(self.version[:2])

    @property
    def version_text(self) -> str:
        """``3.9.18``."""
        return _dotted(self.version)


@dataclass(frozen=True)
class Site:
    """How the site runs software: modules, schedulers, containers, the installer's tools."""

    module_system: str | None  # lmod, tcl
    modulepath: str | None
    schedulers: tuple[str, ...]  # srun, sbcast, sbatch, qsub, bsub
    container_runtime: str | None  # apptainer, singularity
    userns: bool | None  # unprivileged user namespaces allowed
    tools: tuple[tuple[str, bool], ...]  # (command, found), in the probe's order
    # what a SquashFS image needs: (squashfuse, squashfuse_ll, fusermount, fusermount3,
    # dev_fuse, kernel_squashfs) -> found; empty from a probe before it asked
    image: tuple[tuple[str, bool | None], ...] = ()

    def can_mount_images(self) -> bool | None:
        """squashfuse and a /dev/fuse this user opens: None when the probe did not ask."""
        facts = dict(self.image)
        if not facts:
            return None
        return bool((facts.get("squashfuse") or facts.get("squashfuse_ll"))
                    and facts.get("dev_fuse"))


@dataclass(frozen=True)
class TargetInfo:
    """What gapship knows of the target machine. ``None`` means unknown, never a guess.

    Built only by ``parse_target``; the probe's record itself stays inside (``to_json``).
    """

    arch: str | None
    kernel: str | None
    os_id: str | None
    os_version: str | None
    os_pretty: str | None
    libc_family: str | None
    libc_version: tuple[int, ...] | None  # of glibc or musl, whichever libc_family says
    glibcxx_version: tuple[int, ...] | None
    cxxabi_version: tuple[int, ...] | None  # newest CXXABI_ of its libstdc++ (probe 2+)
    gcc_s_version: tuple[int, ...] | None  # newest GCC_ of its libgcc_s.so.1 (probe 2+)
    libstdcxx: str | None  # the libstdc++.so.6 the probe read
    # file names of the shared libraries its loader finds without help (probe 2+; None for
    # an older probe: the pack-time closure check is then partial), and where they came from
    libraries: frozenset[str] | None
    libraries_source: str | None  # ldconfig, ld.so.cache, directories
    cpu_model: str | None
    cpu_cores: int | None
    cpu_flags: tuple[str, ...]
    x86_64_level: int | None
    memory_kb: int | None
    home: str | None
    home_free_kb: int | None
    home_fstype: str | None
    probe_dir: str | None  # the directory named on the probe's command line
    probe_dir_free_kb: int | None
    tmp_noexec: bool | None
    bin_sh: str | None  # what /bin/sh is: dash, bash, busybox ...
    pythons: tuple[ProbedPython, ...]
    driver_version: tuple[int, ...] | None  # the NVIDIA driver's, e.g. (525, 105, 17)
    gpus: tuple[Gpu, ...]
    uvm_loaded: bool | None
    cuda_toolkits: tuple[FoundFile, ...]
    cudnn_headers: tuple[FoundFile, ...]
    site: Site
    _record: dict[str, Any] = field(repr=False, compare=False)

    @property
    def glibc_version(self) -> tuple[int, ...] | None:
        return self.libc_version if self.libc_family == "glibc" else None

    @property
    def glibc(self) -> str | None:
        return _dotted(self.glibc_version) if self.glibc_version else None

    @property
    def glibcxx(self) -> str | None:
        return _dotted(self.glibcxx_version) if self.glibcxx_version else None

    @property
    def libc(self) -> str | None:
        """``glibc 2.31``, ``musl 1.2.4``, ``musl``; None when the probe could not tell."""
        if self.libc_family is None:
            return None
        version = f" {_dotted(self.libc_version)}" if self.libc_version else ""
        return f"{self.libc_family}{version}"

    def describe(self) -> str:
        """One line: the OS, arch and C library."""
        os_name = self.os_pretty or f"{self.os_id or '?'} {self.os_version or ''}".strip()
        libc = f"{self.libc_family or 'libc?'} {self.glibc or ''}".strip()
        return f"{os_name}, {self.arch or 'arch?'}, {libc}"

    def to_json(self) -> dict[str, Any]:
        """The probe's record as it came (a copy), to ship as PREFIX/gapship/target.json."""
        return copy.deepcopy(self._record)


def _section(data: dict[str, Any], name: str) -> dict[str, Any]:
    value = data.get(name)
    return value if isinstance(value, dict) else {}


def _items(value: object) -> list[dict[str, Any]]:
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []


def _text(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


def _int(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _flag(value: object) -> bool | None:
    return value if isinstance(value, bool) else None


def _gpu(entry: dict[str, Any]) -> Gpu:
    cc = _version_tuple(entry.get("compute_capability"))
    return Gpu(name=_text(entry.get("name")) or "GPU",
               compute_capability=(cc[0], cc[1]) if cc and len(cc) == 2 else None,
               memory_mib=_int(entry.get("memory_mib")))


def _found(value: object) -> tuple[FoundFile, ...]:
    return tuple(FoundFile(path=e["path"], version=_text(e.get("version")))
                 for e in _items(value) if _text(e.get("path")))


def _pythons(value: object) -> tuple[ProbedPython, ...]:
    found = []
    for entry in _items(value):
        path, version = _text(entry.get("path")), _version_tuple(entry.get("version"))
        if path and path.startswith("/") and version and len(version) >= 2:
            found.append(ProbedPython(path=path, version=version))
    return tuple(found)


def _sonames(value: object) -> frozenset[str]:
    return frozenset(v for v in value if isinstance(v, str)) if isinstance(value, list) \
        else frozenset()


def _site(site: dict[str, Any]) -> Site:
    tools = site.get("tools")
    image = site.get("image")
    schedulers = site.get("schedulers")
    return Site(
        module_system=_text(site.get("module_system")),
        modulepath=_text(site.get("modulepath")),
        schedulers=tuple(str(s) for s in schedulers) if isinstance(schedulers, list) else (),
        container_runtime=_text(site.get("container_runtime")),
        userns=_flag(site.get("userns")),
        tools=tuple((str(t), ok) for t, ok in tools.items() if isinstance(ok, bool))
        if isinstance(tools, dict) else (),
        image=tuple((str(t), _flag(ok)) for t, ok in image.items())
        if isinstance(image, dict) else (),
    )


def parse_target(data: Any, source: str = "target.json") -> TargetInfo:
    """Validate a probe result and return a TargetInfo. Raises TargetError in one line.

    Sections an older probe did not print are unknown (None, or empty), not an error.
    """
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
    for name in ("os", "libc", "cpu", "storage"):
        if not isinstance(data.get(name), dict):
            problems.append(f"section `{name}` is missing")
    if problems:
        raise TargetError(f"{source}: " + "; ".join(problems) + ".",
                          "The file is truncated or edited; probe the target again.")
    os_, libc, cpu = _section(data, "os"), _section(data, "libc"), _section(data, "cpu")
    storage, nvidia = _section(data, "storage"), _section(data, "nvidia")
    libraries = _section(data, "libraries")
    flags = cpu.get("flags")
    return TargetInfo(
        arch=_text(os_.get("arch")),
        kernel=_text(os_.get("kernel")),
        os_id=_text(os_.get("id")),
        os_version=_text(os_.get("version_id")),
        os_pretty=_text(os_.get("pretty_name")),
        libc_family=_text(libc.get("family")),
        libc_version=_version_tuple(libc.get("version")),
        glibcxx_version=_version_tuple(libc.get("glibcxx")),
        cxxabi_version=_version_tuple(libc.get("cxxabi")),
        gcc_s_version=_version_tuple(libc.get("gcc")),
        libstdcxx=_text(libc.get("libstdcxx")),
        libraries=_sonames(libraries.get("sonames")) if libraries else None,
        libraries_source=_text(libraries.get("source")),
        cpu_model=_text(cpu.get("model")),
        cpu_cores=_int(cpu.get("cores")),
        cpu_flags=tuple(str(f) for f in flags) if isinstance(flags, list) else (),
        x86_64_level=_int(cpu.get("x86_64_level")),
        memory_kb=_int(data.get("memory_kb")),
        home=_text(storage.get("home")),
        home_free_kb=_int(storage.get("home_free_kb")),
        home_fstype=_text(storage.get("home_fstype")),
        probe_dir=_text(storage.get("dir")),
        probe_dir_free_kb=_int(storage.get("dir_free_kb")),
        tmp_noexec=_flag(storage.get("tmp_noexec")),
        bin_sh=_text(_section(data, "shells").get("bin_sh")),
        pythons=_pythons(data.get("pythons")),
        driver_version=_version_tuple(nvidia.get("driver_version")),
        gpus=tuple(_gpu(g) for g in _items(nvidia.get("gpus"))),
        uvm_loaded=_flag(nvidia.get("uvm_loaded")),
        cuda_toolkits=_found(nvidia.get("cuda_toolkits")),
        cudnn_headers=_found(nvidia.get("cudnn_headers")),
        site=_site(_section(data, "site")),
        _record=copy.deepcopy(data),
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
