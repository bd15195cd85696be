"""Runs as Slurm jobs (`launcher.type: slurm`): the sbatch script, submitting it, following the job
with squeue/sacct, cancelling it with scancel. The contract is in docs/multinode.md.

The runner's supervisor stays on the machine where `tui-ft train` ran (the login node): it writes
`runs/<id>/job.sbatch`, submits it, records the job id in `runs/<id>/nodes.json`, shows the run as
`queued` while the job is pending, and follows it until it ends. In the job, `srun` starts the same
`accelerate launch ... --worker` on every node as a multi-node run over SSH does; rank 0 records the run.
The run directory must be on storage every node shares: the supervisor says so when it looks local,
and the job's first step checks it on every node (exit 2 naming the node that does not see it).
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

from tui_ft.errors import UserError
from tui_ft.runs.rundir import EventWriter, RunDir, Status, write_json_atomic

JOB_SCRIPT = "job.sbatch"
#: Filesystems whose files every node of a cluster sees (by /proc/mounts' type).
SHARED_FILESYSTEMS = (
    "nfs",
    "nfs4",
    "lustre",
    "gpfs",
    "beegfs",
    "cephfs",
    "ceph",
    "cifs",
    "smb3",
    "glusterfs",
    "fuse.glusterfs",
    "panfs",
    "wekafs",
    "9p",
    "fuse.sshfs",
    "fuse.juicefs",
)
#: squeue's states of a job that has not started yet.
PENDING = ("PENDING", "CONFIGURING", "REQUEUED", "RESIZING", "SUSPENDED")


def sbatch_script(
    run_path: Path, launcher, *, python: str, config: Path, env: dict[str, str], resume: bool = False
) -> str:
    """The job script: the recipe's nodes, GPUs per node, time, partition and account as #SBATCH lines;
    a first step that checks every node sees the run directory; then `srun` starting one `accelerate
    launch` per node, the first node's address as the rendezvous. (No node agent: srun itself ends every
    node's processes when one fails, or on scancel.)"""
    run = str(run_path)
    gpus = launcher.gpus_per_node if launcher.gpus_per_node is not None else launcher.num_processes
    lines = [
        "#!/bin/bash",
        "# Written by tui-ft for the run in this directory; `tui-ft stop` cancels it (scancel).",
        f"#SBATCH --job-name=tui-ft-{run_path.name}",
        f"#SBATCH --nodes={launcher.nodes}",
        "#SBATCH --ntasks-per-node=1",
    ]
    if gpus:
        lines.append(f"#SBATCH --gpus-per-node={gpus}")
    for option, value in (
        ("time", launcher.time),
        ("partition", launcher.partition),
        ("account", launcher.account),
    ):
        if value:
            lines.append(f"#SBATCH --{option}={value}")
    lines += [
        f"#SBATCH --output={run}/output.log",
        "#SBATCH --open-mode=append",
        "set -euo pipefail",
        *(f"export {k}={shlex.quote(v)}" for k, v in sorted(env.items())),
        "export PYTHONUNBUFFERED=1",
        f"cd {shlex.quote(run)}",
        "# every node must see this directory (checkpoints, the stop file, the recipe)",
        "srun --ntasks-per-node=1 bash -c "
        + shlex.quote(
            f'test -d {shlex.quote(run)} || {{ echo "tui-ft: node $(hostname) does not see {run}: a Slurm '
            'run needs its workspace on storage every node shares" >&2; exit 2; }'
        ),
        "# the job's first node is the rendezvous; srun passes the environment on to every node",
        'export MAIN=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)',
        "srun --ntasks-per-node=1 --kill-on-bad-exit=1 bash -c "
        + shlex.quote(
            "exec "
            + shlex.join([python, "-m", "accelerate.commands.launch"])
            + f" --config_file {shlex.quote(str(config))}"
            + ' --num_machines "$SLURM_NNODES" --machine_rank "$SLURM_NODEID"'
            + f' --main_process_ip "$MAIN" --main_process_port {launcher.main_port}'
            + f' --num_processes "$((SLURM_NNODES * {launcher.num_processes}))"'
            + (f" --gpu_ids {','.join(str(g) for g in launcher.gpus)}" if launcher.gpus else "")
            + f" -m tui_ft.engine.runner {shlex.quote(run)} --worker"
            + (" --resume" if resume else "")
        ),
    ]
    return "\n".join(lines) + "\n"


def filesystem_of(path: Path) -> str | None:
    """The type of the filesystem `path` is on (/proc/mounts, the longest mount point above it)."""
    try:
        mounts = Path("/proc/mounts").read_text().splitlines()
    except OSError:
        return None
    target = str(path.resolve())
    best, kind = "", None
    for line in mounts:
        parts = line.split()
        if len(parts) < 3:
            continue
        point = parts[1].replace("\\040", " ")
        if (target == point or target.startswith(point.rstrip("/") + "/")) and len(point) >= len(best):
            best, kind = point, parts[2]
    return kind


def shared_storage_note(path: Path) -> str | None:
    """A sentence when `path` looks like a local disk (the nodes would not see it); None when it is on a
    shared filesystem."""
    kind = filesystem_of(path)
    if kind in SHARED_FILESYSTEMS:
        return None
    return (
        f"the run directory {path} is on {kind or 'a filesystem tui-ft cannot name'}, which looks local "
        "to this machine: every node of the job must see it (the job's first step checks, and fails "
        "naming a node that does not); put the workspace ($TUI_FT_HOME) on shared storage"
    )


def check_slurm(launcher) -> None:
    """Before a Slurm run starts: the Slurm commands are here (exit 2 otherwise)."""
    missing = [c for c in ("sbatch", "squeue", "scancel") if shutil.which(c) is None]
    if missing:
        raise UserError(
            f"launcher.type slurm needs {', '.join(missing)}, which this machine does not have",
            field="launcher.type",
            hint="run tui-ft on the cluster's login node (where sbatch works)",
        )


