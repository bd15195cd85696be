"""The runs in a workspace: finding by id, crash detection, stopping, checkpoints (the run list is
runs/listing.py).

Cheap (reads small files, no torch), so the UI can call it on every refresh.
"""

from __future__ import annotations

import contextlib
import difflib
import json
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path

from tui_ft.errors import NotFoundError, UserError
from tui_ft.modelref import run_name
from tui_ft.runs.rundir import RunDir, Status
from tui_ft.workspace import Workspace

ACTIVE_STATES = ("queued", "starting", "running", "stopping")


def pid_alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie (exited, not yet reaped by its parent) is not running
        with open(f"/proc/{pid}/stat") as fh:
            if fh.read().rsplit(")", 1)[1].split()[0] == "Z":
                return False
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            cmdline = fh.read()
    except (OSError, IndexError):
        return True  # no /proc (macOS): trust kill(0)
    # The pid may have been reused by an unrelated process since the runner died.
    return b"tui_ft" in cmdline or b"tui-ft" in cmdline or b"accelerate" in cmdline


def log_tail(run: RunDir, lines: int = 20) -> list[str]:
    """The last lines of the run's output.log (reads at most the last 64 KiB)."""
    try:
        with open(run.log_file, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - 65536))
            data = fh.read()
    except OSError:
        return []
    return data.decode("utf-8", "replace").splitlines()[-lines:]


def refresh(run: RunDir) -> Status | None:
    """The run's status, marking it `crashed` when its process is gone while its state is not final;
    None when its status.json is missing or unreadable."""
    status = run.read_status()
    return None if status is None else _check_alive(run, status)


def require_status(run: RunDir) -> Status:
    """The run's status as `refresh` gives it, for a command that takes a run: a missing, unreadable or
    ill-typed status.json is a rundir.StatusError (exit 2) naming the file and what is wrong with it."""
    return _check_alive(run, run.load_status())


def _check_alive(run: RunDir, status: Status) -> Status:
    if status.is_final or status.state not in ACTIVE_STATES:
        return status
    if pid_alive(status.pid):
        return status
    if status.pid is None and time.time() - status.created < 30:
        return status  # just created; its runner is being started
    # Re-read: the runner may have written its final state between our read and the liveness check.
    again = run.read_status()
    if again is not None and (again.is_final or pid_alive(again.pid)):
        return again
    tail = [line for line in log_tail(run, 40) if line.strip()]
    last = tail[-1] if tail else "no output"
    status.state = "crashed"
    status.ended = time.time()
    status.error = {
        "kind": "crashed",
        "message": f"the runner (pid {status.pid}) ended without recording an outcome; last output: {last}",
        "hint": f"see {run.log_file}; `tui-ft resume {run.id}` continues from the last checkpoint",
        "log_tail": tail[-10:],
    }
    run.write_status(status)
    return status


def find_run(ws: Workspace, ref: str) -> RunDir:
    """A run by id, a unique prefix of one, a recipe name (its newest run), or `last`; exit 2 with the
    closest ids otherwise."""
    ids = sorted(p.name for p in ws.runs.iterdir() if p.is_dir()) if ws.runs.is_dir() else []
    if ref == "last" and ids:
        return RunDir(ws.runs / ids[-1])
    if ref in ids:
        return RunDir(ws.runs / ref)
    matches = [i for i in ids if i.startswith(ref) or i.endswith(ref)]
    if len(matches) == 1:
        return RunDir(ws.runs / matches[0])
    named = [i for i in matches if run_name(i) == ref]
    if named:  # a recipe name: its newest run, as a model reference `sft-lora` means its newest final
        return RunDir(ws.runs / named[-1])
    if len(matches) > 1:
        raise UserError(f"{ref!r} matches several runs: {', '.join(matches[-5:])}", field="RUN")
    near = difflib.get_close_matches(ref, ids, n=3, cutoff=0.5)
    hint = f"closest: {', '.join(near)}" if near else ("`tui-ft runs` lists them" if ids else "no runs yet")
    raise NotFoundError(f"no run {ref!r}", field="RUN", hint=hint)


# ------------------------------------------------------------------------------------------------
# checkpoints


@dataclass
class Checkpoint:
    step: int
    path: Path
    complete: bool
    metrics: dict

    def to_json(self) -> dict:
        return {"step": self.step, "path": str(self.path), "complete": self.complete, "metrics": self.metrics}


def checkpoint_complete(path: Path) -> tuple[bool, dict]:
    """A checkpoint is complete when its trainer_state.json (written last) parses and weights exist."""
    try:
        state = json.loads((path / "trainer_state.json").read_text())
    except (OSError, ValueError):
        return False, {}
    has_weights = any(path.glob("*.safetensors")) or any(path.glob("*.bin"))
    return has_weights, state


def list_checkpoints(run: RunDir) -> list[Checkpoint]:
    from tui_ft.modelref import checkpoint_dirs

    found = []
    for path in checkpoint_dirs(run.path):
        step = int(path.name.split("-")[1])
        complete, state = checkpoint_complete(path)
        metrics: dict = {}
        for entry in state.get("log_history", []):
            if entry.get("step") == step:
                metrics.update(
                    {k: v for k, v in entry.items() if k in ("loss", "eval_loss", "learning_rate", "epoch")}
                )
        found.append(Checkpoint(step, path, complete, metrics))
    return found


def last_complete_checkpoint(run: RunDir) -> Checkpoint | None:
    done = [c for c in list_checkpoints(run) if c.complete]
    return done[-1] if done else None


# ------------------------------------------------------------------------------------------------
# stopping


def request_stop(run: RunDir, *, now: bool = False) -> Status:
    """Ask the runner to stop: gracefully (checkpoint after the current step), or at once.

    A second graceful request is treated as `now`. A queued run simply leaves the queue.
    """
    status = require_status(run)
    if status.is_final:
        raise UserError(f"run {run.id} is already {status.state}", field="RUN")
    already = run.stop_file.exists()
    run.stop_file.write_text("now" if (now or already) else "graceful")
    if status.pid and pid_alive(status.pid):
        _signal_group(status.pid, signal.SIGTERM)
    return status


def _signal_group(pid: int, sig: int) -> None:
    """Signal the runner's process group (it leads its own session when detached, and under
    `accelerate launch` the workers are in that group too); fall back to the process alone."""
    try:
        pgid = os.getpgid(pid)
        if pgid == pid:
            os.killpg(pgid, sig)
            return
    except (ProcessLookupError, PermissionError):
        pass
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)


def wait_until_final(run: RunDir, timeout: float) -> Status | None:
    deadline = time.monotonic() + timeout
    status = refresh(run)
    while status is not None and not status.is_final and time.monotonic() < deadline:
        time.sleep(0.1)
        status = refresh(run)
    return status


def kill_now(run: RunDir) -> None:
    status = run.read_status()
    if status and status.pid and pid_alive(status.pid):
        _signal_group(status.pid, signal.SIGKILL)
