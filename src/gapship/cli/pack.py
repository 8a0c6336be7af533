"""gapship pack: spec + target -> a self-extracting bundle."""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

from rich.table import Table

from gapship import ui
from gapship.bundle import parse_size
from gapship.bundle.delta import delta_name, read_old
from gapship.bundle.image import FORMATS
from gapship.cli.python_options import add_python_arguments, python_spec
from gapship.errors import BundleError
from gapship.node import layout
from gapship.pack import PackResult, pack_lock, pack_spec
from gapship.plan import Lock
from gapship.probe import resolve_target
from gapship.spec import PythonSpec, Spec, load_spec
from gapship.verify import SmokeRunFailed


def register(sub: Any) -> None:
    p = sub.add_parser("pack", help="build a self-extracting bundle for the target",
                       description="Resolve, fetch, stage and bundle the environment of SPEC "
                       "for the machine described by --target.")
    p.add_argument("spec", type=Path, help="env.toml, or a lock written by `gapship plan -o`")
    p.add_argument("--target", default="local",
                   help="target.json from the probe, or `local` for this machine (default)")
    p.add_argument("-o", "--output", type=Path, help="the bundle to write (default: NAME.run)")
    p.add_argument("--codec", choices=("auto", "zstd", "gzip"), default="auto",
                   help="the payload's compression: zstd (multi-threaded), or gzip in "
                   "parallel members, which every target (busybox too) unpacks; auto "
                   "(default) takes zstd where the target's probe found the zstd command")
    p.add_argument("--level", type=int, metavar="N",
                   help="compression level on the codec's own scale: zstd 1-19 (default 3), "
                   "gzip 1-9 (default 4)")
    p.add_argument("--format", choices=FORMATS, default="directory", dest="image_format",
                   help="directory (default): the tree, extracted at install; squashfs: one "
                        "SquashFS image that activation mounts with squashfuse (for parallel "
                        "filesystems: one file instead of tens of thousands)")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument("--sign", type=Path, metavar="KEY",
                   help="sign the bundle with this private key (from `gapship keygen`); the "
                   "installer checks it with --trust KEY.pub")
    p.add_argument("--split", metavar="SIZE",
                   help="cut the payload into parts of SIZE (1G, 500M: K, M, G are powers of "
                   "1024) written as NAME.part-001 ... beside NAME.run, which verifies them all "
                   "before installing (sh NAME.run [--parts DIR])")
    p.add_argument("--update-of", type=Path, metavar="OLD",
                   help="write only what differs from the installed environment OLD (its .run, "
                   f"or PREFIX/{layout.MANIFEST}) as NAME-OLDVERSION-to-NEWVERSION.run, "
                   "applied there with: sh DELTA.run --prefix PREFIX")
    p.add_argument("--no-verify", action="store_true",
                   help="skip the smoke run (the environment's doctor in a replica of the "
                   "target before the bundle is written); the static checks still run")
    p.add_argument("--no-bytecode", action="store_true",
                   help="ship no precompiled .pyc: a smaller bundle (torch CPU: about a fifth "
                   "less), and Python compiles each module at its first import on the target, "
                   "keeping the bytecode where it can write the prefix (not with --format "
                   "squashfs, whose image is read-only)")
    p.add_argument("--keep-tree", type=Path, metavar="DIR",
                   help="also keep the staged environment tree at DIR (an empty directory, or "
                   "a tree an earlier --keep-tree left, which it replaces)")
    add_python_arguments(p)
    p.set_defaults(run=run)


def report(result: PackResult) -> dict[str, Any]:
    dists = sorted(result.tree.distributions, key=lambda d: -int(str(d["size"])))
    return {
        "bundle": str(result.bundle.path), "bundle_bytes": result.bundle.size,
        "payload_sha256": result.bundle.payload_sha256,
        "file_sha256": result.bundle.file_sha256, "signed": result.bundle.signed,
        "codec": {"name": result.bundle.codec, "level": result.bundle.level,
                  "why": result.codec.reason},
        "parts": [{"path": str(p.path), "bytes": p.size, "sha256": p.sha256}
                  for p in result.bundle.parts],
        "installed_bytes": result.tree.total_bytes, "files": result.bundle.file_count,
        "python": result.lock.python_version, "platform": result.lock.platform_tag,
        "downloaded_bytes": result.fetched.downloaded_bytes,
        "cache_hits": result.fetched.cache_hits,
        "packages": [{"name": d["name"], "version": d["version"], "installed_bytes": d["size"]}
                     for d in dists],
        "decisions": [{"what": d.what, "value": d.value, "why": d.why}
                      for d in result.lock.decisions],
        "warnings": list(result.warnings),
        "smoke_run": result.smoke.to_json(),
        "proven": list(result.proven),
    }


