"""gapship-doctor: check that this environment works on this node, or say exactly why not.

Runs on the bundled interpreter: standard library only, Python 3.6+, shipped verbatim.
Every check runs even when an earlier one fails. Exit status: 0 all passed, 1 a check
failed, 2 the doctor itself could not run.
"""

import argparse
import json
import os
import signal
import subprocess
import sys

SCHEMA_VERSION = 1
PASS, WARN, FAIL = "pass", "warn", "fail"

# Standard-library modules whose extension modules need grafted libraries (ssl, sqlite3 ...):
# an install that lost one of those libraries fails here.
STDLIB_MODULES = ["ssl", "sqlite3", "ctypes", "lzma", "bz2", "zlib", "readline", "uuid",
                  "decimal", "hashlib", "json", "multiprocessing", "curses"]


class Check:
    def __init__(self, group, name, status, detail="", remedy=""):
        self.group = group
        self.name = name
        self.status = status
        self.detail = detail
        self.remedy = remedy

    def as_dict(self):
        return {"group": self.group, "name": self.name, "status": self.status,
                "detail": self.detail, "remedy": self.remedy}


def load_json(path):
    with open(path) as fh:
        return json.load(fh)


def signal_name(code):
    try:
        return signal.Signals(-code).name
    except (ValueError, AttributeError):
        return "signal %d" % -code


def explain_crash(module, code, stderr):
    name = signal_name(code)
    if name == "SIGILL":
        return ("Illegal instruction while importing %s: this CPU lacks an instruction the "
                "package was built for" % module,
                "Pack again with --target from this node's probe (it records the CPU flags).")
    if name == "SIGSEGV":
        return ("%s crashed (segmentation fault) on import" % module,
                "Run `python3 -X faulthandler -c 'import %s'` to see where." % module)
    return ("%s: the import was killed by %s" % (module, name), "")


def explain_error(module, stderr):
    last = [ln for ln in stderr.strip().splitlines() if ln.strip()]
    text = last[-1] if last else "no message"
    if "GLIBC_" in text and "not found" in text:
        return text, "A library needs a newer glibc than this node has: pack again with --target from this node's probe."
    if "GLIBCXX_" in text or "CXXABI_" in text:
        return text, "A library needs a newer libstdc++ than this node has: load a newer GCC module or pack again for this node."
    if "cannot open shared object file" in text:
        return text, "A shared library is missing: install the bundle again, and check LD_LIBRARY_PATH for entries that hide the bundle's libraries."
    if "numpy.core.multiarray failed to import" in stderr or "compiled using NumPy 1.x" in stderr:
        return text, "A module was built against another NumPy major version: pin numpy in env.toml to what that package supports."
    return text, "Run `python3 -c 'import %s'` to see the full error." % module


