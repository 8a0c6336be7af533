"""Which distribution owns a file of the prefix (site-packages RECORD files), or the interpreter."""

import glob
import os

from . import layout
from .base import load_json

INTERPRETER = "the interpreter"
ENVIRONMENT = "the environment"


def _record_paths(record):
    try:
        with open(record, encoding="utf-8") as fh:
            lines = fh.read().splitlines()
    except (OSError, IOError, UnicodeDecodeError):
        return []
    out = []
    for line in lines:
        path = line.rsplit(",", 2)[0].strip('"')
        if path:
            out.append(path)
    return out


def _dist_name(dist_info):
    """``numpy-2.1.0.dist-info`` -> numpy (METADATA's Name when it can be read)."""
    try:
        with open(os.path.join(dist_info, "METADATA"), encoding="utf-8",
                  errors="replace") as fh:
            for line in fh:
                if line.startswith("Name:"):
                    return line.split(":", 1)[1].strip()
                if not line.strip():
                    break
    except (OSError, IOError):
        pass
    return os.path.basename(dist_info).split("-", 1)[0]


class Owners(object):
    """Maps absolute file paths of the prefix to the distribution that installed them."""

    def __init__(self, prefix, site_packages=None):
        self.prefix = os.path.abspath(prefix)
        if site_packages is None:
            environment = load_json(os.path.join(self.prefix, layout.ENVIRONMENT), {})
            site_packages = environment.get("site_packages")
        sites = [os.path.join(self.prefix, site_packages)] if site_packages else \
            glob.glob(os.path.join(self.prefix, "lib", "python3*", "site-packages"))
        self.sites = [os.path.abspath(s) for s in sites]
        self.by_path = {}
        self.by_name = {}
        for site in self.sites:
            for dist_info in sorted(glob.glob(os.path.join(site, "*.dist-info"))):
                name = _dist_name(dist_info)
                for rel in _record_paths(os.path.join(dist_info, "RECORD")):
                    path = os.path.normpath(os.path.join(site, rel))
                    self.by_path[path] = name
                    self.by_name.setdefault(os.path.basename(path), []).append((name, path))
        manifest = load_json(os.path.join(self.prefix, layout.MANIFEST), {})
        for entry in manifest.get("files", []) + manifest.get("symlinks", []):
            path = os.path.normpath(os.path.join(self.prefix, entry.get("path", "")))
            if path not in self.by_path:
                self.by_name.setdefault(os.path.basename(path), []).append(
                    (self.owner(path), path))

    def owner(self, path):
        """The distribution that owns ``path``, else the interpreter or the environment."""
        path = os.path.normpath(os.path.abspath(path))
        name = self.by_path.get(path)
        if name:
            return name
        if any(path.startswith(site + os.sep) for site in self.sites):
            return ENVIRONMENT
        rel = os.path.relpath(path, self.prefix)
        if rel.startswith("lib" + os.sep) or rel.startswith(os.path.join("bin", "python")):
            return INTERPRETER
        return ENVIRONMENT

    def rel(self, path):
        """``path`` relative to the prefix when inside it."""
        path = os.path.abspath(path)
        if path.startswith(self.prefix + os.sep):
            return os.path.relpath(path, self.prefix)
        return path

    def expected(self, soname):
        """[(owner, path)] of files named ``soname`` that the install should have."""
        return list(self.by_name.get(soname, []))
