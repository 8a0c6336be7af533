"""The diagnosis catalogue: known failures (as data in diagnoses.json) -> cause and fix.

An entry matches when one of its regular expressions finds the error text and every
``when`` condition holds for the context the doctor measured (``nvidia_uvm``: false ...).
Entries are tried in file order, so the specific ones come before the general ones.
``cause`` and ``fix`` are templates: ``{name}`` takes a named group of the match, else a
context field the entry declares in ``context``, else the entry's ``defaults``.

Beside the entries, the file holds two tables the doctor judges with: ``cuda_libraries``
(which NVIDIA wheel ships a CUDA library, so that a remedy follows the environment's own CUDA
stack) and ``optional_plugins`` (kinds of library that only some programs load, whose
missing needs are a warning).
"""

import json
import os
import re
import string

CATALOGUE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "diagnoses.json")
_KEYS = {"id", "patterns", "when", "context", "defaults", "cause", "fix", "summary"}
_PLUGIN_KEYS = frozenset({"id", "about", "parents", "under", "libraries", "extension_modules",
                          "uses"})


class CatalogueError(ValueError):
    """diagnoses.json is malformed (a bug in the shipped data, found when it is loaded)."""


class Diagnosis(object):
    __slots__ = ("cause", "fields", "fix", "id")

    def __init__(self, entry_id, cause, fix, fields):
        self.id = entry_id
        self.cause = cause
        self.fix = fix
        self.fields = fields

    @property
    def remedy(self):
        return "%s %s" % (self.cause, self.fix)


class _Fields(dict):
    def __missing__(self, key):
        return "unknown"


class Entry(object):
    __slots__ = ("cause", "context", "defaults", "fix", "id", "patterns", "when")

    def __init__(self, raw):
        unknown = set(raw) - _KEYS
        if unknown:
            raise CatalogueError("%s: unknown keys %s" % (raw.get("id"), sorted(unknown)))
        self.id = raw.get("id")
        if not self.id or not raw.get("patterns") or not raw.get("cause") or not raw.get("fix"):
            raise CatalogueError("entry %r needs id, patterns, cause and fix" % self.id)
        try:
            self.patterns = [re.compile(p, re.MULTILINE) for p in raw["patterns"]]
        except re.error as exc:
            raise CatalogueError("%s: bad pattern: %s" % (self.id, exc)) from exc
        self.when = raw.get("when", {})
        self.context = list(raw.get("context", []))
        self.defaults = dict(raw.get("defaults", {}))
        self.cause = raw["cause"]
        self.fix = raw["fix"]
        groups = set()
        for pattern in self.patterns:
            groups.update(pattern.groupindex)
        known = groups | set(self.context) | set(self.defaults)
        for template in (self.cause, self.fix):
            for _, field, _, _ in string.Formatter().parse(template):
                if field and field not in known:
                    raise CatalogueError("%s: {%s} is neither a pattern group nor a declared "
                                         "context field" % (self.id, field))

    def match(self, text, context):
        for key, value in self.when.items():
            if context.get(key) != value:
                return None
        for pattern in self.patterns:
            found = pattern.search(text)
            if found:
                fields = _Fields(self.defaults)
                fields.update((k, v) for k, v in context.items()
                              if k in self.context and v not in (None, ""))
                fields.update((k, v) for k, v in found.groupdict().items() if v)
                return Diagnosis(self.id, self.cause.format_map(fields),
                                 self.fix.format_map(fields), dict(fields))
        return None


