"""Choose the GPU stack: the newest framework build that this node's driver, GPUs, CPU, glibc
and Python all allow, from the compat data; or refuse, naming the nearest build that works.

Pure: no I/O. The input is the spec, the target's probe and the compat data.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.version import Version

from gapship.compat import (
    CompatData,
    Fact,
)
from gapship.errors import CompatError
from gapship.node.archs import arch_covers, arch_of_cc, cc_of_arch
from gapship.plan.types import Decision, GpuPlan
from gapship.probe import TargetInfo
from gapship.spec import Spec
from gapship.versions import dotted, driver_text, matches, release


def node_driver(spec: Spec, target: TargetInfo) -> tuple[int, ...] | None:
    """The compute nodes' driver: declared in env.toml, else probed; None when unknown."""
    if spec.compute.driver:
        return _driver_tuple(spec.compute.driver)
    return target.driver_version


def _driver_tuple(text: str | None) -> tuple[int, ...] | None:
    if not text or not re.match(r"^\d+(\.\d+)*$", text):
        return None
    return release(text)


@dataclass(frozen=True)
class NodeFacts:
    """What the plan checks GPU builds against, and where each fact came from."""

    driver: tuple[int, ...] | None
    gpus: tuple[tuple[str, tuple[int, int]], ...]  # (name, compute capability), distinct
    glibc: tuple[int, ...] | None
    cpu_flags: frozenset[str]
    x86_64_level: int | None


@dataclass(frozen=True)
class Candidate:
    """One framework build that could ship."""

    family: str
    release: str
    package: str
    extra: str | None
    cuda: str | None
    cudnn: str | None
    tag: str | None
    index: str | None  # None: PyPI
    archs: tuple[str, ...]
    ptx: bool
    min_cc: tuple[int, int] | None
    min_driver: tuple[int, ...] | None
    python: SpecifierSet
    glibc: tuple[int, ...] | None
    local_toolkit: bool
    fact: Fact

    @property
    def label(self) -> str:
        cuda = f" with CUDA {self.cuda}" if self.cuda else ""
        return f"{self.package} {self.release}{cuda}"

    @property
    def requirement(self) -> str:
        extra = f"[{self.extra}]" if self.extra else ""
        return f"{self.package}{extra}=={self.release}.*"


@dataclass(frozen=True)
class GpuChoice:
    """The chosen build: what to add to the resolution and what the lock records."""

    requirements: tuple[str, ...]
    indexes: tuple[str, ...]
    gpu: GpuPlan
    decisions: tuple[Decision, ...]
    warnings: tuple[str, ...]
    candidate: str | None = None  # the chosen build's label, to reject it if it resolves wrong


def node_facts(spec: Spec, target: TargetInfo, compat: CompatData
               ) -> tuple[NodeFacts, list[Decision], list[str]]:
    """The driver and GPUs (probed, or declared for compute nodes), glibc and CPU."""
    decisions: list[Decision] = []
    warnings: list[str] = []
    gpus: list[tuple[str, tuple[int, int]]] = []
    seen: set[str] = set()
    for gpu in target.gpus:
        name = gpu.name
        if gpu.compute_capability is not None:
            gpus.append((name, gpu.compute_capability))
            continue
        guessed = compat.gpu_model_cc(name)
        if name in seen:
            if guessed is not None:
                gpus.append((name, guessed))
            continue
        seen.add(name)
        if guessed is None:
            warnings.append(f"the probe could not read the compute capability of the {name} "
                            "and gapship's GPU table does not know it: builds are not checked "
                            "against it; declare it with compute = { compute_capability = "
                            "[\"X.Y\"] } in env.toml")
            continue
        gpus.append((name, guessed))
        warnings.append(f"the {name}'s compute capability {dotted(guessed)} comes from gapship's "
                        "GPU table (unverified; this driver's nvidia-smi cannot report it)")
    declared = spec.compute
    driver = node_driver(spec, target)
    if declared.compute_capabilities:
        gpus = [("declared GPU", (release(c)[0], release(c)[1]))
                for c in declared.compute_capabilities]
    if declared.driver or declared.compute_capabilities:
        decisions.append(Decision(
            "compute nodes", f"driver {declared.driver or '?'}, compute capability "
            + ", ".join(sorted({dotted(cc) for _, cc in gpus})) or "?",
            "declared in env.toml's compute table", "env.toml"))
    elif driver is None and not gpus:
        warnings.append("the probed machine has no NVIDIA driver or GPU (a login node?): the "
                        "plan cannot check the driver or the GPUs. Probe a compute node "
                        "(e.g. `srun sh probe.sh > target.json`) or declare compute = { driver = "
                        "\"550.54.15\", compute_capability = [\"9.0\"] } in env.toml")
    distinct = tuple(sorted(set(gpus), key=lambda g: g[1]))
    return (NodeFacts(driver=driver, gpus=distinct,
                      glibc=target.glibc_version, cpu_flags=frozenset(target.cpu_flags),
                      x86_64_level=target.x86_64_level), decisions, warnings)


