"""cluster/slurm/genzoo.sbatch on a real single-node SLURM (Debian's slurmctld + slurmd +
munge, all started by the test in a temporary folder and torn down after it).

The job starts Ray on its allocation, runs a tiny digits sweep, `genzoo measure` (two cheap
families) and `genzoo analyze`. The first submission is cancelled (`scancel`) once one trial is
complete in the store and another has a finished epoch but is not complete; the same command
submitted again must train only what is missing, continue the interrupted trial from its stored
state, and leave every trial completed with no duplicate row. No process of the job's Ray may
outlive a job.

Needs root (slurmd launches the job's processes) and the packages slurmctld, slurmd,
slurm-client and munge; skipped otherwise. About 2 minutes on 2 cores.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List, Optional

import pandas as pd
import pytest
import yaml

from sweep import config as sweep_config
from process_groups import stop_group
from sweep.store import Store

SCRIPT = Path(__file__).resolve().parents[2] / "cluster" / "slurm" / "genzoo.sbatch"
VENV = Path(sys.executable).parent.parent
SBIN = ("/usr/sbin", "/sbin")
PROGRAMS = ("sbatch", "squeue", "scancel", "sinfo", "scontrol", "srun", "slurmctld", "slurmd", "munged")


def _which(name: str) -> Optional[str]:
    return shutil.which(name) or shutil.which(name, path=os.pathsep.join(SBIN))


MISSING = [p for p in PROGRAMS if _which(p) is None]
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(bool(MISSING), reason=f"SLURM is not installed here (no {', '.join(MISSING)}; Debian: "
                       "apt-get install slurmctld slurmd slurm-client munge)"),
    pytest.mark.skipif(os.geteuid() != 0, reason="slurmd must run as root to launch a job's processes"),
    pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="the job asks for 2 CPUs"),
]

START_TIMEOUT_S = 60      # munged, slurmctld, slurmd up and the node idle
PARTIAL_TIMEOUT_S = 240   # first job: one trial complete, another part-trained
JOB_TIMEOUT_S = 480       # second job: one more trial; after its requeue: the rest, measures, analysis
CANCEL_TIMEOUT_S = 90     # a cancelled job gone from the queue, a requeued one pending
STOP_TIMEOUT_S = 20

EXPERIMENT = "slurmzoo"
# Four trials of 6 epochs; 2 CPUs each on a 2-CPU Ray node, so they train one after the other
# and the first job can be cancelled between a completed trial and a part-trained one.
SWEEP = {
    "experiment": EXPERIMENT, "dataset": "digits", "model": "nin",
    "train": {"width": 8, "depth": 2, "train_size": 256, "epochs": 6, "batch_size": 32, "lr": 0.05},
    "seeds": [0, 1, 2, 3], "resources": {"cpus": 2}, "max_failures": 1,
}
MEASURES = "norms,training"
RAY_SESSION_VARS = ("RAY_ADDRESS", "RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH")
TIMING = ["seconds", "images_per_second", "host", "device", "finished_at"]


def _free_ports(count: int) -> List[int]:
    sockets = []
    try:
        for _ in range(count):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            sockets.append(s)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def _mentions(pid: int, text: str) -> bool:
    """Whether the process's command line or one of its open files names ``text`` (Ray's
    workers retitle themselves but keep their session's log files open)."""
    try:
        if text in Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace"):
            return True
        return any(text in os.readlink(fd) for fd in Path(f"/proc/{pid}/fd").iterdir())
    except OSError:
        return False


def _processes_naming(text: str) -> List[int]:
    return [int(e.name) for e in Path("/proc").iterdir()
            if e.name.isdigit() and int(e.name) != os.getpid() and _mentions(int(e.name), text)]


