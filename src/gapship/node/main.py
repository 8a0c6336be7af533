"""gapship-doctor: check that this environment works on this node, or say exactly why not.

Runs on the bundled interpreter: standard library only, Python 3.6+, shipped verbatim as
PREFIX/gapship/node/. Every check runs even when an earlier one fails. Exit status:
0 every check passed (warnings allowed), 1 a check failed, 2 the doctor itself could not
run (or one of its checks broke).
"""

import argparse
import json
import os
import sys

from . import closure, cpu, environment, frameworks, gpu, imports, layout
from .base import FAIL, PASS, SCHEMA_VERSION, SKIP, STATUSES, WARN, Check, load_json
from .owners import Owners

GROUP_ORDER = ["interpreter", "environment", "libraries", "cpu", "stdlib", "imports", "gpu",
               "cuda", "frameworks", "doctor"]


class Run(object):
    """Collects the checks; a check that raises is recorded and makes the exit status 2."""

    def __init__(self):
        self.checks = []
        self.broken = []
        self.gpu_facts = {"usable": False}

    def section(self, name, fn, *args):
        try:
            result = fn(*args)
        except Exception as exc:  # a bug in one check must not stop the others
            self.broken.append(name)
            self.checks.append(Check("doctor", "%s check" % name, FAIL,
                                     "the check itself broke: %s: %s" % (type(exc).__name__,
                                                                         exc),
                                     "A gapship bug: keep this report and report it."))
            return None
        if isinstance(result, tuple):
            self.checks.extend(result[0])
            return result[1]
        self.checks.extend(result)
        return None

    def ordered(self):
        rank = dict((g, i) for i, g in enumerate(GROUP_ORDER))
        return sorted(self.checks, key=lambda c: rank.get(c.group, len(rank)))


def run_checks(prefix, timeout, quick=False, no_gpu=False, framework_timeout=600):
    """Every check of the environment at ``prefix``; returns the Run."""
    prefix = os.path.abspath(prefix)
    state = Run()
    expected = gpu.gpu_facts(prefix)
    # the GPU stack the plan chose: remedies for a missing CUDA library follow it
    context = {"prefix": prefix, "gpu_node_command": environment.gpu_node_command(prefix),
               "cuda": expected.get("cuda"),
               "cuda_source": expected.get("cuda_source") or "none"}
    python = os.path.join(prefix, "bin", "python3")
    env_info = load_json(os.path.join(prefix, layout.ENVIRONMENT))
    if env_info is None:
        state.checks.append(Check("environment", "environment.json", FAIL,
                                  "%s is missing or unreadable" % layout.ENVIRONMENT,
                                  "The install is incomplete: install the bundle again."))
        env_info = {"distributions": []}
    distributions = env_info.get("distributions", [])
    context["site_packages"] = env_info.get("site_packages")
    state.section("interpreter", environment.check_interpreter, prefix)
    state.section("location", environment.check_location, prefix)
    owners = Owners(prefix)
    scan = state.section("libraries", closure.check_closure, prefix, owners, None, context)
    sonames = scan.sonames if scan is not None else {}
    context["sonames"] = sonames
    state.section("LD_LIBRARY_PATH", environment.check_ld_library_path, prefix, sonames)
    state.section("cpu", cpu.check_cpu, prefix)
    missing_flags = _missing_flags(prefix)
    if not quick:
        state.section("stdlib", imports.check_stdlib, python, timeout, context)
    state.section("imports", imports.check_distributions, python, distributions, timeout,
                  context, missing_flags,
                  lambda name: closure.library_context(name, owners, sonames))
    gpu_facts = {"usable": False}
    if no_gpu:
        state.checks.extend(gpu.skipped("--no-gpu: the GPU checks did not run"))
    else:
        gpu_facts = state.section("gpu", gpu.check_gpu, context, expected) or gpu_facts
        state.section("cuda", _cuda, sonames, expected, gpu_facts.get("driver_cuda"), context,
                      prefix)
        if not quick:
            state.section("frameworks", frameworks.check_frameworks, python,
                          frameworks.shipped_frameworks(distributions),
                          gpu_facts.get("usable"), framework_timeout, context, expected)
    state.gpu_facts = gpu_facts
    return state


def _cuda(sonames, expected, driver_cuda, context, prefix):
    def rel(path):
        return os.path.relpath(path, prefix) if path.startswith(prefix + os.sep) else path
    return gpu.check_cuda_libraries(sonames, expected, driver_cuda, context, rel)


def _missing_flags(prefix):
    _, flags = cpu.read_cpuinfo()
    return cpu.missing_by_distribution(cpu.load_needs(prefix), flags)


MARKS = {PASS: "ok  ", WARN: "WARN", FAIL: "FAIL", SKIP: "skip"}


def print_table(checks, out):
    group = None
    for c in checks:
        if c.group != group:
            group = c.group
            out.write("\n%s\n" % group)
        line = "  [%s] %s" % (MARKS[c.status], c.name)
        if c.detail:
            line += ": " + c.detail
        out.write(line + "\n")
        if c.remedy and c.status in (WARN, FAIL):
            out.write("         fix: %s\n" % c.remedy)
    counts = count(checks)
    out.write("\n%d passed, %d warnings, %d failed, %d skipped\n"
              % (counts[PASS], counts[WARN], counts[FAIL], counts[SKIP]))


def count(checks):
    return dict((s, sum(1 for c in checks if c.status == s)) for s in STATUSES)


def exit_status(state):
    if state.broken:
        return 2
    return 1 if any(c.status == FAIL for c in state.checks) else 0


def build_report(prefix, state):
    checks = state.ordered()
    status = exit_status(state)
    return {"schema_version": SCHEMA_VERSION, "prefix": prefix,
            "python": "%d.%d.%d" % sys.version_info[:3], "ok": status == 0,
            "exit_status": status, "counts": count(checks), "gpu": state.gpu_facts,
            "checks": [c.as_dict() for c in checks]}


def main(argv=None):
    parser = argparse.ArgumentParser(prog="gapship-doctor",
                                     description="Check that this environment works here.")
    parser.add_argument("--prefix", required=True, help=argparse.SUPPRESS)
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.add_argument("--report", metavar="FILE", help="also write the JSON report to FILE")
    parser.add_argument("--quick", action="store_true",
                        help="skip the standard-library and framework checks")
    parser.add_argument("--no-gpu", action="store_true", help="skip the GPU checks")
    parser.add_argument("--timeout", type=int, default=120, help="seconds per import (120)")
    args = parser.parse_args(argv)
    try:
        state = run_checks(args.prefix, args.timeout, args.quick, args.no_gpu,
                           max(args.timeout, 600))
        report = build_report(args.prefix, state)
        if args.report:
            with open(args.report, "w") as fh:
                json.dump(report, fh, indent=1)
    except Exception as exc:  # the doctor itself broke: say so, exit 2
        sys.stderr.write("gapship-doctor could not run: %s: %s\n" % (type(exc).__name__, exc))
        return 2
    if args.json:
        json.dump(report, sys.stdout, indent=1)
        sys.stdout.write("\n")
    else:
        sys.stdout.write("gapship-doctor: %s\n" % args.prefix)
        print_table(state.ordered(), sys.stdout)
    return report["exit_status"]


if __name__ == "__main__":
    sys.exit(main())