def _allows(req: Requirement | None, release: str) -> bool:
    """Whether some patch version of a release series satisfies the user's constraint."""
    if req is None or not req.specifier:
        return True
    return any(req.specifier.contains(Version(f"{release}.{n}"), prereleases=False)
               for n in range(0, 12)) or req.specifier.contains(Version(release))


def candidates(spec: Spec, compat: CompatData) -> list[Candidate]:
    """Every build of the spec's framework that the compat data knows, best first."""
    req = spec.framework_requirement
    family = spec.framework_family
    assert req is not None
    pinned_cuda = spec.cuda.version if spec.cuda.version not in ("auto", "none") else None
    out: list[Candidate] = []

    def cuda_ok(cuda: str) -> bool:
        return pinned_cuda is None or matches(cuda, pinned_cuda)

    if family == "torch":
        for rel in compat.torch:
            variants = sorted(rel.variants, key=lambda v: (not v.pypi_default, -release(v.cuda)[0],
                                                           -release(v.cuda)[1]))
            for v in variants:
                if not cuda_ok(v.cuda):
                    continue
                out.append(Candidate(
                    family="torch", release=rel.version, package="torch", extra=None,
                    cuda=v.cuda, cudnn=v.cudnn, tag=v.tag,
                    index=None if v.pypi_default else compat.torch_index.format(tag=v.tag),
                    archs=v.archs, ptx=v.ptx, min_cc=None, min_driver=None, python=rel.python,
                    glibc=rel.glibc, local_toolkit=False, fact=v.fact))
    elif family == "tensorflow":
        user_extra = ",".join(sorted(req.extras)) or None
        for tf in compat.tensorflow:
            if not cuda_ok(tf.cuda):
                continue
            # the documented list, within what this CUDA can build (none newer: PTX covers them)
            floor, ceiling = compat.min_sass(tf.cuda), compat.max_sass(tf.cuda)
            archs = tuple(a for a in compat.tf_archs if cc_of_arch(a) >= floor
                          and (ceiling is None or cc_of_arch(a) <= ceiling))
            wheels = tf.and_cuda is not None and spec.cuda.path is None
            # 1.x GPU builds are the tensorflow-gpu wheel; from 2.1 the plain wheel is one
            package = tf.gpu_package
            out.append(Candidate(
                family="tensorflow", release=tf.version, package=package,
                extra=user_extra or ("and-cuda" if wheels else None), cuda=tf.cuda,
                cudnn=tf.cudnn, tag=None, index=None, archs=archs, ptx=compat.tf_ptx,
                min_cc=None, min_driver=None, python=tf.python, glibc=compat.tf_glibc,
                local_toolkit=not wheels, fact=tf.fact))
    elif family == "jax":
        user_extras = [e for e in req.extras if e in compat.jax_extras]
        for jax in compat.jax:
            names = user_extras or sorted(jax.extras, key=lambda e: -release(
                compat.jax_extras[e].cuda)[0])
            for name in names:
                if name not in jax.extras:
                    continue
                extra = compat.jax_extras[name]
                if not cuda_ok(extra.cuda):
                    continue
                out.append(Candidate(
                    family="jax", release=jax.version, package="jax", extra=name,
                    cuda=extra.cuda, cudnn=max(extra.cudnn_min, jax.cudnn_min, key=release),
                    tag=None, index=None, archs=(), ptx=True,
                    min_cc=extra.min_compute_capability, min_driver=extra.min_driver,
                    python=jax.python, glibc=None, local_toolkit=False,
                    fact=Fact(jax.fact.source, jax.fact.verified and extra.fact.verified)))
    return [c for c in out if _allows(req, c.release)]


def _cpu_problem(c: Candidate, node: NodeFacts, compat: CompatData) -> str | None:
    for need in compat.cpu_needs:
        if need.distribution != c.package or not need.fact.verified:
            continue
        if not _allows(Requirement(f"{c.package}{need.versions}"), c.release):
            continue
        missing = [f for f in need.flags if f not in node.cpu_flags] if node.cpu_flags else []
        if missing:
            return f"{need.reason}; this CPU lacks {', '.join(missing)}"
    return None


