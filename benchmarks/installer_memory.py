"""Benchmark: the installer's peak memory for a bundle of 1 GB or more (target: < 64 MB).

    python benchmarks/installer_memory.py [--gb 1.2] [--split SIZE] [--out FILE.json]

Builds a tree of incompressible data, bundles it with gapship, installs it with dash while
sampling, every 10 ms, the summed RSS of every process of the installer's session (sh, tail,
gzip, tar, sha256sum ...). (getrusage's children peak is not used: a child forked from this
Python process starts out charged with the parent's pages.)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from gapship import activate
from gapship.bundle import parse_size, write_bundle
from gapship.bundle.codec import choose
from gapship.files import write_json
from gapship.node import layout
from gapship.stage.manifest import build_manifest

LIMIT_MB = 64


def make_tree(root: Path, total: int) -> int:
    (root / "bin").mkdir(parents=True)
    (root / "bin" / "python3").write_text("#!/bin/sh\necho ok\n")
    (root / "bin" / "python3").chmod(0o755)
    (root / "gapship").mkdir()
    (root / "gapship" / "name").write_text("bench\n")
    activate.install_target_files(root)
    chunk = 64 << 20
    written = 0
    i = 0
    while written < total:
        (root / f"blob{i:03d}.bin").write_bytes(os.urandom(min(chunk, total - written)))
        written += min(chunk, total - written)
        i += 1
    write_json(root / layout.MANIFEST, build_manifest(root))
    return written


def session_rss_kb(sid: int) -> int:
    total = 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            if os.getsid(int(entry)) != sid:
                continue
            with open(f"/proc/{entry}/status") as fh:
                for line in fh:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
        except (OSError, ProcessLookupError):
            continue
    return total


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--gb", type=float, default=1.2)
    parser.add_argument("--codec", choices=("gzip", "zstd"), default="gzip",
                        help="the payload's codec (gzip at level 1, zstd at its default)")
    parser.add_argument("--split", metavar="SIZE",
                        help="a split bundle (pack --split SIZE): its parts checked, then streamed")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    if args.out is None:
        name = "installer-memory-split.json" if args.split else "installer-memory.json"
        args.out = Path(__file__).parent / "results" / name
    work = Path(tempfile.mkdtemp(prefix="gapship-bench-"))
    try:
        size = make_tree(work / "tree", int(args.gb * 1e9))
        t0 = time.time()
        bundle = write_bundle(work / "tree", work / "bench.run", name="bench", version="1.0",
                              python="3", installed_bytes=size,
                              codec=choose(args.codec, (), 1 if args.codec == "gzip" else None),
                              split=parse_size(args.split) if args.split else None)
        pack_s = time.time() - t0
        shutil.rmtree(work / "tree")
        t0 = time.time()
        proc = subprocess.Popen(["dash", str(bundle.path), "--prefix", str(work / "env")],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                start_new_session=True)
        peak_session = 0
        while proc.poll() is None:
            peak_session = max(peak_session, session_rss_kb(proc.pid))
            time.sleep(0.01)
        install_s = time.time() - t0
        result = {
            "codec": bundle.codec, "bundle_bytes": bundle.size,
            "parts": len(bundle.parts),
            "payload_bytes": sum(p.size for p in bundle.parts) if bundle.parts else None,
            "installed_bytes": size,
            "install_rc": proc.returncode,
            "pack_seconds": round(pack_s, 1), "install_seconds": round(install_s, 1),
            "peak_rss_all_installer_processes_mb": round(peak_session / 1024, 1),
            "limit_mb": LIMIT_MB,
            "pass": proc.returncode == 0 and peak_session / 1024 < LIMIT_MB,
            "machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.system()} "
                       f"{platform.release()}",
            "date": time.strftime("%Y-%m-%d"),
        }
    finally:
        shutil.rmtree(work, ignore_errors=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result, indent=1))
    return 0 if result["pass"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
