"""Import checks: the standard library's extension modules and every distribution's top-level
modules, each in its own process with a timeout, so a crash (Illegal instruction) is caught,
named and explained."""

import glob
import json
import os
import re

from . import layout
from .base import FAIL, PASS, Check, listing, plural, python_env, run, signal_name
from .catalogue import explain, missing_library

# Standard-library modules whose extension modules need grafted libraries (ssl, sqlite3 ...):
# an install that lost one of those libraries fails here.
STDLIB_MODULES = ["ssl", "sqlite3", "ctypes", "lzma", "bz2", "zlib", "readline", "uuid",
                  "decimal", "hashlib", "json", "multiprocessing", "curses"]
FALLBACK = "Run `python3 -c 'import %s'` after activating to see the full error."


_NO_MODULE = re.compile(r"No module named '([^'.]+)")
# What the interpreter itself says about its path, printed by a Python 3.6+ without -S
PATH_PROBE = ("import json, site, sys; print(json.dumps({'path': sys.path, 'prefix': sys.prefix, "
              "'site_dirs': getattr(site, 'getsitepackages', list)(), "
              "'no_site': sys.flags.no_site}))")
# Set in the user's shell, each changes what a plain `python3` puts on sys.path
INTERFERING = (("VIRTUAL_ENV", "another virtual environment is active: deactivate it"),
               ("CONDA_PREFIX", "a conda environment is active: conda deactivate"),
               ("PYTHONHOME", "it moves the standard library and site-packages elsewhere"),
               ("PYTHONPATH", "it puts other packages first"),
               ("PYTHONNOUSERSITE", None), ("PYTHONSTARTUP", None))


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
        missing = missing_library(ran.stderr)
        if missing and library_context is not None:
            context = dict(context, **library_context(missing))
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
    distribution (lower case) to the CPU flags it needs that this CPU lacks.

    When every module fails with "No module named" itself and site-packages is not on the
    interpreter's sys.path, that is the one finding, with why, not one failure each."""
    checks, not_found = [], []  # not_found: each module that is not found itself, or None
    for check, module in _import_each(python, distributions, timeout, context, missing_flags,
                                      library_context):
        checks.append(check)
        if module is not None:
            found = _NO_MODULE.search(check.detail) if check.status == FAIL else None
            not_found.append(module if found and found.group(1) == module.split(".")[0]
                             else None)
    if not_found and all(not_found):
        lost = site_packages_lost(python, timeout, context, not_found)
        if lost is not None:
            return [c for c in checks if c.status != FAIL] + [lost]
    return checks


def _import_each(python, distributions, timeout, context, missing_flags, library_context):
    """(Check, module tried or None) for every distribution."""
    shipped = set(d.get("name", "").lower() for d in distributions)
    for dist in distributions:
        name, version = dist.get("name", "?"), dist.get("version", "")
        names = dist.get("imports") or []
        if not names:
            yield Check("imports", "%s %s" % (name, version), PASS,
                        "no importable top-level module (data or scripts only)"), None
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
            yield Check("imports", label, status, detail, remedy, diagnosis), module


def site_packages_lost(python, timeout, context, modules, environ=None):
    """One failing Check when the environment's site-packages is not on the interpreter's
    sys.path, saying why (a .pth hook it does not read, another sys.prefix, a directory
    that is gone, variables of the shell); None when it is on sys.path."""
    prefix = context.get("prefix", "")
    site = os.path.join(prefix, context.get("site_packages") or "")
    if not context.get("site_packages"):
        found = sorted(glob.glob(os.path.join(prefix, "lib", "python3*", "site-packages")))
        site = found[0] if found else os.path.join(prefix, "lib", "python3", "site-packages")
    ran = run([python, "-I", "-c", PATH_PROBE], timeout, python_env())
    try:
        seen = json.loads(ran.stdout)
    except ValueError:
        return None  # the interpreter cannot say: the failures speak for themselves
    real = os.path.realpath(site)
    if any(os.path.realpath(p) == real for p in seen.get("path", []) if p):
        return None
    why, fix = _why_not_on_path(prefix, site, seen)
    environ = os.environ if environ is None else environ
    shell = ["%s=%s (%s)" % (k, environ[k], what) if what else "%s=%s" % (k, environ[k])
             for k, what in INTERFERING if environ.get(k)]
    if shell:
        why.append("this shell also sets %s" % "; ".join(shell))
        fix += " Unset %s before activating." % ", ".join(
            k for k, _ in INTERFERING if environ.get(k))
    rel = os.path.relpath(site, prefix) if prefix else site
    return Check("imports", "site-packages on sys.path", FAIL,
                 "%s is not on sys.path, so none of the %s can be imported (%s): %s"
                 % (rel, plural(len(modules), "module"), listing(modules), "; ".join(why)),
                 fix,
                 facts={"site_packages": rel, "sys_path": seen.get("path"),
                        "site_dirs": seen.get("site_dirs"), "modules": modules})


def _why_not_on_path(prefix, site, seen):
    """([reasons], remedy) for a site-packages the interpreter does not put on sys.path."""
    reinstall = "Install the bundle again with --force."
    repack = ("Pack again from a shell with no virtualenv or conda environment active (and "
              "no PYTHONPATH, PYTHONHOME), then install again with --force.")
    if not os.path.isdir(site):
        return ["%s does not exist (the install is incomplete)" % site], reinstall
    if seen.get("no_site"):
        return ["the interpreter runs without the site module (-S)"], \
            "Run python3 without -S, or add %s to sys.path yourself." % site
    if prefix and os.path.realpath(seen.get("prefix", "")) != os.path.realpath(prefix):
        return ["the interpreter's sys.prefix is %s, not %s (its pyvenv.cfg or build points "
                "elsewhere)" % (seen.get("prefix"), prefix)], reinstall
    dirs = [os.path.realpath(d) for d in seen.get("site_dirs", [])]
    # lib/python3.X/ and lib/python3/ (Debian), and Debian's local/lib/python3.X/
    hooks = sorted(set(glob.glob(os.path.join(prefix, "lib", "python3*", "*-packages",
                                              layout.SITE_HOOK))
                       + glob.glob(os.path.join(prefix, "local", "lib", "python3*",
                                                "*-packages", layout.SITE_HOOK))))
    shown = listing(seen.get("site_dirs", []) or ["none"])
    for hook in hooks:
        if os.path.realpath(os.path.dirname(hook)) not in dirs:
            return ["the .pth hook that adds it, %s, is in a directory this interpreter does "
                    "not read (its site directories: %s): the hook was written where the "
                    "builder's environment said, and was skipped" % (hook, shown)], repack
    if hooks:
        return ["the .pth hook %s is in a site directory but did not add it (a .pth line "
                "that fails is skipped)" % hooks[0]], repack
    return ["the interpreter's site directories are %s, and no %s adds it"
            % (shown, layout.SITE_HOOK)], repack
