"""The --python options that `gapship pack` and `gapship plan` share."""

from __future__ import annotations

import argparse
import re
from dataclasses import replace
from typing import Any

from gapship.errors import SpecError
from gapship.spec import PYTHON_SOURCES, PythonSpec

_STANDALONE = re.compile(r"^standalone:(3\.\d+)$")


def add_python_arguments(p: Any) -> None:
    p.add_argument("--python", metavar="SOURCE",
                   help="where the interpreter comes from: auto (default: the first that works "
                   "for the target, and why), host, twin, target, standalone:3.X, or a path to "
                   "a Python prefix or archive")
    p.add_argument("--python-archive", metavar="FILE",
                   help="a python-build-standalone install_only archive already downloaded "
                   "(implies --python standalone)")
    p.add_argument("--twin-root", metavar="DIR",
                   help="a rootfs of the target's OS release that you already have (implies "
                   "--python twin)")


def python_spec(args: argparse.Namespace, base: PythonSpec) -> PythonSpec | None:
    """``base`` (env.toml's) with the command line's --python options; None when none given."""
    if args.python is None and args.python_archive is None and args.twin_root is None:
        return None
    spec = base
    if args.python is not None:
        standalone = _STANDALONE.match(args.python)
        if standalone:
            spec = replace(spec, source="standalone", version=standalone.group(1))
        elif args.python in PYTHON_SOURCES or "/" in args.python:
            spec = replace(spec, source=args.python)
        else:
            raise SpecError(f"--python {args.python!r}: not a source.",
                            f"Use one of {', '.join(PYTHON_SOURCES)}, standalone:3.X, or a path "
                            "to a Python prefix or archive (with a /).")
    if args.python_archive is not None:
        spec = replace(spec, archive=args.python_archive,
                       source=spec.source if args.python is not None else "standalone")
    if args.twin_root is not None:
        spec = replace(spec, twin_root=args.twin_root,
                       source=spec.source if args.python is not None else "twin")
    return spec
