"""Staged tree + target -> proven, or refused: the smoke run before the bundle is written.

The staged tree's own doctor runs in a replica that has the target's C library: a cached
minbase rootfs of the target's release, else the twin rootfs the interpreter came from, else
this machine's ``/`` (the builder's files hidden) when the target's glibc is at least this
machine's. The tree is prefix-independent, so it is bound read-only where the user would
install it and the doctor runs there as uid 1000, offline: every distribution imported in
its own process, the standard library, the library closure. Where no replica can stand in
for the target the run is skipped, and says why in one line; the static checks of ``stage``
ran either way.
"""

from __future__ import annotations

import json
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gapship import ui, versions
from gapship.errors import CompatError, ToolMissing
from gapship.node import layout
from gapship.node.closure import running_glibc
from gapship.probe import TargetInfo
from gapship.providers import twin
from gapship.providers.python import Interpreter, PythonInstall
from gapship.replica import HOME, UID, describe_rootfs, replica, rootfs_dir
from gapship.stage.target_closure import activation_library_dirs

# The doctor's groups that judge the node rather than the bundle: this machine's CPU and
# GPUs are not the target's (the plan checked the target's CPU from target.json).
NOT_JUDGED_HERE = ("cpu", "gpu", "cuda")
# an import that fails only because the replica has no NVIDIA driver (TensorFlow 1.x GPU builds
# open libcuda.so.1 at import): the GPU node has one
NO_DRIVER = "no-nvidia-driver"
DOCTOR_ARGS = ("--json", "--no-gpu")
# seconds for the whole doctor run; one import has the doctor's own timeout
TIMEOUT = 1800


@dataclass(frozen=True)
class StandIn:
    """A replica that can stand in for the target: ``os`` for ``replica()``, its rootfs,
    and how it reads in a sentence ("a Debian GNU/Linux 11 (bullseye) minbase replica")."""

    os: str
    rootfs: Path
    described: str


@dataclass(frozen=True)
class Failure:
    """One failing check of the doctor, as it reported it."""

    group: str
    name: str
    detail: str
    remedy: str

    def line(self) -> str:
        text = f"{self.group}: {self.name}"
        if self.detail:
            text += f": {self.detail}"
        if self.remedy:
            text += f" (fix: {self.remedy})"
        return text


@dataclass(frozen=True)
class SmokeRun:
    """What the smoke run proved, or why it did not run (``skipped``)."""

    ran: bool
    replica: str | None = None  # the stand-in's os: host, twin, or a release's codename
    described: str = ""
    imports: int = 0  # top-level modules of the shipped distributions that imported
    stdlib: int = 0  # standard-library modules that imported
    elf_files: int | None = None  # files whose library closure resolved
    not_judged: tuple[str, ...] = ()  # failures about this machine, not the bundle
    seconds: float = 0.0
    skipped: str = ""

    def proven(self) -> str:
        """One line: what was proven and how (or why nothing was)."""
        if not self.ran:
            return f"smoke run skipped: {self.skipped}"
        imports = f"{self.imports} modules of the shipped packages"
        if self.stdlib:
            imports += f", {self.stdlib} of the standard library"
        what = f"imports ({imports})"
        if self.elf_files is not None:
            what += f" and the library closure ({self.elf_files} ELF files)"
        return (f"{what} checked in {self.described}, offline as uid {UID} "
                f"({self.seconds:.1f} s)")

    def to_json(self) -> dict[str, Any]:
        return {"ran": self.ran, "replica": self.replica, "described": self.described,
                "imports": self.imports, "stdlib": self.stdlib, "elf_files": self.elf_files,
                "not_judged": list(self.not_judged), "seconds": round(self.seconds, 2),
                "skipped": self.skipped or None}


