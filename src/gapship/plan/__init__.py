"""Spec + Target -> Lock: the exact files that will ship, and the decisions behind them.

Resolution runs uv for the *target* (its Python version, a manylinux tag that its glibc
allows, binary wheels only); the wheel of each package is then chosen here with the target's
full tag list, so what ships is exactly what the lock names.
"""

from __future__ import annotations

import fnmatch
import functools
import re
import subprocess
import sys
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from packaging import tags
from packaging.specifiers import Specifier
from packaging.utils import InvalidWheelFilename, canonicalize_name, parse_wheel_filename

from gapship import versions
from gapship.compat import CompatData
from gapship.compat import load as load_compat
from gapship.errors import CompatError, ResolveError
from gapship.files import local_path
from gapship.node import layout
from gapship.plan.gpu import GpuChoice, node_driver, python_fits
from gapship.plan.gpu import decide as gpu_decide
from gapship.plan.types import Decision, GpuPlan, Lock, LockedFile
from gapship.probe import TargetInfo
from gapship.providers import PythonLocator
from gapship.providers.twin import release_for as twin_release_for
from gapship.spec import Spec
from gapship.uv import uv_bin, uv_env, uv_error

__all__ = ["Decision", "GpuPlan", "Lock", "LockedFile", "cpu_needs_json", "framework_pythons",
           "plan", "refuse_python_first", "resolve"]

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

def manylinux_tags(glibc: tuple[int, ...], arch: str) -> list[str]:
    """Every manylinux platform tag a target with this glibc accepts, best first (down to
    manylinux1, the oldest tag there is)."""
    if glibc[0] != 2:
        return []
    legacy = {row.glibc: row.tag for row in load_compat().legacy_manylinux}
    oldest = min(legacy)
    out: list[str] = []
    for n in range(glibc[1], oldest[1] - 1, -1):
        out.append(f"manylinux_2_{n}_{arch}")
        if (2, n) in legacy:
            out.append(f"{legacy[(2, n)]}_{arch}")
    return out


def target_tags(python_version: str, glibc: tuple[int, ...], arch: str) -> list[tags.Tag]:
    """The wheel tags a CPython of ``python_version`` on this target accepts, best first."""
    py = versions.release(versions.minor(python_version))
    platforms = manylinux_tags(glibc, arch)
    abi = f"cp{py[0]}{py[1]}" + ("m" if py < (3, 8) else "")  # pymalloc ABI until 3.8
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


@dataclass(frozen=True)
class Resolution:
    files: tuple[LockedFile, ...]
    platform: str
    built_from_source: tuple[str, ...]


def resolve(requirements: tuple[str, ...], python_version: str, target: TargetInfo,
            indexes: tuple[str, ...] = (), constraints: tuple[str, ...] = (),
            find_links: tuple[str, ...] = ()) -> Resolution:
    """Resolve requirements for the target with uv: its Python, a manylinux tag its glibc
    allows, binary wheels only (a package with no wheel at all for an old Python may come as
    a source archive, built into a pure-Python wheel at pack time). ``find_links`` are
    folders of wheels (or pages listing them) searched beside the indexes; a wheel found
    there is taken before the same file from an index."""
    links = _find_links(find_links)
    if target.libc_family != "glibc" or not target.glibc_version:
        raise ResolveError(
            f"the target's C library is {target.libc_family or 'unknown'}; gapship ships "
            "manylinux (glibc) environments.",
            "Probe a glibc machine, or check that the probe ran on the target itself.")
    arch = target.arch or "x86_64"
    platform = uv_platform(target.glibc_version, arch)
    if not requirements:
        return Resolution((), platform, ())
    source_ok: list[str] = []
    with tempfile.TemporaryDirectory(prefix="gapship-resolve-") as tmp:
        req = Path(tmp, "requirements.in")
        req.write_text("\n".join(requirements) + "\n", encoding="utf-8")
        cons = Path(tmp, "constraints.txt")
        cons.write_text("\n".join(constraints) + "\n", encoding="utf-8")
        out = Path(tmp, "pylock.toml")
        while True:
            cmd = [uv_bin(), "pip", "compile", str(req), "-c", str(cons),
                   "--python-version", python_version, "--python-platform", platform,
                   "--only-binary", ":all:", "--format", "pylock.toml", "-o", str(out),
                   "--no-header", "--quiet"]
            for name in source_ok:
                cmd += ["--no-binary", name]
            for url in indexes:
                cmd += ["--extra-index-url", url]
            for link in links:
                cmd += ["--find-links", link]
            proc = subprocess.run(cmd, capture_output=True, text=True, env=uv_env(),
                                  check=False)
            if proc.returncode == 0:
                break
            needs_source = re.search(r"Wheels are required for `([^`]+)`", proc.stderr)
            if needs_source and needs_source.group(1) not in source_ok and len(source_ok) < 8:
                source_ok.append(needs_source.group(1))
                continue
            raise ResolveError(
                f"cannot resolve {', '.join(requirements)} for Python {python_version} on "
                f"{platform}: {uv_error(proc.stderr)}",
                "Check the package names and versions, or relax a constraint.")
        pylock = tomllib.loads(out.read_text(encoding="utf-8"))
    wanted = target_tags(python_version, target.glibc_version, arch)
    files = tuple(_choose_file(p, wanted) for p in pylock.get("packages", []))
    return Resolution(files, platform, tuple(source_ok))


