"""gapship demo: the whole journey on a built-in default, for this machine, offline."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from gapship import ui
from gapship.cli.pack import print_report, report
from gapship.cli.try_ import print_result
from gapship.pack import pack_spec
from gapship.probe import parse_target, run_probe
from gapship.replica import try_bundle
from gapship.spec import DEFAULT_SPEC_TOML, parse_spec


def register(sub: Any) -> None:
    p = sub.add_parser("demo", help="pack a small CPU environment for this machine and try it",
                       description="Writes DIR/env.toml (numpy, requests, rich), probes this "
                       "machine, packs DIR/demo.run and installs it in an offline replica.")
    p.add_argument("-d", "--dir", type=Path, default=Path("gapship-demo"),
                   help="where to write env.toml, target.json and the bundle")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    args.dir.mkdir(parents=True, exist_ok=True)
    spec_path = args.dir / "env.toml"
    if not spec_path.exists():
        spec_path.write_text(DEFAULT_SPEC_TOML, encoding="utf-8")
    spec = parse_spec(spec_path.read_text(encoding="utf-8"), str(spec_path))
    ui.step("probing this machine (the same probe.sh a user runs on the target)")
    data = run_probe()
    (args.dir / "target.json").write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")
    target = parse_target(data, "local probe")
    result = pack_spec(spec, target, args.dir / f"{spec.name}.run")
    tried = try_bundle(result.bundle.path, "host")
    if args.json:
        out = report(result)
        out["try"] = {"ok": tried.ok, "doctor": tried.doctor_report}
        sys.stdout.write(json.dumps(out, indent=1) + "\n")
    else:
        print_report(report(result))
        print_result(tried)
        if tried.ok:
            ui.out.print(
                f"\nNext: write your own env.toml, probe the offline machine with "
                f"`gapship probe --script > probe.sh` (there: `sh probe.sh > target.json`), then "
                f"`gapship pack env.toml --target target.json`.\nThe demo bundle is "
                f"{result.bundle.path.resolve()}.")
    return 0 if tried.ok else 1
