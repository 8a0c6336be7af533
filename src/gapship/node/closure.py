"""The static library closure: every ELF file of the prefix, resolved as ld.so would, unrun.

For each ELF file of the prefix's ABI: each NEEDED library must be found (loader.Loader) and
each non-weak versioned need (GLIBC_2.34, GLIBCXX_3.4.30, CXXABI_1.3.13, GCC_7.0.0 ...)
must be defined by the library found. Findings name the distribution that owns the file.
"""

import os
import re

from . import elf as elfmod
from .base import FAIL, PASS, WARN, Check, listing, plural
from .catalogue import catalogue, cuda_context
from .loader import Loader
from .owners import Owners

GROUP = "libraries"
# Libraries that only the NVIDIA driver provides: never in a bundle, absent on a login
# node. The gpu checks report the driver; here they are not failures.
DRIVER_LIBRARIES = ("libcuda.so", "libnvidia-", "libnvcuvid.so", "libnvoptix.so",
                    "libcudadebugger.so")
_MAX_LOADER_DEPTH = 4


def is_driver_library(name):
    return name.startswith(DRIVER_LIBRARIES)


class Scan(object):
    """What the closure check found (also used by the environment checks)."""

    def __init__(self):
        self.files = 0
        self.skipped_abi = 0
        self.sonames = {}           # soname or file name -> path in the prefix
        self.missing = {}           # library name -> [needing path]
        self.plugins_missing = {}   # library name -> [dlopen-only plugin needing it]
        self.plugin_uses = {}       # library name -> [what the plugins needing it drive]
        self.missing_versions = {}  # (version, provider path) -> [needing path]
        self.unreadable = []        # (path, reason)
        self.driver_needed = {}     # driver library -> [needing path]
        self.outside = {}           # library name -> (found path, how): resolved outside
        self.interp_missing = {}    # PT_INTERP path -> [needing path]


def scan(prefix, loader=None, main_exe=None, paths=None):
    """Resolve every ELF file of ``prefix`` (``paths``: those ``iter_elf_paths`` would
    yield, already listed by the caller); returns a Scan."""
    prefix = os.path.abspath(prefix)
    loader = loader or Loader()
    result = Scan()
    main_exe = main_exe or os.path.join(prefix, "bin", "python3")
    main = loader.read(main_exe)
    if not isinstance(main, elfmod.ElfFile):
        main = None
    objs = []
    for path in elfmod.iter_elf_paths(prefix) if paths is None else paths:
        obj = loader.read(path)
        if isinstance(obj, elfmod.ElfError):
            result.unreadable.append((path, str(obj)))
            continue
        if obj is None or not obj.dynamic:
            continue
        if main is not None and obj.abi != main.abi:
            result.skipped_abi += 1
            continue
        objs.append((path, obj))
        result.sonames.setdefault(os.path.basename(path), path)
        if obj.soname:
            result.sonames.setdefault(obj.soname, path)
    result.files = len(objs)
    loaded_by = {}  # real path of a library of the prefix -> objects that NEED it
    resolved = {}
    unresolved = []
    for path, obj in objs:
        loaders = (main,) if main is not None and obj is not main and not obj.interp else ()
        found = {}
        for name in obj.needed:
            where, how = loader.find(name, obj, loaders)
            if where is None:
                unresolved.append((path, obj, name))
                continue
            found[name] = where
            loaded_by.setdefault(os.path.realpath(where), []).append(obj)
            if not os.path.abspath(where).startswith(prefix + os.sep) and name in result.sonames:
                result.outside[name] = (where, how)
        resolved[path] = found
    preloaded = _sonames_loaded_by(main, loader)
    # a library found through its loaders' DT_RPATH loads its own needs through the same
    # chain (numpy.libs/libgfortran needs libquadmath): repeat until nothing more resolves
    progress = True
    while progress and unresolved:
        progress, still = False, []
        for path, obj, name in unresolved:
            where = _through_loaders(loader, obj, name, loaded_by) or preloaded.get(name)
            if where is None:
                still.append((path, obj, name))
                continue
            resolved[path][name] = where
            loaded_by.setdefault(os.path.realpath(where), []).append(obj)
            progress = True
        unresolved = still
    for path, obj, name in unresolved:
        if is_driver_library(name):
            result.driver_needed.setdefault(name, []).append(path)
            continue
        rule = _optional_plugin(prefix, path, obj, name, loaded_by)
        if rule is None:
            result.missing.setdefault(name, []).append(path)
            continue
        result.plugins_missing.setdefault(name, []).append(path)
        uses = result.plugin_uses.setdefault(name, [])
        if rule.uses not in uses:
            uses.append(rule.uses)
    for path, obj in objs:
        if obj.interp and not os.path.exists(obj.interp):
            result.interp_missing.setdefault(obj.interp, []).append(path)
        _check_versions(loader, path, obj, resolved[path], result)
    return result


