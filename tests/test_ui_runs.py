"""The Runs screen: the run list and the dashboard, on run directories recorded with the runner's own
writers (`EventWriter`, status.json), on a run a thread keeps appending to, and on real detached demo runs.

Snapshots (80x24 and 160x48, fixed times, a fixed clock, the workspace in the test's home folder and the
no-GPU header line) of each state: finished, running, crashed, failed out of memory, failed before its
first step; and a GRPO run's six charts. Regenerate after a deliberate change with
`pytest tests/test_ui_runs.py --snapshot-update`, then look at the SVGs.
"""

from __future__ import annotations

import json
import math
import subprocess
import threading
import time
from dataclasses import asdict

import pytest
from textual.widgets import DataTable, Input, Log, Static

from tests.conftest import NO_GPU, tui_ft_command, until, workspace_in
from tui_ft.engine.errors import OOM_HINT
from tui_ft.runs.rundir import EventWriter, RunDir, Status, write_json_atomic
from tui_ft.ui.app import TuiFtApp, with_shell
from tui_ft.ui.screens.runs import RunsScreen
from tui_ft.ui.widgets.charts import MetricChart
from tui_ft.workspace import Workspace

pytestmark = pytest.mark.anyio
SIZE = (80, 24)
T0 = 1795300000.0  # a fixed start time for recorded runs


# ------------------------------------------------------------------------------------------------
# recorded run directories


def train_fields(step: int, method: str = "sft") -> dict:
    loss = 1.1 + 2.6 * math.exp(-step / 9) + 0.04 * math.sin(step)
    fields = {
        "loss": loss,
        "grad_norm": 0.4 + 3.5 * math.exp(-step / 7),
        "learning_rate": 3e-3 * min(1.0, step / 4) * (0.5 + 0.5 * math.cos(math.pi * step / 60)),
        "epoch": step / 45,
        "num_tokens": 640.0 * step,
        "tokens_per_s": 1000.0 + 60 * math.sin(step / 3),
        "mean_token_accuracy": 0.4 + 0.3 * (1 - math.exp(-step / 12)),
    }
    if method == "dpo":
        fields["loss"] = 0.69 * math.exp(-step / 6)
        fields["rewards/chosen"] = 0.02 * step
        fields["rewards/rejected"] = -0.2 * step
        fields["rewards/margins"] = 0.22 * step
        fields["rewards/accuracies"] = min(1.0, step / 10)
    return fields


def system_fields(step: int, t: float, gpu: bool) -> dict:
    fields = {
        "cpu_percent": 60 + 30 * math.sin(t / 7),
        "cpu_count": 16,
        "process_cpu_percent": 95.0 + 5 * math.cos(t / 5),
        "ram_used_mb": 23000 + 4 * step,
        "ram_total_mb": 64000.0,
        "process_rss_mb": 5120 + 2 * step,
        "load_1m": 1.9,
    }
    if gpu:
        fields["gpus"] = [
            {
                "index": 0,
                "name": "NVIDIA A100-SXM4-80GB",
                "memory_used_mb": 30000 + 600 * min(step, 50),
                "memory_total_mb": 81920.0,
                "utilization_pct": 90 + 7 * math.sin(step),
                "temperature_c": 55 + 0.2 * step,
                "power_w": 280 + 30 * math.sin(step / 2),
            }
        ]
    return fields


