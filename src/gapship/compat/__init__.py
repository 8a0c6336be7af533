"""Compatibility knowledge as data: data/*.json loaded into frozen types and checked on load.

Every row keeps its source and whether it is verified; the planner turns unverified rows
into warnings, never refusals. The raw facts and their provenance are in
shared/reference/compat-facts.md; these files are its machine-readable form.
"""

from __future__ import annotations

import functools
import json
import re
from dataclasses import dataclass
from importlib import resources
from typing import Any

from packaging.requirements import Requirement
from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from gapship import versions
from gapship.errors import GapshipError
from gapship.node.archs import cc_of_arch

SCHEMA_VERSION = 1
# the framework table; also shipped verbatim for the doctor (gapship.doctor)
FRAMEWORKS_FILE = "frameworks.json"
# how the data files name architectures (SASS only); gapship.node.archs says what each covers
_ARCH = re.compile(r"^sm_(\d+)$")


class CompatDataError(GapshipError):
    """A compat data file is malformed: a bug in gapship's package, never the user's input."""

    exit_code = 3




@dataclass(frozen=True)
class Fact:
    """Where a row comes from."""

    source: str
    verified: bool


@dataclass(frozen=True)
class TorchVariant:
    tag: str
    cuda: str
    cudnn: str
    archs: tuple[str, ...]
    ptx: bool
    pypi_default: bool
    fact: Fact


@dataclass(frozen=True)
class TorchRelease:
    version: str
    python: SpecifierSet
    glibc: tuple[int, ...]
    variants: tuple[TorchVariant, ...]
    fact: Fact


@dataclass(frozen=True)
class TfRelease:
    version: str
    python: SpecifierSet
    cuda: str
    cudnn: str
    gpu_package: str
    and_cuda: str | None
    fact: Fact


@dataclass(frozen=True)
class JaxExtra:
    extra: str
    cuda: str
    min_driver: tuple[int, ...]
    min_compute_capability: tuple[int, int]
    cudnn_min: str
    fact: Fact


@dataclass(frozen=True)
class JaxRelease:
    version: str
    python: SpecifierSet
    extras: tuple[str, ...]
    cudnn_min: str
    fact: Fact


@dataclass(frozen=True)
class CudaToolkit:
    cuda: str
    toolkit_driver: tuple[int, ...]
    minor_compat_min: tuple[int, ...] | None
    fact: Fact

    @property
    def min_driver(self) -> tuple[int, ...]:
        """The lowest driver that runs programs built with this toolkit."""
        return self.minor_compat_min or self.toolkit_driver


@dataclass(frozen=True)
class ArchFloor:
    from_cuda: tuple[int, ...]
    min_sass: str
    fact: Fact


@dataclass(frozen=True)
class ArchCeiling:
    from_cuda: tuple[int, ...]
    max_sass: str
    fact: Fact


@dataclass(frozen=True)
class CpuNeed:
    distribution: str
    versions: SpecifierSet
    flags: tuple[str, ...]
    x86_64_level: int | None
    reason: str
    fact: Fact


@dataclass(frozen=True)
class OsGlibc:
    os: str
    version: str
    glibc: tuple[int, ...]
    verified: bool


@dataclass(frozen=True)
class LegacyManylinux:
    """A manylinux tag older than the PEP 600 names (manylinux2014), and the glibc it means."""

    tag: str
    glibc: tuple[int, ...]


@dataclass(frozen=True)
class GpuModel:
    match: str
    compute_capability: tuple[int, int]


@dataclass(frozen=True)
class Framework:
    """A framework family: the names env.toml may give for it (``requirements``, the family
    first) and the distributions whose presence means an environment ships it."""

    family: str
    requirements: tuple[str, ...]
    installed_as: tuple[str, ...]
    gpu_names: tuple[str, ...] = ()
    gpu_extras: tuple[str, ...] = ()

    def asks_for_gpu(self, requirement: Requirement) -> bool:
        """Whether this requirement (in env.toml's `packages`) asks for the GPU build:
        torch, tensorflow-gpu==1.11.0, tensorflow[and-cuda], jax[cuda12]."""
        extras = {canonicalize_name(e) for e in requirement.extras}
        return (canonicalize_name(requirement.name) in self.gpu_names
                or not extras.isdisjoint(self.gpu_extras))


