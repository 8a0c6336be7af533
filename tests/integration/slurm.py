"""A real single-node Slurm cluster for the tests: munged, slurmctld and slurmd from Debian's
packages, started as root with their config, key, sockets, state and logs in one temporary
directory and free ports, and stopped after. Jobs are submitted as ``nobody`` (setpriv), so
what runs on the node runs as a user without root, as on a site's cluster."""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.conftest import require, require_tool

TOOLS = ("munged", "slurmctld", "slurmd", "salloc", "srun", "sbcast", "sinfo", "setpriv")
USER = "nobody"


@dataclass(frozen=True)
class Cluster:
    root: Path  # world-readable: the job user reads bundles and environments under it
    conf: Path
    node: str

    def env(self, home: Path) -> dict[str, str]:
        path = "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin"
        return {"PATH": path, "SLURM_CONF": str(self.conf), "HOME": str(home), "USER": USER,
                "LOGNAME": USER, "LANG": "C.UTF-8", "TMPDIR": "/tmp"}

    def run_as_user(self, argv: list[str], home: Path, timeout: float = 600,
                    env: dict[str, str] | None = None,
                    cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
        """Run ``argv`` as nobody, with only Slurm's config in the environment."""
        setpriv = shutil.which("setpriv")
        assert setpriv is not None
        user = pwd.getpwnam(USER)
        return subprocess.run([setpriv, f"--reuid={user.pw_uid}", f"--regid={user.pw_gid}",
                               "--clear-groups", *argv],
                              env={**self.env(home), **(env or {})}, cwd=cwd or home,
                              capture_output=True, text=True, timeout=timeout, check=False)


    def run_as_root(self, argv: list[str], cwd: Path, timeout: float = 600
                    ) -> subprocess.CompletedProcess[str]:
        """Run ``argv`` as root (FUSE mounts: /dev/fuse is root's only on this builder)."""
        env = {**self.env(cwd), "USER": "root", "LOGNAME": "root"}
        return subprocess.run(argv, env=env, cwd=cwd, capture_output=True, text=True,
                              timeout=timeout, check=False)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _node_line() -> tuple[str, int]:
    """The node's name and CPUs as slurmd sees them (`slurmd -C`)."""
    out = subprocess.run([require_tool("slurmd"), "-C"], capture_output=True, text=True,
                         check=True).stdout
    fields = dict(f.split("=", 1) for f in out.split() if "=" in f)
    return fields["NodeName"], int(fields.get("CPUs", "1"))


def _conf(root: Path, node: str, cpus: int) -> str:
    d = root / "slurm"
    return "\n".join([
        "ClusterName=gapship-test", f"SlurmctldHost={node}",
        "AuthType=auth/munge", f"AuthInfo=socket={root}/munge-socket/munge.socket",
        "CredType=cred/munge", "SlurmUser=root", "SlurmdUser=root",
        f"SlurmctldPort={_free_port()}", f"SlurmdPort={_free_port()}",
        f"StateSaveLocation={d}/state", f"SlurmdSpoolDir={d}/spool",
        f"SlurmctldPidFile={d}/slurmctld.pid", f"SlurmdPidFile={d}/slurmd.pid",
        f"SlurmctldLogFile={d}/slurmctld.log", f"SlurmdLogFile={d}/slurmd.log",
        "ProctrackType=proctrack/linuxproc", "TaskPlugin=task/none", "MpiDefault=none",
        "SchedulerType=sched/builtin", "SelectType=select/linear", "ReturnToService=2",
        "JobCompType=jobcomp/none", "JobAcctGatherType=jobacct_gather/none",
        "AccountingStorageType=accounting_storage/none",
        f"NodeName={node} CPUs={cpus} RealMemory=500 State=UNKNOWN",
        "PartitionName=test Nodes=ALL Default=YES MaxTime=INFINITE State=UP", ""])


def _stop(pidfile: Path) -> None:
    try:
        pid = int(pidfile.read_text().strip())
    except (OSError, ValueError):
        return
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    for _ in range(50):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.1)
    os.kill(pid, signal.SIGKILL)


@contextmanager
def slurm_cluster() -> Iterator[Cluster]:
    for tool in TOOLS:
        require_tool(tool)
    require(os.geteuid() == 0, "the test Slurm cluster's daemons start as root")
    root = Path(tempfile.mkdtemp(prefix="gapship-slurm-"))
    root.chmod(0o755)
    sock, keydir, d = root / "munge-socket", root / "munge", root / "slurm"
    for path, mode in ((sock, 0o755), (keydir, 0o700), (d, 0o755), (d / "state", 0o700),
                       (d / "spool", 0o755)):
        path.mkdir()
        path.chmod(mode)
    key = keydir / "munge.key"
    key.write_bytes(os.urandom(1024))
    key.chmod(0o400)
    node, cpus = _node_line()
    conf = d / "slurm.conf"
    conf.write_text(_conf(root, node, cpus))
    env = {**os.environ, "SLURM_CONF": str(conf)}
    started: list[Path] = []
    try:
        subprocess.run([require_tool("munged"), "--force", f"--socket={sock}/munge.socket",
                        f"--key-file={key}", f"--log-file={keydir}/munged.log",
                        f"--pid-file={keydir}/munged.pid", f"--seed-file={keydir}/munged.seed"],
                       check=True, capture_output=True, text=True)
        started.append(keydir / "munged.pid")
        for daemon in ("slurmctld", "slurmd"):
            subprocess.run([require_tool(daemon), "-f", str(conf)], check=True, env=env,
                           capture_output=True, text=True)
            started.append(d / f"{daemon}.pid")
        deadline = time.monotonic() + 60
        state = ""
        while time.monotonic() < deadline:
            state = subprocess.run([require_tool("sinfo"), "-h", "-N", "-o", "%t"], env=env,
                                   capture_output=True, text=True, check=False).stdout.strip()
            if state == "idle":
                break
            time.sleep(0.5)
        logs = "".join(p.read_text(errors="replace")[-2000:]
                       for p in (d / "slurmctld.log", d / "slurmd.log") if p.exists())
        assert state == "idle", f"the test Slurm node is {state!r}, not idle:\n{logs}"
        yield Cluster(root, conf, node)
    finally:
        for pidfile in reversed(started):
            _stop(pidfile)
        shutil.rmtree(root, ignore_errors=True)
