"""Starting a runner process for a run directory. The launcher never imports the engine: it starts
`python -m tui_ft.engine.runner` and talks to it through the run directory and signals."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from tui_ft.runs.rundir import RunDir


def runner_command(run: RunDir, *, resume: bool = False) -> list[str]:
    cmd = [sys.executable, "-m", "tui_ft.engine.runner", str(run.path)]
    if resume:
        cmd.append("--resume")
    return cmd


def spawn_runner(run: RunDir, *, detach: bool, resume: bool = False) -> subprocess.Popen:
    """Start the runner with its output going to the run's output.log.

    Detached: its own session (setsid), stdin closed, so closing the terminal or SIGHUP to the shell
    leaves it running. Attached: the same process group as the caller, so Ctrl-C reaches it as a stop.
    A recipe on several machines (`launcher.hosts`) is checked on every host first: UserError (exit 2)
    naming the host and what it lacks, with the run marked failed.
    """
    check_hosts(run)
    env = dict(os.environ)
    env["PYTHONUNBUFFERED"] = "1"
    log = open(run.log_file, "ab")  # noqa: SIM115 - handed to the child; closed below in the parent
    try:
        proc = subprocess.Popen(
            runner_command(run, resume=resume),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=detach,
            env=env,
            close_fds=True,
        )
    finally:
        log.close()
    # Record the pid now, so a reader never mistakes a run whose runner is still importing for a
    # crashed one. The runner rewrites the status with the same pid once it is up.
    status = run.read_status()
    if status is not None and status.pid is None:
        status.pid = proc.pid
        run.write_status(status)
    return proc


def check_hosts(run: RunDir) -> None:
    """The multi-node checks (runs/nodes.py) before a runner starts; a failure fails the run as bad
    input and is raised."""
    from tui_ft.errors import UserError
    from tui_ft.runs.nodes import check_run
    from tui_ft.workspace import Workspace

    try:
        check_run(run, Workspace(run.path.parent.parent))
    except UserError as exc:
        status = run.read_status()
        if status is not None:
            status.state, status.ended = "failed", time.time()
            status.error = {"kind": "bad_input", "message": exc.message, "hint": exc.hint}
            run.write_status(status)
        raise


def accelerate_config(name: str) -> Path:
    """A shipped accelerate config by name (ddp, deepspeed-zero2, ...), or a file path; UserError when
    there is none, or when it uses DeepSpeed and DeepSpeed is not installed."""
    from tui_ft.errors import UserError
    from tui_ft.recipe import recipes_dir

    shipped = recipes_dir() / "accelerate" / f"{name}.yaml"
    path = Path(name).expanduser()
    if shipped.exists():
        path = shipped
    elif not path.is_file():
        names = sorted(p.stem for p in (recipes_dir() / "accelerate").glob("*.yaml"))
        raise UserError(
            f"no accelerate config {name!r}", field="launcher.config", hint=f"shipped: {', '.join(names)}"
        )
    if "DEEPSPEED" in path.read_text():
        import importlib.util

        if importlib.util.find_spec("deepspeed") is None:
            raise UserError(
                "this accelerate config uses DeepSpeed, which is not installed",
                field="launcher.config",
                hint="pip install 'tui-ft[deepspeed]' (needs a CUDA toolkit), or use config: ddp or fsdp",
            )
    return path


def resume_run(run: RunDir, *, detach: bool):
    """Restart a stopped, failed or crashed run from its last complete checkpoint (what
    `tui-ft resume` and the Runs screen's Resume do). Returns (process, checkpoint); UserError when the
    run is not in a state to resume or has no complete checkpoint."""
    from tui_ft.errors import UserError
    from tui_ft.runs.registry import last_complete_checkpoint, require_status

    status = require_status(run)  # exit 2 naming status.json when it cannot be read
    if status.state not in ("stopped", "failed", "crashed"):
        raise UserError(
            f"run {run.id} is {status.state}; only stopped, failed or crashed runs resume", field="RUN"
        )
    last = last_complete_checkpoint(run)
    if last is None:
        raise UserError(
            f"run {run.id} has no complete checkpoint to resume from",
            field="RUN",
            hint=f"start it again: tui-ft train {run.recipe_file}",
        )
    run.stop_file.unlink(missing_ok=True)
    status.state, status.error, status.ended = "starting", None, None
    run.write_status(status)
    return spawn_runner(run, detach=detach, resume=True), last