@dataclass(frozen=True)
class CompatData:
    torch: tuple[TorchRelease, ...]
    tensorflow: tuple[TfRelease, ...]
    tf_archs: tuple[str, ...]
    tf_ptx: bool
    tf_glibc: tuple[int, ...]
    jax: tuple[JaxRelease, ...]
    jax_extras: dict[str, JaxExtra]
    toolkits: tuple[CudaToolkit, ...]
    arch_floors: tuple[ArchFloor, ...]
    arch_ceilings: tuple[ArchCeiling, ...]
    cpu_needs: tuple[CpuNeed, ...]
    os_glibc: tuple[OsGlibc, ...]
    legacy_manylinux: tuple[LegacyManylinux, ...]
    gpu_models: tuple[GpuModel, ...]
    torch_index: str
    sources: dict[str, str]
    frameworks: tuple[Framework, ...]

    def framework_named(self, name: str) -> Framework | None:
        """The framework a requirement name means (torch, tensorflow-gpu, ...), or None."""
        key = canonicalize_name(name)
        return next((f for f in self.frameworks if key in f.requirements), None)

    def gpu_framework(self, requirement: Requirement) -> Framework | None:
        """The framework whose GPU build a requirement in `packages` asks for, or None
        (not a framework, or a CPU build: tensorflow-cpu, plain jax)."""
        framework = self.framework_named(requirement.name)
        return framework if framework and framework.asks_for_gpu(requirement) else None

    def toolkit(self, cuda: str) -> CudaToolkit | None:
        """The row of this CUDA version (major.minor), or None when the data lacks it."""
        key = versions.release(cuda)[:2]
        return next((t for t in self.toolkits if versions.release(t.cuda)[:2] == key), None)

    def min_driver_for(self, cuda: str) -> tuple[int, ...] | None:
        """The lowest driver that runs programs of CUDA ``cuda`` (major.minor): its row's, or
        for a minor the data lacks (13.5), its major's minor-version-compatibility minimum;
        None when the data knows neither."""
        row = self.toolkit(cuda)
        if row is not None:
            return row.min_driver
        major = versions.release(cuda)[0]
        floors = [t.minor_compat_min for t in self.toolkits
                  if versions.release(t.cuda)[0] == major and t.minor_compat_min]
        return max(floors) if floors else None

    def max_cuda_for_driver(self, driver: tuple[int, ...]) -> CudaToolkit | None:
        """The newest toolkit whose programs this driver runs (minor compatibility included)."""
        usable = [t for t in self.toolkits if t.min_driver <= driver]
        return max(usable, key=lambda t: versions.release(t.cuda)) if usable else None

    def min_sass(self, cuda: str) -> tuple[int, int]:
        """The oldest GPU architecture this CUDA toolkit still builds for."""
        floors = [f for f in self.arch_floors if f.from_cuda <= versions.release(cuda)]
        return cc_of_arch(max(floors, key=lambda f: f.from_cuda).min_sass) if floors else (2, 0)

    def max_sass(self, cuda: str) -> tuple[int, int] | None:
        """The newest GPU architecture this CUDA toolkit builds SASS for (None: unknown)."""
        rows = [c for c in self.arch_ceilings if c.from_cuda <= versions.release(cuda)]
        return cc_of_arch(max(rows, key=lambda c: c.from_cuda).max_sass) if rows else None

    def gpu_model_cc(self, name: str) -> tuple[int, int] | None:
        """Compute capability from a GPU's name (unverified table): None when unknown."""
        words = set(re.split(r"[^A-Za-z0-9]+", name.upper()))
        for model in sorted(self.gpu_models, key=lambda m: -len(m.match)):
            if model.match.upper() in words:
                return model.compute_capability
        return None

    def glibc_of_os(self, os_id: str | None, version: str | None) -> OsGlibc | None:
        """The glibc of an OS release ("debian", "11" or "11.3"); None when the table lacks it."""
        if not os_id or not version:
            return None
        return next((row for row in self.os_glibc
                     if row.os == os_id and versions.matches(version, row.version)), None)

    def cpu_needs_of(self, packages: list[tuple[str, str]]) -> list[CpuNeed]:
        """The CPU needs that apply to these (distribution, version) pairs."""
        out = []
        for name, version in packages:
            key = canonicalize_name(name)
            for need in self.cpu_needs:
                try:
                    applies = Version(version) in need.versions
                except InvalidVersion:
                    applies = False
                if need.distribution == key and applies:
                    out.append(need)
        return out

    def source(self, key: str) -> str:
        return self.sources.get(key, key)


