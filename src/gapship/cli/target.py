"""gapship target show: a readable summary of target.json (or the validated JSON)."""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path
from typing import Any

from rich.markup import escape
from rich.table import Table

from gapship import ui
from gapship.probe import TargetInfo, load_target


def register(sub: Any) -> None:
    p = sub.add_parser("target", help="inspect a target description")
    tsub = p.add_subparsers(dest="target_command", metavar="ACTION", required=True)
    show = tsub.add_parser("show", help="summarise target.json")
    show.add_argument("file", type=Path)
    show.add_argument("--json", action="store_true", help="print the validated JSON")
    show.set_defaults(run=run_show)


def _size(kib: Any) -> str:
    """KiB as GiB or TiB, one decimal."""
    if not isinstance(kib, int):
        return "unknown"
    gib = kib / 1024**2
    return f"{gib / 1024:.1f} TiB" if gib >= 1024 else f"{gib:.1f} GiB"


def _yes_no(value: Any, yes: str, no: str) -> str:
    return yes if value is True else no if value is False else "unknown"


def _gpus(nv: dict[str, Any]) -> str:
    counts: Counter[str] = Counter()
    for gpu in nv.get("gpus") or []:
        cc = gpu.get("compute_capability")
        mem = gpu.get("memory_mib")
        details = [f"sm {cc}" if cc else "compute capability unknown"]
        if isinstance(mem, int):
            details.append(f"{mem / 1024:.0f} GiB")
        counts[f"{gpu.get('name')} ({', '.join(details)})"] += 1
    return ", ".join(f"{n} x {g}" for g, n in counts.items()) or "none found"


def _found(items: list[dict[str, Any]] | None) -> str:
    return ", ".join(f"{i.get('path')} ({i.get('version') or 'version unknown'})"
                     for i in items or []) or "none found"


def summary(info: TargetInfo) -> list[tuple[str, str]]:
    """The rows `target show` prints: (what, value), unknown facts said as such."""
    raw = info.raw
    cpu = raw.get("cpu") or {}
    storage = raw.get("storage") or {}
    nv = raw.get("nvidia") or {}
    site = raw.get("site") or {}
    libc = raw.get("libc") or {}
    flags = set(info.cpu_flags)
    level = f"x86-64-v{info.x86_64_level}" if info.x86_64_level else "level unknown"
    simd = "AVX-512" if "avx512f" in flags else "AVX2" if "avx2" in flags else (
        "AVX, no AVX2" if "avx" in flags else "no AVX")
    cores = f"{cpu.get('cores')} cores, " if cpu.get("cores") else ""
    libc_text = f"{info.libc_family or 'unknown'} {libc.get('version') or ''}".strip()
    home = "unknown"
    if info.home:
        fs = f", {storage.get('home_fstype')}" if storage.get("home_fstype") else ""
        home = f"{info.home} ({_size(storage.get('home_free_kb'))} free{fs})"
    modules = site.get("module_system")
    tools = site.get("tools") or {}
    rows = [
        ("OS", f"{info.os_pretty or info.os_id or 'unknown'} ({raw.get('os', {}).get('arch')}, "
               f"kernel {raw.get('os', {}).get('kernel') or 'unknown'})"),
        ("C library", libc_text),
        ("libstdc++", f"GLIBCXX_{info.glibcxx}" if info.glibcxx else
                      "unknown" if libc.get("libstdcxx") else "no libstdc++.so.6 found"),
        ("CPU", f"{cpu.get('model') or 'unknown'}, {cores}{level} ({simd})"),
        ("memory", _size(raw.get("memory_kb"))),
        ("home", home),
    ]
    if storage.get("dir"):
        rows.append(("directory", f"{storage.get('dir')} ({_size(storage.get('dir_free_kb'))} "
                                  "free)"))
    rows += [
        ("/tmp", _yes_no(storage.get("tmp_noexec"), "noexec", "exec allowed")),
        ("/bin/sh", f"{(raw.get('shells') or {}).get('bin_sh') or 'unknown'}"),
        ("Pythons", ", ".join(f"{p.get('path')} {p.get('version')}"
                              for p in raw.get("pythons") or []) or "none"),
        ("NVIDIA driver", nv.get("driver_version") or "none found"),
        ("GPUs", _gpus(nv)),
        ("nvidia_uvm", _yes_no(nv.get("uvm_loaded"), "loaded", "not loaded")),
        ("CUDA toolkits", _found(nv.get("cuda_toolkits"))),
        ("cuDNN headers", _found(nv.get("cudnn_headers"))),
        ("modules", f"{'Lmod' if modules == 'lmod' else 'Tcl modules'}"
                    f" (MODULEPATH {site.get('modulepath') or 'unset'})" if modules else "none"),
        ("schedulers", ", ".join(site.get("schedulers") or []) or "none"),
        ("containers", site.get("container_runtime") or "none"),
        ("user namespaces", _yes_no(site.get("userns"), "allowed", "not allowed")),
        ("tools", ", ".join(f"{t}" if ok else f"no {t}" for t, ok in tools.items()) or "unknown"),
    ]
    return rows


def run_show(args: argparse.Namespace) -> int:
    info = load_target(args.file)
    if args.json:
        sys.stdout.write(json.dumps(info.raw, indent=1) + "\n")
        return 0
    table = Table(show_header=False, box=None)
    table.add_column(no_wrap=True)
    table.add_column(overflow="fold")
    for key, value in summary(info):
        table.add_row(f"[bold]{key}[/]", escape(value))
    ui.out.print(table)
    return 0