def record_run(
    ws: Workspace,
    run_id: str,
    *,
    method: str = "sft",
    state: str = "completed",
    steps: int = 40,
    max_steps: int = 40,
    pid: int | None = None,
    error: dict | None = None,
    gpu: bool = False,
    checkpoints: tuple[int, ...] = (),
    watchdog: bool = False,
) -> RunDir:
    """A run directory as the runner leaves it: events every 2 steps (1 s apart), a system sample
    every 5 s, evaluations at steps 20 and 40, status.json, output.log and checkpoint folders."""
    run = RunDir(ws.runs / run_id)
    run.path.mkdir(parents=True)
    t = T0
    with EventWriter(run.events_file) as events:
        events.write("state", t=t, step=0, state="starting", pid=pid or 4242, resume=False)
        events.write("message", t=t + 1, step=0, text="data: 400 rows of messages from chat.jsonl")
        events.write("config", t=t + 2, step=0, method=method, adapter="lora", max_steps=max_steps)
        events.write("start", t=t + 3, step=0, max_steps=max_steps, num_train_epochs=1, world_size=1)
        t = T0 + 3
        if not gpu:
            events.write(
                "system",
                t=t,
                step=0,
                **system_fields(0, t, False),
                gpu_error="no GPU: no NVIDIA driver found (NVML library not loadable)",
            )
        for step in range(2, steps + 1, 2):
            t += 1.0
            events.write("train", t=t, step=step, **train_fields(step, method))
            if step % 10 == 0:
                events.write("system", t=t, step=step, **system_fields(step, t, gpu))
            if step % 20 == 0:
                events.write(
                    "eval", t=t + 0.2, step=step, eval_loss=train_fields(step, method)["loss"] + 0.07
                )
            if step in checkpoints:
                events.write(
                    "checkpoint", t=t + 0.3, step=step, path=str(run.checkpoints / f"checkpoint-{step}")
                )
            if watchdog and step == 10:
                events.write(
                    "watchdog",
                    t=t,
                    step=step,
                    problem="explode",
                    action="warn",
                    metric="loss",
                    value=41.0,
                    median=2.1,
                    threshold=21.0,
                    text="loss 41 is 20x its recent median 2.1",
                )
        if state == "completed":
            events.write("summary", t=t + 1, step=steps, train_runtime=steps / 2.0, train_loss=1.5)
            events.write("state", t=t + 1, step=steps, state="completed")
    for step in checkpoints:
        folder = run.checkpoints / f"checkpoint-{step}"
        folder.mkdir(parents=True)
        (folder / "adapter_model.safetensors").write_bytes(b"\0" * 64)
        history = [{"step": step, "loss": train_fields(step)["loss"]}]
        (folder / "trainer_state.json").write_text(json.dumps({"global_step": step, "log_history": history}))
    run.log_file.write_text("".join(f"[runner] step {s}: training\n" for s in range(2, steps + 1, 2)))
    last = train_fields(steps, method) if steps else {}
    status = Status(
        id=run_id,
        name=run_id.split("-", 2)[-1],
        method=method,
        state=state,
        pid=pid or 4242,
        step=steps,
        max_steps=max_steps,
        loss=last.get("loss"),
        created=T0 - 5,
        started=T0,
        updated=t,
        ended=t + 1 if state not in ("running", "starting") else None,
        error=error,
        world_size=1,
        device="cuda" if gpu else "cpu",
        model="demo-tiny",
        adapter="lora",
    )
    write_json_atomic(run.status_file, asdict(status))  # as the runner writes it, with fixed times
    return run


OOM_ERROR = {
    "kind": "oom",
    "message": "Out of GPU memory (tried to allocate 2.00 GiB).",
    "hint": OOM_HINT,
}
CRASH_ERROR = {
    "kind": "crashed",
    "message": "the runner (pid 4242) ended without recording an outcome; last output: Killed",
    "hint": "see output.log; `tui-ft resume 20261122-090000-sft-lora` continues from the last checkpoint",
}


# ------------------------------------------------------------------------------------------------
# helpers


class RecordingApp(TuiFtApp):
    """The app with the GPU line fixed to the no-GPU answer and the bell counted."""

    bells = 0

    def _sample_gpu(self) -> None:
        self.post_message(self.GpuSampled(NO_GPU))

    def bell(self) -> None:
        self.bells += 1


def chart(app, chart_id: str) -> MetricChart:
    return app.screen.query_one(f"#{chart_id}", MetricChart)


def text_of(app, selector: str) -> str:
    return str(app.screen.query_one(selector, Static).render())


def notifications(app) -> list:
    return list(app._notifications)


@pytest.fixture
def ws(tmp_path) -> Workspace:
    return Workspace(tmp_path / "home").ensure()


# ------------------------------------------------------------------------------------------------
# Pilot tests on recorded runs