_EXTENSION = re.compile(r"\.(cpython-[^/]*|abi3)\.so$")


def _optional_plugin(prefix, path, obj, name, loaded_by):
    """The rule of diagnoses.json's optional_plugins under which a library nothing in the
    prefix NEEDs may lack ``name`` (NVSHMEM's InfiniBand transport lacking libmlx5,
    TensorFlow 1.x's contrib TensorRT ops lacking libnvinfer), or None."""
    if obj.interp or os.path.realpath(path) in loaded_by:
        return None
    rel = os.path.relpath(path, prefix).replace(os.sep, "/")
    return catalogue().optional_plugin(rel, name,
                                       bool(_EXTENSION.search(os.path.basename(path))))


def _sonames_loaded_by(main, loader):
    """SONAME -> path of every library the interpreter itself loads (already in memory)."""
    loaded = {}
    if main is None:
        return loaded
    todo = [main]
    while todo:
        obj = todo.pop()
        for name in obj.needed:
            if name in loaded:
                continue
            where, _ = loader.find(name, obj, (main,) if obj is not main else ())
            dep = loader.read(where) if where else None
            if isinstance(dep, elfmod.ElfFile):
                loaded[name] = where
                todo.append(dep)
    return loaded


def _through_loaders(loader, obj, name, loaded_by, depth=0, seen=None):
    """Where ``name`` is found through the DT_RPATH of an object that loads ``obj``."""
    if depth >= _MAX_LOADER_DEPTH:
        return None
    seen = seen if seen is not None else set()
    for parent in loaded_by.get(os.path.realpath(obj.path), []):
        if parent.path in seen:
            continue
        seen.add(parent.path)
        where, _ = loader.find(name, obj, (parent,))
        if where is None:
            where = _through_loaders(loader, parent, name, loaded_by, depth + 1, seen)
        if where is not None:
            return where
    return None


def _check_versions(loader, path, obj, found, result):
    for lib, versions in obj.version_needs.items():
        where = found.get(lib)
        if where is None:
            continue  # a missing library is reported as missing already
        provider = loader.read(where)
        if not isinstance(provider, elfmod.ElfFile) or not provider.version_defs:
            continue  # a library without version definitions satisfies any need
        for version, weak in versions:
            if not weak and version not in provider.version_defs:
                result.missing_versions.setdefault((version, where), []).append(path)


def running_glibc():
    """'glibc 2.31': the C library this process (on this node) runs with, or None."""
    try:
        return os.confstr("CS_GNU_LIBC_VERSION")
    except (ValueError, OSError, AttributeError):
        return None


def check_closure(prefix, owners=None, loader=None, context=None):
    """Checks of the library closure, and the Scan (for the environment checks)."""
    owners = owners or Owners(prefix)
    loader = loader or Loader()
    context = dict(context or {})
    context.setdefault("prefix", owners.prefix)
    result = scan(prefix, loader)
    checks = []
    for path, reason in result.unreadable:
        checks.append(Check(GROUP, owners.rel(path), FAIL, "cannot be read as ELF: %s" % reason,
                            "The file is damaged: install the bundle again with --force."))
    for interp, paths in sorted(result.interp_missing.items()):
        checks.append(Check(GROUP, "program interpreter %s" % interp, FAIL,
                            "%s does not exist on this node; needed by %s"
                            % (interp, listing(owners.rel(p) for p in paths)),
                            "These programs were built for another kind of system: pack again "
                            "with --target from this node's probe."))
    for name, paths in sorted(result.missing.items()):
        checks.append(_missing_library(name, paths, owners, context, result))
    plugins = []  # FAIL: a plugin's own dependency was deleted from the bundle
    optional = {}  # library -> plugins that need it, for one warning line
    for name, paths in sorted(result.plugins_missing.items()):
        if library_context(name, owners, result.sonames).get("deleted"):
            plugins.append(_missing_library(name, paths, owners, context, result))
        else:
            optional[name] = paths
    for (version, provider), paths in sorted(result.missing_versions.items()):
        checks.append(_missing_version(version, provider, paths, owners, loader))
    checks += plugins
    if not checks:
        detail = "%s: every needed library and symbol version found" % plural(
            result.files, "ELF file")
        if result.driver_needed:
            detail += "; %s the NVIDIA driver's %s (see gpu)" % (
                plural(sum(len(v) for v in result.driver_needed.values()), "file") + " need",
                listing(sorted(result.driver_needed)))
        checks.append(Check(GROUP, "library closure", PASS, detail,
                            facts={"elf_files": result.files,
                                   "other_abi": result.skipped_abi}))
    if optional:
        paths = sorted({p for ps in optional.values() for p in ps})
        packages = listing(sorted(_needers(paths, owners)))
        uses = []
        for name in sorted(optional):
            uses += [u for u in result.plugin_uses.get(name, []) if u not in uses]
        checks.append(Check(
            GROUP, "optional plugins", WARN,
            "%s of %s cannot load on this node: they need %s, which it does not have (they "
            "are opened with dlopen only where those libraries exist; nothing else loads them)"
            % (plural(len(paths), "plugin"), packages, listing(sorted(optional))),
            "Nothing to do unless you use what they drive (%s): then load the site's modules "
            "that provide those libraries." % "; ".join(uses),
            facts={"libraries": sorted(optional),
                   "plugins": [owners.rel(p) for p in paths]}))
    return checks, result


