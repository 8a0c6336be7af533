"""Benchmark: `gapship plan` for a torch GPU environment, cold and warm cache, beside pip.

    python benchmarks/plan_time.py [--target T.json] [--no-pip-download] [--out FILE.json]

- plan, cold: empty gapship and uv caches (resolution metadata from PyPI, installed sizes
  read from the wheels' central directories by HTTP Range requests);
- plan, warm: the same again;
- pip resolution: `pip install --dry-run --report` of the same requirement for the same
  platform (what pip needs just to know the set);
- pip download: `pip download` of the same set, which is what users do today before scp
  (it fetches every byte: several GB for torch). Skip it with --no-pip-download.

The target defaults to the recorded Ubuntu 22.04 + H100 + driver 550 machine.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from gapship.plan import manylinux_tags

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_TARGET = ROOT / "tests" / "fixtures" / "targets" / "ubuntu2204-h100" / "expected.json"
SPEC = 'name = "torch"\nframework = "torch"\n'


def timed(cmd: list[str], env: dict[str, str]) -> tuple[float, subprocess.CompletedProcess[str]]:
    start = time.monotonic()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    if proc.returncode != 0:
        sys.exit(f"failed: {' '.join(cmd)}\n{proc.stderr[-2000:]}")
    return time.monotonic() - start, proc


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", type=Path, default=DEFAULT_TARGET)
    parser.add_argument("--no-pip-download", action="store_true")
    parser.add_argument("--out", type=Path,
                        default=ROOT / "benchmarks" / "results" / "plan-time.json")
    args = parser.parse_args()
    results: dict[str, object] = {"machine": {"cpus": os.cpu_count(),
                                              "python": platform.python_version()}}
    with tempfile.TemporaryDirectory(prefix="gapship-bench-") as tmp_name:
        tmp = Path(tmp_name)
        (tmp / "env.toml").write_text(SPEC)
        env = {**os.environ, "GAPSHIP_CACHE_DIR": str(tmp / "cache"),
               "UV_CACHE_DIR": str(tmp / "cache" / "uv")}
        plan_cmd = [sys.executable, "-m", "gapship.cli", "plan", str(tmp / "env.toml"),
                    "--target", str(args.target), "--json", "-o", str(tmp / "torch.lock")]
        cold, proc = timed(plan_cmd, env)
        warm, proc = timed(plan_cmd, env)
        report = json.loads(proc.stdout)
        torch = next(f for f in report["files"] if f["name"] == "torch")
        wanted = [f"{f['name']}=={f['version']}" for f in report["files"]]
        results.update({
            "plan_cold_s": round(cold, 2), "plan_warm_s": round(warm, 2),
            "files": len(report["files"]), "torch": torch["version"],
            "download_bytes": report["download_bytes"],
            "installed_bytes": report["installed_bytes"]})
        venv = tmp / "pipvenv"
        subprocess.run(["uv", "venv", "--seed", "-q", "-p", sys.executable, str(venv)],
                       check=True, env=env)
        pip = [str(venv / "bin" / "python"), "-m", "pip"]
        arch, manylinux = report["platform"].split("-", 1)
        glibc = tuple(int(p) for p in manylinux.split("_")[1:3])
        platform_args = ["--python-version", "3.11", "--only-binary=:all:"]
        for tag in manylinux_tags(glibc, arch):  # pip does not widen --platform by itself
            platform_args += ["--platform", tag]
        pip_env = {**env, "PIP_CACHE_DIR": str(tmp / "pipcache"), "PIP_NO_INPUT": "1"}
        pip_resolve, _ = timed([*pip, "install", "--dry-run", "--ignore-installed", "--quiet",
                                "--report", str(tmp / "report.json"), "--target",
                                str(tmp / "t"), *platform_args, "torch==" + torch["version"]],
                               pip_env)
        results["pip_resolve_s"] = round(pip_resolve, 2)
        if not args.no_pip_download:
            pip_download, _ = timed([*pip, "download", "--quiet", "-d", str(tmp / "dl"),
                                     *platform_args, *wanted], pip_env)
            results["pip_download_s"] = round(pip_download, 2)
            results["pip_download_bytes"] = sum(p.stat().st_size for p in (tmp / "dl").iterdir())
        shutil.rmtree(tmp / "cache", ignore_errors=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=1) + "\n")
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
