"""Benchmark: what the smoke run adds to `gapship pack` of the demo environment.

    python benchmarks/pack_smoke.py [--target local|T.json] [--reps 5] [--level 6]
                                    [--out FILE.json]

Packs the README's demo (numpy, requests, rich) with and without --no-verify, alternating
in one run so that both see the same machine load, after one unmeasured pack that fills the
wheel cache. Each pack is the real CLI in a subprocess, timed from outside. The figure is the
median of the packs with the smoke run over the median of those without, minus one; beside
it, the median of the paired differences (each repetition's two packs) and the smoke run's
own time as pack measures it, which on a shared, loaded machine is the steadier figure.
Default target: this machine (`--target local`, the demo's), whose own / stands in for it.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
SPEC = 'name = "demo"\npackages = ["numpy", "requests", "rich"]\n'
GOAL = 0.20  # the smoke run may add at most this share to the pack time


def pack(spec: Path, target: str, out: Path, level: int, verify: bool
         ) -> tuple[float, dict[str, Any]]:
    cmd = [sys.executable, "-m", "gapship.cli", "pack", str(spec), "--target", target, "-o",
           str(out), "--level", str(level), "--json", *([] if verify else ["--no-verify"])]
    start = time.monotonic()
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    seconds = time.monotonic() - start
    if proc.returncode != 0:
        sys.exit(f"failed: {' '.join(cmd)}\n{proc.stderr[-2000:]}")
    out.unlink()
    report: dict[str, Any] = json.loads(proc.stdout)
    return seconds, report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", default="local")
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--level", type=int, default=6)
    parser.add_argument("--out", type=Path,
                        default=ROOT / "benchmarks" / "results" / "pack-smoke.json")
    args = parser.parse_args()
    with_smoke: list[float] = []
    without: list[float] = []
    smoke_own: list[float] = []
    with tempfile.TemporaryDirectory(prefix="gapship-bench-") as tmp_name:
        tmp = Path(tmp_name)
        spec = tmp / "env.toml"
        spec.write_text(SPEC)
        out = tmp / "demo.run"
        _, first = pack(spec, args.target, out, args.level, verify=True)  # fills the cache
        for rep in range(args.reps):
            # alternate which goes first, so that neither always follows the other
            for verify in ((True, False) if rep % 2 == 0 else (False, True)):
                seconds, report = pack(spec, args.target, out, args.level, verify)
                if verify:
                    with_smoke.append(seconds)
                    smoke_own.append(report["smoke_run"]["seconds"])
                else:
                    without.append(seconds)
                print(f"rep {rep + 1}/{args.reps} {'with' if verify else 'without'} smoke run:"
                      f" {seconds:.2f} s", file=sys.stderr)
    median_with = statistics.median(with_smoke)
    median_without = statistics.median(without)
    overhead = median_with / median_without - 1
    results = {
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                    "load_average_at_end": [round(x, 2) for x in os.getloadavg()]},
        "spec": SPEC, "target": args.target, "level": args.level, "reps": args.reps,
        "replica": first["smoke_run"]["described"], "proven": first["proven"],
        "pack_with_smoke_s": [round(s, 2) for s in with_smoke],
        "pack_without_smoke_s": [round(s, 2) for s in without],
        "smoke_run_own_s": smoke_own,
        "median_with_s": round(median_with, 2), "median_without_s": round(median_without, 2),
        "median_smoke_run_own_s": round(statistics.median(smoke_own), 2),
        "overhead": round(overhead, 3),
        "median_paired_difference_s": round(statistics.median(
            w - wo for w, wo in zip(with_smoke, without, strict=True)), 2),
        "smoke_share_of_pack": round(statistics.median(smoke_own) / median_without, 3),
        "goal": GOAL, "within_goal": overhead <= GOAL,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=1) + "\n")
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