def library_context(name, owners, sonames):
    """What the install knows about a library the loader cannot find, for the catalogue:
    deleted (a RECORD or the manifest lists it, the file is gone) or bundle_has (elsewhere)."""
    expected = [(o, p) for o, p in owners.expected(name) if not os.path.exists(p)]
    if expected:
        return {"deleted": True, "owner": expected[0][0],
                "expected_path": owners.rel(expected[0][1])}
    if name in sonames:
        return {"bundle_has": True, "bundle_path": owners.rel(sonames[name])}
    return {}


def _needers(paths, owners):
    by_owner = {}
    for path in paths:
        by_owner.setdefault(owners.owner(path), []).append(owners.rel(path))
    return by_owner


def _missing_library(name, paths, owners, context, result):
    by_owner = _needers(paths, owners)
    package = listing(sorted(by_owner))
    needers = listing(sorted(p for ps in by_owner.values() for p in ps))
    ctx = dict(context, package=package)
    ctx.update(cuda_context(name, context.get("cuda")))
    ctx.update(library_context(name, owners, result.sonames))
    # a library the bundle has elsewhere may be loaded by its package first (ctypes, dlopen)
    status = WARN if ctx.get("bundle_has") else FAIL
    text = "%s: cannot open shared object file: No such file or directory" % name
    found = catalogue().diagnose(text, ctx)
    return Check(GROUP, "%s not found" % name, status, "needed by %s: %s" % (package, needers),
                 found.remedy if found else "", found.id if found else None,
                 facts={"library": name, "needed_by": sorted(owners.rel(p) for p in paths),
                        "owners": sorted(by_owner)})


def _missing_version(version, provider, paths, owners, loader):
    by_owner = _needers(paths, owners)
    needers = listing(sorted(p for ps in by_owner.values() for p in ps))
    lib = os.path.basename(provider)
    provider_elf = loader.read(provider)
    family = elfmod.version_key(version)[0]
    newest = elfmod.newest_version(provider_elf.version_defs, family) if isinstance(
        provider_elf, elfmod.ElfFile) else None
    text = "%s: version `%s' not found (required by %s)" % (provider, version,
                                                           listing(sorted(by_owner)))
    found = catalogue().diagnose(text)
    detail = "needed by %s: %s; %s here is %s%s%s" % (
        listing(sorted(by_owner)), needers, lib, owners.rel(provider),
        " (%s)" % running_glibc() if family == "GLIBC" and running_glibc() else "",
        ", newest %s" % newest if newest else "")
    remedy = found.remedy if found else (
        "The %s found is older than the one %s was built against: check that LD_LIBRARY_PATH "
        "brings in no other copy, else install the bundle again with --force."
        % (lib, listing(sorted(by_owner))))
    return Check(GROUP, "%s not in this node's %s" % (version, lib), FAIL, detail, remedy,
                 found.id if found else None,
                 facts={"version": version, "library": provider, "newest": newest,
                        "needed_by": sorted(owners.rel(p) for p in paths),
                        "owners": sorted(by_owner)})
