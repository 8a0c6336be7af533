"""gapship probe: write the probe script, or probe this machine."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from gapship import probe
from gapship.files import write_json


def register(sub: Any) -> None:
    p = sub.add_parser("probe", help="write probe.sh for the target, or probe this machine",
                       description="`gapship probe --script > probe.sh`, then on the target: "
                       "`sh probe.sh > target.json`. Or `gapship probe --local -o target.json`.")
    mode = p.add_mutually_exclusive_group(required=True)
    mode.add_argument("--script", action="store_true", help="print the POSIX sh probe script")
    mode.add_argument("--local", action="store_true", help="probe this machine")
    p.add_argument("-o", "--output", type=Path, help="write the result here (default: stdout)")
    p.add_argument("--redact", action="store_true", help="leave out host and user names")
    p.add_argument("--dir", help="also report free space in this directory")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    if args.script:
        text = probe.probe_script()
        if args.output:
            args.output.write_text(text, encoding="utf-8")
            args.output.chmod(0o755)
        else:
            sys.stdout.write(text)
        return 0
    data = probe.run_probe(args.dir, redact=args.redact)
    probe.parse_target(data, "local probe")
    if args.output:
        write_json(args.output, data)
    else:
        sys.stdout.write(json.dumps(data, indent=1) + "\n")
    return 0