class SmokeRunFailed(CompatError):
    """The staged tree's doctor failed in the replica; ``failures`` are its failing checks."""

    def __init__(self, name: str, stand_in: StandIn, failures: tuple[Failure, ...]) -> None:
        self.failures = failures
        self.stand_in = stand_in
        names = ", ".join(f"{f.group} {f.name}" for f in failures[:5])
        more = f" and {len(failures) - 5} more" if len(failures) > 5 else ""
        # the CLI indents the hint's first line; the others carry their own indent
        lines = "\n  ".join(f"- {f.line()}" for f in failures)
        super().__init__(
            f"the smoke run refused {name}: {len(failures)} "
            f"check{'' if len(failures) == 1 else 's'} failed in "
            f"{stand_in.described} ({names}{more}); no bundle was written.",
            f"{lines}\n  Fix these and pack again; --no-verify writes the bundle without this "
            "run.")

    def to_json(self) -> dict[str, Any]:
        return {"replica": self.stand_in.os, "described": self.stand_in.described,
                "failures": [{"group": f.group, "name": f.name, "detail": f.detail,
                              "remedy": f.remedy} for f in self.failures]}


def skipped(why: str) -> SmokeRun:
    return SmokeRun(ran=False, skipped=why)


def builder_glibc() -> tuple[int, ...] | None:
    """This machine's glibc, e.g. (2, 36); None when it runs another C library."""
    found = running_glibc()
    if not isinstance(found, str) or not found.startswith("glibc "):
        return None
    try:
        return versions.release(found.split()[1])
    except (IndexError, ValueError):
        return None


def choose_stand_in(target: TargetInfo, interpreter: Interpreter,
                    builder: tuple[int, ...] | None) -> StandIn | str:
    """The replica that stands in for ``target``, or why none can (one clause)."""
    if not isinstance(interpreter, PythonInstall):
        return (f"the environment runs on the target's own Python ({interpreter.executable}), "
                "which is not on this builder")
    if target.libc_family != "glibc" or not target.glibc_version:
        libc = target.libc or "unknown"
        return f"the target's C library is {libc}; no replica here has it"
    release = twin.release_for(target)
    minbase = rootfs_dir(release.codename) if release is not None else None
    if minbase is not None and not (minbase / "bin" / "sh").exists():
        minbase = None
    ours = rootfs_dir(release.codename, "python") if release is not None else None
    twin_root = interpreter.sysroot if interpreter.sysroot != Path("/") else None
    # a rootfs the user gave comes first; then the minbase of the target's release, stricter
    # than gapship's own twin rootfs (which carries python3 and the libraries it pulls in)
    if twin_root is not None and (twin_root != ours or minbase is None):
        return StandIn("twin", twin_root,
                       f"a {describe_rootfs(twin_root)} replica (twin rootfs)")
    if release is not None and minbase is not None:
        return StandIn(release.codename, minbase, f"a {release.describe()} minbase replica")
    if builder is not None and target.glibc_version >= builder:
        return StandIn("host", Path("/"),
                       f"this machine's / (glibc {versions.dotted(builder)}, the builder's "
                       "files hidden)")
    mine = f"this builder's {versions.dotted(builder)}" if builder else "this builder's"
    return (f"the target's glibc {target.glibc} is older than {mine} and no rootfs of its "
            "release is cached (--twin-root DIR gives one)")


class _Unreadable(Exception):
    """The doctor gave no report (it could not start)."""


