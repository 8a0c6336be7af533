"""The CPU check: the instruction sets the shipped packages need (cpu_needs.json) against
/proc/cpuinfo. Unverified needs (a hint, not a documented fact) warn and never fail."""

import os
import platform

from . import layout
from .base import FAIL, PASS, WARN, Check, listing, load_json

GROUP = "cpu"
# x86-64 micro-architecture levels (the psABI), in /proc/cpuinfo's flag names
# (sse3 is "pni", lzcnt is "abm"); each level includes the ones below it.
X86_64_LEVELS = (
    (2, ("cx16", "lahf_lm", "popcnt", "pni", "ssse3", "sse4_1", "sse4_2")),
    (3, ("avx", "avx2", "bmi1", "bmi2", "f16c", "fma", "abm", "movbe", "xsave")),
    (4, ("avx512f", "avx512bw", "avx512cd", "avx512dq", "avx512vl")),
)
_ALIASES = {"sse3": "pni", "lzcnt": "abm", "sse4.1": "sse4_1", "sse4.2": "sse4_2",
            "sse41": "sse4_1", "sse42": "sse4_2", "bmi": "bmi1", "avx512": "avx512f",
            "lahf": "lahf_lm", "cmpxchg16b": "cx16"}


def read_cpuinfo(path="/proc/cpuinfo"):
    """(model name, set of flags) of the first processor; (None, None) when unreadable."""
    model, flags = None, None
    try:
        with open(path) as fh:
            for line in fh:
                key, _, value = line.partition(":")
                key = key.strip()
                if key == "model name" and model is None:
                    model = value.strip()
                elif key in ("flags", "Features") and flags is None:
                    flags = set(value.split())
                if not line.strip() and flags is not None:
                    break
    except (OSError, IOError):
        pass
    return model, flags


def flag_name(flag):
    """A flag as /proc/cpuinfo spells it."""
    flag = flag.strip().lower()
    return _ALIASES.get(flag, flag)


def x86_64_level(flags):
    """The highest x86-64 level (1-4) whose flags are all in ``flags``."""
    level = 1
    for number, needed in X86_64_LEVELS:
        if not all(f in flags for f in needed):
            break
        level = number
    return level


def level_flags(level):
    """Every flag that x86-64-v``level`` needs."""
    out = []
    for number, needed in X86_64_LEVELS:
        if number <= level:
            out.extend(needed)
    return out


def parse_level(value):
    """2, "2", "v2", "x86-64-v2" -> 2; None when absent or unknown."""
    if value is None:
        return None
    text = str(value).lower().replace("x86-64-", "").replace("x86_64_", "").lstrip("v")
    return int(text) if text.isdigit() else None


def missing_for(need, flags):
    """The flags of one cpu_needs row that ``flags`` lacks."""
    wanted = [flag_name(f) for f in need.get("flags") or []]
    level = parse_level(need.get("x86_64_level"))
    if level:
        wanted += [f for f in level_flags(level) if f not in wanted]
    return [f for f in wanted if f not in flags]


def load_needs(prefix):
    data = load_json(os.path.join(prefix, layout.CPU_NEEDS), {}) or {}
    return data.get("needs") or []


def missing_by_distribution(needs, flags):
    """distribution name (lower case) -> the flags it needs that this CPU lacks."""
    out = {}
    if flags is None:
        return out
    for need in needs:
        lacking = missing_for(need, flags)
        if lacking:
            out.setdefault(str(need.get("distribution", "")).lower(), []).extend(lacking)
    return out


def check_cpu(prefix, cpuinfo="/proc/cpuinfo", machine=None):
    """Checks of the recorded instruction-set needs against this CPU."""
    machine = machine or platform.machine()
    needs = load_needs(prefix)
    model, flags = read_cpuinfo(cpuinfo)
    if flags is None:
        return [Check(GROUP, "cpu flags", WARN, "cannot read %s" % cpuinfo,
                      "The CPU needs of the packages could not be checked.")]
    level = x86_64_level(flags) if machine == "x86_64" else None
    summary = "%s%s" % (model or machine, ", x86-64-v%d" % level if level else "")
    checks = [Check(GROUP, "cpu", PASS, summary,
                    facts={"model": model, "machine": machine, "x86_64_level": level})]
    if not needs:
        checks[0].detail += "; no instruction-set needs recorded for this environment"
    for need in needs:
        checks.append(_need_check(need, flags, machine, level))
    return checks


def _need_check(need, flags, machine, level):
    name = "%s %s" % (need.get("distribution", "?"), need.get("version", ""))
    wanted = list(need.get("flags") or [])
    if need.get("x86_64_level"):
        wanted.append("x86-64-v%s" % parse_level(need.get("x86_64_level")))
    label = "%s needs %s" % (name.strip(), ", ".join(wanted) or "nothing")
    source = need.get("source") or "no source"
    if machine != "x86_64":
        return Check(GROUP, label, PASS, "not an x86-64 CPU (%s): does not apply" % machine)
    lacking = missing_for(need, flags)
    if not lacking:
        return Check(GROUP, label, PASS, "present (%s)" % source)
    verified = bool(need.get("verified"))
    detail = "this CPU (x86-64-v%d) lacks %s; %s (%s%s)" % (
        level, listing(lacking, 8), need.get("reason") or "", source,
        "" if verified else ", unverified")
    remedy = ("Importing %s will stop with 'Illegal instruction': pack again with --target from "
              "this node's probe so that gapship picks a build for this CPU, or run on a node "
              "whose CPU has %s." % (need.get("distribution"), ", ".join(lacking)))
    if not verified:
        remedy = "This need is not documented for certain; the import check shows whether it " \
                 "matters. " + remedy
    return Check(GROUP, label, FAIL if verified else WARN, detail, remedy,
                 "illegal-instruction", facts={"missing": lacking, "verified": verified})