class _Reader:
    """Reads one data file; every malformed row raises CompatDataError naming file and row."""

    def __init__(self, name: str, text: str | None = None) -> None:
        self.name = name
        if text is None:
            text = resources.files(__package__).joinpath("data").joinpath(name).read_text(
                encoding="utf-8")
        self.doc: dict[str, Any] = json.loads(text)
        if self.doc.get("schema_version") != SCHEMA_VERSION:
            self.fail("the file", f"schema_version is not {SCHEMA_VERSION}")
        self.sources: dict[str, str] = self.doc.get("sources", {})

    def fail(self, where: str, why: str) -> None:
        raise CompatDataError(f"compat data {self.name}, {where}: {why}.",
                              "This is a bug in gapship's package data; please report it.")

    def fact(self, row: dict[str, Any], where: str, default: bool | None = None) -> Fact:
        source = row.get("source", self.doc.get("source"))
        if source not in self.sources:
            self.fail(where, f"source {source!r} is not listed under `sources`")
        verified = row.get("verified", default if default is not None
                           else self.doc.get("verified"))
        if not isinstance(verified, bool):
            self.fail(where, "`verified` must be true or false")
        return Fact(source=str(source), verified=bool(verified))

    def version(self, text: Any, where: str) -> tuple[int, ...]:
        try:
            Version(str(text))
            return versions.release(str(text))
        except (InvalidVersion, ValueError):
            self.fail(where, f"{text!r} is not a version")
            raise AssertionError from None  # unreachable: fail raises

    def specifier(self, text: Any, where: str) -> SpecifierSet:
        try:
            return SpecifierSet(str(text))
        except InvalidSpecifier:
            self.fail(where, f"{text!r} is not a version specifier")
            raise AssertionError from None

    def archs(self, archs: Any, where: str) -> tuple[str, ...]:
        if not isinstance(archs, list) or not all(isinstance(a, str) and _ARCH.match(a)
                                                  for a in archs):
            self.fail(where, "archs must be a list such as [\"sm_80\", \"sm_90\"]")
        return tuple(archs)

    def unique(self, keys: list[str], what: str) -> None:
        dupes = sorted({k for k in keys if keys.count(k) > 1})
        if dupes:
            self.fail(what, f"duplicate rows {', '.join(dupes)}")


def _torch(r: _Reader) -> tuple[TorchRelease, ...]:
    out = []
    for row in r.doc["releases"]:
        where = f"torch {row.get('version')}"
        fact = r.fact(row, where)
        variants = []
        for v in row["variants"]:
            vw = f"{where} {v.get('tag')}"
            r.version(v["cuda"], vw)
            r.version(v["cudnn"], vw)
            if v["tag"] != "cu" + v["cuda"].replace(".", ""):
                r.fail(vw, f"tag {v['tag']} does not match CUDA {v['cuda']}")
            variants.append(TorchVariant(
                tag=v["tag"], cuda=v["cuda"], cudnn=v["cudnn"], archs=r.archs(v["archs"], vw),
                ptx=bool(v["ptx"]), pypi_default=bool(v.get("pypi_default", False)),
                fact=Fact(fact.source, bool(v.get("verified", fact.verified)))))
        if sum(v.pypi_default for v in variants) > 1:
            r.fail(where, "more than one variant is the PyPI default")
        r.version(row["version"], where)
        out.append(TorchRelease(version=row["version"], python=r.specifier(row["python"], where),
                                glibc=r.version(row["glibc"], where), variants=tuple(variants),
                                fact=fact))
    r.unique([t.version for t in out], "releases")
    return tuple(sorted(out, key=lambda t: versions.release(t.version), reverse=True))


def _tensorflow(r: _Reader) -> tuple[TfRelease, ...]:
    out = []
    for row in r.doc["releases"]:
        where = f"tensorflow {row.get('version')}"
        r.version(row["version"], where)
        r.version(row["cuda"], where)
        r.version(row["cudnn"], where)
        out.append(TfRelease(version=row["version"], python=r.specifier(row["python"], where),
                             cuda=row["cuda"], cudnn=row["cudnn"], gpu_package=row["gpu_package"],
                             and_cuda=row.get("and_cuda"), fact=r.fact(row, where)))
    r.unique([t.version for t in out], "releases")
    return tuple(sorted(out, key=lambda t: versions.release(t.version), reverse=True))