class Slurm:
    """munged, slurmctld and slurmd of a one-node cluster, everything under ``base``."""

    def __init__(self, base: Path):
        self.base = base
        self.host = socket.gethostname().split(".")[0]
        self.daemons: List[subprocess.Popen] = []
        self.logs: List[Path] = []
        # Jobs inherit the submitter's environment (sbatch --export=ALL): not the test session's
        # Ray address or auth mode (tests/conftest.py disables Ray's token auth).
        self.env = {**{k: v for k, v in os.environ.items() if k not in RAY_SESSION_VARS},
                    "SLURM_CONF": str(base / "slurm.conf")}

    # -- start and stop ----------------------------------------------------------------------

    def start(self) -> None:
        base = self.base
        base.chmod(0o755)  # munged wants every folder above its socket searchable by all
        (base / "munge").mkdir(mode=0o700)
        (base / "run").mkdir(mode=0o755)
        for name in ("state", "spool", "log"):
            (base / name).mkdir()
        key = base / "munge" / "munge.key"
        key.write_bytes(os.urandom(1024))
        key.chmod(0o400)
        socket_path = base / "run" / "munge.socket"
        self._daemon([_which("munged"), "--foreground", f"--key-file={key}", f"--socket={socket_path}",
                      f"--pid-file={base / 'run' / 'munged.pid'}", f"--log-file={base / 'log' / 'munged.log'}",
                      f"--seed-file={base / 'munge' / 'munged.seed'}"], "munged")
        self._until(lambda: socket_path.exists(), "munged's socket")

        ctld_port, slurmd_port = _free_ports(2)
        memory_mb = int(Path("/proc/meminfo").read_text().split()[1]) // 1024 // 2
        (base / "slurm.conf").write_text("\n".join([
            "ClusterName=genzootest",
            f"SlurmctldHost={self.host}",
            "SlurmUser=root",
            f"SlurmctldPort={ctld_port}",
            f"SlurmdPort={slurmd_port}",
            "AuthType=auth/munge",
            "CredType=cred/munge",
            f"AuthInfo=socket={socket_path}",
            f"StateSaveLocation={base / 'state'}",
            f"SlurmdSpoolDir={base / 'spool'}",
            f"SlurmctldPidFile={base / 'run' / 'slurmctld.pid'}",
            f"SlurmdPidFile={base / 'run' / 'slurmd.pid'}",
            f"SlurmctldLogFile={base / 'log' / 'slurmctld.log'}",
            f"SlurmdLogFile={base / 'log' / 'slurmd.log'}",
            # No cgroups here: processes are tracked by parentage, tasks are not bound.
            "ProctrackType=proctrack/linuxproc",
            "TaskPlugin=task/none",
            "JobAcctGatherType=jobacct_gather/none",
            "AccountingStorageType=accounting_storage/none",
            "SelectType=select/cons_tres",
            "SelectTypeParameters=CR_Core",
            "MpiDefault=none",
            "MailProg=/bin/true",
            "ReturnToService=2",
            "KillWait=5",  # SIGTERM to SIGKILL on scancel
            f"NodeName={self.host} CPUs={os.cpu_count()} RealMemory={memory_mb} State=UNKNOWN",
            f"PartitionName=genzoo Nodes={self.host} Default=YES MaxTime=INFINITE State=UP",
            "",
        ]))
        conf = str(base / "slurm.conf")
        self._daemon([_which("slurmctld"), "-D", "-f", conf], "slurmctld")
        self._daemon([_which("slurmd"), "-D", "-f", conf, "-N", self.host], "slurmd")
        self._until(lambda: self._node_state() == "idle", f"node {self.host} idle in sinfo")

    def _daemon(self, argv: List[str], name: str) -> None:
        log = self.base / "log" / f"{name}.out"
        self.logs.append(log)
        with open(log, "wb") as handle:
            self.daemons.append(subprocess.Popen(argv, stdout=handle, stderr=subprocess.STDOUT, env=self.env,
                                                 start_new_session=True))

    def _node_state(self) -> str:
        result = subprocess.run(["sinfo", "-h", "-n", self.host, "-o", "%t"], env=self.env, capture_output=True,
                                text=True, timeout=10)
        return result.stdout.strip()

    def _until(self, ready, what: str, timeout: float = START_TIMEOUT_S) -> None:
        deadline = time.monotonic() + timeout
        while not ready():
            for proc in self.daemons:
                if proc.poll() is not None:
                    self.fail(f"{proc.args[0]} exited with {proc.returncode} while waiting for {what}")
            if time.monotonic() > deadline:
                self.fail(f"no {what} within {timeout:g} s")
            time.sleep(0.5)

    def stop(self) -> None:
        for job in self.queue():
            subprocess.run(["scancel", job], env=self.env, capture_output=True, timeout=10)
        deadline = time.monotonic() + CANCEL_TIMEOUT_S
        while self.queue() and time.monotonic() < deadline:
            time.sleep(0.5)
        for proc in reversed(self.daemons):  # slurmd, slurmctld, then munged
            stop_group(proc, STOP_TIMEOUT_S)
        for pid in _processes_naming(str(self.base)):  # a slurmstepd or Ray process left over
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    # -- jobs --------------------------------------------------------------------------------

    def queue(self) -> List[str]:
        try:
            result = subprocess.run(["squeue", "-h", "-o", "%i"], env=self.env, capture_output=True, text=True,
                                    timeout=10)
        except subprocess.TimeoutExpired:
            return ["?"]
        return result.stdout.split() if result.returncode == 0 else []

    def submit(self, env: Dict[str, str], output: Path, cwd: Path) -> str:
        result = subprocess.run(
            ["sbatch", "--parsable", "--cpus-per-task=2", "--mem=1G", "--time=20", f"--output={output}",
             str(SCRIPT)],
            env={**self.env, **env}, cwd=cwd, capture_output=True, text=True, timeout=30)
        if result.returncode != 0:
            self.fail(f"sbatch failed: {result.stderr}")
        return result.stdout.strip().split(";")[0]

    def job(self, job_id: str) -> Dict[str, str]:
        """scontrol's fields of a job (JobState, ExitCode, ...), also after it ended."""
        result = subprocess.run(["scontrol", "-o", "show", "job", job_id], env=self.env, capture_output=True,
                                text=True, timeout=10)
        return dict(word.split("=", 1) for word in result.stdout.split() if "=" in word)

    def wait_gone(self, job_id: str, timeout: float) -> Dict[str, str]:
        deadline = time.monotonic() + timeout
        while job_id in self.queue():
            if time.monotonic() > deadline:
                self.fail(f"job {job_id} still in the queue after {timeout:g} s")
            time.sleep(1)
        return self.job(job_id)

    # -- failures ----------------------------------------------------------------------------

    def dump(self, *extra: Path) -> str:
        parts = []
        for argv in (["sinfo", "-N", "-l"], ["squeue", "-l"], ["scontrol", "show", "node"]):
            try:
                result = subprocess.run(argv, env=self.env, capture_output=True, text=True, timeout=10)
                parts.append(f"===== {' '.join(argv)} =====\n{result.stdout}{result.stderr}")
            except (OSError, subprocess.TimeoutExpired) as exc:
                parts.append(f"===== {' '.join(argv)} =====\n{exc}")
        for path in [*extra, *self.logs, *sorted((self.base / "log").glob("*.log"))]:
            if path.exists():
                parts.append(f"===== {path.name} =====\n{path.read_text(errors='replace')[-6000:]}")
        return "\n".join(parts)

    def fail(self, message: str, *extra: Path) -> None:
        pytest.fail(f"{message}\n{self.dump(*extra)}", pytrace=False)


