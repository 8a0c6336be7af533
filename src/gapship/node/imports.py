"""Import checks: the standard library's extension modules and every distribution's top-level
modules, each in its own process with a timeout, so a crash (Illegal instruction) is caught,
named and explained."""

import re

from .base import FAIL, PASS, Check, python_env, run, signal_name
from .catalogue import cuda_context, explain

# Standard-library modules whose extension modules need grafted libraries (ssl, sqlite3 ...):
# an install that lost one of those libraries fails here.
STDLIB_MODULES = ["ssl", "sqlite3", "ctypes", "lzma", "bz2", "zlib", "readline", "uuid",
                  "decimal", "hashlib", "json", "multiprocessing", "curses"]
FALLBACK = "Run `python3 -c 'import %s'` after activating to see the full error."
_MISSING_LIBRARY = re.compile(r"([^\s:'\"/]+\.so[^\s:'\"]*): cannot open shared object file")


# Frameworks whose plugins (tensorflow-io-gcs-filesystem ...) load their libraries only
# once the framework itself is imported.
PLUGIN_HOSTS = ("tensorflow", "torch", "jax")


def try_import(python, module, timeout, context, library_context=None, first=None):
    """(status, detail, remedy, diagnosis) of importing ``module`` in a fresh interpreter,
    after importing ``first`` when given.

    ``library_context`` maps a library that cannot be opened to what the install knows of
    it (closure.library_context), so the remedy says whether the bundle has it."""
    code = ("import %s; " % first if first else "") + "import %s" % module
    ran = run([python, "-I", "-c", code], timeout, python_env())
    if ran.error:
        detail, remedy, diagnosis = explain("%s (running %s)" % (ran.error, python), context,
                                            "Install the bundle again with --force.")
        return FAIL, "cannot run %s: %s" % (python, ran.error), remedy, diagnosis
    if ran.timed_out:
        return FAIL, "import %s did not finish in %ds" % (module, timeout), \
            "A slow filesystem (Lustre, NFS) or a hang: try again with --timeout 600.", None
    if ran.returncode < 0:
        name = signal_name(ran.returncode)
        text = "%s\n%s while importing %s" % (ran.stderr, name, module)
        if name == "SIGILL":
            text += "\nIllegal instruction"
        _, remedy, diagnosis = explain(text, context,
                                       "Run `python3 -X faulthandler -c 'import %s'` to see "
                                       "where it crashes." % module)
        return FAIL, "the import was killed by %s" % name, remedy, diagnosis
    if ran.returncode != 0:
        missing = _MISSING_LIBRARY.search(ran.stderr)
        if missing:
            context = dict(context, **cuda_context(missing.group(1), context.get("cuda")))
        if missing and library_context is not None:
            context = dict(context, **library_context(missing.group(1)))
        detail, remedy, diagnosis = explain(ran.stderr, context, FALLBACK % module)
        return FAIL, detail, remedy, diagnosis
    return PASS, "", "", None


def _as_plugin(python, module, timeout, context, hosts, failed):
    """A framework's plugin (tensorflow-io-gcs-filesystem) may load only once the framework
    is imported, or be loaded by the framework itself, so that importing it again says
    "already registered": either way it works as the framework uses it."""
    for host in hosts:
        status, detail, _, _ = try_import(python, module, timeout, context, first=host)
        if status == PASS:
            return PASS, "imports once %s is imported (a plugin of it)" % host, "", None
        if "already registered" in detail:
            return PASS, "loaded by %s itself (a plugin of it: importing it again says " \
                         "'already registered')" % host, "", None
    return failed


def check_stdlib(python, timeout, context):
    checks = []
    for module in STDLIB_MODULES:
        status, detail, remedy, diagnosis = try_import(python, module, timeout,
                                                       dict(context, package="the interpreter"))
        checks.append(Check("stdlib", module, status, detail, remedy, diagnosis))
    return checks


def check_distributions(python, distributions, timeout, context, missing_flags,
                        library_context=None):
    """One check per top-level module of each distribution; ``missing_flags`` maps a
    distribution (lower case) to the CPU flags it needs that this CPU lacks."""
    checks = []
    shipped = set(d.get("name", "").lower() for d in distributions)
    for dist in distributions:
        name, version = dist.get("name", "?"), dist.get("version", "")
        names = dist.get("imports") or []
        if not names:
            checks.append(Check("imports", "%s %s" % (name, version), PASS,
                                "no importable top-level module (data or scripts only)"))
        lacking = missing_flags.get(name.lower())
        ctx = dict(context, package="%s %s" % (name, version))
        if lacking:
            ctx["missing_flags"] = "this CPU lacks %s" % ", ".join(lacking)
        hosts = [h for h in PLUGIN_HOSTS if h in shipped and h != name.lower()]
        for module in names:
            status, detail, remedy, diagnosis = try_import(python, module, timeout, ctx,
                                                           library_context)
            if status == FAIL and hosts:
                status, detail, remedy, diagnosis = _as_plugin(
                    python, module, timeout, ctx, hosts, (status, detail, remedy, diagnosis))
            label = "%s (%s %s)" % (module, name, version)
            checks.append(Check("imports", label, status, detail, remedy, diagnosis))
    return checks