def read_report(proc: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    """The doctor's JSON report, or a refusal quoting what it said instead."""
    try:
        report = json.loads(proc.stdout)
    except json.JSONDecodeError:
        report = None
    if not isinstance(report, dict) or not isinstance(report.get("checks"), list):
        said = (proc.stderr or proc.stdout).strip().splitlines()
        raise _Unreadable(" / ".join(said[-3:]) or f"exit status {proc.returncode}")
    return report


def _not_entered(proc: subprocess.CompletedProcess[str]) -> str:
    """bwrap's own complaint when it could not set the replica up (no user namespaces ...),
    which says nothing about the bundle; "" when it ran the doctor."""
    said = proc.stderr.strip().splitlines()
    if proc.returncode != 0 and not proc.stdout.strip() and said and \
            said[0].startswith("bwrap:"):
        return said[0]
    return ""


def judge(report: dict[str, Any], stand_in: StandIn, seconds: float, name: str) -> SmokeRun:
    """The SmokeRun of a doctor report; SmokeRunFailed when a check about the bundle failed."""
    checks: list[dict[str, Any]] = report["checks"]
    failures: list[Failure] = []
    not_judged: list[str] = []
    for check in checks:
        if check.get("status") != "fail":
            continue
        failure = Failure(str(check.get("group", "")), str(check.get("name", "")),
                          str(check.get("detail") or ""), str(check.get("remedy") or ""))
        if failure.group in NOT_JUDGED_HERE or check.get("diagnosis") == NO_DRIVER:
            not_judged.append(failure.line())
        else:
            failures.append(failure)
    if failures:
        raise SmokeRunFailed(name, stand_in, tuple(failures))

    def passed(group: str) -> int:
        return sum(1 for c in checks if c.get("group") == group and c.get("status") == "pass")

    elf_files = None
    for check in checks:
        facts = check.get("facts")
        if check.get("group") == "libraries" and isinstance(facts, dict):
            found = facts.get("elf_files")
            elf_files = found if isinstance(found, int) else elf_files
    return SmokeRun(ran=True, replica=stand_in.os, described=stand_in.described,
                    imports=passed("imports"), stdlib=passed("stdlib"), elf_files=elf_files,
                    not_judged=tuple(not_judged), seconds=seconds)


def smoke_run(tree: Path, name: str, target: TargetInfo, interpreter: Interpreter) -> SmokeRun:
    """Run the doctor of the staged ``tree`` in a replica of ``target``.

    Returns what was proven (or why the run was skipped); raises SmokeRunFailed, naming
    each failing check with its remedy, when the environment does not work there.
    """
    stand_in = choose_stand_in(target, interpreter, builder_glibc())
    if isinstance(stand_in, str):
        return skipped(f"{stand_in}; the static checks ran")
    prefix = f"{HOME}/envs/{name}"
    ui.step(f"smoke run: the environment's doctor in {stand_in.described}, at {prefix}")
    started = time.monotonic()
    with replica(stand_in.os, rootfs=stand_in.rootfs) as rep:
        argv = [f"{prefix}/{layout.DOCTOR}", *DOCTOR_ARGS]
        # as after `. activate`: a local toolkit's or TensorFlow's wheels' library dirs
        dirs = [f"{prefix}/{d}" for d in activation_library_dirs(tree)]
        env = {"LD_LIBRARY_PATH": ":".join(dirs)} if dirs else None
        try:
            proc = subprocess.run(rep.command(argv, [(tree, prefix)], env), capture_output=True,
                                  text=True, timeout=TIMEOUT, check=False,
                                  stdin=subprocess.DEVNULL)
        except ToolMissing as exc:
            return skipped(f"{exc.message.rstrip('.')} ({exc.hint.rstrip('.')}); the static "
                           "checks ran")
        except subprocess.TimeoutExpired:
            raise SmokeRunFailed(name, stand_in, (Failure(
                "doctor", "smoke run", f"did not finish in {TIMEOUT} s",
                "An import hangs without a network or a GPU; run the doctor after "
                "installing (gapship try) to see which."),)) from None
    entered = _not_entered(proc)
    if entered:
        return skipped(f"the replica could not be entered ({entered}); the static checks ran")
    seconds = time.monotonic() - started
    try:
        report = read_report(proc)
    except _Unreadable as exc:
        raise SmokeRunFailed(name, stand_in, (Failure(
            "interpreter", "bin/python3", f"the doctor could not run: {exc}", ""),)) from None
    return judge(report, stand_in, seconds, name)