class OptionalPlugin(object):
    """A kind of shared library that only some programs load (dlopen, a contrib op): when
    its own needs are missing on the node, that is a warning, not a failure.

    A file is one when nothing NEEDs it, ``parents`` has the name of its directory (or is
    empty), its path contains one of ``under`` (or that is empty), and it is no Python
    extension module unless ``extension_modules``; ``libraries`` limits which missing needs
    it excuses (name prefixes; empty: any). ``uses`` names what it drives, for the remedy."""

    __slots__ = ("extension_modules", "id", "libraries", "parents", "under", "uses")

    def __init__(self, raw):
        unknown = set(raw) - _PLUGIN_KEYS
        if unknown or not raw.get("id") or not raw.get("uses") or \
                not (raw.get("parents") or raw.get("under")):
            raise CatalogueError("optional_plugins: %r needs id, uses and parents or under%s"
                                 % (raw.get("id"), " (unknown keys %s)" % sorted(unknown)
                                    if unknown else ""))
        self.id = raw["id"]
        self.parents = tuple(raw.get("parents", ()))
        self.under = tuple(raw.get("under", ()))
        self.libraries = tuple(raw.get("libraries", ()))
        self.extension_modules = bool(raw.get("extension_modules", False))
        self.uses = raw["uses"]

    def covers(self, rel_path, library, extension_module):
        """Whether a file at ``rel_path`` (relative to the prefix, "/" separators) that
        nothing NEEDs may lack ``library``."""
        rel_path = "/" + rel_path.lstrip("/")
        parent = rel_path.rsplit("/", 2)[-2] if rel_path.count("/") > 1 else ""
        return ((not self.parents or parent in self.parents)
                and (not self.under or any(u in rel_path for u in self.under))
                and (self.extension_modules or not extension_module)
                and (not self.libraries or any(library == lib or library.startswith(lib + ".")
                                               for lib in self.libraries)))


class Catalogue(object):
    def __init__(self, entries, cuda_libraries=None, optional_plugins=()):
        self.entries = entries
        self.optional_plugins = list(optional_plugins)
        # library stem -> (the NVIDIA wheel without -cuNN, "cuda" or "own" soname version)
        self.cuda_libraries = dict(cuda_libraries or {})
        ids = [e.id for e in entries]
        duplicates = sorted(set(i for i in ids if ids.count(i) > 1))
        if duplicates:
            raise CatalogueError("duplicate ids: %s" % ", ".join(duplicates))

    @classmethod
    def load(cls, path=CATALOGUE):
        try:
            with open(path, encoding="utf-8") as fh:
                data = json.load(fh)
        except (OSError, IOError, ValueError) as exc:
            raise CatalogueError("cannot read %s: %s" % (path, exc)) from exc
        if data.get("schema_version") != 1:
            raise CatalogueError("%s: unknown schema_version %r"
                                 % (path, data.get("schema_version")))
        libraries = {}
        for stem, row in data.get("cuda_libraries", {}).items():
            if stem.startswith("_"):
                continue
            if not (isinstance(row, list) and len(row) == 2 and row[1] in ("cuda", "own")):
                raise CatalogueError("cuda_libraries: %s needs [wheel, \"cuda\" or \"own\"]"
                                     % stem)
            libraries[stem] = tuple(row)
        return cls([Entry(raw) for raw in data.get("diagnoses", [])], libraries,
                   [OptionalPlugin(raw) for raw in data.get("optional_plugins", [])])

    def diagnose(self, text, context=None):
        """The first Diagnosis whose entry matches ``text`` in ``context``, or None."""
        context = context or {}
        for entry in self.entries:
            found = entry.match(text, context)
            if found is not None:
                return found
        return None

    def ids(self):
        return [e.id for e in self.entries]

    def optional_plugin(self, rel_path, library, extension_module):
        """The OptionalPlugin rule that excuses ``library`` missing for that file, or None."""
        for rule in self.optional_plugins:
            if rule.covers(rel_path, library, extension_module):
                return rule
        return None

    def cuda_library(self, stem):
        """(wheel, versioned by) of a CUDA library stem (libcudnn_ops_infer: libcudnn's)."""
        if stem in self.cuda_libraries:
            return self.cuda_libraries[stem]
        for key in sorted(self.cuda_libraries, key=len, reverse=True):
            if stem.startswith(key + "_"):
                return self.cuda_libraries[key]
        return None


_LOADED = []


def catalogue():
    """The shipped catalogue, loaded once."""
    if not _LOADED:
        _LOADED.append(Catalogue.load())
    return _LOADED[0]