def _find_links(find_links: tuple[str, ...]) -> list[str]:
    """env.toml's find_links as uv takes them: folders checked to exist, URLs as they are."""
    links = []
    for link in find_links:
        folder = local_path(link)
        if folder is None:
            links.append(link)
        elif folder.is_dir():
            links.append(str(folder.resolve()))
        else:
            raise ResolveError(f"find_links: {folder} is not a folder of wheels.",
                               "Give the folder `pip download -d` wrote to, or remove it "
                               "from env.toml.")
    return links


def _choose_file(package: dict[str, Any], wanted: list[tags.Tag]) -> LockedFile:
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
    if best is None and "sdist" in package:
        sdist = package["sdist"]
        best = (0, {**sdist, "name": sdist.get("name") or sdist["url"].rsplit("/", 1)[-1]})
    if best is None:
        raise ResolveError(f"{package['name']} {package.get('version', '')}: no wheel fits the "
                           "target's Python and glibc.", "Pin another version of it.")
    wheel = best[1]
    size = int(wheel.get("size") or 0)
    local = local_path(wheel["url"])
    if not size and local is not None and local.is_file():
        size = local.stat().st_size  # a wheelhouse's file: uv's lock gives no size for it
    return LockedFile(name=package["name"], version=str(package.get("version", "")),
                      filename=wheel["name"], url=wheel["url"],
                      sha256=wheel["hashes"]["sha256"], size=size)


def cpu_constraints(target: TargetInfo, compat: CompatData) -> tuple[list[str], list[Decision]]:
    """Constraints that keep out releases this CPU cannot run (verified facts only)."""
    flags = set(target.cpu_flags)
    out: list[str] = []
    decisions: list[Decision] = []
    if not flags:
        return out, decisions
    for need in compat.cpu_needs:
        missing = [f for f in need.flags if f not in flags]
        if not need.fact.verified or not missing:
            continue
        negated = [_negate(s) for s in need.versions]
        if any(n is None for n in negated):
            continue
        constraint = f"{need.distribution}{','.join(n for n in negated if n)}"
        out.append(constraint)
        decisions.append(Decision(f"{need.distribution} releases", constraint,
                                  f"{need.reason}; this CPU lacks {', '.join(missing)}",
                                  f"compat data: {need.fact.source}"))
    return out, decisions


def _cpu_warnings(files: tuple[LockedFile, ...], target: TargetInfo, compat: CompatData
                  ) -> list[str]:
    """What may work but is risky on this CPU: unverified needs it lacks, or a baseline it
    meets exactly."""
    flags = set(target.cpu_flags)
    out = []
    for need in compat.cpu_needs_of([(f.name, f.version) for f in files]):
        missing = [f for f in need.flags if f not in flags] if flags else []
        if missing:
            out.append(f"{need.distribution}: {need.reason} (unverified); this CPU lacks "
                       f"{', '.join(missing)}: it may crash with Illegal instruction")
        elif need.x86_64_level and target.x86_64_level == need.x86_64_level:
            out.append(f"{need.distribution}: {need.reason}; this CPU is exactly at that "
                       "baseline: other nodes of the cluster may be older (probe them)")
    return out


