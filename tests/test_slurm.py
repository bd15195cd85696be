"""Slurm runs (`launcher.type: slurm`): the sbatch script tui-ft writes (a snapshot of a 2-node, 8-GPU
recipe, parsed by the real bash), the shared-storage check, the refusal where Slurm is missing, and, where
Debian's Slurm is installed (scripts/install-slurm), a real one-node cluster the test starts (its own
config, ports and state; munge) running the demo recipe as a job that tui-ft submits, watches and
cancels."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

from tests.conftest import run_tui_ft, wait_for_status
from tui_ft.recipe import load_recipe
from tui_ft.runs.nodes import read_nodes
from tui_ft.runs.registry import find_run, pid_alive
from tui_ft.runs.slurm import filesystem_of, sbatch_script, shared_storage_note

SNAPSHOT = Path(__file__).parent / "fixtures" / "slurm" / "two-nodes-8-gpus.sbatch"
TWO_NODES = [
    "launcher.type=slurm",
    "launcher.nodes=2",
    "launcher.num_processes=8",
    "launcher.time=04:00:00",
    "launcher.partition=gpu",
    "launcher.account=proj-llm",
    "launcher.main_port=29500",
]
RUN = Path("/shared/tui-ft/runs/20261130-120000-sft-lora")


def two_node_script(demo_ws, *extra: str, resume: bool = False) -> str:
    launcher = load_recipe("sft-lora", [*TWO_NODES, *extra], cache_dir=demo_ws.cache).recipe.launcher
    return sbatch_script(
        RUN,
        launcher,
        python="/opt/tui-ft/.venv/bin/python",
        config=RUN / "accelerate.yaml",
        env={"TUI_FT_HOME": "/shared/tui-ft", "TUI_FT_SUPERVISOR_PID": "4242"},
        resume=resume,
    )


def test_the_sbatch_script_of_a_two_node_eight_gpu_recipe(demo_ws, tmp_path):
    script = two_node_script(demo_ws)
    assert script == SNAPSHOT.read_text(), "the generated job script changed: look, then update the fixture"
    path = tmp_path / "job.sbatch"
    path.write_text(script)
    assert subprocess.run(["bash", "-n", str(path)], capture_output=True).returncode == 0


def test_the_script_asks_for_what_the_recipe_says(demo_ws):
    script = two_node_script(demo_ws, "launcher.gpus_per_node=0", "launcher.partition=null", resume=True)
    assert "--gpus-per-node" not in script and "--partition" not in script
    assert script.rstrip().endswith("--worker --resume'")
    assert "#SBATCH --nodes=2" in script and "#SBATCH --account=proj-llm" in script


def test_a_local_run_directory_is_named_as_not_shared(tmp_path):
    assert filesystem_of(tmp_path)  # /proc/mounts names it
    note = shared_storage_note(tmp_path)
    if filesystem_of(tmp_path) in ("nfs", "nfs4", "lustre"):
        pytest.skip("this machine's temporary folder is on shared storage")
    assert note is not None and str(tmp_path) in note and "shared storage" in note


@pytest.mark.skipif(shutil.which("sbatch") is not None, reason="Slurm is installed here")
def test_slurm_without_sbatch_exits_2_naming_it(cli_env):
    proc = run_tui_ft(cli_env, "train", "sft-lora", "--set", "launcher.type=slurm")
    assert proc.returncode == 2
    assert "launcher.type slurm needs sbatch" in proc.stderr and "login node" in proc.stderr
    assert "Traceback" not in proc.stderr


# ------------------------------------------------------------------------------------------------
# a real one-node Slurm cluster


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _munge_works() -> bool:
    try:
        made = subprocess.run(["munge", "-n"], capture_output=True, timeout=10)
        return (
            made.returncode == 0
            and subprocess.run(["unmunge"], input=made.stdout, capture_output=True).returncode == 0
        )
    except (OSError, subprocess.TimeoutExpired):
        return False


@pytest.fixture(scope="module")
def slurm_cluster(tmp_path_factory):
    """slurmctld and slurmd on this machine, one node, their own config; yields SLURM_CONF's value."""
    needed = ("slurmctld", "slurmd", "sbatch", "squeue", "scancel", "munged")
    missing = [c for c in needed if shutil.which(c) is None and not os.access(f"/usr/sbin/{c}", os.X_OK)]
    if missing:
        pytest.skip(
            f"Slurm is not installed ({', '.join(missing)} missing; scripts/install-slurm installs it)"
        )
    if os.geteuid() != 0:
        pytest.skip("the one-node Slurm cluster runs its daemons as root")
    d = tmp_path_factory.mktemp("slurm")
    for sub in ("state", "spool"):
        (d / sub).mkdir()
    started: list[subprocess.Popen] = []
    munged = None  # the munge daemon this fixture started, if it had to
    if not _munge_works():  # munged: the authentication Slurm's daemons and commands share
        Path("/run/munge").mkdir(exist_ok=True)
        shutil.chown("/run/munge", "munge", "munge")
        subprocess.run(["su", "-s", "/bin/sh", "munge", "-c", "/usr/sbin/munged"], check=False)
        with contextlib.suppress(OSError, ValueError):
            munged = int(Path("/run/munge/munged.pid").read_text())  # it daemonizes: ended by its pid
        if not _munge_works():
            pytest.skip("munged does not start here, and Slurm's daemons need it")
    host = socket.gethostname()
    conf = d / "slurm.conf"
    conf.write_text(
        f"ClusterName=tuift\nSlurmctldHost={host}(127.0.0.1)\nAuthType=auth/munge\nSlurmUser=root\n"
        f"SlurmdUser=root\nSlurmctldPort={_free_port()}\nSlurmdPort={_free_port()}\n"
        f"StateSaveLocation={d / 'state'}\nSlurmdSpoolDir={d / 'spool'}\n"
        f"SlurmctldPidFile={d / 'ctld.pid'}\nSlurmdPidFile={d / 'd.pid'}\n"
        f"SlurmctldLogFile={d / 'ctld.log'}\nSlurmdLogFile={d / 'd.log'}\n"
        "ProctrackType=proctrack/linuxproc\nTaskPlugin=task/none\nSchedulerType=sched/builtin\n"
        "SelectType=select/cons_tres\nSelectTypeParameters=CR_Core\nReturnToService=2\n"
        "JobAcctGatherType=jobacct_gather/none\nAccountingStorageType=accounting_storage/none\nMpiDefault=none\n"
        f"NodeName={host} NodeAddr=127.0.0.1 CPUs={os.cpu_count() or 1} RealMemory=2000 State=UNKNOWN\n"
        "PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP\n"
    )
    env = dict(os.environ, SLURM_CONF=str(conf))
    try:
        for daemon in (["slurmctld", "-D", "-c"], ["slurmd", "-D"]):
            started.append(
                subprocess.Popen(
                    [*daemon, "-f", str(conf)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
                )
            )
        deadline = time.monotonic() + 60
        while (
            "idle"
            not in subprocess.run(["sinfo", "-h", "-o", "%t"], env=env, capture_output=True, text=True).stdout
        ):
            if time.monotonic() > deadline or any(p.poll() is not None for p in started):
                logs = " ".join(f.read_text()[-500:] for f in (d / "ctld.log", d / "d.log") if f.exists())
                pytest.skip(f"the one-node Slurm cluster did not come up here: {logs}")
            time.sleep(0.5)
        yield str(conf)
    finally:
        for proc in started:
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
        if munged:
            with contextlib.suppress(OSError):
                os.kill(munged, signal.SIGTERM)


def test_a_real_slurm_job_trains_is_watched_and_cancelled(cli_env, demo_ws, slurm_cluster):
    env = dict(cli_env, SLURM_CONF=slurm_cluster)
    sets = [
        "launcher.type=slurm",
        "launcher.nodes=1",
        "launcher.gpus_per_node=0",
        f"launcher.main_port={_free_port()}",
        "training.max_steps=100000",  # runs until cancelled
        "training.logging_steps=1",
        "data.eval_split=0",
        "training.eval_strategy=no",
    ]
    proc = run_tui_ft(
        env, "train", "sft-lora", *[a for s in sets for a in ("--set", s)], "--detach", "--json"
    )
    assert proc.returncode == 0, proc.stderr
    run = find_run(demo_ws, json.loads(proc.stdout)["id"])
    status = wait_for_status(run, lambda s: s.is_final or (s.state == "running" and s.step >= 2), timeout=600)
    assert not status.is_final, (status, run.log_file.read_text()[-2000:])
    nodes = read_nodes(run)
    assert nodes["kind"] == "slurm" and nodes["job_id"] and nodes["job_state"] == "RUNNING"
    assert [n["host"] for n in nodes["nodes"]] == [socket.gethostname()]
    job = nodes["job_id"]
    log = run.log_file.read_text()
    assert f"slurm job {job} submitted" in log and "looks local" in log  # /tmp is not shared storage
    queue = subprocess.run(["squeue", "-h", "-j", job, "-o", "%T"], env=env, capture_output=True, text=True)
    assert queue.stdout.strip() == "RUNNING"

    assert run_tui_ft(env, "stop", run.id, "--now").returncode == 0
    status = wait_for_status(run, lambda s: s.is_final and not pid_alive(s.pid), timeout=120)
    assert status.state == "stopped", status
    gone = subprocess.run(["squeue", "-h", "-j", job, "-o", "%T"], env=env, capture_output=True, text=True)
    assert gone.stdout.strip() in ("", "CANCELLED", "COMPLETING"), gone.stdout