MISSING_LIBRARY = re.compile(r"([^\s:'\"/]+\.so[^\s:'\"]*): cannot open shared object file")
# ld.so names the library a versioned reference was bound to: "undefined symbol: cudnnGetRNN...,
# version libcudnn.so.7" (the version node of a CUDA library is its soname)
SYMBOL_LIBRARY = re.compile(r"undefined symbol: [^\s,]+, version (lib[^\s,:'\"/]+\.so[0-9.]*)")
_SONAME = re.compile(r"^(?P<stem>lib.+?)\.so(?:\.(?P<version>[0-9][0-9.]*))?$")


def _major(version):
    found = re.match(r"\d+", str(version or ""))
    return int(found.group(0)) if found else None


def cuda_context(library, cuda):
    """Catalogue fields for a library that cannot be found, when it belongs to a CUDA stack:
    cuda_library, toolkit_part, cuda_wheel (the NVIDIA wheel for the environment's CUDA
    ``cuda``, "12.4"), library_cuda (the CUDA its soname names) and cuda_mismatch; else {}."""
    found = _SONAME.match(os.path.basename(library))
    row = catalogue().cuda_library(found.group("stem")) if found else None
    if row is None:
        return {}
    wheel, counts = row
    out = {"cuda_library": True,
           "toolkit_part": "cuDNN" if found.group("stem").startswith("libcudnn") else "toolkit"}
    version = found.group("version")
    stack = _major(cuda)
    if counts == "cuda" and version:
        out["library_cuda"] = version  # "9.0", or "12": either is a valid cuda = "..."
        out["cuda_mismatch"] = stack is not None and _major(version) != stack
    major = stack if stack is not None else (_major(version) if counts == "cuda" else None)
    if major is not None and major >= 13:
        out["cuda_wheel"] = wheel
    elif major is not None and major >= 11:
        out["cuda_wheel"] = "%s-cu%d" % (wheel, major)
    return out


# "ImportError: libcublas.so.9.0: cannot open ...", "numpy.core._exceptions.UFuncTypeError: ..."
_EXCEPTION_LINE = re.compile(r"^(?:[A-Za-z_][\w]*\.)*[A-Za-z_]\w*(?:Error|Exception|Exit|Interrupt)"
                             r"(?::\s*(?P<message>.*))?$")


def error_line(text):
    """The line of an error text that says what went wrong: the loader's line (a library that
    cannot be opened, an undefined symbol), else the last exception line whose message is
    neither empty nor a nested traceback, else the last non-empty line.

    TensorFlow 1.x re-raises a load failure as ``ImportError: Traceback ...`` and ends with a
    banner ("... above this error message when asking for help."): the cause is the inner
    ``ImportError: libcublas.so.9.0: cannot open shared object file ...`` line."""
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    # the loader's own words are the cause, however a package wraps them (numpy's ImportError
    # is a page of advice with "Original error was: libX.so: cannot open ..." inside)
    for line in reversed(lines):
        if "cannot open shared object file" in line or "undefined symbol:" in line:
            return line
    for line in reversed(lines):
        found = _EXCEPTION_LINE.match(line)
        message = (found.group("message") or "") if found else ""
        if found and message and not message.startswith("Traceback"):
            return line
    return lines[-1] if lines else "no message"


def missing_library(text):
    """The library an error text says cannot be opened (libcublas.so.9.0), or None."""
    found = MISSING_LIBRARY.search(text)
    return found.group(1) if found else None


def symbol_library(text):
    """The library an undefined, versioned symbol was to come from (libcudnn.so.7), or None."""
    found = SYMBOL_LIBRARY.search(text)
    return found.group(1) if found else None


def explain(text, context, fallback):
    """(detail, remedy, diagnosis id) for an error ``text``; ``fallback`` is the remedy when
    no entry matches. A CUDA library that cannot be opened, or that lacks a symbol, is judged
    against the environment's CUDA stack (``cuda``, ``cuda_source`` in ``context``)."""
    library = missing_library(text) or symbol_library(text)
    if library:
        context = dict(cuda_context(library, context.get("cuda")), **context)
    found = catalogue().diagnose(text, context)
    detail = error_line(text)
    if found is None:
        return detail, fallback, None
    return detail, found.remedy, found.id
