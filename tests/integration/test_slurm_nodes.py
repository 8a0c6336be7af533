"""``PREFIX/bin/gapship-nodes`` against a real single-node Slurm (munged, slurmctld, slurmd):
the doctor through srun inside an allocation, staging through sbcast, and the messages
outside an allocation, without srun and for a failing node. Jobs run as ``nobody``."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import gapship, require_tool
from tests.integration.slurm import Cluster, slurm_cluster

SPEC = 'name = "demo"\npackages = ["numpy", "requests", "rich"]\n'


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    with slurm_cluster() as c:
        yield c


@pytest.fixture(scope="module")
def shared(cluster: Cluster) -> Path:
    """A directory the job user writes: what a cluster's shared home is to its jobs."""
    path = cluster.root / "shared"
    path.mkdir()
    path.chmod(0o1777)
    return path


@pytest.fixture(scope="module")
def home(shared: Path, cluster: Cluster) -> Path:
    path = shared / "home"
    proc = cluster.run_as_user(["mkdir", "-p", str(path)], shared)
    assert proc.returncode == 0, proc.stderr
    return path


@pytest.fixture(scope="module")
def bundle(cluster: Cluster, shared: Path) -> Path:
    """The demo environment packed for this machine (its probe), readable by the job user."""
    work = cluster.root / "pack"
    work.mkdir()
    (work / "env.toml").write_text(SPEC)
    probe = gapship("probe", "--local")
    assert probe.returncode == 0, probe.stderr
    (work / "host.json").write_text(probe.stdout)
    out = shared / "demo.run"
    proc = gapship("pack", str(work / "env.toml"), "--target", str(work / "host.json"), "-o",
                   str(out), "--level", "1")
    assert proc.returncode == 0, proc.stderr
    out.chmod(0o644)
    return out


@pytest.fixture(scope="module")
def prefix(cluster: Cluster, bundle: Path, home: Path) -> Path:
    """The bundle installed by the job user on the 'shared' filesystem."""
    dest = home / "envs" / "demo"
    proc = cluster.run_as_user(["sh", str(bundle), "--prefix", str(dest)], home)
    assert proc.returncode == 0, proc.stderr
    return dest


def test_doctor_runs_on_every_node_of_the_allocation(cluster: Cluster, prefix: Path,
                                                     home: Path) -> None:
    proc = cluster.run_as_user(["salloc", "-N1", str(prefix / "bin" / "gapship-nodes"),
                                "doctor", "--quick"], home)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "1 of 1 node(s) reported" in proc.stdout
    assert f"{cluster.node}: ok (" in proc.stdout

    proc = cluster.run_as_user(["salloc", "-N1", str(prefix / "bin" / "gapship-nodes"),
                                "doctor", "--quick", "--json"], home)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["exit_status"] == 0 and report["nodes_expected"] == 1
    [node] = report["nodes"]
    # the report came from the doctor that ran on the node, as the job user
    assert node["node"] == cluster.node and node["report"]["ok"] is True
    assert node["report"]["prefix"] == str(prefix)


def test_a_failing_node_is_named_with_what_fails(cluster: Cluster, prefix: Path,
                                                 home: Path) -> None:
    broken = home / "envs" / "broken"
    proc = cluster.run_as_user(["cp", "-a", str(prefix), str(broken)], home)
    assert proc.returncode == 0, proc.stderr
    core = next((broken / "lib").glob("python3.*/site-packages/numpy/_core"))
    for so in core.glob("_multiarray_umath*.so"):
        so.unlink()
    proc = cluster.run_as_user(["salloc", "-N1", str(broken / "bin" / "gapship-nodes"),
                                "doctor", "--quick"], home)
    # the doctor's exit status: 1, a check failed
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "0 pass, 1 fail" in proc.stdout
    line = next(x for x in proc.stdout.splitlines() if x.startswith(f"{cluster.node}: "))
    assert "imports numpy" in line and "_multiarray_umath" in line
    assert f"srun -N1 -w NODE {broken}/bin/gapship-doctor" in proc.stdout


def test_stage_installs_on_node_local_storage_and_clean_removes_it(
        cluster: Cluster, prefix: Path, bundle: Path, home: Path, shared: Path) -> None:
    local = shared / "node-local" / "gapship"
    nodes = prefix / "bin" / "gapship-nodes"
    # a job script's lines: stage, source the printed line, use it, check it, clean
    script = (
        'line=$("$1" stage --to "$2" "$3") || exit 1\n'
        'echo "LINE=$line"\n'
        'eval "$line"\n'
        'python -c "import numpy, sys; print(\'PREFIX=\' + sys.prefix)" || exit 1\n'
        '"$2/demo/bin/gapship-nodes" doctor --quick || exit 1\n'
        '"$1" clean --to "$2" || exit 1\n'
        '[ -e "$2" ] || echo CLEANED\n')
    proc = cluster.run_as_user(["salloc", "-N1", "sh", "-c", script, "sh", str(nodes),
                                str(local), str(bundle)], home)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"LINE=. {local}/demo/activate" in proc.stdout.splitlines()
    assert f"PREFIX={local}/demo" in proc.stdout.splitlines()
    assert f"{cluster.node}: installed {local}/demo" in proc.stderr
    assert f"{cluster.node}: ok (" in proc.stdout  # the staged copy's own doctor, per node
    assert f"{cluster.node}: removed {local}/demo" in proc.stderr
    assert "CLEANED" in proc.stdout
    assert prefix.is_dir() and bundle.is_file()  # the shared originals stay