def print_report(data: dict[str, Any]) -> None:
    table = Table(title="largest packages", title_justify="left")
    table.add_column("package")
    table.add_column("version")
    table.add_column("installed", justify="right")
    for pkg in data["packages"][:10]:
        table.add_row(pkg["name"], pkg["version"], f"{pkg['installed_bytes'] / 1e6:.1f} MB")
    ui.out.print(table)
    for warning in data["warnings"]:
        ui.warn(warning)
    ui.out.print(
        f"\n[bold green]wrote[/] {data['bundle']}: {data['bundle_bytes'] / 1e6:.1f} MB, "
        f"{data['installed_bytes'] / 1e6:.1f} MB installed, {data['files']} files, "
        f"Python {data['python']} for {data['platform']}\n"
        f"  compressed with {data['codec']['name']} -{data['codec']['level']} "
        f"({data['codec']['why']})\n"
        f"  sha256 of the whole file: {data['file_sha256']}"
        f"{'  (signed)' if data['signed'] else ''}\n"
        f"{_parts_line(data)}"
        f"  next: gapship try {data['bundle']}   (install it offline here first)\n"
        f"        scp {data['bundle']} cluster:   then there: sh {Path(data['bundle']).name}"
        " --prefix ~/envs/NAME")
    ui.out.print("\n[bold]proven[/] (before the bundle was written):")
    for line in data["proven"]:
        ui.out.print(f"  - {line}", markup=False)


def _parts_line(data: dict[str, Any]) -> str:
    parts = data["parts"]
    if not parts:
        return ""
    total = sum(p["bytes"] for p in parts)
    return (f"  payload in {len(parts)} parts ({total / 1e6:.1f} MB): "
            f"{Path(parts[0]['path']).name} ... {Path(parts[-1]['path']).name}; "
            "send them with the .run (sh NAME.run --parts DIR if they are elsewhere)\n")


def load_spec_or_lock(path: Path) -> Spec | Lock:
    """A lock (JSON, from `gapship plan -o`) ships exactly what it names; else env.toml."""
    try:
        head = path.read_bytes()[:64].lstrip()
    except OSError:
        head = b""
    if head.startswith(b"{"):
        return Lock.from_json(path.read_text(encoding="utf-8"), str(path))
    return load_spec(path)


def run(args: argparse.Namespace) -> int:
    try:
        result = _pack(args)
    except SmokeRunFailed as exc:
        if args.json:  # the refusal as data too; the message still goes to stderr
            sys.stdout.write(json.dumps({"bundle": None, "refused": exc.to_json()},
                                        indent=1) + "\n")
        raise
    data = report(result)
    if args.json:
        sys.stdout.write(json.dumps(data, indent=1) + "\n")
    else:
        print_report(data)
    return 0


def _pack(args: argparse.Namespace) -> PackResult:
    split = parse_size(args.split) if args.split is not None else None
    spec_or_lock = load_spec_or_lock(args.spec)
    target = resolve_target(args.target)
    out = args.output or Path(f"{spec_or_lock.name}.run")
    old = None
    if args.no_bytecode and args.image_format == "squashfs":
        raise BundleError("--no-bytecode with --format squashfs: the image is read-only, so "
                          "Python could not keep the bytecode it compiles, and every import "
                          "would compile again.", "Leave out --no-bytecode for an image.")
    if args.update_of is not None:
        if split is not None or args.sign is not None or args.image_format != "directory":
            raise BundleError("--update-of writes a delta of a directory environment, which is "
                              "neither split, signed nor an image.",
                              "Leave out --split, --sign and --format with --update-of.")
        old = read_old(args.update_of)
        version = (spec_or_lock.env_version if isinstance(spec_or_lock, Lock)
                   else spec_or_lock.version)
        out = args.output or Path(delta_name(spec_or_lock.name, old.version, version))
    if isinstance(spec_or_lock, Lock):
        result = pack_lock(spec_or_lock, target, out, codec=args.codec, level=args.level,
                           python_spec=python_spec(args, PythonSpec()),
                           smoke=not args.no_verify, sign_key=args.sign,
                           keep_tree=args.keep_tree, image_format=args.image_format,
                           split=split, update_of=old, bytecode=not args.no_bytecode)
    else:
        spec = spec_or_lock
        chosen = python_spec(args, spec.python_spec)
        if chosen is not None:
            spec = replace(spec, python_spec=chosen)
        result = pack_spec(spec, target, out, codec=args.codec, level=args.level,
                           smoke=not args.no_verify, sign_key=args.sign,
                           keep_tree=args.keep_tree, image_format=args.image_format,
                           split=split, update_of=old, bytecode=not args.no_bytecode)
    return result