def problems(c: Candidate, node: NodeFacts, python_version: str, compat: CompatData,
             local: tuple[str, str | None] | None = None) -> list[str]:
    """Why this build cannot work on the node; empty when it can."""
    out: list[str] = []
    if python_version not in c.python:
        out.append(f"{c.package} {c.release} supports Python {c.python}, not {python_version}")
    if c.glibc and node.glibc and node.glibc < c.glibc:
        out.append(f"{c.package} {c.release} needs glibc >= {dotted(c.glibc)} (manylinux_2_"
                   f"{c.glibc[1]} wheels); the target has {dotted(node.glibc)}")
    if c.cuda and node.driver:
        row = compat.toolkit(c.cuda)
        need = c.min_driver or (row.min_driver if row else None)
        if need and node.driver < need:
            best = compat.max_cuda_for_driver(node.driver)
            runs = f"CUDA {best.cuda} at most" if best else "no CUDA this gapship knows"
            out.append(f"driver {driver_text(node.driver)} runs {runs}; CUDA {c.cuda} needs driver "
                       f">= {driver_text(need)}")
    for name, cc in node.gpus:
        if c.min_cc and cc < c.min_cc:
            out.append(f"{c.label} needs compute capability >= {dotted(c.min_cc)}; the {name} is "
                       f"{dotted(cc)}")
        elif c.archs and not arch_covers(c.archs, cc, c.ptx):
            out.append(f"{c.label} carries {', '.join(c.archs)}"
                       f"{' (+PTX)' if c.ptx else ''}; the {name} is {arch_of_cc(cc)}")
    cpu = _cpu_problem(c, node, compat)
    if cpu:
        out.append(cpu)
    if c.local_toolkit and local is not None:
        cuda, cudnn = local
        if release(cuda)[:2] != release(c.cuda or "0")[:2]:
            out.append(f"{c.package} {c.release} needs CUDA {c.cuda}; the local toolkit is "
                       f"CUDA {cuda}")
        if cudnn and c.cudnn and release(cudnn)[0] != release(c.cudnn)[0]:
            out.append(f"{c.package} {c.release} needs cuDNN {release(c.cudnn)[0]}; the local "
                       f"cuDNN is {cudnn}")
    return out


def _available(c: Candidate, indexes: tuple[str, ...]) -> bool:
    return c.index is None or c.index.rstrip("/") in {i.rstrip("/") for i in indexes}


def _pypi_note(c: Candidate) -> str:
    return (f" (from {c.index}: add it to `indexes` in env.toml and set framework = "
            f"\"{c.package}=={c.release}.*\")") if c.index else ""


