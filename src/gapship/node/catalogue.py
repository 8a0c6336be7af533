"""The diagnosis catalogue: known failures (as data in diagnoses.json) -> cause and fix.

An entry matches when one of its regular expressions finds the error text and every
``when`` condition holds for the context the doctor measured (``nvidia_uvm``: false ...).
Entries are tried in file order, so the specific ones come before the general ones.
``cause`` and ``fix`` are templates: ``{name}`` takes a named group of the match, else a
context field the entry declares in ``context``, else the entry's ``defaults``.
"""

import json
import os
import re
import string

CATALOGUE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "diagnoses.json")
_KEYS = {"id", "patterns", "when", "context", "defaults", "cause", "fix", "summary"}


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


class Catalogue(object):
    def __init__(self, entries):
        self.entries = entries
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
        return cls([Entry(raw) for raw in data.get("diagnoses", [])])

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


_LOADED = []


def catalogue():
    """The shipped catalogue, loaded once."""
    if not _LOADED:
        _LOADED.append(Catalogue.load())
    return _LOADED[0]


def last_line(text):
    """The last non-empty line of an error text: usually the exception itself."""
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    return lines[-1] if lines else "no message"


def explain(text, context, fallback):
    """(detail, remedy, diagnosis id) for an error ``text``; ``fallback`` is the remedy when
    no entry matches."""
    found = catalogue().diagnose(text, context)
    detail = last_line(text)
    if found is None:
        return detail, fallback, None
    return detail, found.remedy, found.id