def cpu_needs_json(lock: Lock) -> dict[str, Any]:
    """PREFIX/gapship/cpu_needs.json: what the doctor checks against /proc/cpuinfo."""
    needs = load_compat().cpu_needs_of([(f.name, f.version) for f in lock.files])
    versions: dict[str, str] = {canonicalize_name(f.name): f.version for f in lock.files}
    return {"schema_version": layout.CPU_NEEDS_VERSION, "needs": [
        {"distribution": n.distribution, "version": versions.get(n.distribution),
         "flags": list(n.flags), "x86_64_level": n.x86_64_level, "reason": n.reason,
         "source": n.fact.source, "verified": n.fact.verified} for n in needs]}


def _negate(spec: Specifier) -> str | None:
    """The constraint that keeps a simple specifier's versions out: >=X -> <X, ==X.* -> !=X.*."""
    if spec.operator == ">=":
        return f"<{spec.version}"
    if spec.operator == "==" and spec.version.endswith(".*"):
        return f"!={spec.version}"
    return None


def _nvidia_lib_dir(name: str, site: str) -> str | None:
    """Where an NVIDIA wheel puts its libraries: nvidia-cublas-cu12 -> nvidia/cublas/lib."""
    m = re.match(r"^nvidia-(.+?)(-cu(\d+))?$", name)
    if not m:
        return None
    if m.group(2) is None:  # CUDA 13 toolkit wheels share one directory
        return f"{site}/nvidia/cu13/lib"
    return f"{site}/nvidia/{m.group(1).replace('-', '_')}/lib"


def _cuda_of_files(files: tuple[LockedFile, ...]) -> tuple[str | None, str | None]:
    """The CUDA runtime and cuDNN versions the resolved NVIDIA wheels carry."""
    cuda = cudnn = None
    for f in files:
        name = canonicalize_name(f.name)
        if re.match(r"^nvidia-cuda-runtime(-cu\d+)?$", name):
            cuda = versions.minor(f.version)
        elif re.match(r"^nvidia-cudnn(-cu\d+)?$", name):
            cudnn = f.version
    return cuda, cudnn


def _excluded(files: tuple[LockedFile, ...], patterns: tuple[str, ...]
              ) -> tuple[tuple[LockedFile, ...], list[str]]:
    keep, dropped = [], []
    for f in files:
        if any(fnmatch.fnmatch(canonicalize_name(f.name), canonicalize_name(p).replace("-*", "*")
                               ) or fnmatch.fnmatch(f.name, p) for p in patterns):
            dropped.append(f.name)
        else:
            keep.append(f)
    return tuple(keep), dropped


def framework_pythons(spec: Spec) -> tuple[str, ...] | None:
    """The Python versions ("3.X") that some build of the spec's framework runs on; None
    when any will do (no framework, or none of its builds known)."""
    known = python_fits(spec, load_compat())
    return known[0] if known else None


def refuse_python_first(spec: Spec, target: TargetInfo) -> None:
    """Refuse a Python version that no build of the framework supports, before any
    interpreter is fetched or twin built: the version env.toml (or --python standalone:3.X)
    asks for, or else the one a --python twin of the target's release would ship."""
    want = spec.python_spec
    minor, why = spec.python, "asked for in env.toml or --python"
    if minor is None and want.source == "twin" and not want.twin_root:
        release = twin_release_for(target)
        if release is not None:
            minor, why = release.python, f"the twin of {release.describe()} ships it"
    known = python_fits(spec, load_compat())
    if minor is None or known is None or minor in known[0]:
        return
    fits, source = known
    runs = ("no Python that gapship supports" if not fits else f"Python {fits[0]}"
            + (f" to {fits[-1]}" if len(fits) > 1 else ""))
    raise CompatError(f"`{spec.framework}` runs on {runs}, not {minor} ({why}; compat data: "
                      f"{source}).",
                      f"Set python = \"{fits[-1]}\" in env.toml, with a source that has it "
                      "(--python-archive FILE, --twin-root DIR)." if fits else
                      "Choose another version of the framework.")


# How many framework builds the plan tries when the index serves another CUDA than expected.
_ATTEMPTS = 3