def _jax(r: _Reader) -> tuple[tuple[JaxRelease, ...], dict[str, JaxExtra]]:
    extras = {}
    for row in r.doc["extras"]:
        where = f"jax extra {row.get('extra')}"
        cc = r.version(row["min_compute_capability"], where)
        extras[row["extra"]] = JaxExtra(
            extra=row["extra"], cuda=row["cuda"], min_driver=r.version(row["min_driver"], where),
            min_compute_capability=(cc[0], cc[1]), cudnn_min=row["cudnn_min"],
            fact=r.fact(row, where))
    releases = []
    for row in r.doc["releases"]:
        where = f"jax {row.get('version')}"
        r.version(row["version"], where)
        unknown = [e for e in row["extras"] if e not in extras]
        if unknown:
            r.fail(where, f"extras {unknown} are not described under `extras`")
        releases.append(JaxRelease(version=row["version"], python=r.specifier(row["python"], where),
                                   extras=tuple(row["extras"]), cudnn_min=row["cudnn_min"],
                                   fact=r.fact(row, where)))
    r.unique([j.version for j in releases], "releases")
    return tuple(sorted(releases, key=lambda j: versions.release(j.version), reverse=True)), extras


def _cuda(r: _Reader
          ) -> tuple[tuple[CudaToolkit, ...], tuple[ArchFloor, ...], tuple[ArchCeiling, ...]]:
    toolkits = []
    for row in r.doc["toolkits"]:
        where = f"CUDA {row.get('cuda')}"
        r.version(row["cuda"], where)
        compat = row.get("minor_compat_min")
        toolkits.append(CudaToolkit(
            cuda=row["cuda"], toolkit_driver=r.version(row["toolkit_driver"], where),
            minor_compat_min=r.version(compat, where) if compat else None,
            fact=r.fact(row, where)))
    r.unique([t.cuda for t in toolkits], "toolkits")
    floors = []
    for row in r.doc["arch_floors"]:
        where = f"arch floor from CUDA {row.get('from_cuda')}"
        r.archs([row["min_sass"]], where)
        floors.append(ArchFloor(from_cuda=r.version(row["from_cuda"], where),
                                min_sass=row["min_sass"], fact=r.fact(row, where)))
    ceilings = []
    for row in r.doc["arch_ceilings"]:
        where = f"arch ceiling from CUDA {row.get('from_cuda')}"
        r.archs([row["max_sass"]], where)
        ceilings.append(ArchCeiling(from_cuda=r.version(row["from_cuda"], where),
                                    max_sass=row["max_sass"], fact=r.fact(row, where)))
    return tuple(toolkits), tuple(floors), tuple(ceilings)


def _cpu(r: _Reader) -> tuple[CpuNeed, ...]:
    out = []
    for row in r.doc["needs"]:
        where = f"cpu need {row.get('distribution')} {row.get('versions')}"
        level = row.get("x86_64_level")
        if level is not None and level not in (1, 2, 3, 4):
            r.fail(where, "x86_64_level must be 1-4 or null")
        out.append(CpuNeed(distribution=row["distribution"],
                           versions=r.specifier(row["versions"], where),
                           flags=tuple(row["flags"]), x86_64_level=level, reason=row["reason"],
                           fact=r.fact(row, where)))
    return tuple(out)


def _os_glibc(r: _Reader) -> tuple[OsGlibc, ...]:
    out = []
    for row in r.doc["os_glibc"]:
        where = f"os {row.get('os')} {row.get('version')}"
        if "source" in row and row["source"] not in r.sources:
            r.fail(where, f"source {row['source']!r} is not listed under `sources`")
        out.append(OsGlibc(os=row["os"], version=row["version"],
                           glibc=r.version(row["glibc"], where), verified=bool(row["verified"])))
    r.unique([f"{o.os} {o.version}" for o in out], "os_glibc")
    return tuple(out)


def _frameworks(r: _Reader) -> tuple[Framework, ...]:
    r.fact(r.doc, "the file", default=True)
    out = []
    for row in r.doc["frameworks"]:
        where = f"framework {row.get('family')}"
        names = [*row["requirements"], *row["installed_as"]]
        if any(not isinstance(n, str) or n != canonicalize_name(n) for n in names):
            r.fail(where, "names must be PyPI names in lower case with '-'")
        if row["requirements"][:1] != [row["family"]]:
            r.fail(where, "the first of `requirements` must be the family")
        gpu_names, gpu_extras = row.get("gpu_names", []), row.get("gpu_extras", [])
        if not set(gpu_names) <= set(row["requirements"]):
            r.fail(where, "`gpu_names` must be among `requirements`")
        if any(not isinstance(e, str) or e != canonicalize_name(e) for e in gpu_extras):
            r.fail(where, "`gpu_extras` must be extras in lower case with '-'")
        out.append(Framework(family=row["family"], requirements=tuple(row["requirements"]),
                             installed_as=tuple(row["installed_as"]),
                             gpu_names=tuple(gpu_names), gpu_extras=tuple(gpu_extras)))
    r.unique([n for f in out for n in f.requirements], "requirements")
    r.unique([n for f in out for n in f.installed_as], "installed_as")
    return tuple(out)