@pytest.fixture
def slurm():
    # Short, searchable paths: munged's socket (its folders must be searchable by all, which
    # pytest's tmp_path is not) and Ray's --temp-dir (Unix sockets, 108 bytes at most).
    base = Path(tempfile.mkdtemp(prefix="gz-slurm-", dir="/tmp"))
    cluster = Slurm(base)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()
        leftover = _processes_naming(str(base))
        shutil.rmtree(base, ignore_errors=True)
        assert not leftover, f"processes left after the SLURM teardown: {leftover}"


def _job_env(slurm: Slurm, tmp_path: Path, sweep_file: Path) -> Dict[str, str]:
    port, agent_port, metrics_port = _free_ports(3)
    env = {
        "GENZOO_VENV": str(VENV),
        "GENZOO_SWEEP": str(sweep_file),
        "GENZOO_STORAGE": str(tmp_path / "store"),
        "GENZOO_MEASURE_ARGS": f"--measures {MEASURES}",
        "RAY_PORT": str(port),
        "RAY_TEMP_DIR": str(slurm.base / "ray"),
        # Ports of their own, next to other Ray clusters on this machine; a small object store.
        "RAY_HEAD_ARGS": f"--dashboard-agent-listen-port={agent_port} "
                         f"--metrics-export-port={metrics_port} --object-store-memory={100 * 1024 * 1024}",
        # A home of its own: no ~/.ray/auth_token, so the script makes the job's Ray token.
        "HOME": str(tmp_path / "home"),
        "PYTHONUNBUFFERED": "1",
    }
    (tmp_path / "home").mkdir(exist_ok=True)
    return env