def plan(spec: Spec, target: TargetInfo, python_version: str, python_source: str,
         extra_requirements: tuple[str, ...] = (),
         local_toolkit: tuple[str, str | None] | None = None,
         interpreter: PythonLocator | None = None) -> Lock:
    """Decide (GPU stack, CPU limits), resolve the exact files, confirm the GPU stack against
    the wheels that resolved, and lock.

    A build whose wheels carry another CUDA than the compat data says is rejected and the
    next one decided, a few times at most. ``local_toolkit`` is the (CUDA, cuDNN) version
    of env.toml's cuda.path, when given; ``interpreter`` where the providers found the
    interpreter, recorded in the lock for `gapship pack LOCK`.
    """
    compat = load_compat()
    constraints, cpu_decisions = cpu_constraints(target, compat)
    rejected: list[Decision] = []
    for _ in range(_ATTEMPTS):
        choice = (gpu_decide(spec, target, python_version, compat, local_toolkit,
                             tuple(d.what for d in rejected))
                  if spec.framework_family else None)
        requirements, indexes = _requests(spec, choice, extra_requirements)
        resolution = resolve(requirements, python_version, target, indexes, tuple(constraints),
                             spec.find_links)
        files, dropped = _excluded(resolution.files, spec.exclude)
        try:
            gpu, confirmed = _gpu_from_wheels(choice.gpu if choice else None, files,
                                              python_version, spec, compat, target)
        except ResolveError as exc:
            if choice is None or choice.candidate is None:
                raise
            # The index serves another CUDA than the compat data says: that build is out.
            rejected.append(Decision(choice.candidate, "not shipped", exc.message,
                                     "resolution"))
            continue
        decisions = [_python_decision(spec, python_version, python_source),
                     _platform_decision(resolution, target), *rejected,
                     *(choice.decisions if choice else ()), *cpu_decisions, *confirmed]
        warnings = [*_nvcc_warnings(spec, choice), *(choice.warnings if choice else ()),
                    *_resolution_warnings(spec, resolution, dropped, python_version),
                    *_cpu_warnings(files, target, compat)]
        return Lock(name=spec.name, env_version=spec.version, python_version=python_version,
                    python_source=python_source, platform_tag=resolution.platform,
                    requirements=requirements, files=files, decisions=tuple(decisions),
                    gpu=gpu, warnings=tuple(warnings), indexes=indexes,
                    interpreter=interpreter)
    raise ResolveError(f"no build of {spec.framework} resolves to one that runs here.",
                       "Pin a framework version and CUDA in env.toml.")


def _requests(spec: Spec, choice: GpuChoice | None, extra: tuple[str, ...]
              ) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """What to ask the resolver for: the requirements, and the indexes to ask."""
    wanted = [*(choice.requirements if choice else ()), *spec.packages]
    wanted += [r for r in extra if r not in wanted]
    nvcc = _nvcc_wheel(spec, choice)
    if nvcc is not None:
        wanted.append(f"{nvcc[0]}=={nvcc[1]}.*")
    indexes = [*spec.indexes, *(i for i in (choice.indexes if choice else ())
                                if i not in spec.indexes)]
    return tuple(wanted), tuple(indexes)


def _nvcc_wheel(spec: Spec, choice: GpuChoice | None) -> tuple[str, str] | None:
    """NVIDIA's nvcc wheel and the CUDA version (major.minor) it must have, when env.toml
    asks for nvcc and no local toolkit gives it."""
    cuda = choice.gpu.cuda if choice else None
    if not spec.cuda.nvcc or spec.cuda.path is not None or cuda is None:
        return None
    major = versions.release(cuda)[0]
    wheel = f"nvidia-cuda-nvcc-cu{major}" if major < 13 else "nvidia-cuda-nvcc"
    return wheel, versions.minor(cuda)


def _nvcc_warnings(spec: Spec, choice: GpuChoice | None) -> list[str]:
    nvcc = _nvcc_wheel(spec, choice)
    if nvcc is None or versions.release(nvcc[1])[0] >= 13:
        return []
    # checked in nvidia-cuda-nvcc-cu12 12.4 to 12.9: ptxas, nvvm and crt/ only
    return [f"{nvcc[0]} carries ptxas but not nvcc itself: $CUDA_HOME/bin will have ptxas "
            "only; for `nvcc -V` use CUDA 13 wheels (cuda = \"13.0\") or a local toolkit "
            "(cuda = { path = ... })"]


def _python_decision(spec: Spec, python_version: str, python_source: str) -> Decision:
    return Decision("python", python_version,
                    f"from the {python_source} interpreter"
                    + (f" (env.toml asks for {spec.python})" if spec.python else ""),
                    "env.toml" if spec.python else python_source)


def _platform_decision(resolution: Resolution, target: TargetInfo) -> Decision:
    return Decision("platform", resolution.platform,
                    f"the target has glibc {target.glibc}: wheels up to manylinux_2_"
                    f"{target.glibc_version[1] if target.glibc_version else '?'} fit",
                    "target.json")


