"""A real one-node Slurm cluster for the tests: munged, slurmctld and slurmd on this machine.

Everything lives in one temporary folder (munge key and socket, slurm.conf, state and spool folders,
logs) and the daemons listen on free ports, so nothing of the machine's own Slurm or munge setup is
touched or needed. The node is this host with its cores and memory; `ReturnToService=2` and low
scheduler intervals make it usable within seconds (a node set DOWN is back as soon as its slurmd answers), and
a job requeued waits `cred_expire` + 1 = 11 s (not Slurm's default 121 s) before it may start again. There is
no slurmdbd: finished jobs stay visible
to `scontrol show job` for `MinJobAge` seconds, which is where the runner reads their states.
Debian: `apt-get install slurm-wlm munge`.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

DAEMONS = ("munged", "slurmctld", "slurmd")


class SlurmUnavailable(RuntimeError):
    """Why a local Slurm cannot run here (the tests skip with this reason)."""


@dataclass
class SlurmCluster:
    root: Path
    conf: Path
    partition: str = "debug"
    processes: list[subprocess.Popen] = field(default_factory=list)

    @property
    def env(self) -> dict[str, str]:
        """What a process needs to reach this cluster with sbatch/squeue/scontrol."""
        return {"SLURM_CONF": str(self.conf)}

    def command(self, *arguments: str) -> str:
        result = subprocess.run(arguments, env={**os.environ, **self.env}, capture_output=True, text=True, timeout=30)
        return result.stdout

    def jobs(self) -> list[str]:
        """Ids of the jobs squeue shows (pending or running), one per array task."""
        return self.command("squeue", "--array", "--noheader", "--format=%i").split()

    def stop(self) -> None:
        """Cancel what still runs on this cluster, then stop slurmd, slurmctld and munged."""
        if len(self.processes) == len(DAEMONS) and all(process.poll() is None for process in self.processes):
            self.command("scancel", "--partition", self.partition)
            deadline = time.time() + 20
            while self.jobs() and time.time() < deadline:
                time.sleep(0.5)
        for process in reversed(self.processes):
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in reversed(self.processes):
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def memory_mb() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) // 1024 - 1024
    return 1024


def slurm_conf(root: Path, host: str, cpus: int, munge_socket: Path) -> str:
    return f"""\
ClusterName=sfttest
SlurmctldHost={host}(127.0.0.1)
SlurmctldPort={free_port()}
SlurmdPort={free_port()}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket={munge_socket},cred_expire=10
CredType=cred/munge
StateSaveLocation={root}/state
SlurmdSpoolDir={root}/spool
SlurmctldPidFile={root}/slurmctld.pid
SlurmdPidFile={root}/slurmd.pid
SlurmctldLogFile={root}/slurmctld.log
SlurmdLogFile={root}/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MpiDefault=none
ReturnToService=2
SchedulerType=sched/backfill
SchedulerParameters=sched_interval=1,defer_batch
MessageTimeout=10
SlurmdTimeout=60
InactiveLimit=0
KillWait=5
MinJobAge=3600
OverTimeLimit=0
PrologFlags=NoHold
LaunchParameters=use_interactive_step
NodeName={host} NodeHostname={host} NodeAddr=127.0.0.1 CPUs={cpus} RealMemory={memory_mb()} State=UNKNOWN
PartitionName=debug Nodes={host} Default=YES MaxTime=INFINITE State=UP OverSubscribe=NO
"""


def start_cluster(root: Path, timeout: float = 60) -> SlurmCluster:
    """Start munged, slurmctld and slurmd under `root` and wait until the node is idle."""
    missing = [name for name in DAEMONS if shutil.which(name) is None and not Path(f"/usr/sbin/{name}").exists()]
    if missing or shutil.which("sbatch") is None:
        raise SlurmUnavailable(
            f"Slurm/munge not installed ({', '.join(missing) or 'sbatch'} missing; apt-get install slurm-wlm munge)"
        )
    if os.geteuid() != 0:
        raise SlurmUnavailable("the local Slurm daemons need root")
    root.mkdir(parents=True, exist_ok=True)
    for folder in ("state", "spool", "munge"):
        (root / folder).mkdir(exist_ok=True)
    key = root / "munge" / "munge.key"
    key.write_bytes(os.urandom(1024))
    key.chmod(0o600)
    munge_socket = root / "munge" / "munge.socket"
    host = socket.gethostname().split(".")[0]
    conf = root / "slurm.conf"
    conf.write_text(slurm_conf(root, host, os.cpu_count() or 1, munge_socket))
    cluster = SlurmCluster(root, conf)
    env = {**os.environ, **cluster.env}
    sbin = lambda name: shutil.which(name) or f"/usr/sbin/{name}"  # noqa: E731
    munged = [sbin("munged"), "--foreground", "--force", f"--socket={munge_socket}", f"--key-file={key}"]
    munged += [f"--pid-file={root}/munge/munged.pid", f"--log-file={root}/munge/munged.log"]
    munged += [f"--seed-file={root}/munge/munged.seed"]
    try:
        for command in (munged, [sbin("slurmctld"), "-D", "-i"], [sbin("slurmd"), "-D", "-N", host]):
            log = open(root / f"{Path(command[0]).name}.out", "w")  # noqa: SIM115 (kept open by the daemon)
            cluster.processes.append(subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT))
            time.sleep(0.5)
            if cluster.processes[-1].poll() is not None:
                raise SlurmUnavailable(f"{command[0]} exited: {_tail(root)}")
        deadline = time.time() + timeout
        while time.time() < deadline:
            state = cluster.command("sinfo", "--noheader", "--format=%t").strip()
            if state == "idle":
                return cluster
            time.sleep(0.5)
        raise SlurmUnavailable(f"the node never became idle (sinfo says {state!r}): {_tail(root)}")
    except BaseException:
        cluster.stop()
        raise


def _tail(root: Path) -> str:
    text = ""
    for name in ("slurmctld.log", "slurmd.log", "munged.out", "slurmctld.out", "slurmd.out"):
        path = root / name
        if path.exists():
            text += f"\n--- {name}\n" + path.read_text()[-1500:]
    return text


def job_field(cluster: SlurmCluster, job_id: str, key: str) -> str:
    """One field of `scontrol show job -o JOB_ID` ('' when Slurm does not know the job)."""
    for part in cluster.command("scontrol", "show", "job", "-o", job_id).split():
        name, _, value = part.partition("=")
        if name == key:
            return value
    return ""


def node_name(cluster: SlurmCluster) -> str:
    return cluster.command("sinfo", "--noheader", "--format=%n").strip()
