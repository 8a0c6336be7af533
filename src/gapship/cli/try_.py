"""gapship try: install a bundle in an offline, non-root replica and run its doctor."""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any

from gapship import ui
from gapship.replica import RELEASES, TryResult, try_bundle


def register(sub: Any) -> None:
    p = sub.add_parser("try", help="install a bundle in an offline replica and check it",
                       description="Install NAME.run as uid 1000 in a replica with a read-only /, "
                       "no network and /bin/sh = dash; activate it; run gapship-doctor.")
    p.add_argument("bundle", type=Path)
    p.add_argument("--os", default="host", choices=["host", *RELEASES],
                   help="host: this machine's / read-only (no root needed); or a Debian "
                   "release debootstrapped once (needs root)")
    p.add_argument("--keep", action="store_true", help="keep the replica's home afterwards")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(run=run)


def print_result(result: TryResult) -> None:
    if result.install_rc != 0:
        ui.err.print(result.install_log.rstrip(), markup=False, highlight=False)
        ui.err.print(f"[bold red]the install failed[/] in the {result.os} replica "
                     f"(exit {result.install_rc}).")
        return
    ui.out.print(result.doctor_text.rstrip(), markup=False, highlight=False)
    verdict = "[bold green]works[/]" if result.ok else "[bold red]does not work[/]"
    ui.out.print(f"\nThe bundle installs and {verdict} in the {result.os} replica "
                 f"(offline, non-root, read-only /), at {result.prefix}.")


def run(args: argparse.Namespace) -> int:
    result = try_bundle(args.bundle, args.os, keep=args.keep)
    if args.json:
        sys.stdout.write(json.dumps(asdict(result), indent=1) + "\n")
    else:
        print_result(result)
    return 0 if result.ok else 1