async def test_finished_run_dashboard_shows_full_history(ws):
    run = record_run(ws, "20261122-080000-sft-lora", gpu=True, checkpoints=(20, 40))
    app = RecordingApp(ws, start_mode="runs", start_run=run.id)
    async with app.run_test(size=(160, 48)) as pilot:
        screen = app.screen
        await until(pilot, lambda: screen.refreshes >= 1)
        await pilot.pause(0.2)
        assert "completed" in text_of(app, "#dash-title")
        assert "40/40" in text_of(app, "#dash-progress")
        loss = chart(app, "chart-loss")
        assert len(loss.points["loss"]) == 20  # every logged step, none dropped
        assert loss.last_value("loss") == pytest.approx(train_fields(40)["loss"])
        assert loss.points["eval_loss"].steps == (20, 40)
        for chart_id in ("chart-lr", "chart-grad", "chart-tokens"):
            assert chart(app, chart_id).has_data()
        assert not screen.query("#chart-margins")  # an SFT run has no reward charts
        # the GPU history from the runner's system samples, per GPU
        assert "NVIDIA A100" in text_of(app, "#dash-gpu-note")
        memory = chart(app, "sys-gpu0-memory")
        assert memory.last_value("gpu0/memory_total_mb") == 81920.0
        assert chart(app, "sys-gpu0-power").has_data() and chart(app, "sys-cpu").has_data()
        table = screen.query_one("#dash-checkpoints", DataTable)
        assert table.row_count == 2
        assert screen.query_one("#dash-log", Log).line_count == 20
        assert app.bells == 0 and not notifications(app)  # opening a finished run is no alert


async def test_run_list_filters_and_opens_a_run(ws):
    record_run(ws, "20261122-080000-sft-lora")
    record_run(ws, "20261122-081000-dpo-lora", method="dpo", steps=30, max_steps=30)
    record_run(ws, "20261122-082000-sft-lora", state="failed", steps=12, error=OOM_ERROR)
    app = RecordingApp(ws, start_mode="runs")
    async with app.run_test(size=SIZE) as pilot:
        screen = app.screen
        table = screen.query_one("#runs-table", DataTable)
        await until(pilot, lambda: table.row_count == 3)
        assert [str(k.value) for k in table.rows] == [
            "20261122-082000-sft-lora",
            "20261122-081000-dpo-lora",
            "20261122-080000-sft-lora",
        ]
        await pilot.press("f", *"oom")
        await pilot.pause()
        assert table.row_count == 1
        assert "1 of 3" in text_of(app, "#runs-count")
        screen.query_one("#runs-filter", Input).value = "dpo"
        await pilot.pause()
        await pilot.press("enter", "enter")  # leave the filter, open the run
        await until(pilot, lambda: screen.refreshes >= 1)
        assert screen.run_id == "20261122-081000-dpo-lora"
        await pilot.press("escape")
        await pilot.pause()
        assert not screen.dashboard_open and screen.history is None


async def test_dpo_run_shows_its_reward_charts(ws):
    run = record_run(ws, "20261122-081000-dpo-lora", method="dpo", steps=30, max_steps=30)
    app = RecordingApp(ws, start_mode="runs", start_run=run.id)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: app.screen.refreshes >= 1)
        await pilot.pause(0.2)
        margins = chart(app, "chart-margins")
        assert margins.last_value("rewards/margins") == pytest.approx(0.22 * 30)
        assert chart(app, "chart-accuracies").last_value("rewards/accuracies") == 1.0
        assert not app.screen.query("#chart-kl") and not app.screen.query("#chart-reward")
        ids = [c.id for c in app.screen.query_one("#dash-charts").charts]
        assert ids[:1] == ["chart-loss"] and ids.index("chart-margins") < ids.index("chart-accuracies")


