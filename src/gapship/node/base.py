"""What every check produces: a Check row with its status, detail and remedy."""

import json
import os
import signal
import subprocess

SCHEMA_VERSION = 1
PASS, WARN, FAIL, SKIP = "pass", "warn", "fail", "skip"
STATUSES = (PASS, WARN, FAIL, SKIP)


class Check(object):
    """One line of the report.

    ``diagnosis`` is the id of the catalogue entry that explained a failure;
    ``facts`` holds what was measured (versions, paths) for --json readers.
    """

    __slots__ = ("detail", "diagnosis", "facts", "group", "name", "remedy", "status")

    def __init__(self, group, name, status, detail="", remedy="", diagnosis=None, facts=None):
        assert status in STATUSES, status
        self.group = group
        self.name = name
        self.status = status
        self.detail = detail
        self.remedy = remedy
        self.diagnosis = diagnosis
        self.facts = facts or {}

    def as_dict(self):
        out = {"group": self.group, "name": self.name, "status": self.status,
               "detail": self.detail, "remedy": self.remedy}
        if self.diagnosis:
            out["diagnosis"] = self.diagnosis
        if self.facts:
            out["facts"] = self.facts
        return out

    def __repr__(self):
        return "Check(%r, %r, %r, %r)" % (self.group, self.name, self.status, self.detail)


def load_json(path, default=None):
    """The parsed JSON file, or ``default`` when it is missing or unreadable."""
    try:
        with open(path, encoding="utf-8") as fh:
            return json.load(fh)
    except (OSError, IOError, ValueError):
        return default


def plural(count, word):
    return "%d %s%s" % (count, word, "" if count == 1 else "s")


def listing(items, limit=3):
    """'a, b, c and 4 more'."""
    items = list(items)
    shown = ", ".join(items[:limit])
    if len(items) > limit:
        shown += " and %d more" % (len(items) - limit)
    return shown


class Ran(object):
    """The outcome of a subprocess: returncode (negative: killed by that signal), output."""

    __slots__ = ("error", "returncode", "stderr", "stdout", "timed_out")

    def __init__(self, returncode=None, stdout="", stderr="", timed_out=False, error=None):
        self.returncode = returncode
        self.stdout = stdout
        self.stderr = stderr
        self.timed_out = timed_out
        self.error = error


def run(argv, timeout, env=None):
    """Run ``argv`` with a timeout (seconds), killing it when it is over; never raises."""
    try:
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                stdin=subprocess.DEVNULL, env=env)
    except OSError as exc:
        return Ran(error="%s: %s" % (type(exc).__name__, exc))
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        return Ran(proc.returncode, out.decode("utf-8", "replace"),
                   err.decode("utf-8", "replace"), timed_out=True)
    return Ran(proc.returncode, out.decode("utf-8", "replace"), err.decode("utf-8", "replace"))


def python_env():
    """The environment for the prefix's python in a subprocess: no PYTHONHOME/PYTHONPATH."""
    env = dict(os.environ)
    env.pop("PYTHONHOME", None)
    env.pop("PYTHONPATH", None)
    return env


def signal_name(code):
    """-4 -> SIGILL."""
    try:
        return signal.Signals(-code).name
    except (ValueError, AttributeError):
        return "signal %d" % -code
