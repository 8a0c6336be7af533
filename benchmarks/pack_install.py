"""Benchmark: `gapship pack` and the installer against the floors of the same tree.

    python benchmarks/pack_install.py [--sets small,medium,torch] [--reps 1]
                                      [--out FILE.json] [--workdir DIR]

For each set of packages (small: the README's demo; medium: numpy, scipy, pandas; torch:
torch's CPU build from a folder of wheels (--wheels, env.toml's find_links), numpy, scipy,
pandas) it packs twice untimed (the first fills
the wheel and bytecode caches), then, paired in one run so that every figure sees the same
machine load:

- pack: `gapship pack` for this machine (zstd: the probe found it) and for the same machine
  recorded without zstd (gzip), each beside `tar -c | zstd -T0 -3` and `tar -c | gzip -6` of
  the staged tree (`--keep-tree`), and venv-pack (defaults) of a venv holding the same wheels
  (no bytecode: uv installs none), beside `gapship pack --no-bytecode` (the same content);
- install: `sh NAME.run --prefix DIR` beside `zstd -dc | tar -x` (and `gzip -dc | tar -x`)
  of the same tree; the installer's peak memory (the largest process of its tree);
- import: the set's main modules, imported in the installed environment and in the venv;
- a second pack after adding one small pure-Python package, over the warm pack.

Every command is the real CLI in a subprocess, timed from outside; peak memory is the largest
resident set of any process of the command's tree (RUSAGE_CHILDREN of a fresh process).
Ratios are the figures to read: the machine is shared. Results go to
benchmarks/results/pack-install.json, and a table to stdout.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent

SETS: dict[str, dict[str, Any]] = {
    "small": {"packages": ["numpy", "requests", "rich"], "imports": ["numpy", "requests", "rich"]},
    "medium": {"packages": ["numpy", "scipy", "pandas"], "imports": ["numpy", "scipy", "pandas"]},
    # torch's CPU build comes from a folder of wheels (--wheels): PyPI's torch is the CUDA one
    "torch": {"packages": ["torch==2.13.0+cpu", "numpy", "scipy", "pandas"],
              "find_links": True, "imports": ["torch", "numpy", "scipy", "pandas"]},
}
ADDED = "termcolor"  # the small pure-Python package of the second pack

GOALS = {"pack_zstd_over_floor": 4.0, "pack_gzip_over_floor": 6.0, "pack_peak_mb": 150,
         "install_over_floor": 1.2, "installer_peak_mb": 64, "bundle_over_venv_pack": 1.0,
         "import_over_venv": 1.05, "second_pack_over_first": 1.3}


def run(cmd: list[str] | str, *, cwd: Path | None = None) -> tuple[float, str]:
    """Run a command (a list, or a string for sh -c); return (seconds, stdout)."""
    argv = ["sh", "-c", cmd] if isinstance(cmd, str) else cmd
    start = time.monotonic()
    proc = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        sys.exit(f"failed ({proc.returncode}): {argv}\n{proc.stderr[-3000:]}")
    return time.monotonic() - start, proc.stdout


def measured(cmd: list[str] | str, **kw: Any) -> tuple[float, float, str]:
    """Run a command timed, with its peak memory: a fresh python runs it and reads its
    RUSAGE_CHILDREN (the largest resident set of any process of the command's tree)."""
    argv = ["sh", "-c", cmd] if isinstance(cmd, str) else cmd
    probe = ("import json,resource,subprocess,sys,time\n"
             "t=time.monotonic()\n"
             "p=subprocess.run(sys.argv[1:],stdout=subprocess.PIPE,stderr=subprocess.PIPE)\n"
             "s=time.monotonic()-t\n"
             "sys.stderr.write(p.stderr.decode(errors='replace')[-3000:])\n"
             "print(json.dumps([p.returncode,s,resource.getrusage(resource.RUSAGE_CHILDREN)"
             ".ru_maxrss,p.stdout.decode(errors='replace')]))\n")
    proc = subprocess.run([sys.executable, "-c", probe, *argv], capture_output=True, text=True,
                          check=False, **kw)
    try:
        rc, seconds, peak_kb, out = json.loads(proc.stdout.splitlines()[-1])
    except (IndexError, ValueError):
        sys.exit(f"failed: {argv}\n{proc.stderr[-3000:]}")
    if rc != 0:
        sys.exit(f"failed ({rc}): {argv}\n{proc.stderr[-3000:]}")
    return float(seconds), peak_kb / 1024, str(out)


def gapship(*args: str) -> list[str]:
    return [sys.executable, "-m", "gapship.cli", *args]


def targets(work: Path) -> tuple[Path, Path]:
    """This machine as the probe sees it, and the same machine recorded without zstd."""
    _, _, text = measured(gapship("probe", "--local"))
    zstd = work / "target-zstd.json"
    zstd.write_text(text)
    data = json.loads(text)
    tools = data.setdefault("site", {}).setdefault("tools", {})
    if not tools.get("zstd"):
        sys.exit("this machine has no zstd: install it (apt-get install zstd) to benchmark")
    tools["zstd"] = False
    gzip = work / "target-gzip.json"
    gzip.write_text(json.dumps(data))
    return zstd, gzip


def spec_text(name: str, packages: list[str], find_links: list[str]) -> str:
    return (f'name = "{name}"\nframework = "none"\npackages = {json.dumps(packages)}\n'
            f"find_links = {json.dumps(find_links)}\n")


def tree_bytes(tree: Path) -> tuple[int, int]:
    total = files = 0
    for path in tree.rglob("*"):
        if path.is_file() and not path.is_symlink():
            total += path.stat().st_size
            files += 1
    return total, files


def venv_with(lock: Path, work: Path, tools_bin: Path) -> Path:
    """A venv holding exactly the lock's wheels (from gapship's wheel cache)."""
    from gapship.fetch import cached_path
    from gapship.plan import Lock
    venv = work / "venv"
    shutil.rmtree(venv, ignore_errors=True)
    run([sys.executable, "-m", "venv", str(venv)])
    wheels = [str(cached_path(f)) for f in Lock.from_json(lock.read_text()).files]
    run([str(tools_bin / "uv"), "pip", "install", "--python", str(venv / "bin" / "python"),
         "--no-deps", "--no-index", "--link-mode", "copy", "--quiet", *wheels])
    return venv


def tools_venv(work: Path) -> Path:
    """venv-pack and uv, from PyPI, in their own venv."""
    venv = work / "tools"
    if not (venv / "bin" / "venv-pack").exists():
        run([sys.executable, "-m", "venv", str(venv)])
        run([str(venv / "bin" / "pip"), "install", "-q", "venv-pack", "uv"])
    return venv / "bin"


def import_seconds(python: str, modules: list[str], reps: int, env_setup: str = "") -> float:
    code = f"import {', '.join(modules)}"
    times = []
    for _ in range(reps):
        seconds, _ = run(f"{env_setup}{python} -c '{code}'")
        times.append(seconds)
    return statistics.median(times)


def bench_set(name: str, conf: dict[str, Any], work: Path, targets_: tuple[Path, Path],
              reps: int, tools_bin: Path, wheels: Path) -> dict[str, Any]:
    target_zstd, target_gzip = targets_
    work = work / name
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    spec = work / "env.toml"
    links = [str(wheels)] if conf.get("find_links") else []
    spec.write_text(spec_text(name, conf["packages"], links))
    lock = work / "env.lock"
    run(gapship("plan", str(spec), "--target", str(target_zstd), "-o", str(lock)))
    bundle = work / f"{name}.run"
    bundle_gz = work / f"{name}-gzip.run"
    bundle_nopyc = work / f"{name}-nobytecode.run"
    tree = work / "tree"
    print(f"[{name}] warming the caches", file=sys.stderr)
    for _ in range(2):
        run(gapship("pack", str(spec), "--target", str(target_zstd), "-o", str(bundle)))
    venv = venv_with(lock, work, tools_bin)
    fig: dict[str, list[float]] = {}

    def add(key: str, value: float) -> None:
        fig.setdefault(key, []).append(value)

    for rep in range(reps):
        print(f"[{name}] repetition {rep + 1}/{reps}", file=sys.stderr)
        shutil.rmtree(tree, ignore_errors=True)
        seconds, peak, out = measured(gapship("pack", str(spec), "--target", str(target_zstd),
                                              "-o", str(bundle), "--keep-tree", str(tree),
                                              "--json"))
        add("pack_zstd_s", seconds)
        add("pack_zstd_peak_mb", peak)
        add("smoke_run_s", float(json.loads(out).get("smoke_run", {}).get("seconds") or 0))
        seconds, _, _ = measured(f"tar -cf - -C '{tree}' . | zstd -T0 -3 -q -f -o "
                                 f"'{work}/floor.tar.zst'")
        add("floor_zstd_s", seconds)
        seconds, peak, _ = measured(gapship("pack", str(spec), "--target", str(target_gzip),
                                            "-o", str(bundle_gz)))
        add("pack_gzip_s", seconds)
        add("pack_gzip_peak_mb", peak)
        seconds, _, _ = measured(f"tar -cf - -C '{tree}' . | gzip -6 > '{work}/floor.tar.gz'")
        add("floor_gzip_s", seconds)
        # the same packages without their bytecode, as venv-pack ships them (a uv venv has none)
        seconds, peak, _ = measured(gapship("pack", str(spec), "--target", str(target_zstd),
                                            "-o", str(bundle_nopyc), "--no-bytecode"))
        add("pack_nobytecode_s", seconds)
        (work / "venv.tar.gz").unlink(missing_ok=True)
        seconds, _, _ = measured([str(tools_bin / "venv-pack"), "-p", str(venv), "-o",
                                  str(work / "venv.tar.gz"), "-q"])
        add("venv_pack_s", seconds)
        for kind, run_file, floor in (("zstd", bundle, "zstd -dc floor.tar.zst"),
                                      ("gzip", bundle_gz, "gzip -dc floor.tar.gz")):
            prefix = work / f"installed-{kind}"
            shutil.rmtree(prefix, ignore_errors=True)
            seconds, peak, _ = measured(["sh", str(run_file), "--prefix", str(prefix)])
            add(f"install_{kind}_s", seconds)
            add(f"installer_{kind}_peak_mb", peak)
            dest = work / "floor-tree"
            shutil.rmtree(dest, ignore_errors=True)
            dest.mkdir()
            seconds, _, _ = measured(f"cd '{work}' && {floor} | tar -xf - -C '{dest}'")
            add(f"floor_extract_{kind}_s", seconds)
            shutil.rmtree(dest)
            if kind == "gzip":
                shutil.rmtree(prefix)
    prefix = work / "installed-zstd"
    add("import_installed_s", import_seconds("python", conf["imports"], 5,
                                             f". '{prefix}/activate' && "))
    add("import_venv_s", import_seconds(str(venv / "bin" / "python"), conf["imports"], 5))
    # the second pack: one small pure-Python package more, over a warm pack of the set
    seconds_first, _, _ = measured(gapship("pack", str(spec), "--target", str(target_zstd),
                                           "-o", str(bundle)))
    spec.write_text(spec_text(name, [*conf["packages"], ADDED], links))
    seconds_second, _, _ = measured(gapship("pack", str(spec), "--target", str(target_zstd),
                                            "-o", str(bundle)))
    installed, files = tree_bytes(tree)
    med = {k: statistics.median(v) for k, v in fig.items()}
    sizes = {"bundle_zstd_mb": bundle.stat().st_size / 1e6,
             "bundle_gzip_mb": bundle_gz.stat().st_size / 1e6,
             "bundle_nobytecode_mb": bundle_nopyc.stat().st_size / 1e6,
             "floor_zstd_mb": (work / "floor.tar.zst").stat().st_size / 1e6,
             "floor_gzip_mb": (work / "floor.tar.gz").stat().st_size / 1e6,
             "venv_pack_mb": (work / "venv.tar.gz").stat().st_size / 1e6}
    ratios = {
        "pack_zstd_over_floor": med["pack_zstd_s"] / med["floor_zstd_s"],
        "pack_gzip_over_floor": med["pack_gzip_s"] / med["floor_zstd_s"],
        "pack_peak_mb": max(med["pack_zstd_peak_mb"], med["pack_gzip_peak_mb"]),
        "install_over_floor": med["install_zstd_s"] / med["floor_extract_zstd_s"],
        "install_gzip_over_floor": med["install_gzip_s"] / med["floor_extract_gzip_s"],
        "installer_peak_mb": max(med["installer_zstd_peak_mb"], med["installer_gzip_peak_mb"]),
        # venv-pack's bundle holds no bytecode (a uv venv has none) and no interpreter: the
        # same content is gapship's --no-bytecode bundle; the default one ships .pyc too
        "bundle_over_venv_pack": sizes["bundle_nobytecode_mb"] / sizes["venv_pack_mb"],
        "bundle_zstd_over_venv_pack": sizes["bundle_zstd_mb"] / sizes["venv_pack_mb"],
        "bundle_gzip_over_venv_pack": sizes["bundle_gzip_mb"] / sizes["venv_pack_mb"],
        "venv_pack_over_floor": med["venv_pack_s"] / med["floor_zstd_s"],
        "import_over_venv": med["import_installed_s"] / med["import_venv_s"],
        "second_pack_over_first": seconds_second / seconds_first,
    }
    shutil.rmtree(tree, ignore_errors=True)
    shutil.rmtree(prefix, ignore_errors=True)
    return {"packages": conf["packages"], "installed_mb": installed / 1e6, "files": files,
            "reps": reps, "medians": med, "sizes": sizes, "ratios": ratios,
            "second_pack": {"first_s": seconds_first, "second_s": seconds_second,
                            "added": ADDED},
            "goals_met": {k: ratios[k] <= goal for k, goal in GOALS.items() if k in ratios}}


def table(results: dict[str, Any]) -> str:
    rows = [("pack, zstd target (s)", "pack_zstd_s", "floor_zstd_s"),
            ("pack, gzip-only target (s)", "pack_gzip_s", "floor_zstd_s"),
            ("venv-pack (s)", "venv_pack_s", "floor_zstd_s"),
            ("install, zstd (s)", "install_zstd_s", "floor_extract_zstd_s"),
            ("install, gzip (s)", "install_gzip_s", "floor_extract_gzip_s"),
            ("import (s)", "import_installed_s", "import_venv_s")]
    lines = ["| set | figure | gapship | floor | ratio |", "| --- | --- | --- | --- | --- |"]
    for name, res in results["sets"].items():
        med = res["medians"]
        for label, ours, floor in rows:
            lines.append(f"| {name} ({res['installed_mb']:.0f} MB, {res['files']} files) | "
                         f"{label} | {med[ours]:.2f} | {med[floor]:.2f} | "
                         f"{med[ours] / med[floor]:.2f}x |")
        ratios, sizes = res["ratios"], res["sizes"]
        lines.append(f"| {name} | bundle MB, zstd / gzip (venv-pack) | "
                     f"{sizes['bundle_zstd_mb']:.1f} / {sizes['bundle_gzip_mb']:.1f} | "
                     f"{sizes['venv_pack_mb']:.1f} | {ratios['bundle_zstd_over_venv_pack']:.2f}x"
                     f" / {ratios['bundle_gzip_over_venv_pack']:.2f}x |")
        lines.append(f"| {name} | bundle MB, zstd --no-bytecode (venv-pack) | "
                     f"{sizes['bundle_nobytecode_mb']:.1f} | {sizes['venv_pack_mb']:.1f} | "
                     f"{ratios['bundle_over_venv_pack']:.2f}x |")
        lines.append(f"| {name} | peak MB (pack / installer) | {ratios['pack_peak_mb']:.0f} / "
                     f"{ratios['installer_peak_mb']:.0f} | | |")
        lines.append(f"| {name} | second pack, +{ADDED} (s) | "
                     f"{res['second_pack']['second_s']:.2f} | "
                     f"{res['second_pack']['first_s']:.2f} | "
                     f"{ratios['second_pack_over_first']:.2f}x |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sets", default="small,medium,torch")
    parser.add_argument("--reps", type=int, default=1)
    parser.add_argument("--wheels", type=Path, default=Path("/opt/wheels"),
                        help="a folder holding torch's CPU wheel (torch-2.13.0+cpu), for the "
                        "torch set")
    parser.add_argument("--workdir", type=Path, default=None,
                        help="where bundles and trees go (several GB for torch)")
    parser.add_argument("--out", type=Path,
                        default=ROOT / "benchmarks" / "results" / "pack-install.json")
    args = parser.parse_args()
    for tool in ("zstd", "gzip", "tar"):
        if shutil.which(tool) is None:
            sys.exit(f"{tool} is not installed: apt-get install {tool}")
    names = [n for n in args.sets.split(",") if n]
    unknown = [n for n in names if n not in SETS]
    if unknown:
        sys.exit(f"unknown set {unknown[0]}; choose from {', '.join(SETS)}")
    with tempfile.TemporaryDirectory(prefix="gapship-bench-", dir=args.workdir) as tmp_name:
        work = Path(tmp_name)
        tools_bin = tools_venv(work)
        targets_ = targets(work)
        sets = {n: bench_set(n, SETS[n], work, targets_, args.reps, tools_bin, args.wheels)
                for n in names}
    results = {"machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                           "date": time.strftime("%Y-%m-%d")},
               "goals": GOALS, "sets": sets}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=1) + "\n")
    print(table(results))
    print(f"\nwritten to {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
