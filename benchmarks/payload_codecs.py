"""Benchmark: the payload codecs on one staged tree, paired in one run (ratios matter: the
machine is shared).

    python benchmarks/payload_codecs.py TREE [--rounds 3] [--out FILE.json]

TREE is a staged environment (gapship/manifest.json in it; one is added to a copy when it
has none, e.g. for a plain venv). Times write_bundle with zstd (multi-threaded, level 3),
parallel multi-member gzip (level 6) and the single-threaded gzip of earlier gapship, the
floor `tar -c | zstd -T0 -3`, then the installer against `zstd -dc | tar -x` and
`gzip -dc | tar -x` of the same payloads. ``measure(tree, work)`` returns the figures, for
benchmarks/pack_install.py.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import tempfile
import time
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any
from unittest import mock

from gapship import activate, bundle
from gapship.bundle import codec as codecs
from gapship.bundle import write_bundle
from gapship.files import write_json
from gapship.node import layout
from gapship.stage.manifest import build_manifest


class _OneGzipStream:
    """Earlier gapship's payload: one gzip stream, compressed in this thread."""

    def __init__(self, out: codecs.Sink, level: int) -> None:
        self.out = out
        self.compressor = zlib.compressobj(level, zlib.DEFLATED, 31)
        self.taken = 0

    def write(self, data: bytes) -> int:
        self.taken += len(data)
        self.out.write(self.compressor.compress(data))
        return len(data)

    def tell(self) -> int:
        return self.taken

    def close(self) -> None:
        self.out.write(self.compressor.flush())

    def abort(self) -> None:
        """Nothing to release."""


def _timed(action: Callable[[], object]) -> float:
    start = time.perf_counter()
    action()
    return time.perf_counter() - start


def _payload_offset(run: Path) -> int:
    with run.open("rb") as fh:
        head = fh.read(1 << 16).decode("latin-1")
    return int(head.split("GAPSHIP_HEADER_BYTES=", 1)[1].split()[0])


def staged_copy(tree: Path, work: Path) -> Path:
    """``tree`` itself when staged, else a copy of it with a manifest and activation files."""
    if (tree / layout.MANIFEST).is_file():
        return tree
    copy = work / "tree"
    shutil.copytree(tree, copy, symlinks=True)
    (copy / "gapship").mkdir(exist_ok=True)
    (copy / "gapship" / "name").write_text("bench\n")
    activate.install_target_files(copy)
    write_json(copy / layout.MANIFEST, build_manifest(copy))
    return copy


def time_install(run: Path, codec: str, prefix: Path, floor_first: bool = False
                 ) -> dict[str, float]:
    """Seconds of `dash RUN --prefix` and of `tail | CODEC -dc | tar -x` of its payload, in
    the order asked (alternate it between rounds: the second runs after the first's delete)."""
    offset = _payload_offset(run) + 1

    def installer() -> None:
        subprocess.run(["dash", str(run), "--prefix", str(prefix)], check=True,
                       stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)

    def floor() -> None:
        prefix.mkdir()
        subprocess.run(f"tail -c +{offset} {run} | {codec} -dc | tar -C {prefix} -xf -",
                       shell=True, check=True)

    order = [("floor", floor), ("install", installer)]
    seconds = {}
    for kind, action in order if floor_first else order[::-1]:
        shutil.rmtree(prefix, ignore_errors=True)
        subprocess.run(["sync"], check=False)
        seconds[f"floor {codec} -dc|tar -x" if kind == "floor" else f"install {codec}"] = \
            _timed(action)
    shutil.rmtree(prefix, ignore_errors=True)
    return seconds


def measure(tree: Path, work: Path, rounds: int = 3) -> dict[str, Any]:
    tree = staged_copy(tree, work)
    size = sum(p.lstat().st_size for p in tree.rglob("*") if p.is_file() and not p.is_symlink())
    gzip = codecs.choose("gzip", (), None)
    kinds = {"zstd": codecs.choose("zstd", (), None), "gzip-parallel": gzip, "gzip-single": gzip}
    times: dict[str, list[float]] = {k: [] for k in [*kinds, "floor tar|zstd -T0 -3",
                                                     "install zstd", "floor zstd -dc|tar -x",
                                                     "install gzip", "floor gzip -dc|tar -x"]}
    sizes: dict[str, int] = {}
    runs: dict[str, Path] = {}
    for _ in range(rounds):
        for kind, chosen in kinds.items():
            out = work / f"{kind}.run"

            def pack(kind: str = kind, chosen: codecs.Codec = chosen, out: Path = out) -> None:
                if kind == "gzip-single":
                    with mock.patch.object(bundle, "compressor",
                                           lambda c, sink: _OneGzipStream(sink, c.level)):
                        write_bundle(tree, out, name="bench", version="1", python="3",
                                     installed_bytes=size, codec=chosen)
                else:
                    write_bundle(tree, out, name="bench", version="1", python="3",
                                 installed_bytes=size, codec=chosen)
            times[kind].append(_timed(pack))
            sizes[kind] = out.stat().st_size
            runs[kind] = out
        floor = work / "floor.tar.zst"
        times["floor tar|zstd -T0 -3"].append(_timed(lambda floor=floor: subprocess.run(
            f"tar -C {tree} -cf - . | zstd -q -T0 -3 > {floor}", shell=True, check=True)))
        sizes["floor tar|zstd -T0 -3"] = floor.stat().st_size
        for codec, run in (("zstd", runs["zstd"]), ("gzip", runs["gzip-parallel"])):
            for name, seconds in time_install(run, codec, work / "installed",
                                              floor_first=len(times["zstd"]) % 2 == 0).items():
                times[name].append(seconds)
    medians = {k: statistics.median(v) for k, v in times.items()}
    floor_pack = medians["floor tar|zstd -T0 -3"]
    return {
        "tree_bytes": size, "cpus": os.cpu_count(), "rounds": rounds,
        "seconds": {k: round(v, 3) for k, v in medians.items()},
        "bundle_bytes": sizes,
        "pack_ratio_to_zstd_floor": {k: round(medians[k] / floor_pack, 2) for k in kinds},
        "install_ratio_to_floor": {
            c: round(medians[f"install {c}"] / medians[f"floor {c} -dc|tar -x"], 2)
            for c in ("zstd", "gzip")},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("tree", type=Path)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="gapship-codecs-") as work:
        result = measure(args.tree, Path(work), args.rounds)
    text = json.dumps(result, indent=1)
    if args.out:
        args.out.write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