def _resolution_warnings(spec: Spec, resolution: Resolution, dropped: list[str],
                         python_version: str) -> list[str]:
    warnings = []
    if dropped:
        warnings.append(f"left out by env.toml's exclude: {', '.join(dropped)}; "
                        + ("the framework may import them" if spec.framework else
                           "packages that need them will fail to import"))
    if resolution.built_from_source:
        warnings.append(f"no wheel for Python {python_version}: "
                        f"{', '.join(resolution.built_from_source)} will be built from source "
                        "at pack time (pure Python only)")
    return warnings


def _older_cuda_hint(gpu: GpuPlan, spec: Spec, driver: tuple[int, ...], compat: CompatData
                     ) -> str:
    """The way to CUDA wheels this driver runs: an older framework, or (NVIDIA's wheels named
    in packages) the same wheels of the newest CUDA major the driver runs."""
    best = compat.max_cuda_for_driver(driver)
    if gpu.framework is not None or best is None:
        return "Pin an older framework or CUDA (cuda = \"11.8\") in env.toml."
    major = versions.release(best.cuda)[0]
    asked = [canonicalize_name(r.name) for r in spec.requirements]
    names = [n for n in asked if n.startswith("nvidia-") and not re.search(r"-cu\d+$", n)]
    older = [f"{n}-cu{major}" if major < 13 else n for n in names]
    return (f"Driver {versions.driver_text(driver)} runs CUDA {best.cuda} at most: in packages, "
            f"ask for {', '.join(older) or 'the older CUDA wheels'} instead.")


def _gpu_from_wheels(gpu: GpuPlan | None, files: tuple[LockedFile, ...], python_version: str,
                     spec: Spec, compat: CompatData, target: TargetInfo
                     ) -> tuple[GpuPlan | None, list[Decision]]:
    """Confirm the CUDA the resolved wheels really carry, and where their libraries go."""
    cuda, cudnn = _cuda_of_files(files)
    decisions: list[Decision] = []
    if cuda is None and (gpu is None or gpu.cuda_source != "wheels"):
        return gpu, decisions
    if gpu is None:
        needs = compat.min_driver_for(cuda) if cuda else None
        gpu = GpuPlan(framework=None, framework_version=None, cuda=cuda, cudnn=cudnn,
                      cuda_source="wheels",
                      min_driver=versions.driver_text(needs) if needs else None,
                      nvcc=spec.cuda.nvcc)
        decisions.append(Decision("CUDA", f"{cuda} (PyPI wheels)",
                                  "the NVIDIA runtime wheel in the packages", "resolution"))
    elif cuda and gpu.cuda and cuda != versions.minor(gpu.cuda):
        decisions.append(Decision("CUDA", cuda, f"the resolved nvidia-cuda-runtime wheel (the "
                                  f"compat data expected {gpu.cuda})", "resolution"))
        needs = compat.min_driver_for(cuda)
        gpu = replace(gpu, cuda=cuda, min_driver=versions.driver_text(needs)
                      if needs else gpu.min_driver)
    if cudnn and gpu.cudnn != cudnn:
        gpu = replace(gpu, cudnn=cudnn)
    named = compat.framework_named(gpu.framework) if gpu.framework else None
    framework = next((f for f in files if named and canonicalize_name(f.name)
                      in named.requirements), None)
    if framework is not None:
        gpu = replace(gpu, framework_version=framework.version)
    site = f"lib/python{versions.minor(python_version)}/site-packages"
    if gpu.framework == "tensorflow" and gpu.cuda_source == "wheels":
        # TensorFlow finds NVIDIA's wheels only through LD_LIBRARY_PATH.
        dirs = sorted({d for f in files if (d := _nvidia_lib_dir(canonicalize_name(f.name),
                                                                  site))})
        gpu = replace(gpu, ld_library_path=tuple(dirs))
    driver = node_driver(spec, target)
    if driver and gpu.min_driver and driver < versions.release(gpu.min_driver):
        raise ResolveError(f"the resolved wheels carry CUDA {gpu.cuda}, which needs driver >= "
                           f"{gpu.min_driver}; the target's driver is "
                           f"{versions.driver_text(driver)}.",
                           _older_cuda_hint(gpu, spec, driver, compat))
    return gpu, decisions