def _files(store: Store, folder: str) -> set:
    return {name[: -len(".parquet")] for name in store.list(folder) if name.endswith(".parquet")}


def _cut(store: Store):
    """(trials complete in the store, trials with epochs that are not complete)."""
    complete = _files(store, "models")
    return complete, _files(store, "epochs") - complete


def _until(slurm: Slurm, job: str, ready, what: str, timeout: float, out: Path) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        if job not in slurm.queue():
            slurm.fail(f"job {job} ended before {what}: {slurm.job(job)}", out)
        if time.monotonic() > deadline:
            slurm.fail(f"job {job}: not {what} within {timeout:g} s", out)
        time.sleep(0.2)


def test_the_sbatch_script_runs_a_sweep_and_a_resubmission_finishes_a_cancelled_one(slurm, tmp_path):
    try:
        _cancel_resubmit_requeue(slurm, tmp_path)
    except AssertionError:
        # The daemons' logs and both jobs' output with the failed assertion (pytest.fail of
        # Slurm.fail prints them already).
        print(slurm.dump(*sorted(tmp_path.glob("job*.out"))))
        raise


def _cancel_resubmit_requeue(slurm: Slurm, tmp_path: Path) -> None:
    sweep_file = tmp_path / f"{EXPERIMENT}.yaml"
    sweep_file.write_text(yaml.safe_dump(SWEEP))
    trial_ids = [t.trial_id for t in sweep_config.load(str(sweep_file)).trials()]
    assert len(set(trial_ids)) == 4
    env = _job_env(slurm, tmp_path, sweep_file)
    store = Store(str(tmp_path / "store"), EXPERIMENT)
    ray_temp = str(slurm.base / "ray")
    started = time.monotonic()

    # --- 1. cancelled between a completed trial and a part-trained one ----------------------
    out1 = tmp_path / "job1.out"
    job1 = slurm.submit(env, out1, tmp_path)
    _until(slurm, job1, lambda: all(_cut(store)), "one trial complete and one part-trained", PARTIAL_TIMEOUT_S,
           out1)
    subprocess.run(["scancel", job1], env=slurm.env, check=True, timeout=10)
    state = slurm.wait_gone(job1, CANCEL_TIMEOUT_S)
    assert state.get("JobState") == "CANCELLED", state
    assert not _processes_naming(ray_temp), f"Ray processes outlived cancelled job {job1}"
    before = store.epochs()
    complete1, partial1 = _cut(store)
    assert complete1 and partial1 and len(complete1) < 4, (complete1, partial1)
    assert all("state.pt" in store.list("checkpoints", t) for t in partial1)
    print(f"job {job1} cancelled after {time.monotonic() - started:.0f} s: {len(complete1)} trials complete, "
          f"{len(partial1)} part-trained")

    # --- 2. the same submission again; it requeues itself (USR1, as `#SBATCH --signal=B:USR1@T`
    # sends before a time limit) once one more trial is complete, and finishes after its restart
    out2 = tmp_path / "job2.out"
    mark = time.monotonic()
    job2 = slurm.submit(env, out2, tmp_path)
    _until(slurm, job2, lambda: len(_cut(store)[0]) > len(complete1), "one more trial complete", JOB_TIMEOUT_S, out2)
    subprocess.run(["scancel", "--signal=USR1", "--batch", job2], env=slurm.env, check=True, timeout=10)
    deadline = time.monotonic() + CANCEL_TIMEOUT_S
    while (slurm.job(job2).get("JobState"), slurm.job(job2).get("Restarts")) != ("PENDING", "1"):
        if time.monotonic() > deadline:
            slurm.fail(f"job {job2} did not requeue itself within {CANCEL_TIMEOUT_S} s: {slurm.job(job2)}", out2)
        time.sleep(0.5)
    assert not _processes_naming(ray_temp), f"Ray processes outlived the requeue of job {job2}"
    complete2, _ = _cut(store)
    # SLURM holds a requeued job for a while (BeginTime); release it now.
    subprocess.run(["scontrol", "update", f"JobId={job2}", "StartTime=now"], env=slurm.env, check=True, timeout=10)
    state = slurm.wait_gone(job2, JOB_TIMEOUT_S)
    if state.get("JobState") != "COMPLETED" or state.get("ExitCode") != "0:0":
        slurm.fail(f"job {job2} did not complete: {state}", out2)
    log = out2.read_text()  # both runs of the job: --open-mode=append
    print(f"job {job2} requeued itself with {len(complete2)} trials complete and completed "
          f"{time.monotonic() - mark:.0f} s after its submission")
    assert not _processes_naming(ray_temp), f"Ray processes outlived job {job2}"

    # Each run trained only what was missing ...
    assert f"job {job2} (restart 0)" in log and f"job {job2} (restart 1)" in log, log[-3000:]
    assert f"[{EXPERIMENT}] {4 - len(complete1)} of 4 trials to train" in log, log[-3000:]
    if len(complete2) < 4:
        assert f"[{EXPERIMENT}] {4 - len(complete2)} of 4 trials to train" in log, log[-3000:]
    else:
        assert f"[{EXPERIMENT}] all 4 trials are complete" in log, log[-3000:]
    # ... and every trial is complete, once.
    trials = store.trials()
    assert sorted(trials["trial_id"]) == sorted(trial_ids)
    assert set(trials["status"]) == {"completed"}
    epochs = store.epochs()
    assert not epochs.duplicated(["trial_id", "epoch"]).any()
    assert epochs.groupby("trial_id")["epoch"].apply(sorted).tolist() == [list(range(1, 7))] * 4
    models = store.models()
    assert len(models) == 4 and not models.duplicated(["trial_id", "model_id"]).any()
    # The trials complete before the cancel were not trained again, and the part-trained ones
    # continued from their stored state: the epochs recorded before the cancel are unchanged.
    kept = before.merge(epochs, on=["trial_id", "epoch"], suffixes=("_before", "_after"))
    assert len(kept) == len(before)
    for column in TIMING:
        pd.testing.assert_series_equal(kept[f"{column}_before"], kept[f"{column}_after"], check_names=False)

    # Measures of every model (the two families asked for), and the analysis.
    measures = store.measures()
    assert set(measures["trial_id"]) == set(trial_ids)
    assert set(measures["family"]) == set(MEASURES.split(","))
    assert not measures.duplicated(["trial_id", "model_id", "family", "measure"]).any()
    assert (tmp_path / "store" / EXPERIMENT / "analysis" / "report.md").is_file()
    assert f"done: {EXPERIMENT}" in log
    print(f"total {time.monotonic() - started:.0f} s")
