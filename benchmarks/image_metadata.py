"""Benchmark: file-metadata calls that reach the shared filesystem, directory vs SquashFS image.

    python benchmarks/image_metadata.py --dir-run DEMO.run --image-run DEMO-IMG.run
                                        [--modules numpy,requests,rich] [--reps 5]
                                        [--out benchmarks/results/image-metadata.json]

Both bundles are installed into one directory that stands for the shared home (Lustre,
GPFS): the directory form as tens of thousands of files there, the image form as
PREFIX/image.sqsh plus a few small files there, mounted with squashfuse at a node-local mount
point (/tmp). Each form then runs what a job's rank runs: `. PREFIX/activate && python -c
'import MODULES'`, under `strace -f -y` for the calls that touch files' metadata (stat family,
open/openat, getdents64, readlink, access).

Method. strace counts the calls the importing processes make; with the image those calls are
as many as with the directory (Python looks up the same paths), but they go to the FUSE daemon
on the node, which answers them from the image's index: they never reach the shared
filesystem's metadata server. The figure that predicts Lustre behaviour is therefore the
number of calls whose path (or, with -y, whose file descriptor) lies under the shared
directory: for the directory form, nearly every call of the import; for the image, the
activation's few looks at PREFIX. squashfuse itself opened the image once, at mount, and
then only reads it (data, not metadata); that open is counted too (`mount_opens`).
Wall time: the median of --reps imports of each form after one warm-up, without strace.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
CALLS = ("stat", "lstat", "fstat", "newfstatat", "statx", "open", "openat", "getdents64",
         "readlink", "readlinkat", "access", "faccessat", "faccessat2")
LINE = re.compile(r"^(?:\[pid\s+\d+\]\s+|\d+\s+)?(\w+)\((.*)$")
GOAL = 10.0  # the image must cut the calls reaching the shared filesystem at least tenfold


def install(bundle: Path, prefix: Path, env: dict[str, str]) -> None:
    proc = subprocess.run(["sh", str(bundle), "--prefix", str(prefix)], env=env,
                          capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"installing {bundle} failed: {proc.stderr.strip()[-500:]}")


def job_line(prefix: Path, modules: list[str]) -> str:
    return f". {prefix}/activate && python -c 'import {', '.join(modules)}'"


def traced(prefix: Path, modules: list[str], shared: Path, env: dict[str, str],
           work: Path) -> dict[str, Any]:
    log = work / f"strace-{prefix.parent.name}.log"
    strace = shutil.which("strace")
    if strace is None:
        raise SystemExit("strace not found: apt install strace")
    proc = subprocess.run([strace, "-f", "-y", "-qq", "-e", "trace=" + ",".join(CALLS),
                           "-o", str(log), "sh", "-c", job_line(prefix, modules)],
                          env=env, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"the import failed under strace: {proc.stderr.strip()[-500:]}")
    total: dict[str, int] = {}
    on_shared: dict[str, int] = {}
    for line in log.read_text(errors="replace").splitlines():
        m = LINE.match(line)
        if not m or m.group(1) not in CALLS:
            continue
        total[m.group(1)] = total.get(m.group(1), 0) + 1
        if str(shared) + "/" in m.group(2):
            on_shared[m.group(1)] = on_shared.get(m.group(1), 0) + 1
    return {"calls": sum(total.values()), "calls_by_name": total,
            "on_shared": sum(on_shared.values()), "on_shared_by_name": on_shared}


def wall(prefix: Path, modules: list[str], env: dict[str, str], reps: int) -> float:
    times = []
    for i in range(reps + 1):
        start = time.monotonic()
        subprocess.run(["sh", "-c", job_line(prefix, modules)], env=env, check=True)
        if i:  # the first run warms the page cache (and squashfuse's)
            times.append(time.monotonic() - start)
    return round(statistics.median(times), 3)


def count_files(tree: Path) -> int:
    return sum(len(files) + len(dirs) for _, dirs, files in os.walk(tree))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dir-run", type=Path, required=True)
    parser.add_argument("--image-run", type=Path, required=True)
    parser.add_argument("--modules", default="numpy,requests,rich")
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--out", type=Path,
                        default=ROOT / "benchmarks" / "results" / "image-metadata.json")
    args = parser.parse_args()
    modules = args.modules.split(",")
    work = Path(tempfile.mkdtemp(prefix="gapship-image-bench-"))
    shared, local = work / "shared", work / "node-local"
    mnt = local / "mnt"
    env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": str(work), "LANG": "C.UTF-8",
           "GAPSHIP_MOUNT": str(mnt)}
    dir_prefix, img_prefix = shared / "dir" / "env", shared / "image" / "env"
    try:
        install(args.dir_run, dir_prefix, env)
        install(args.image_run, img_prefix, env)
        mount = subprocess.run([str(img_prefix / "bin" / "gapship-mount")], env=env,
                               capture_output=True, text=True, check=False)
        if mount.returncode != 0:
            raise SystemExit(f"cannot mount the image: {mount.stderr.strip()}")
        forms = {}
        for form, prefix in (("directory", dir_prefix), ("image", img_prefix)):
            forms[form] = {**traced(prefix, modules, shared, env, work),
                           "import_seconds": wall(prefix, modules, env, args.reps),
                           "entries_on_shared": count_files(prefix)}
        forms["image"]["mount_opens"] = 1
        image_bytes = (img_prefix / "image.sqsh").stat().st_size
        d, i = forms["directory"], forms["image"]
        shared_image = i["on_shared"] + i["mount_opens"]
        result = {
            "benchmark": "image_metadata", "modules": modules, "reps": args.reps,
            "machine": {"python": platform.python_version(), "kernel": platform.release(),
                        "cpus": os.cpu_count()},
            "method": __doc__.split("Method. ")[1].split("\nWall time")[0].replace("\n", " "),
            "forms": forms,
            "sizes": {"directory_run_bytes": args.dir_run.stat().st_size,
                      "image_run_bytes": args.image_run.stat().st_size,
                      "image_bytes": image_bytes},
            "shared_metadata_calls": {"directory": d["on_shared"], "image": shared_image,
                                      "reduction": round(d["on_shared"] / max(shared_image, 1),
                                                         1)},
            "goal_reduction": GOAL,
        }
        result["meets_goal"] = result["shared_metadata_calls"]["reduction"] >= GOAL
    finally:
        subprocess.run([str(img_prefix / "bin" / "gapship-umount")], capture_output=True,
                       check=False)
        shutil.rmtree(work, ignore_errors=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps({k: result[k] for k in ("shared_metadata_calls", "sizes")}, indent=1))
    for form, data in forms.items():
        print(f"{form}: {data['calls']} metadata calls by the import, {data['on_shared']} on "
              f"the shared filesystem, {data['import_seconds']} s")


if __name__ == "__main__":
    main()