def decide(spec: Spec, target: TargetInfo, python_version: str, compat: CompatData,
           local: tuple[str, str | None] | None = None, rejected: tuple[str, ...] = ()
           ) -> GpuChoice:
    """The build to ship, with every decision and warning; CompatError when none can work.

    ``local`` is the (CUDA, cuDNN) version of the local toolkit named in env.toml, if any.
    """
    req = spec.framework_requirement
    assert req is not None and spec.framework_family is not None
    if target.libc_family == "musl":
        raise CompatError(f"the target's C library is musl ({target.os_pretty or 'Alpine?'}); "
                          f"{spec.framework_family}'s GPU builds and NVIDIA's CUDA wheels "
                          "need glibc.", "Use a glibc node of the cluster, or run the "
                          "environment there in a glibc container (Apptainer).")
    node, decisions, warnings = node_facts(spec, target, compat)
    allowed = [c for c in candidates(spec, compat) if c.label not in rejected]
    everything = [c for c in candidates(replace(spec, framework=req.name), compat)
                  if c.label not in rejected]
    if not allowed:
        raise CompatError(f"no {spec.framework_family} release that gapship knows matches "
                          f"`{spec.framework}`"
                          + (f" with CUDA {spec.cuda.version}" if spec.cuda.version
                             not in ("auto", "none") else "") + ".",
                          "Known releases: "
                          f"{', '.join(sorted({c.release for c in everything}, key=release))}.")
    judged = [(c, problems(c, node, python_version, compat, local)) for c in allowed]
    chosen = next((c for c, p in judged if not p and _available(c, spec.indexes)), None)
    if chosen is None:
        raise CompatError(_refusal(judged, everything, node, python_version, spec, compat, local),
                          "Change env.toml as suggested and plan again.")
    skipped = next(((c, p) for c, p in judged if c is not chosen and p), None)
    if skipped and release(skipped[0].release) > release(chosen.release):
        decisions.append(Decision(f"{skipped[0].package} {skipped[0].release}", "not shipped",
                                  "; ".join(skipped[1]),
                                  f"compat data: {skipped[0].fact.source}"))
    better = next((c for c, p in judged if not p and not _available(c, spec.indexes)
                   and release(c.release) > release(chosen.release)), None)
    if better is not None:
        warnings.append(f"{better.label} also runs here and is newer{_pypi_note(better)}")
    if not chosen.fact.verified:
        warnings.append(f"gapship's facts about {chosen.label} are marked unverified (source: "
                        f"{chosen.fact.source}); the doctor checks them on the node")
    decisions += _explain(chosen, node, python_version, compat, spec)
    gpu = GpuPlan(
        framework=chosen.family, framework_version=chosen.release, cuda=chosen.cuda,
        cudnn=chosen.cudnn, cuda_source="toolkit" if chosen.local_toolkit else "wheels",
        min_driver=_min_driver(chosen, compat),
        archs=(chosen.archs + ((f"compute_{chosen.archs[-1][3:]}",) if chosen.ptx and
                               chosen.archs else ())) if chosen.archs else None,
        toolkit_path=spec.cuda.path, cudnn_path=spec.cudnn.path, nvcc=spec.cuda.nvcc,
        ld_library_path=("cuda/lib64",) if chosen.local_toolkit else (),
        xla_cuda_data_dir=chosen.family == "jax" and chosen.local_toolkit)
    if chosen.local_toolkit and spec.cuda.path is None:
        warnings.append(f"{chosen.label} and cuDNN {chosen.cudnn} are needed and no wheel "
                        "provides them: give a local toolkit, cuda = { path = \"/usr/local/"
                        f"cuda-{chosen.cuda}\" }} and cudnn = {{ path = ... }} in env.toml; "
                        "pack refuses until then")
    requirements = [chosen.requirement]
    if spec.framework and Requirement(spec.framework).specifier:
        requirements.append(spec.framework)
    return GpuChoice(requirements=tuple(requirements),
                     indexes=(chosen.index,) if chosen.index else (), gpu=gpu,
                     decisions=tuple(decisions), warnings=tuple(warnings),
                     candidate=chosen.label)


def _min_driver(c: Candidate, compat: CompatData) -> str | None:
    if c.min_driver:
        return driver_text(c.min_driver)
    row = compat.toolkit(c.cuda) if c.cuda else None
    return driver_text(row.min_driver) if row else None


def _explain(c: Candidate, node: NodeFacts, python_version: str, compat: CompatData,
             spec: Spec) -> list[Decision]:
    source = f"compat data: {c.fact.source}"
    named = (f"named in packages (`{spec.framework}`): " if spec.framework_in_packages else "")
    out = [Decision("framework", f"{c.package} {c.release}" + (f" [{c.extra}]" if c.extra else ""),
                    f"{named}the newest build that env.toml's `{c.package}` allows and that runs "
                    f"here (Python {python_version})", source)]
    if c.cuda:
        where = ("a local toolkit" if c.local_toolkit else
                 f"{'PyPI' if c.index is None else c.index} wheels")
        row = compat.toolkit(c.cuda)
        driver = (f"; driver {driver_text(node.driver)} >= {_min_driver(c, compat)}" if node.driver
                  else "; the driver is not known")
        out.append(Decision("CUDA", f"{c.cuda} ({where})", f"the build's CUDA{driver}",
                            f"compat data: {row.fact.source if row else c.fact.source}"))
        if c.cudnn:
            out.append(Decision("cuDNN", c.cudnn, f"what {c.package} {c.release} is built with",
                                source))
    if node.gpus:
        out.append(Decision("GPU architectures",
                            ", ".join(f"{n} ({arch_of_cc(cc)})" for n, cc in node.gpus),
                            ("covered by the build's " + (", ".join(c.archs) + (" +PTX" if c.ptx
                                                                                 else "")
                                                          if c.archs else
                                                          f"floor {arch_of_cc(c.min_cc)}"
                                                          if c.min_cc else "archs")), source))
    return out


_PYTHONS = tuple(f"3.{n}" for n in range(14, 5, -1))