def _slurm(*args: str, timeout: float = 30) -> subprocess.CompletedProcess:
    return subprocess.run(list(args), capture_output=True, text=True, timeout=timeout)


def job_state(job_id: str) -> tuple[str | None, str]:
    """(state, nodes) from squeue while the job is known to it, else from sacct; (None, "") when
    neither knows it."""
    try:
        out = _slurm("squeue", "-h", "-j", job_id, "-o", "%T|%N").stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        out = ""
    if out:
        state, _, nodes = out.splitlines()[0].partition("|")
        return state.strip(), nodes.strip()
    try:
        out = _slurm("sacct", "-n", "-X", "-P", "-j", job_id, "-o", "State,NodeList").stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        out = ""
    if out:
        state, _, nodes = out.splitlines()[0].partition("|")
        return state.split()[0].strip() if state.strip() else None, nodes.strip()
    return None, ""


def run_as_job(
    run: RunDir, status: Status, launcher, *, resume: bool, stop, config: Path, poll_s: float = 2.0
) -> int:
    """Submit the run as a Slurm job and follow it to its end; returns the exit status (0 completed or
    stopped, 1 failed, 2 bad input)."""
    from tui_ft.runs.nodes import forwarded_env, remote_python

    events = EventWriter(run.events_file)
    note = shared_storage_note(run.path)
    if note:
        print(f"tui-ft: {note}", flush=True)
        events.write("message", step=status.step, text=note)
    script = run.path / JOB_SCRIPT
    script.write_text(
        sbatch_script(
            run.path,
            launcher,
            python=remote_python(launcher),
            config=config,
            env={**forwarded_env(), "TUI_FT_SUPERVISOR_PID": str(os.getpid())},  # rank 0 records this pid
            resume=resume,
        )
    )
    submitted = _slurm("sbatch", "--parsable", str(script))
    if submitted.returncode != 0:
        reason = (submitted.stderr or submitted.stdout).strip().splitlines()
        status.state, status.ended = "failed", time.time()
        status.error = {
            "kind": "bad_input",
            "message": f"sbatch refused the job: {reason[-1] if reason else submitted.returncode}",
            "hint": f"see {script}; check launcher.partition, account, time and nodes",
        }
        run.write_status(status)
        events.close()
        return 2
    job_id = submitted.stdout.strip().split(";")[0]
    meta: dict[str, Any] = {"kind": "slurm", "job_id": job_id, "script": str(script)}
    _record(run, meta, "PENDING", "", launcher)
    events.write("message", step=status.step, text=f"slurm job {job_id} submitted ({script})", job_id=job_id)
    print(f"tui-ft: slurm job {job_id} submitted", flush=True)
    seen = None
    cancelled = False
    try:
        while True:
            state, nodes = job_state(job_id)
            if state != seen:
                seen = state
                _record(run, meta, state or "ENDED", nodes, launcher)
                current = run.read_status() or status
                if state in PENDING and not current.is_final and current.state != "queued":
                    current.state = "queued"
                    run.write_status(current)
                    events.write("state", step=current.step, state="queued", job_id=job_id)
                if state:
                    events.write(
                        "message",
                        step=status.step,
                        text=f"slurm job {job_id}: {state.lower()}",
                        job_id=job_id,
                    )
            if state is None or state not in (*PENDING, "RUNNING", "COMPLETING"):
                break
            if stop.requested() and state in PENDING and not cancelled:  # nothing trained yet: just go
                _slurm("scancel", job_id)
                cancelled = True
            time.sleep(poll_s)
    except KeyboardInterrupt:  # a stop "now": cancel the job
        _slurm("scancel", job_id)
        cancelled = True
        while job_state(job_id)[0] in (*PENDING, "RUNNING", "COMPLETING"):
            time.sleep(poll_s)
    final = run.read_status() or status
    if not final.is_final:
        final.ended = time.time()
        if cancelled or stop.now or stop.graceful.is_set():
            final.state = "stopped"
        else:
            final.state = "failed"
            final.error = {
                "kind": "crashed",
                "message": f"slurm job {job_id} ended {(seen or 'unknown').lower()} without the run recording an outcome",
                "hint": f"see {run.log_file} and `sacct -j {job_id}`; `tui-ft resume {run.id}` submits it again "
                "from the last complete checkpoint",
                "job_id": job_id,
            }
        run.write_status(final)
    events.close()
    if final.state in ("completed", "stopped"):
        return 0
    return 2 if (final.error or {}).get("kind") == "bad_input" else 1


def _record(run: RunDir, meta: dict[str, Any], state: str, nodelist: str, launcher) -> None:
    if nodelist:
        meta["hosts"] = _expand(nodelist)  # kept once the job has left the queue
    hosts = meta.get("hosts", [])
    write_json_atomic(
        run.path / "nodes.json",
        {
            **meta,
            "job_state": state,
            "world_size": launcher.nodes * launcher.num_processes,
            "nodes": [
                {"host": h, "rank": i, "slots": launcher.num_processes, "state": state.lower()}
                for i, h in enumerate(hosts)
            ],
            "updated": time.time(),
        },
    )


def _expand(nodelist: str) -> list[str]:
    """Slurm's compressed host list (`gpu[01-02],cpu3`) as names (`scontrol show hostnames`)."""
    try:
        out = _slurm("scontrol", "show", "hostnames", nodelist, timeout=10)
        if out.returncode == 0 and out.stdout.strip():
            return out.stdout.split()
    except (OSError, subprocess.TimeoutExpired):
        pass
    return [nodelist]