@functools.cache
def _system_libs() -> dict[str, Any]:
    """data/system_libs.json, read once."""
    text = resources.files(__package__).joinpath("data").joinpath("system_libs.json").read_text(
        encoding="utf-8")
    data: dict[str, Any] = json.loads(text)
    return data


@functools.cache
def system_libraries() -> frozenset[str]:
    """Library names that every glibc system provides (data/system_libs.json): never shipped."""
    return frozenset(_system_libs()["libraries"])


@functools.cache
def headless_alternatives() -> dict[str, str]:
    """Distribution -> its build that needs no display libraries (opencv-python ->
    opencv-python-headless), from data/headless_alternatives.json."""
    text = resources.files(__package__).joinpath("data").joinpath(
        "headless_alternatives.json").read_text(encoding="utf-8")
    data: dict[str, str] = json.loads(text)["alternatives"]
    return data


@functools.cache
def glibc_libraries() -> frozenset[str]:
    """glibc's own libraries (data/system_libs.json): on every glibc target, listed or not."""
    return frozenset(_system_libs()["glibc"])


def is_system_library(name: str) -> bool:
    """Whether every glibc system has ``name`` (the dynamic loaders included)."""
    return name in system_libraries() or name.startswith("ld-linux")


@functools.cache
def load() -> CompatData:
    """Load and check every data file (once per process)."""
    torch_r, tf_r, jax_r = _Reader("torch.json"), _Reader("tensorflow.json"), _Reader("jax.json")
    cuda_r, cpu_r, plat_r, gpu_r = (_Reader("cuda.json"), _Reader("cpu.json"),
                                    _Reader("platforms.json"), _Reader("gpus.json"))
    frameworks_r = _Reader(FRAMEWORKS_FILE)
    jax, jax_extras = _jax(jax_r)
    toolkits, floors, ceilings = _cuda(cuda_r)
    tf_archs = tf_r.doc["archs"]
    os_glibc = _os_glibc(plat_r)
    legacy_manylinux = tuple(
        LegacyManylinux(tag=row["tag"], glibc=plat_r.version(row["glibc"], row["tag"]))
        for row in plat_r.doc["manylinux"])
    gpu_r.fact(gpu_r.doc, "the file")
    gpu_models = []
    for row in gpu_r.doc["gpus"]:
        cc = gpu_r.version(row["compute_capability"], f"gpu {row.get('match')}")
        gpu_models.append(GpuModel(match=row["match"], compute_capability=(cc[0], cc[1])))
    frameworks = _frameworks(frameworks_r)
    jax_gpu = next((f.gpu_extras for f in frameworks if f.family == "jax"), ())
    if set(jax_gpu) != set(jax_extras):
        frameworks_r.fail("framework jax", f"`gpu_extras` {sorted(jax_gpu)} are not the extras "
                          f"of jax.json ({sorted(jax_extras)})")
    sources = {}
    for reader in (torch_r, tf_r, jax_r, cuda_r, cpu_r, plat_r, gpu_r, frameworks_r):
        sources.update(reader.sources)
    return CompatData(
        torch=_torch(torch_r), tensorflow=_tensorflow(tf_r),
        tf_archs=tf_r.archs(tf_archs["list"], "archs"), tf_ptx=bool(tf_archs["ptx"]),
        tf_glibc=tf_r.version(tf_r.doc["glibc"]["value"], "glibc"),
        jax=jax, jax_extras=jax_extras, toolkits=toolkits, arch_floors=floors,
        arch_ceilings=ceilings,
        cpu_needs=_cpu(cpu_r), os_glibc=os_glibc, legacy_manylinux=legacy_manylinux,
        gpu_models=tuple(gpu_models),
        torch_index=torch_r.doc["index_url"], sources=sources, frameworks=frameworks)
