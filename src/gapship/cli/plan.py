"""gapship plan: what will ship for the target and why, before anything is downloaded."""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

from rich.table import Table

from gapship import ui
from gapship.cli.python_options import add_python_arguments, python_spec
from gapship.files import write_text
from gapship.pack import plan_spec, provide
from gapship.plan import Lock
from gapship.probe import resolve_target
from gapship.spec import load_spec


def register(sub: Any) -> None:
    p = sub.add_parser("plan", help="decide and resolve what will ship, and say why",
                       description="Choose the Python, platform, framework build, CUDA and "
                       "cuDNN that will work on the target, resolve the exact files, and "
                       "write a lock that `gapship pack` accepts in place of the spec.")
    p.add_argument("spec", type=Path, help="env.toml")
    p.add_argument("--target", default="local",
                   help="target.json from the probe, or `local` for this machine (default)")
    p.add_argument("-o", "--output", type=Path, help="write the lock here (e.g. gapship.lock)")
    p.add_argument("--json", action="store_true", help="print the plan as JSON")
    add_python_arguments(p)
    p.set_defaults(run=run)


def report(lock: Lock) -> dict[str, Any]:
    files = sorted(lock.files, key=lambda f: -f.size)
    return {
        "name": lock.name, "python": lock.python_version, "python_source": lock.python_source,
        "interpreter": asdict(lock.interpreter) if lock.interpreter else None,
        "platform": lock.platform_tag,
        "decisions": [{"what": d.what, "value": d.value, "why": d.why, "fact": d.fact}
                      for d in lock.decisions],
        "gpu": lock.gpu.doctor_json() if lock.gpu else None,
        "files": [{"name": f.name, "version": f.version, "filename": f.filename,
                   "size": f.size, "installed_size": f.installed_size} for f in files],
        "download_bytes": lock.download_size,
        "installed_bytes": lock.installed_size,
        "warnings": list(lock.warnings),
    }


def print_report(data: dict[str, Any]) -> None:
    decisions = Table(title="decisions", title_justify="left")
    for column in ("what", "value", "why", "rests on"):
        decisions.add_column(column, overflow="fold")
    for d in data["decisions"]:
        decisions.add_row(d["what"], d["value"], d["why"], d["fact"])
    ui.out.print(decisions)
    files = Table(title=f"largest of {len(data['files'])} files", title_justify="left")
    files.add_column("package")
    files.add_column("version")
    files.add_column("download", justify="right")
    files.add_column("installed", justify="right")
    for f in data["files"][:10]:
        size = f["installed_size"]
        files.add_row(f["name"], f["version"], f"{f['size'] / 1e6:.1f} MB",
                      f"{size / 1e6:.1f} MB" if size is not None else "?")
    ui.out.print(files)
    ui.out.print(f"total: {data['download_bytes'] / 1e6:.1f} MB to download in "
                 f"{len(data['files'])} files, {data['installed_bytes'] / 1e6:.1f} MB installed "
                 "(packages; the interpreter adds about 100 MB)")
    for warning in data["warnings"]:
        ui.warn(warning)


def run(args: argparse.Namespace) -> int:
    spec = load_spec(args.spec)
    chosen = python_spec(args, spec.python_spec)
    if chosen is not None:
        spec = replace(spec, python_spec=chosen)
    target = resolve_target(args.target)
    lock = plan_spec(spec, target, provide(spec, target))
    if args.output:
        write_text(args.output, lock.to_json())
    data = report(lock)
    if args.json:
        sys.stdout.write(json.dumps(data, indent=1) + "\n")
    else:
        print_report(data)
        if args.output:
            # the lock records where the interpreter is: the command needs no --python option
            command = shlex.join(["gapship", "pack", str(args.output), "--target", args.target])
            ui.out.print(f"wrote {args.output}: `{command}` ships exactly these files",
                         markup=False)
    return 0
