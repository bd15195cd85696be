"""Runs that outlive the terminal: detach, SIGHUP, stop, resume, crash, queue, several processes.

Real runner processes on the demo model (CPU). Waits poll the run's status file with generous
deadlines; nothing here asserts on timings."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time

import pytest

from tests.conftest import run_tui_ft, train_losses, tui_ft_command, wait_for_status
from tui_ft.engine.runner import execute
from tui_ft.recipe import load_recipe
from tui_ft.runs.prepare import create_run
from tui_ft.runs.registry import find_run, refresh, request_stop
from tui_ft.runs.rundir import read_events

pytestmark = pytest.mark.slow

STEPS = 30
COMMON = [
    f"training.max_steps={STEPS}",
    "training.logging_steps=1",
    "training.save_steps=4",
    "training.save_total_limit=10",
    "data.eval_split=0",
    "training.eval_strategy=no",
    "training.per_device_train_batch_size=4",
]


def detach(env, *extra) -> str:
    sets = [a for s in [*COMMON, *extra] for a in ("--set", s)]
    proc = run_tui_ft(env, "train", "sft-lora", *sets, "--detach", "--json")
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)["id"]


@pytest.fixture(scope="module")
def uninterrupted(demo_ws):
    """The reference: the same recipe trained straight through, in this process."""
    loaded = load_recipe("sft-lora", COMMON, cache_dir=demo_ws.cache)
    run = create_run(loaded, demo_ws)
    assert execute(run.path) == 0
    return train_losses(run)


def test_detached_run_survives_its_shell_exiting_and_sighup(cli_env, demo_ws):
    sets = " ".join(f"--set {s}" for s in COMMON)
    command = " ".join(tui_ft_command())
    shell = subprocess.Popen(
        ["bash", "-c", f"{command} train sft-lora {sets} --detach --json > id.json; sleep 60"],
        cwd=demo_ws.root,
        env=cli_env,
        start_new_session=True,
    )
    id_file = demo_ws.root / "id.json"
    deadline = time.monotonic() + 60
    while not (id_file.exists() and id_file.read_text().strip()) and time.monotonic() < deadline:
        time.sleep(0.1)
    run = find_run(demo_ws, json.loads(id_file.read_text())["id"])
    wait_for_status(run, lambda s: s.state == "running")
    os.killpg(shell.pid, signal.SIGHUP)  # the terminal goes away: its shell and process group get SIGHUP
    shell.wait(timeout=60)  # the CLI may still be exiting when the hang-up comes (a loaded machine)
    status = wait_for_status(run, lambda s: s.is_final)
    assert status.state == "completed" and status.step == STEPS
    assert (run.final / "adapter_config.json").exists()


def test_stop_then_resume_matches_an_uninterrupted_run(cli_env, demo_ws, uninterrupted):
    run = find_run(demo_ws, detach(cli_env))
    wait_for_status(run, lambda s: s.state == "running" and s.step >= 3, poll=0.01)
    request_stop(run)  # what `tui-ft stop` does, without a process start between step and request
    status = wait_for_status(run, lambda s: s.is_final)
    assert status.state == "stopped"
    step = status.step
    assert 3 <= step < STEPS
    # a graceful stop leaves a complete checkpoint at the step it stopped on
    assert (run.checkpoints / f"checkpoint-{step}" / "trainer_state.json").exists()

    proc = run_tui_ft(cli_env, "resume", run.id, "--json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["state"] == "completed"
    losses = train_losses(run)
    assert sorted(losses) == list(range(1, STEPS + 1))
    assert refresh(run).step == STEPS
    for s in range(1, STEPS + 1):
        assert losses[s] == pytest.approx(uninterrupted[s], abs=1e-4), (s, losses[s], uninterrupted[s])


def test_kill_9_is_crashed_and_resume_completes(cli_env, demo_ws, uninterrupted):
    run = find_run(demo_ws, detach(cli_env))
    status = wait_for_status(run, lambda s: s.state == "running" and s.step >= 6)
    os.kill(status.pid, signal.SIGKILL)
    status = wait_for_status(run, lambda s: s.is_final, timeout=30)
    assert status.state == "crashed"
    assert "resume" in status.error["hint"]
    listed = json.loads(run_tui_ft(cli_env, "runs", "--json").stdout)
    assert next(r for r in listed if r["id"] == run.id)["state"] == "crashed"

    proc = run_tui_ft(cli_env, "resume", run.id, "--json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["state"] == "completed"
    losses = train_losses(run)
    assert sorted(losses) == list(range(1, STEPS + 1))
    assert losses[STEPS] == pytest.approx(uninterrupted[STEPS], abs=1e-4)


def test_two_runs_on_one_device_run_one_after_the_other(cli_env, demo_ws):
    first = find_run(demo_ws, detach(cli_env, "training.max_steps=100000"))  # runs until stopped
    wait_for_status(first, lambda s: s.state == "running")
    second = find_run(demo_ws, detach(cli_env))
    assert wait_for_status(second, lambda s: s.state == "queued" or s.is_final).state == "queued"
    assert refresh(first).state == "running"
    assert run_tui_ft(cli_env, "stop", first.id).returncode == 0
    a = wait_for_status(first, lambda s: s.is_final)
    b = wait_for_status(second, lambda s: s.is_final)
    assert a.state == "stopped" and b.state == "completed"
    events = read_events(second.events_file)[0]
    started = next(e["t"] for e in events if e["type"] == "start")
    assert started >= a.ended - 0.5, "the second run started before the first released the device"
    assert any(e["type"] == "state" and e["state"] == "queued" for e in events)


def test_stop_a_queued_run_leaves_the_queue(cli_env, demo_ws):
    first = find_run(demo_ws, detach(cli_env, "training.max_steps=100000"))
    wait_for_status(first, lambda s: s.state == "running")
    second = find_run(demo_ws, detach(cli_env))
    wait_for_status(second, lambda s: s.state == "queued")
    assert run_tui_ft(cli_env, "stop", second.id).returncode == 0
    assert wait_for_status(second, lambda s: s.is_final, timeout=30).state == "stopped"
    assert not (second.path / "checkpoints").exists(), "a run stopped in the queue never trained"
    assert run_tui_ft(cli_env, "stop", first.id, "--now").returncode == 0
    assert wait_for_status(first, lambda s: s.is_final, timeout=30).state == "stopped"


def test_ddp_two_processes_through_accelerate(cli_env, demo_ws):
    run = find_run(
        demo_ws,
        detach(cli_env, "launcher.type=accelerate", "launcher.num_processes=2", "launcher.config=ddp"),
    )
    status = wait_for_status(run, lambda s: s.is_final, timeout=600)
    assert status.state == "completed", (status.error, run.log_file.read_text()[-3000:])
    events = read_events(run.events_file)[0]
    config = next(e for e in events if e["type"] == "config")
    start = [e for e in events if e["type"] == "start"]
    assert len(start) == 1 and start[0]["world_size"] == 2, "rank 0 alone writes events"
    steps = [e["step"] for e in events if e["type"] == "train"]
    assert steps == list(range(1, STEPS + 1)), "one event per step: only rank 0 writes"
    assert config["method"] == "sft"
    assert status.world_size == 2
    assert (run.final / "adapter_config.json").exists()


def test_unknown_run_id_exits_2_with_closest(cli_env, demo_ws):
    run = find_run(demo_ws, "last")
    wrong = run.id[:-2] + "zz"
    proc = run_tui_ft(cli_env, "stop", wrong)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "closest:" in proc.stderr and run.id[:8] in proc.stderr


def _mount_tmpfs(path, size_bytes) -> bool:
    path.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size_bytes}", "tmpfs", str(path)], capture_output=True
    )
    return proc.returncode == 0


def test_disk_full_while_checkpointing_fails_cleanly(demo_ws, tmp_path):
    """A real small filesystem fills up during a checkpoint: `failed`, kind disk_full, the earlier
    checkpoint complete and resumable."""
    from tui_ft.runs.registry import last_complete_checkpoint, list_checkpoints
    from tui_ft.workspace import Workspace

    sets = [*COMMON, "training.save_steps=2", "training.max_steps=40"]
    probe = create_run(
        load_recipe("sft-lora", [*sets, "training.max_steps=2"], cache_dir=demo_ws.cache), demo_ws
    )
    assert execute(probe.path) == 0
    one = sum(f.stat().st_size for f in (probe.checkpoints / "checkpoint-2").iterdir())
    rest = sum(  # the run's other files: status, events, log, the memory-mapped training data
        f.stat().st_size
        for f in probe.path.rglob("*")
        if f.is_file() and not f.is_relative_to(probe.checkpoints) and not f.is_relative_to(probe.final)
    )

    ws = Workspace(tmp_path / "home")
    ws.root.mkdir()
    for name in ("models", "data", "cache"):
        (ws.root / name).symlink_to(getattr(demo_ws, name))
    if not _mount_tmpfs(ws.runs, rest + int(one * 1.6) + 128 * 1024):
        pytest.skip("cannot mount a small tmpfs here (needs root)")
    try:
        run = create_run(load_recipe("sft-lora", sets, cache_dir=ws.cache), ws)
        code = execute(run.path)
        status = run.read_status()
        assert code == 1 and status.state == "failed", status
        assert status.error["kind"] == "disk_full", status.error
        assert "space" in status.error["message"].lower() or "disk" in status.error["message"].lower()
        assert all(c.complete for c in list_checkpoints(run))
        last = last_complete_checkpoint(run)
        assert last is not None and last.step == 2
    finally:
        subprocess.run(["umount", "-l", str(ws.runs)], check=False)
