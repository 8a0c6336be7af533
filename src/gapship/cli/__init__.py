"""gapship's command line: one thin module per command. Only here do errors become exit codes."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from gapship import __version__, ui
from gapship.cli import demo, keygen, pack, plan, probe, target, try_
from gapship.errors import GapshipError

COMMANDS = (probe, target, plan, pack, try_, demo, keygen)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gapship",
        description="Carry a complete Python/GPU environment to an offline Linux machine.")
    parser.add_argument("--version", action="version", version=f"gapship {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module in COMMANDS:
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        code: int = args.run(args)
        return code
    except GapshipError as exc:
        ui.err.print(f"[bold red]gapship: error:[/] {exc.message}", markup=True, highlight=False)
        if exc.hint:
            ui.err.print(f"  {exc.hint}", markup=False, highlight=False)
        return exc.exit_code
    except KeyboardInterrupt:
        ui.err.print("gapship: interrupted; nothing half-written was kept.")
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