def _runs_on(python: SpecifierSet, minor: str) -> bool:
    """Whether some 3.X.N of this minor version is within a build's Python range."""
    return any(f"{minor}.{n}" in python for n in range(0, 30))


def python_fits(spec: Spec, compat: CompatData) -> tuple[tuple[str, ...], str] | None:
    """The Python versions ("3.X", oldest first) that some build of the spec's framework runs
    on, and the source of that fact; None when there is no framework or no known build.
    Pure: asked before an interpreter is fetched or a twin built."""
    if spec.framework_family is None:
        return None
    builds = candidates(spec, compat)
    if not builds:
        return None  # decide() names the releases there are
    fits = sorted((py for py in _PYTHONS if any(_runs_on(c.python, py) for c in builds)),
                  key=release)
    return tuple(fits), builds[0].fact.source


def _with_other_python(builds: list[Candidate], node: NodeFacts, compat: CompatData,
                       local: tuple[str, str | None] | None = None
                       ) -> tuple[Candidate, str] | None:
    """The newest build that works here with another Python, and that Python."""
    for c in builds:
        for py in _PYTHONS:
            if f"{py}.0" in c.python and not problems(c, node, f"{py}.0", compat, local):
                return c, py
    return None


def _nearest(builds: list[Candidate], asked: Candidate) -> Candidate:
    """The build closest to the asked release: the oldest newer one, else the newest older."""
    newer = [c for c in builds if release(c.release) >= release(asked.release)]
    return min(newer, key=lambda c: release(c.release)) if newer else builds[0]


def _toolkit_advice(first: Candidate, node: NodeFacts, python_version: str, compat: CompatData,
                    local: tuple[str, str | None]) -> str | None:
    """Which toolkit the asked build needs, when the local one is its only problem."""
    if not first.local_toolkit or problems(first, node, python_version, compat) or \
            not problems(first, node, python_version, compat, local):
        return None
    cudnn = f" and cuDNN {release(first.cudnn)[0]} (cudnn = {{ path = ... }})" \
        if first.cudnn else ""
    return (f"give the CUDA {first.cuda} toolkit that {first.package} {first.release} is built "
            f"for: cuda = {{ path = \"/usr/local/cuda-{first.cuda}\" }}{cudnn} in env.toml")


def _refusal(judged: list[tuple[Candidate, list[str]]], everything: list[Candidate],
             node: NodeFacts, python_version: str, spec: Spec, compat: CompatData,
             local: tuple[str, str | None] | None = None) -> str:
    first, first_problems = judged[0]
    if not first_problems:  # it works, but only from an index env.toml does not name
        return (f"{first.label} is not on PyPI{_pypi_note(first)}.")
    text = f"{first.label} cannot run here: {'; '.join(first_problems)}."
    def with_toolkit(c: Candidate) -> str:
        # with a local toolkit, a build only works if it is built for that toolkit's CUDA
        return f" with the local CUDA {local[0]} toolkit" if local and c.local_toolkit else ""

    works_allowed = next((c for c, p in judged if not p), None)
    if works_allowed is not None:
        return text + (f" {works_allowed.label} works on this node{with_toolkit(works_allowed)}"
                       f"{_pypi_note(works_allowed)}.")
    working = [c for c in everything if not problems(c, node, python_version, compat, local)]
    options = []
    if working:
        # a pinned release asks for its API: with a toolkit, offer the nearest that fits it
        works_any = _nearest(working, first) if local and first.local_toolkit else working[0]
        note = (f" (framework = \"{works_any.package}=={works_any.release}.*\")"
                if with_toolkit(works_any) and not works_any.index else _pypi_note(works_any))
        options.append(f"{works_any.label} works on this node{with_toolkit(works_any)}{note}")
    else:
        other = _with_other_python(everything, node, compat, local)
        if other is not None:
            options.append(f"{other[0].label} works on this node{with_toolkit(other[0])} with "
                           f"Python "
                           f"{other[1]} (set python = \"{other[1]}\" in env.toml)"
                           f"{_pypi_note(other[0])}")
    if local:
        toolkit = _toolkit_advice(first, node, python_version, compat, local)
        if toolkit:
            options.append(toolkit)
    needs = _min_driver(first, compat)
    if needs and first_problems and all(p.startswith("driver ") for p in first_problems):
        options.append(f"ask the administrators for driver >= {needs}")
    if options:
        text += " Instead: " + ", or ".join(options) + "."
    else:
        text += f" No {first.family} build that gapship knows runs on this node."
    return text