def test_clean_leaves_what_is_not_a_gapship_environment(cluster: Cluster, prefix: Path,
                                                        home: Path, shared: Path) -> None:
    local = shared / "node-local-other"
    (local / "results").mkdir(parents=True)
    (local / "results" / "data.txt").write_text("keep me\n")
    shutil.chown(local, "nobody")
    proc = cluster.run_as_user(["salloc", "-N1", str(prefix / "bin" / "gapship-nodes"),
                                "clean", "--to", str(local)], home)
    assert proc.returncode == 0, proc.stderr
    assert f"left {local}/results (not a gapship environment)" in proc.stderr
    assert (local / "results" / "data.txt").read_text() == "keep me\n"


def test_outside_an_allocation_it_says_how_to_get_one(cluster: Cluster, prefix: Path,
                                                      home: Path) -> None:
    nodes = str(prefix / "bin" / "gapship-nodes")
    for argv in ([nodes, "doctor"], [nodes, "stage", "demo.run"]):
        proc = cluster.run_as_user(argv, home)
        assert proc.returncode == 2
        assert "not inside a Slurm allocation (SLURM_JOB_ID is not set)" in proc.stderr
        assert f"salloc -N 4 --ntasks-per-node=1 {nodes} {argv[1]}" in proc.stderr
        assert "Traceback" not in proc.stderr


def test_without_srun_it_says_so(cluster: Cluster, prefix: Path, home: Path,
                                 shared: Path) -> None:
    bin_dir = shared / "no-slurm-bin"  # the tools the script runs, and no Slurm
    bin_dir.mkdir()
    for tool in ("sh", "dirname", "cat", "id", "mktemp", "rm", "basename"):
        os.symlink(require_tool(tool), bin_dir / tool)
    proc = cluster.run_as_user([str(prefix / "bin" / "gapship-nodes"), "doctor"], home,
                               env={"PATH": str(bin_dir), "SLURM_JOB_ID": "7",
                                    "SLURM_JOB_NUM_NODES": "2"})
    assert proc.returncode == 2
    assert "srun not found: Slurm's commands are not on PATH here" in proc.stderr
    assert f"{prefix}/bin/gapship-doctor" in proc.stderr


@pytest.fixture(scope="module")
def image_bundle(cluster: Cluster, shared: Path) -> Path:
    work = cluster.root / "pack-image"
    work.mkdir()
    (work / "env.toml").write_text(SPEC.replace('"demo"', '"demoimg"'))
    probe = gapship("probe", "--local")
    assert probe.returncode == 0, probe.stderr
    (work / "host.json").write_text(probe.stdout)
    out = shared / "demoimg.run"
    proc = gapship("pack", str(work / "env.toml"), "--target", str(work / "host.json"), "-o",
                   str(out), "--level", "1", "--format", "squashfs", "--no-verify")
    assert proc.returncode == 0, proc.stderr
    return out


def test_an_image_bundle_is_staged_mounted_checked_and_cleaned_on_every_node(
        cluster: Cluster, prefix: Path, image_bundle: Path, shared: Path) -> None:
    """As root: this builder's /dev/fuse is root's only (a cluster's is 0666)."""
    require_tool("squashfuse")
    local = shared / "node-local-image"
    script = (
        'line=$("$1" stage --to "$2" "$3") || exit 1\n'
        'eval "$line" || exit 1\n'
        'python -c "import numpy, sys; print(\'PREFIX=\' + sys.prefix)" || exit 1\n'
        '"$2/demoimg/bin/gapship-nodes" doctor --quick || exit 1\n'
        '"$1" clean --to "$2" || exit 1\n'
        '[ -e "$2" ] || echo CLEANED\n')
    proc = cluster.run_as_root(["salloc", "-N1", "sh", "-c", script, "sh",
                                str(prefix / "bin" / "gapship-nodes"), str(local),
                                str(image_bundle)], shared)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    # the environment ran from the image, mounted on the node by its activation
    mount = next(line.split("=", 1)[1] for line in proc.stdout.splitlines()
                 if line.startswith("PREFIX="))
    assert mount.startswith("/tmp/gapship-0/demoimg-")
    assert f"{cluster.node}: ok (" in proc.stdout
    assert f"{cluster.node}: removed {local}/demoimg" in proc.stderr and "CLEANED" in proc.stdout
    assert mount not in Path("/proc/mounts").read_text()  # clean unmounted it
