"""Make the staged tree prefix-independent, and prove it with a scan.

- console scripts get a /bin/sh trampoline that finds python3 beside the script;
- ``_sysconfigdata*.py`` computes the interpreter's build prefix from ``sys.prefix``;
- compiled-in C strings that hold the interpreter's source prefix are rewritten in place
  (shorter, NUL padded);
- a scan lists every file that still holds a builder path; the pack fails on any.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from gapship.errors import StageError
from gapship.files import replace_bytes

# A file that is both a POSIX sh script and a Python script: sh execs the python3 found
# beside the (resolved) script, Python reads the first lines as a string.
TRAMPOLINE = (
    "#!/bin/sh\n"
    "'''exec' \"$(dirname -- \"$(readlink -f -- \"$0\" 2>/dev/null || echo \"$0\")\")/python3\""
    " \"$0\" \"$@\"\n"
    "' '''\n"
)
_PY_SHEBANG = re.compile(rb"^#!\s*(/\S*python[0-9.]*)\b[^\n]*\n")
_SYSCONFIG_TOKEN = "@@GAPSHIP_BUILD_PREFIX@@"
_SYSCONFIG_FOOTER = f"""
# gapship: the build prefix is wherever this interpreter now lives.
import sys as _gapship_sys
build_time_vars = {{
    _k: (_v.replace({_SYSCONFIG_TOKEN!r}, _gapship_sys.prefix) if isinstance(_v, str) else _v)
    for _k, _v in build_time_vars.items()
}}
del _gapship_sys
"""


def rewrite_script(path: Path) -> bool:
    """Replace an absolute python shebang with the relocatable trampoline. True if changed."""
    with path.open("rb") as fh:
        head = fh.read(512)
    match = _PY_SHEBANG.match(head)
    if not match:
        return False
    body = path.read_bytes()[match.end():]
    replace_bytes(path, TRAMPOLINE.encode() + body, 0o755)
    return True


def relocate_sysconfigdata(stdlib: Path, src_prefix: Path) -> list[Path]:
    """Make ``_sysconfigdata*.py`` derive the build prefix from ``sys.prefix`` at import."""
    changed = []
    for path in sorted(stdlib.glob("_sysconfigdata*.py")):
        text = path.read_text(encoding="utf-8")
        if str(src_prefix) not in text:
            continue
        text = text.replace(str(src_prefix), _SYSCONFIG_TOKEN) + _SYSCONFIG_FOOTER
        replace_bytes(path, text.encode("utf-8"))
        changed.append(path)
    return changed


def replace_c_strings(path: Path, old: bytes, new: bytes) -> int:
    """Rewrite NUL-terminated strings that start with ``old`` to start with ``new``.

    ``new`` must not be longer than ``old``; the freed bytes become NULs, so every string
    keeps its place and length budget (conda's binary prefix replacement, without its
    longer-prefix failure).
    """
    if len(new) > len(old):
        raise ValueError("the replacement must not be longer than the original")
    data = bytearray(path.read_bytes())
    count = 0
    start = data.find(old)
    while start != -1:
        end = data.find(b"\0", start)
        if end == -1:
            break
        original = bytes(data[start:end])
        updated = new + original[len(old):]
        data[start:end] = updated + b"\0" * (len(original) - len(updated))
        count += 1
        start = data.find(old, start + 1)
    if count:
        replace_bytes(path, bytes(data))
    return count


def neutral_prefix(old: bytes) -> bytes:
    """A path that exists nowhere, as long as ``old`` and ending in the same last component.

    Linkers merge string tails: PY_VERSION "3.11.7" may be the last bytes of the prefix
    "/root/.pyenv/versions/3.11.7". Equal length keeps every such tail where it was.
    """
    tail = old.rsplit(b"/", 1)[-1]
    head = b"/gapship-moved"
    pad = len(old) - len(head) - len(tail)
    if pad < 1:
        head, pad = b"", len(old) - len(tail)
    return head + b"/" * pad + tail


def files_containing(tree: Path, needles: list[bytes], skip: tuple[str, ...] = ()
                     ) -> dict[str, list[str]]:
    """Every regular file under ``tree`` holding one of ``needles``: rel path -> needles.
    (Files are read in fixed pieces: memory stays flat whatever their size.)"""
    from gapship.stage.treescan import scan_tree

    return scan_tree(tree, needles, skip).hits


def raise_builder_paths(hits: dict[str, list[str]]) -> None:
    """Fail the pack, listing the files, when any file holds a builder path."""
    if hits:
        ordered = sorted(hits.items())
        listed = "; ".join(f"{p} ({', '.join(n)})" for p, n in ordered[:20])
        more = f" and {len(hits) - 20} more" if len(hits) > 20 else ""
        raise StageError(
            f"{len(hits)} files still hold a builder path: {listed}{more}.",
            "These files would break once moved to the target; report this with the list.")


def check_no_builder_paths(tree: Path, needles: list[bytes], skip: tuple[str, ...] = ()
                           ) -> None:
    """Fail the pack, listing the files, when any builder path remains in the tree."""
    raise_builder_paths(files_containing(tree, needles, skip))


def symlinks_escaping(tree: Path) -> list[str]:
    """Symlinks that are absolute or point outside ``tree`` (they would dangle on the target)."""
    bad = []
    for path in tree.rglob("*"):
        if path.is_symlink():
            target = os.readlink(path)
            resolved = (path.parent / target).resolve()
            if os.path.isabs(target) or not resolved.is_relative_to(tree.resolve()):
                bad.append(str(path.relative_to(tree)))
    return sorted(bad)
