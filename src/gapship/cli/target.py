"""gapship target show: a readable summary of target.json (or the validated JSON)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from rich.table import Table

from gapship import ui
from gapship.probe import load_target


def register(sub: Any) -> None:
    p = sub.add_parser("target", help="inspect a target description")
    tsub = p.add_subparsers(dest="target_command", metavar="ACTION", required=True)
    show = tsub.add_parser("show", help="summarise target.json")
    show.add_argument("file", type=Path)
    show.add_argument("--json", action="store_true", help="print the validated JSON")
    show.set_defaults(run=run_show)


def run_show(args: argparse.Namespace) -> int:
    info = load_target(args.file)
    if args.json:
        sys.stdout.write(json.dumps(info.raw, indent=1) + "\n")
        return 0
    raw = info.raw
    nv = raw.get("nvidia") or {}
    gpus = ", ".join(f"{g.get('name')} (sm {g.get('compute_capability') or '?'})"
                     for g in nv.get("gpus") or []) or "none found"
    table = Table(show_header=False, box=None)
    rows = [
        ("OS", info.describe()),
        ("libstdc++", f"GLIBCXX_{info.glibcxx}" if info.glibcxx else "unknown"),
        ("CPU", f"{(raw.get('cpu') or {}).get('model') or '?'}, x86-64-v"
                f"{info.x86_64_level or '?'}, flags: {' '.join(info.cpu_flags) or '?'}"),
        ("home", f"{info.home} ({(info.home_free_kb or 0) / 1e6:.1f} GB free)"
                 if info.home else "unknown"),
        ("NVIDIA driver", nv.get("driver_version") or "none found"),
        ("GPUs", gpus),
        ("Pythons", ", ".join(f"{p.get('path')} {p.get('version')}"
                              for p in raw.get("pythons") or []) or "none"),
    ]
    for key, value in rows:
        table.add_row(f"[bold]{key}[/]", value)
    ui.out.print(table)
    return 0
