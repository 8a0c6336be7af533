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
from gapship.compat import driver_text
from gapship.probe import FoundFile, Gpu, TargetInfo, load_target


def register(sub: Any) -> None:
    p = sub.add_parser("target", help="inspect a target description")
    tsub = p.add_subparsers(dest="target_command", metavar="ACTION", required=True)
    show = tsub.add_parser("show", help="summarise target.json")
    show.add_argument("file", type=Path)
    show.add_argument("--json", action="store_true", help="print the validated JSON")
    show.set_defaults(run=run_show)


def _size(kib: int | None) -> str:
    """KiB as GiB or TiB, one decimal."""
    if kib is None:
        return "unknown"
    gib = kib / 1024**2
    return f"{gib / 1024:.1f} TiB" if gib >= 1024 else f"{gib:.1f} GiB"


def _yes_no(value: bool | None, yes: str, no: str) -> str:
    return yes if value is True else no if value is False else "unknown"


def _gpus(gpus: tuple[Gpu, ...]) -> str:
    counts: Counter[str] = Counter()
    for gpu in gpus:
        cc = gpu.compute_capability
        details = [f"sm {cc[0]}.{cc[1]}" if cc else "compute capability unknown"]
        if gpu.memory_mib is not None:
            details.append(f"{gpu.memory_mib / 1024:.0f} GiB")
        counts[f"{gpu.name} ({', '.join(details)})"] += 1
    return ", ".join(f"{n} x {g}" for g, n in counts.items()) or "none found"


def _found(items: tuple[FoundFile, ...]) -> str:
    return ", ".join(f"{i.path} ({i.version or 'version unknown'})" for i in items) or "none found"


def summary(info: TargetInfo) -> list[tuple[str, str]]:
    """The rows `target show` prints: (what, value), unknown facts said as such."""
    site = info.site
    flags = set(info.cpu_flags)
    level = f"x86-64-v{info.x86_64_level}" if info.x86_64_level else "level unknown"
    simd = "AVX-512" if "avx512f" in flags else "AVX2" if "avx2" in flags else (
        "AVX, no AVX2" if "avx" in flags else "no AVX")
    cores = f"{info.cpu_cores} cores, " if info.cpu_cores else ""
    home = "unknown"
    if info.home:
        fs = f", {info.home_fstype}" if info.home_fstype else ""
        home = f"{info.home} ({_size(info.home_free_kb)} free{fs})"
    modules = site.module_system
    rows = [
        ("OS", f"{info.os_pretty or info.os_id or 'unknown'} ({info.arch}, "
               f"kernel {info.kernel or 'unknown'})"),
        ("C library", info.libc or "unknown"),
        ("libstdc++", f"GLIBCXX_{info.glibcxx}" if info.glibcxx else
                      "unknown" if info.libstdcxx else "no libstdc++.so.6 found"),
        ("CPU", f"{info.cpu_model or 'unknown'}, {cores}{level} ({simd})"),
        ("memory", _size(info.memory_kb)),
        ("home", home),
    ]
    if info.probe_dir:
        rows.append(("directory", f"{info.probe_dir} ({_size(info.probe_dir_free_kb)} free)"))
    rows += [
        ("/tmp", _yes_no(info.tmp_noexec, "noexec", "exec allowed")),
        ("/bin/sh", info.bin_sh or "unknown"),
        ("Pythons", ", ".join(f"{p.path} {p.version_text}"
                              for p in info.pythons) or "none"),
        ("NVIDIA driver", driver_text(info.driver_version) if info.driver_version
         else "none found"),
        ("GPUs", _gpus(info.gpus)),
        ("nvidia_uvm", _yes_no(info.uvm_loaded, "loaded", "not loaded")),
        ("CUDA toolkits", _found(info.cuda_toolkits)),
        ("cuDNN headers", _found(info.cudnn_headers)),
        ("modules", f"{'Lmod' if modules == 'lmod' else 'Tcl modules'}"
                    f" (MODULEPATH {site.modulepath or 'unset'})" if modules else "none"),
        ("schedulers", ", ".join(site.schedulers) or "none"),
        ("containers", site.container_runtime or "none"),
        ("user namespaces", _yes_no(site.userns, "allowed", "not allowed")),
        ("tools", ", ".join(t if ok else f"no {t}" for t, ok in site.tools) or "unknown"),
    ]
    return rows


def run_show(args: argparse.Namespace) -> int:
    info = load_target(args.file)
    if args.json:
        sys.stdout.write(json.dumps(info.to_json(), indent=1) + "\n")
        return 0
    table = Table(show_header=False, box=None)
    table.add_column(no_wrap=True)
    table.add_column(overflow="fold")
    for key, value in summary(info):
        table.add_row(f"[bold]{key}[/]", escape(value))
    ui.out.print(table)
    return 0