def try_import(python, module, timeout):
    """Import one module in its own process; return (status, detail, remedy)."""
    env = dict(os.environ)
    env.pop("PYTHONHOME", None)
    env.pop("PYTHONPATH", None)
    try:
        proc = subprocess.Popen([python, "-I", "-c", "import %s" % module],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    except OSError as exc:
        return FAIL, "cannot run %s: %s" % (python, exc), "Reinstall the bundle."
    try:
        _, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        return FAIL, "import %s did not finish in %ds" % (module, timeout), \
            "A slow filesystem (Lustre, NFS) or a hang: try again with --timeout 300."
    err = err.decode("utf-8", "replace")
    if proc.returncode < 0:
        detail, remedy = explain_crash(module, proc.returncode, err)
        return FAIL, detail, remedy
    if proc.returncode != 0:
        detail, remedy = explain_error(module, err)
        return FAIL, detail, remedy
    return PASS, "", ""


def check_interpreter(prefix):
    checks = []
    version = "%d.%d.%d" % sys.version_info[:3]
    checks.append(Check("interpreter", "python %s" % version, PASS, sys.executable))
    real_prefix = os.path.realpath(sys.prefix)
    if real_prefix != os.path.realpath(prefix):
        checks.append(Check("interpreter", "sys.prefix", FAIL,
                            "sys.prefix is %s, not %s" % (sys.prefix, prefix),
                            "PYTHONHOME or a site file points elsewhere: unset PYTHONHOME."))
    recorded = None
    try:
        with open(os.path.join(prefix, "gapship", "prefix")) as fh:
            recorded = fh.read().strip()
    except OSError:
        pass
    if recorded is not None and os.path.realpath(recorded) != os.path.realpath(prefix):
        checks.append(Check("environment", "location", WARN,
                            "installed at %s, now at %s" % (recorded, prefix),
                            "Run %s/bin/gapship-rehome so that activate points here." % prefix))
    else:
        checks.append(Check("environment", "location", PASS, prefix))
    return checks


def run_checks(prefix, timeout, quick):
    checks = check_interpreter(prefix)
    python = os.path.join(prefix, "bin", "python3")
    env_path = os.path.join(prefix, "gapship", "environment.json")
    try:
        environment = load_json(env_path)
    except (OSError, ValueError) as exc:
        checks.append(Check("environment", "environment.json", FAIL, str(exc),
                            "The install is incomplete: install the bundle again."))
        environment = {"distributions": []}
    modules = [] if quick else STDLIB_MODULES
    for module in modules:
        status, detail, remedy = try_import(python, module, timeout)
        checks.append(Check("stdlib", module, status, detail, remedy))
    for dist in environment.get("distributions", []):
        names = dist.get("imports") or []
        if not names:
            checks.append(Check("imports", "%s %s" % (dist["name"], dist.get("version", "")),
                                PASS, "no importable top-level module (data or scripts only)"))
        for module in names:
            status, detail, remedy = try_import(python, module, timeout)
            label = "%s (%s %s)" % (module, dist["name"], dist.get("version", ""))
            checks.append(Check("imports", label, status, detail, remedy))
    return checks


def print_table(checks, out):
    marks = {PASS: "ok  ", WARN: "WARN", FAIL: "FAIL"}
    group = None
    for c in checks:
        if c.group != group:
            group = c.group
            out.write("\n%s\n" % group)
        line = "  [%s] %s" % (marks[c.status], c.name)
        if c.detail and c.status != PASS:
            line += ": " + c.detail
        out.write(line + "\n")
        if c.remedy and c.status != PASS:
            out.write("         fix: %s\n" % c.remedy)
    counts = dict((s, sum(1 for c in checks if c.status == s)) for s in (PASS, WARN, FAIL))
    out.write("\n%d passed, %d warnings, %d failed\n" % (counts[PASS], counts[WARN], counts[FAIL]))


def main(argv=None):
    parser = argparse.ArgumentParser(prog="gapship-doctor",
                                     description="Check that this environment works here.")
    parser.add_argument("--prefix", required=True, help=argparse.SUPPRESS)
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.add_argument("--report", metavar="FILE", help="also write the JSON report to FILE")
    parser.add_argument("--quick", action="store_true", help="skip the standard-library checks")
    parser.add_argument("--no-gpu", action="store_true", help="skip the GPU checks")
    parser.add_argument("--timeout", type=int, default=120, help="seconds per import (120)")
    args = parser.parse_args(argv)
    try:
        checks = run_checks(args.prefix, args.timeout, args.quick)
    except Exception as exc:  # the doctor itself broke: say so, exit 2
        sys.stderr.write("gapship-doctor could not run: %s: %s\n" % (type(exc).__name__, exc))
        return 2
    failed = any(c.status == FAIL for c in checks)
    report = {"schema_version": SCHEMA_VERSION, "prefix": args.prefix,
              "python": "%d.%d.%d" % sys.version_info[:3],
              "ok": not failed, "checks": [c.as_dict() for c in checks]}
    if args.report:
        with open(args.report, "w") as fh:
            json.dump(report, fh, indent=1)
    if args.json:
        json.dump(report, sys.stdout, indent=1)
        sys.stdout.write("\n")
    else:
        sys.stdout.write("gapship-doctor: %s\n" % args.prefix)
        print_table(checks, sys.stdout)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
