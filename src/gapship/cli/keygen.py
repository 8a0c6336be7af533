"""gapship keygen: a key pair to sign bundles with (`pack --sign`) and check them (`--trust`)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from gapship import ui
from gapship.bundle.signing import KEY_BITS, generate_key_pair


def register(sub: Any) -> None:
    p = sub.add_parser("keygen", help="make a key pair to sign bundles with",
                       description=f"Write NAME.key (RSA-{KEY_BITS}, private: keep it on the "
                       "builder) and NAME.pub (public: give it to the target's users).")
    p.add_argument("name", type=Path, help="where to write NAME.key and NAME.pub")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    private, public = generate_key_pair(args.name)
    ui.out.print(f"wrote {private} (private: keep it here; sign with "
                 f"`gapship pack ... --sign {private}`)\n"
                 f"  and {public} (public: on the target, `sh NAME.run --trust {public.name}`, "
                 "or put it in ~/.config/gapship/trusted/)", highlight=False)
    return 0