async def test_running_run_follows_appended_events(ws, stand_in_runners):
    proc = stand_in_runners()
    run = record_run(ws, "20261122-090000-sft-lora", state="running", steps=20, max_steps=200, pid=proc.pid)
    done = threading.Event()

    def append() -> None:  # the runner's writer, appending while the dashboard refreshes
        with EventWriter(run.events_file) as events:
            t = time.time()
            for step in range(22, 101, 2):
                events.write("train", step=step, **train_fields(step))
                if step % 10 == 0:
                    events.write("system", step=step, **system_fields(step, t, False))
                time.sleep(0.02)
        done.set()

    app = RecordingApp(ws, start_mode="runs", start_run=run.id)
    async with app.run_test(size=SIZE) as pilot:
        screen = app.screen
        await until(pilot, lambda: screen.refreshes >= 1)
        loss = chart(app, "chart-loss")
        assert loss.points["loss"].steps[-1] == 20
        cpu_before = len(chart(app, "sys-cpu").points["system/cpu_percent"])
        writer = threading.Thread(target=append)
        writer.start()
        await until(pilot, done.is_set)
        await until(pilot, lambda: loss.points["loss"].steps[-1] == 100)
        writer.join()
        assert len(loss.points["loss"]) == 50
        assert loss.last_value("loss") == pytest.approx(train_fields(100)["loss"])
        assert len(chart(app, "sys-cpu").points["system/cpu_percent"]) == cpu_before + 8
        assert "running" in text_of(app, "#dash-title")
        # each byte of events.jsonl read once, however many refreshes it took
        history = screen.history
        assert history.refreshes > 1
        assert history.bytes_read_total == run.events_file.stat().st_size


async def test_crash_raises_an_alert_with_the_bell(ws, stand_in_runners):
    proc = stand_in_runners()
    run = record_run(ws, "20261122-090000-sft-lora", state="running", steps=20, max_steps=200, pid=proc.pid)
    app = RecordingApp(ws, start_mode="runs", start_run=run.id)
    async with app.run_test(size=SIZE) as pilot:
        screen = app.screen
        await until(pilot, lambda: screen.refreshes >= 1)
        assert "running" in text_of(app, "#dash-title") and app.bells == 0
        proc.kill()  # the runner dies without writing an outcome
        proc.wait()
        await until(pilot, lambda: "crashed" in text_of(app, "#dash-title"))
        await until(pilot, lambda: app.bells == 1)
        alert = [n for n in notifications(app) if "crashed" in n.message]
        assert alert and alert[0].severity == "error"
        assert "ended without recording an outcome" in text_of(app, "#dash-alert")


async def test_failed_out_of_memory_shows_the_error_and_hint(ws):
    run = record_run(ws, "20261122-082000-sft-lora", state="failed", steps=12, error=OOM_ERROR)
    app = RecordingApp(ws, start_mode="runs", start_run=run.id)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: app.screen.refreshes >= 1)
        assert "failed (oom)" in text_of(app, "#dash-title")
        alert = text_of(app, "#dash-alert")
        assert "Out of GPU memory" in alert
        assert "per_device_train_batch_size" in alert  # the hint


async def test_watchdog_event_raises_a_notification(ws, stand_in_runners):
    proc = stand_in_runners()
    run = record_run(
        ws, "20261122-090000-sft-lora", state="running", steps=20, max_steps=200, pid=proc.pid, watchdog=True
    )
    app = RecordingApp(ws, start_mode="runs", start_run=run.id)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: app.screen.refreshes >= 1)
        assert "watchdog" in text_of(app, "#dash-alert")  # the earlier alarm is shown, not rung
        assert app.bells == 0
        with EventWriter(run.events_file) as events:
            events.write(
                "watchdog",
                step=22,
                problem="nan",
                action="stop",
                metric="loss",
                value=float("nan"),
                median=1.9,
                threshold=None,
                text="loss is NaN at step 22",
            )
        await until(pilot, lambda: any("NaN" in n.message for n in notifications(app)))
        alarm = [n for n in notifications(app) if "NaN" in n.message]
        assert alarm[0].severity == "error" and alarm[0].title == "Watchdog"
        assert app.bells >= 1  # rung for the new alarm (a loaded machine may ring for the run's end too)


async def test_overlay_draws_the_loss_of_several_runs(ws):
    a = record_run(ws, "20261122-080000-sft-lora")
    b = record_run(ws, "20261122-081000-dpo-lora", method="dpo", steps=30, max_steps=30)
    app = RecordingApp(ws, start_mode="runs", start_run=a.id)
    async with app.run_test(size=SIZE) as pilot:
        screen = app.screen
        await until(pilot, lambda: screen.refreshes >= 1)
        await screen.overlay([a.id, b.id])
        compare = chart(app, "dash-compare")
        await until(pilot, lambda: compare.has_data())
        assert compare.last_value(f"{a.id}/loss") == pytest.approx(train_fields(40)["loss"])
        assert compare.last_value(f"{b.id}/loss") == pytest.approx(train_fields(30, "dpo")["loss"])
        assert compare.points[f"{a.id}/eval_loss"].steps == (20, 40)


