"""The --python options that `gapship pack` and `gapship plan` share."""

from __future__ import annotations

import argparse
import re
from dataclasses import replace
from typing import Any

from gapship.errors import SpecError
from gapship.spec import PYTHON_SOURCES, PythonSpec

_STANDALONE = re.compile(r"^standalone:(3\.\d+)$")
_BUILD = re.compile(r"^build:(3\.\d+)(\.\d+)?$")


def add_python_arguments(p: Any) -> None:
    p.add_argument("--python", metavar="SOURCE",
                   help="where the interpreter comes from: auto (default: the first that works "
                   "for the target, and why), host, twin, target, standalone:3.X, build:3.X[.Y] "
                   "(CPython compiled for the target's glibc), or a path to a Python prefix or "
                   "archive")
    p.add_argument("--python-archive", metavar="FILE",
                   help="a python-build-standalone install_only archive already downloaded "
                   "(implies --python standalone)")
    p.add_argument("--twin-root", metavar="DIR",
                   help="a rootfs of the target's OS release that you already have (implies "
                   "--python twin)")
    p.add_argument("--python-source", metavar="FILE",
                   help="a CPython source tarball (Python-3.X.Y.tgz) to build, offline "
                   "(implies --python build)")
    p.add_argument("--deps-source", metavar="DIR",
                   help="a directory holding the source tarballs of the libraries a CPython "
                   "build needs (OpenSSL, libffi, zlib ...; offline: nothing is downloaded)")


def python_spec(args: argparse.Namespace, base: PythonSpec) -> PythonSpec | None:
    """``base`` (env.toml's) with the command line's --python options; None when none given."""
    given = (args.python, args.python_archive, args.twin_root, args.python_source,
             args.deps_source)
    if all(value is None for value in given):
        return None
    spec = base
    if args.python is not None:
        standalone = _STANDALONE.match(args.python)
        build = _BUILD.match(args.python)
        if standalone:
            spec = replace(spec, source="standalone", version=standalone.group(1))
        elif build:
            spec = replace(spec, source="build", version=build.group(1),
                           release=build.group(1) + build.group(2) if build.group(2) else None)
        elif args.python in PYTHON_SOURCES or "/" in args.python:
            spec = replace(spec, source=args.python)
        else:
            raise SpecError(f"--python {args.python!r}: not a source.",
                            f"Use one of {', '.join(PYTHON_SOURCES)}, standalone:3.X, build:3.X, "
                            "or a path to a Python prefix or archive (with a /).")
    if args.python_archive is not None:
        spec = replace(spec, archive=args.python_archive,
                       source=spec.source if args.python is not None else "standalone")
    if args.twin_root is not None:
        spec = replace(spec, twin_root=args.twin_root,
                       source=spec.source if args.python is not None else "twin")
    for key in ("python_source", "deps_source"):
        if getattr(args, key) is not None:
            spec = replace(spec, source=spec.source if args.python is not None else "build",
                           **{"tarball" if key == "python_source" else key: getattr(args, key)})
    return spec