async def test_open_in_chat_passes_the_model_to_chat_mode(ws):
    run = record_run(ws, "20261122-080000-sft-lora", checkpoints=(20,))
    (run.checkpoints / "checkpoint-20" / "adapter_config.json").write_text("{}")
    app = RecordingApp(ws, start_mode="runs", start_run=run.id)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: app.screen.refreshes >= 1)
        await pilot.press("c")
        await pilot.pause()
        assert app.current_mode == "chat"
        # no final model yet: the newest checkpoint
        assert app.screen.models[0] == f"{run.id}:last"


# ------------------------------------------------------------------------------------------------
# a read that fails is told, and the next one comes all the same


async def test_run_list_keeps_refreshing_after_a_read_raised(ws, monkeypatch):
    from tui_ft.ui.widgets import run_list

    record_run(ws, "20261122-080000-sft-lora")
    rows = run_list.RunsIndex.rows
    calls = []

    def rows_failing_once(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == 1:
            raise TypeError("'<' not supported between instances of 'str' and 'int'")
        return rows(self, *args, **kwargs)

    monkeypatch.setattr(run_list.RunsIndex, "rows", rows_failing_once)
    monkeypatch.setattr(run_list, "LIST_POLL_S", 0.1)
    app = RecordingApp(ws, start_mode="runs")
    async with app.run_test(size=SIZE) as pilot:
        table = app.screen.query_one("#runs-table", DataTable)
        await until(pilot, lambda: any("run list" in str(n.title) for n in notifications(app)))
        told = [n for n in notifications(app) if "run list" in str(n.title)][0]
        assert told.severity == "error" and "TypeError: '<' not supported" in told.message
        record_run(ws, "20261122-090000-dpo-lora", method="dpo")  # a run added after the failure
        await until(pilot, lambda: table.row_count == 2)
        assert [str(k.value) for k in table.rows] == ["20261122-090000-dpo-lora", "20261122-080000-sft-lora"]


async def test_a_run_with_a_bad_status_shows_as_unreadable_and_later_runs_still_show(ws, monkeypatch):
    """The bug: one status.json with "step": "5" stopped the list refreshing for good."""
    import json

    from tui_ft.ui.widgets import run_list

    bad = record_run(ws, "20261122-080000-sft-lora")
    status = json.loads(bad.status_file.read_text())
    status["step"] = "5"
    bad.status_file.write_text(json.dumps(status))
    monkeypatch.setattr(run_list, "LIST_POLL_S", 0.1)
    app = RecordingApp(ws, start_mode="runs")
    async with app.run_test(size=SIZE) as pilot:
        table = app.screen.query_one("#runs-table", DataTable)
        await until(pilot, lambda: table.row_count == 1)
        assert "unreadable" in str(table.get_row_at(0)[1])
        record_run(ws, "20261122-090000-dpo-lora", method="dpo")
        await until(pilot, lambda: table.row_count == 2)
        assert [str(k.value) for k in table.rows] == ["20261122-090000-dpo-lora", "20261122-080000-sft-lora"]
        assert not [n for n in notifications(app) if n.severity == "error"]
        await pilot.press("down", "enter")  # open the unreadable run: the dashboard says why
        await until(pilot, lambda: "status.json" in text_of(app, "#dash-title") + text_of(app, "#dash-alert"))


async def test_dashboard_keeps_refreshing_after_a_refresh_raised(ws, monkeypatch):
    from tui_ft.ui.widgets import run_dashboard

    run = record_run(ws, "20261122-080000-sft-lora")
    refresh = run_dashboard.RunHistory.refresh
    calls = []

    def refresh_failing_once(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == 1:
            raise TypeError("step must be an int")
        return refresh(self, *args, **kwargs)

    monkeypatch.setattr(run_dashboard.RunHistory, "refresh", refresh_failing_once)
    monkeypatch.setattr(run_dashboard, "IDLE_RUN_POLL_S", 0.1)
    app = RecordingApp(ws, start_mode="runs", start_run=run.id)
    async with app.run_test(size=SIZE) as pilot:
        screen = app.screen
        await until(pilot, lambda: screen.refreshes >= 1)
        assert "completed" in text_of(app, "#dash-title")
        assert chart(app, "chart-loss").has_data()
        told = [n for n in notifications(app) if "Reading the run failed" in str(n.title)]
        assert told and told[0].message.startswith("TypeError: step must be an int")


# ------------------------------------------------------------------------------------------------
# a real detached demo run


def _train(cli_env, *overrides: str) -> str:
    args = [*tui_ft_command(), "train", "sft-lora", "--detach", "--json"]
    for item in overrides:
        args += ["--set", item]
    out = subprocess.run(args, env=cli_env, capture_output=True, text=True, timeout=120, check=True)
    return json.loads(out.stdout)["id"]


async def test_real_demo_run_completes_and_a_long_one_stops(demo_ws, cli_env, tmp_path):
    short = _train(cli_env, "training.max_steps=6", "training.save_steps=6", "training.eval_steps=6")
    app = RecordingApp(demo_ws, start_mode="runs", start_run=short)
    long_run = None
    try:
        async with app.run_test(size=SIZE) as pilot:
            screen = app.screen
            await until(
                pilot,
                lambda: (
                    screen.snapshot is not None
                    and screen.snapshot.status is not None
                    and screen.snapshot.status.state == "completed"
                ),
                timeout=120,
            )
            await until(pilot, lambda: app.bells >= 1)
            done = [n for n in notifications(app) if "completed" in n.message]
            assert done and short in done[0].message
            final = RunDir(demo_ws.runs / short).read_status()
            await until(pilot, lambda: chart(app, "chart-loss").last_value("loss") is not None)
            assert chart(app, "chart-loss").last_value("loss") == pytest.approx(final.loss)
            # export from the dashboard: the adapter is written where the dialog said
            out = tmp_path / "exported"
            await pilot.press("x")
            await pilot.pause()
            app.screen.query_one("#export-dir", Input).value = str(out)
            await pilot.press("enter")
            await until(pilot, lambda: any("exported" in n.message for n in notifications(app)))
            assert (out / "adapter_model.safetensors").exists()

            long_run = _train(cli_env, "training.max_steps=5000", "training.eval_strategy=no")
            screen.show_run(long_run)
            await until(
                pilot,
                lambda: (
                    screen.run_id == long_run
                    and screen.snapshot is not None
                    and screen.snapshot.status is not None
                    and screen.snapshot.status.state == "running"
                    and screen.snapshot.progress.step >= 2
                ),
                timeout=120,
            )
            await pilot.press("s")
            await until(pilot, lambda: screen.snapshot.status.state == "stopped", timeout=120)
            # the dashboard's alert is a message of its own, handled after the state it tells is shown
            await until(pilot, lambda: any("stopped" in n.message for n in notifications(app)))
            # resume from the dashboard: it continues after the stop's checkpoint, then stop it again
            stopped_at = screen.snapshot.status.step
            await pilot.press("r")
            await until(pilot, lambda: any("resuming from step" in n.message for n in notifications(app)))
            await until(
                pilot,
                lambda: (
                    screen.snapshot.status.state == "running" and screen.snapshot.progress.step > stopped_at
                ),
                timeout=120,
            )
            await pilot.press("s")
            await until(pilot, lambda: screen.snapshot.status.state == "stopped", timeout=120)
    finally:
        for run_id in (short, long_run):
            if run_id is None:
                continue
            status = RunDir(demo_ws.runs / run_id).read_status()
            if status is not None and status.pid and status.state not in ("completed", "stopped", "failed"):
                subprocess.run([*tui_ft_command(), "stop", run_id, "--now"], env=cli_env, timeout=60)
    status = RunDir(demo_ws.runs / long_run).read_status()
    assert status.state == "stopped" and status.last_checkpoint
    from tui_ft.runs.registry import pid_alive

    deadline = time.monotonic() + 30  # the runner exits just after writing its final status
    while pid_alive(status.pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not pid_alive(status.pid), "a runner is left running"


# ------------------------------------------------------------------------------------------------
# snapshots


@pytest.fixture
def snapshot_ws(home) -> Workspace:
    """A fresh workspace in the test's home folder, so the header shows it as ~/... on every machine."""
    return Workspace(workspace_in(home)).ensure()


class FixedClockRuns(RunsScreen):
    def now(self) -> float:
        return T0 + 17.0  # 2 s after the last recorded event of a 24-step run


class SnapshotApp(RecordingApp):
    MODES = {**TuiFtApp.MODES, "runs": lambda: with_shell(FixedClockRuns)()}


async def _settle_on_dashboard(pilot) -> None:
    """Wait until the run is read, the header's GPU line drawn and every chart shows its data."""
    app = pilot.app
    await until(pilot, lambda: "checking" not in app.gpu_summary and app.screen.refreshes >= 1)
    await pilot.pause(0.2)
    shown = lambda: [c for c in app.screen.query(MetricChart) if c.has_data() and c.plot_on_screen]  # noqa: E731
    await until(pilot, lambda: shown() and all(c.up_to_date for c in shown()))
    await pilot.pause()


def _snap(snap_compare, ws: Workspace, run_id: str, size: tuple[int, int] = SIZE, press=()) -> bool:
    app = SnapshotApp(ws, start_mode="runs", start_run=run_id)
    return snap_compare(app, terminal_size=size, run_before=_settle_on_dashboard, press=list(press))


SIZES = pytest.mark.parametrize("size", [(80, 24), (160, 48)], ids=lambda s: f"{s[0]}x{s[1]}")


@SIZES
def test_snapshot_finished(snap_compare, snapshot_ws, size):
    record_run(snapshot_ws, "20261122-080000-sft-lora", checkpoints=(20, 40))
    assert _snap(snap_compare, snapshot_ws, "20261122-080000-sft-lora", size)


@SIZES
def test_snapshot_running(snap_compare, snapshot_ws, stand_in_runners, size):
    proc = stand_in_runners()
    record_run(snapshot_ws, "20261122-090000-sft-lora", state="running", steps=24, max_steps=60, pid=proc.pid)
    assert _snap(snap_compare, snapshot_ws, "20261122-090000-sft-lora", size)


@SIZES
def test_snapshot_crashed(snap_compare, snapshot_ws, size):
    record_run(
        snapshot_ws, "20261122-090000-sft-lora", state="crashed", steps=24, max_steps=60, error=CRASH_ERROR
    )
    assert _snap(snap_compare, snapshot_ws, "20261122-090000-sft-lora", size)


@SIZES
def test_snapshot_failed_out_of_memory(snap_compare, snapshot_ws, size):
    record_run(
        snapshot_ws, "20261122-082000-sft-lora", state="failed", steps=12, max_steps=40, error=OOM_ERROR
    )
    assert _snap(snap_compare, snapshot_ws, "20261122-082000-sft-lora", size)


@SIZES
def test_snapshot_failed_before_its_first_step(snap_compare, snapshot_ws, size):
    """The Charts tab of a run with no logged step: why, its last status and the end of its output."""
    run = record_run(
        snapshot_ws, "20261122-082000-sft-lora", state="failed", steps=0, max_steps=40, error=OOM_ERROR
    )
    run.log_file.write_text("loading demo-tiny\ntorch.OutOfMemoryError: CUDA out of memory\n")
    app = SnapshotApp(snapshot_ws, start_mode="runs", start_run=run.id)

    async def settle(pilot) -> None:
        await until(pilot, lambda: "checking" not in app.gpu_summary and app.screen.refreshes >= 1)
        await pilot.pause(0.2)

    assert snap_compare(app, terminal_size=size, run_before=settle)


@SIZES
def test_snapshot_grpo_charts(snap_compare, snapshot_ws, size):
    """Six charts: at 80x24 the last row is out of view (`n` in the footer); `n` brings it in."""
    run = record_run(snapshot_ws, "20261122-080000-grpo-lora", method="grpo")
    with EventWriter(run.events_file) as events:
        for step in range(2, 41, 2):
            events.write(
                "train",
                t=T0 + 3 + step / 2,
                step=step,
                reward=0.2 + 0.5 * (1 - math.exp(-step / 10)),
                kl=0.01 * step,
            )
    assert _snap(snap_compare, snapshot_ws, run.id, size, press=["n"] if size == (80, 24) else [])


async def test_sweep_view_ranks_the_trials_and_overlays_their_losses(ws):
    """A run of a sweep: `w` shows the sweep's trials ranked by its metric; `o` draws their losses."""
    import json

    from tui_ft.runs.sweep import Sweep, SweepDir, Trial, sweeps_dir

    sweep_id = "20261122-075959-sweep-sft-lora"
    trials = []
    for n, (run_id, lr, value) in enumerate(
        [("20261122-080000-sft-lora", "1e-3", 2.5), ("20261122-081000-sft-lora", "3e-3", 1.9)]
    ):
        run = record_run(ws, run_id)
        status = json.loads(run.status_file.read_text())
        status["sweep"] = sweep_id
        run.status_file.write_text(json.dumps(status))
        trials.append(Trial(n, {"training.learning_rate": lr}, run_id, "completed", value))
    folder = SweepDir(sweeps_dir(ws) / sweep_id)
    folder.path.mkdir(parents=True)
    folder.save(
        Sweep(
            sweep_id,
            "sft-lora",
            [],
            "grid",
            grid={"training.learning_rate": ["1e-3", "3e-3"]},
            trials_wanted=2,
            state="completed",
            trials=trials,
        )
    )
    record_run(ws, "20261122-090000-dpo-lora", method="dpo")  # not in the sweep
    app = RecordingApp(ws, start_mode="runs")
    async with app.run_test(size=SIZE) as pilot:
        table = app.screen.query_one("#runs-table", DataTable)
        await until(pilot, lambda: table.row_count == 3)
        await pilot.press("down")  # the newest run is not in a sweep: w does nothing there
        await pilot.press("w")
        await until(pilot, lambda: app.screen.query("#sweep-trials"))
        trials_table = app.screen.query_one("#sweep-trials", DataTable)
        rows = [[str(c) for c in trials_table.get_row_at(i)] for i in range(trials_table.row_count)]
        # a column written alike (display.format_column): the learning rates as typed were 3e-3 and 1e-3
        assert rows[0][:4] == ["1", "1", "3.000e-03", "1.900"] and rows[1][:4] == [
            "2",
            "0",
            "1.000e-03",
            "2.500",
        ]
        await pilot.press("o")
        await until(pilot, lambda: sorted(app.screen.overlay_ids) == [t.run_id for t in trials])


async def test_a_mixture_run_charts_each_tasks_eval_loss(ws):
    run = record_run(ws, "20261122-080000-sft-mixture")
    with EventWriter(run.events_file) as events:
        for step, (chat, qa) in ((20, (2.0, 3.0)), (40, (1.5, 2.2))):
            events.write("eval", t=T0 + step, step=step, eval_chat_loss=chat, eval_qa_loss=qa)
    app = RecordingApp(ws, start_mode="runs", start_run=run.id)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: app.screen.query("#chart-tasks"))
        chart = app.screen.query_one("#chart-tasks", MetricChart)
        assert list(chart.series_names) == ["eval_chat_loss", "eval_qa_loss"]
        assert chart.labels == {"eval_chat_loss": "chat", "eval_qa_loss": "qa"}


def test_overlay_legend_tells_runs_of_one_recipe_apart():
    from tui_ft.ui.widgets.run_dashboard import overlay_names

    assert overlay_names(["20261122-080000-sft-lora", "20261122-081000-dpo-lora"]) == {
        "20261122-080000-sft-lora": "sft-lora",
        "20261122-081000-dpo-lora": "dpo-lora",
    }
    trials = ["20261130-132809-sft-lora", "20261130-132745-sft-lora", "20261130-132726-sft-lora"]
    assert list(overlay_names(trials).values()) == [
        "13:28:09 sft-lora",
        "13:27:45 sft-lora",
        "13:27:26 sft-lora",
    ]
    assert overlay_names(["a", "a"]) == {"a": "a"}
