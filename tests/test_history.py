"""RunHistory and RunsIndex: incremental tailing of real run directories (written with the runner's own
EventWriter and Status), resume supersession, downsampling that keeps extremes, alerts and run rows."""

from __future__ import annotations

import math
import os
import threading
import time

import pytest

from tests.conftest import dead_pid
from tui_ft.runs.history import RunHistory
from tui_ft.runs.listing import RunsIndex, tail_metrics
from tui_ft.runs.rundir import EventWriter, RunDir, Status
from tui_ft.workspace import Workspace


def make_run(root, run_id="20260101-000000-sft", **status_fields) -> RunDir:
    run = RunDir(root / run_id)
    run.path.mkdir(parents=True)
    fields = {"id": run_id, "name": run_id.split("-", 2)[-1], "method": "sft", "state": "running"}
    fields.update(status_fields)
    run.write_status(Status(**fields))
    return run


def train_event(writer: EventWriter, step: int, loss: float, **extra) -> None:
    writer.write(
        "train", step=step, loss=loss, learning_rate=1e-4 * (1 - step / 1000), grad_norm=0.5, **extra
    )


# ------------------------------------------------------------------------------------------------
# incremental reading


def test_refresh_while_a_thread_appends_reads_every_event_once(tmp_path, stand_in_runners):
    live_pid = stand_in_runners().pid  # a runner that counts as alive
    run = make_run(tmp_path, pid=live_pid, max_steps=400)
    history = RunHistory(run)
    done = threading.Event()

    def writer() -> None:
        with EventWriter(run.events_file) as events:
            for step in range(1, 401):
                train_event(events, step, 3.0 / step, tokens_per_s=1000.0 + step)
                if step % 40 == 0:
                    events.write("eval", step=step, eval_loss=2.0 / step)
                if step % 25 == 0:
                    time.sleep(0.005)
        done.set()

    thread = threading.Thread(target=writer)
    thread.start()
    refreshes = 0
    while not done.is_set():
        history.refresh()
        refreshes += 1
    thread.join()
    history.refresh()
    assert refreshes > 1
    loss = history.series("loss")
    assert list(loss.steps) == list(range(1, 401))
    assert loss.values[9] == pytest.approx(0.3)
    assert list(history.series("eval_loss").steps) == list(range(40, 401, 40))
    assert {"loss", "learning_rate", "grad_norm", "tokens_per_s", "eval_loss"} <= set(history.metric_names())
    assert history.bytes_read_total == run.events_file.stat().st_size  # each byte read once


def test_bytes_read_per_refresh_equal_the_bytes_appended(tmp_path):
    run = make_run(tmp_path)
    history = RunHistory(run)
    with EventWriter(run.events_file) as events:
        for step in range(1, 2001):
            train_event(events, step, 1.0)
    assert history.refresh().bytes_read == run.events_file.stat().st_size
    for round_ in range(5):
        size = run.events_file.stat().st_size
        with EventWriter(run.events_file) as events:
            for step in range(10):
                train_event(events, 2001 + round_ * 10 + step, 0.5)
        result = history.refresh()
        assert result.events == 10
        assert result.bytes_read == run.events_file.stat().st_size - size
    assert history.refresh().bytes_read == 0  # nothing new, nothing read


def test_torn_last_line_waits_for_its_end_without_rereading(tmp_path):
    run = make_run(tmp_path)
    with EventWriter(run.events_file) as events:
        train_event(events, 1, 2.0)
        train_event(events, 2, 1.5)
    # The exact bytes the runner would write for step 3, cut mid-line as by a writer killed mid-write.
    with EventWriter(tmp_path / "one.jsonl") as scratch:
        train_event(scratch, 3, 1.2)
    line = (tmp_path / "one.jsonl").read_bytes()
    with open(run.events_file, "ab") as fh:
        fh.write(line[:20])
    history = RunHistory(run)
    first = history.refresh()
    assert list(history.series("loss").steps) == [1, 2]
    assert first.bytes_read == run.events_file.stat().st_size
    with open(run.events_file, "ab") as fh:
        fh.write(line[20:])
    second = history.refresh()
    assert second.events == 1 and second.bytes_read == len(line) - 20
    assert list(history.series("loss").steps) == [1, 2, 3]
    assert history.last("loss") == pytest.approx(1.2)


def test_a_garbled_line_is_skipped(tmp_path):
    run = make_run(tmp_path)
    with EventWriter(run.events_file) as events:
        train_event(events, 1, float("nan"))
    with open(run.events_file, "a") as fh:
        fh.write("not json\n")
    with EventWriter(run.events_file) as events:
        train_event(events, 2, 1.0)
    history = RunHistory(run)
    history.refresh()
    loss = history.series("loss")
    assert list(loss.steps) == [1, 2] and math.isnan(loss.values[0])


def test_truncated_or_replaced_events_file_is_read_again(tmp_path):
    run = make_run(tmp_path)
    with EventWriter(run.events_file) as events:
        for step in range(1, 51):
            train_event(events, step, 1.0)
    history = RunHistory(run)
    history.refresh()
    assert len(history.series("loss")) == 50
    # Replaced by a shorter file (truncation)...
    replacement = tmp_path / "new.jsonl"
    with EventWriter(replacement) as events:
        for step in range(1, 4):
            train_event(events, step, 9.0)
    os.replace(replacement, run.events_file)
    history.refresh()
    assert list(history.series("loss").values) == [9.0, 9.0, 9.0]
    assert history.resets == 1
    # ... or truncated in place and rewritten longer than before the last read.
    with open(run.events_file, "w"):
        pass
    with EventWriter(run.events_file) as events:
        for step in range(1, 3):
            train_event(events, step, 7.0)
    history.refresh()
    assert list(history.series("loss").values) == [7.0, 7.0]


# ------------------------------------------------------------------------------------------------
# resume


def write_resumed_run(run: RunDir) -> None:
    """Steps 1-12 with a checkpoint at 10 and a crash at 12, then a resume from 10 up to 20."""
    with EventWriter(run.events_file) as events:
        events.write("start", step=0, max_steps=20, num_train_epochs=1, world_size=1)
        for step in range(1, 13):
            train_event(events, step, 10.0 - step * 0.1)
            if step in (5, 10):
                events.write("checkpoint", step=step, path=f"{run.checkpoints}/checkpoint-{step}")
            if step in (6, 12):
                events.write("eval", step=step, eval_loss=5.0)
        events.write("resume", step=10, checkpoint=f"{run.checkpoints}/checkpoint-10")
        events.write("start", step=10, max_steps=20, num_train_epochs=1, world_size=1)
        for step in range(11, 21):
            train_event(events, step, 1.0)
            if step == 15:
                events.write("eval", step=step, eval_loss=0.5)


def test_resume_supersedes_the_earlier_segment_after_its_checkpoint(tmp_path):
    run = make_run(tmp_path)
    write_resumed_run(run)
    history = RunHistory(run)
    result = history.refresh()
    assert result.resumed
    loss = history.series("loss")
    assert list(loss.steps) == list(range(1, 21))  # one curve, no repeated steps
    assert loss.values[10:] == (1.0,) * 10  # steps 11-12 of the crashed segment are gone
    assert list(history.series("eval_loss").steps) == [6, 15]
    assert [c["step"] for c in history.info.checkpoints] == [5, 10]


def test_resume_read_in_pieces_equals_resume_read_at_once(tmp_path):
    run = make_run(tmp_path)
    write_resumed_run(run)
    whole = RunHistory(run)
    whole.refresh()
    data = run.events_file.read_bytes()
    other = make_run(tmp_path, "20260101-000001-sft")
    piecewise = RunHistory(other)
    seen_lengths = []
    for cut in range(0, len(data), 97):  # cuts fall mid-line: torn lines on the way
        with open(other.events_file, "ab") as fh:
            fh.write(data[cut : cut + 97])
        piecewise.refresh()
        if piecewise.has_series("loss"):
            piecewise.downsample("loss", 3)  # a cached downsample must notice the superseded points
            seen_lengths.append(len(piecewise.series("loss")))
    assert piecewise.series("loss") == whole.series("loss")
    assert piecewise.series("eval_loss") == whole.series("eval_loss")
    assert piecewise.downsample("loss", 3) == whole.downsample("loss", 3)
    assert max(seen_lengths) == 20 and 12 in seen_lengths  # it did hold step 12 before the resume


# ------------------------------------------------------------------------------------------------
# downsampling


def spiky_values(n: int) -> list[float]:
    values = [2.0 + math.sin(i / 50.0) * 0.5 + (i % 7) * 0.01 for i in range(n)]
    values[1234] = 1e6  # a spike
    values[4321] = -5.0  # a dip
    values[777] = float("nan")
    values[n * 9 // 10] = float("inf")
    return values


def test_downsample_keeps_extremes_endpoints_and_nan_within_its_bound(tmp_path):
    run = make_run(tmp_path)
    values = spiky_values(10_000)
    with EventWriter(run.events_file) as events:
        for step, value in enumerate(values, start=1):
            events.write("train", step=step, loss=value)
    history = RunHistory(run)
    history.refresh()
    for width in (1, 7, 50, 300):
        points = history.downsample("loss", width)
        assert len(points) <= 2 * width + 2
        assert points.steps[0] == 1 and points.steps[-1] == 10_000
        assert list(points.steps) == sorted(points.steps)
        assert 1e6 in points.values and math.inf in points.values or width == 1
        assert math.inf in points.values and any(math.isnan(v) for v in points.values)
        assert -5.0 in points.values or width == 1  # one bucket: the NaN takes the min's place
        for step, value in zip(points.steps, points.values, strict=True):
            assert values[step - 1] == value or (math.isnan(value) and math.isnan(values[step - 1]))
    small = history.downsample("loss", 6000)
    assert len(small) == 10_000  # fewer points than the width allows: all of them


def test_incremental_downsample_equals_a_fresh_one(tmp_path):
    run = make_run(tmp_path)
    values = spiky_values(5000)
    history = RunHistory(run)
    with EventWriter(run.events_file) as events:
        for start in range(0, 5000, 333):
            for step in range(start, min(start + 333, 5000)):
                events.write("train", step=step + 1, loss=values[step])
            history.refresh()
            history.downsample("loss", 40)
    fresh = RunHistory(run)
    fresh.refresh()
    assert history.downsample("loss", 40) == fresh.downsample("loss", 40)
    assert history.series("loss") == fresh.series("loss")  # the full history is kept, never truncated
    assert len(history.series("loss")) == 5000


# ------------------------------------------------------------------------------------------------
# system series, progress, alerts, checkpoints, log


def test_system_events_become_per_gpu_and_cpu_series(tmp_path):
    run = make_run(tmp_path)
    with EventWriter(run.events_file) as events:
        for k in range(3):
            events.write(
                "system",
                step=k * 10,
                cpu_percent=50.0 + k,
                process_cpu_percent=95.0,
                ram_used_mb=1000.0,
                ram_total_mb=8000.0,
                process_rss_mb=700.0 + k,
                gpus=[
                    {
                        "index": i,
                        "name": "GPU",
                        "memory_used_mb": 100.0 * (i + 1) + k,
                        "memory_total_mb": 24000.0,
                    }
                    | {"utilization_pct": 90.0, "temperature_c": 60.0, "power_w": 250.0}
                    for i in range(2)
                ],
            )
        events.write(
            "system", step=30, cpu_percent=1.0, ram_used_mb=1.0, ram_total_mb=2.0, gpu_error="no GPU: x"
        )
    history = RunHistory(run)
    history.refresh()
    assert history.gpu_indices() == [0, 1]
    assert list(history.series("gpu1/memory_used_mb").values) == [200.0, 201.0, 202.0]
    assert list(history.series("system/process_rss_mb").values) == [700.0, 701.0, 702.0]
    assert len(history.series("system/cpu_percent")) == 4
    assert "gpu0/power_w" in history.system_names() and history.metric_names() == []
    assert history.info.gpu_error == "no GPU: x"


def test_progress_and_eta_from_recent_step_rate(tmp_path, stand_in_runners):
    live_pid = stand_in_runners().pid  # a runner that counts as alive
    run = make_run(tmp_path, pid=live_pid, max_steps=100, step=50, started=1000.0)
    with EventWriter(run.events_file) as events:
        events.write("start", t=1000.0, step=0, max_steps=100, num_train_epochs=1, world_size=1)
        for k in range(1, 6):
            train_event(events, k * 10, 1.0, t=1000.0 + 10 * k)  # 1 step per second
    history = RunHistory(run)
    history.refresh()
    progress = history.progress(now=1050.0)
    assert progress.step == 50 and progress.fraction == 0.5
    assert progress.steps_per_s == pytest.approx(1.0, rel=0.05)
    assert progress.eta_s == pytest.approx(50.0, rel=0.05)
    assert history.progress(now=1060.0).eta_s == pytest.approx(40.0, rel=0.05)  # counts down between logs


def test_alerts_when_a_run_completes_crashes_or_fails(tmp_path, stand_in_runners):
    live_pid = stand_in_runners().pid  # a runner that counts as alive
    completed = make_run(tmp_path, "20260101-000001-sft", pid=live_pid, max_steps=10)
    crashed = make_run(tmp_path, "20260101-000002-dpo", method="dpo", pid=live_pid)
    failed = make_run(tmp_path, "20260101-000003-sft", pid=live_pid)
    histories = {run.id: RunHistory(run) for run in (completed, crashed, failed)}
    for history in histories.values():
        assert history.refresh().alert is None  # attaching to a running run says nothing
    status = completed.read_status()
    status.state, status.step, status.ended = "completed", 10, time.time()
    completed.write_status(status)
    status = failed.read_status()
    status.state = "failed"
    status.error = {"kind": "oom", "message": "CUDA out of memory", "hint": "smaller batch"}
    failed.write_status(status)
    status = crashed.read_status()
    status.pid = dead_pid()
    crashed.write_status(status)
    results = {run_id: history.refresh() for run_id, history in histories.items()}
    assert "completed at step 10/10" in results[completed.id].alert
    assert results[completed.id].state_change == ("running", "completed")
    assert "failed (oom)" in results[failed.id].alert and "CUDA out of memory" in results[failed.id].alert
    assert results[crashed.id].state_change == ("running", "crashed")
    assert "crashed" in results[crashed.id].alert
    assert crashed.read_status().state == "crashed"  # recorded, so every reader agrees
    assert histories[completed.id].refresh().alert is None  # said once


def test_checkpoints_and_log_tail_read_from_the_end(tmp_path):
    run = make_run(tmp_path)
    for step in (5, 10):
        folder = run.checkpoints / f"checkpoint-{step}"
        folder.mkdir(parents=True)
        (folder / "trainer_state.json").write_text('{"log_history": []}')
        (folder / "adapter_model.safetensors").write_bytes(b"x")
    history = RunHistory(run, log_lines=5)
    history.refresh()
    assert [c.step for c in history.checkpoints()] == [5, 10]
    with open(run.log_file, "w") as fh:
        for i in range(20_000):
            fh.write(f"line {i}\n")
    size = run.log_file.stat().st_size
    assert history.log_tail() == [f"line {i}" for i in range(19_995, 20_000)]
    assert history.log_tail(2) == ["line 19998", "line 19999"]
    assert history.log_bytes_read < size / 4  # from the end, not the whole file
    before = history.log_bytes_read
    with open(run.log_file, "a") as fh:
        fh.write("next\nhalf a li")
    assert history.log_tail(3) == ["line 19999", "next", "half a li"]
    assert history.log_bytes_read - before == len("next\nhalf a li")


# ------------------------------------------------------------------------------------------------
# the run list


def test_run_rows_from_recorded_runs(tmp_path, stand_in_runners):
    live_pid = stand_in_runners().pid  # a runner that counts as alive
    ws = Workspace(tmp_path).ensure()
    old = time.time() - 3600

    def recorded(run_id, method, state, losses, **fields):
        run = make_run(ws.runs, run_id, method=method, state=state, created=old, started=old, **fields)
        with EventWriter(run.events_file) as events:
            events.write("start", step=0, max_steps=fields.get("max_steps"), num_train_epochs=1, world_size=1)
            for step, loss in enumerate(losses, start=1):
                train_event(events, step, loss)
            events.write("eval", step=len(losses), eval_loss=losses[-1] + 0.1)
        return run

    recorded("20260101-000001-sft-lora", "sft", "completed", [2.0, 1.0], max_steps=2, step=2, ended=old + 60)
    recorded("20260101-000002-dpo", "dpo", "running", [0.7, 0.6, 0.5], max_steps=10, step=3, pid=live_pid)
    recorded("20260101-000003-sft", "sft", "running", [3.0], max_steps=10, step=1, pid=dead_pid())
    recorded(
        "20260101-000004-kto",
        "kto",
        "failed",
        [1.5, 1.4],
        max_steps=10,
        step=2,
        ended=old + 30,
        error={"kind": "oom", "message": "out of memory", "hint": "smaller batch"},
    )
    index = RunsIndex(ws)
    rows = index.rows()
    assert [r.id for r in rows] == [
        "20260101-000004-kto",
        "20260101-000003-sft",
        "20260101-000002-dpo",
        "20260101-000001-sft-lora",
    ]
    by_id = {r.id: r for r in rows}
    done = by_id["20260101-000001-sft-lora"]
    assert done.state == "completed" and done.progress == 1.0 and done.duration_s == pytest.approx(60.0)
    assert done.last_loss == 1.0 and done.last_eval_loss == pytest.approx(1.1)
    running = by_id["20260101-000002-dpo"]
    assert running.state == "running" and running.progress == pytest.approx(0.3)
    assert running.last_loss == 0.5 and running.duration_s >= 3600
    assert by_id["20260101-000003-sft"].state == "crashed"  # its runner is gone
    oom = by_id["20260101-000004-kto"]
    assert oom.state_label == "failed (oom)" and oom.error_message == "out of memory"

    assert [r.id for r in index.rows(state="active")] == ["20260101-000002-dpo"]
    assert [r.id for r in index.rows(state="failed")] == ["20260101-000004-kto"]
    assert [r.id for r in index.rows(text="SFT lora")] == ["20260101-000001-sft-lora"]
    assert [r.id for r in index.rows(text="oom")] == ["20260101-000004-kto"]
    built = index.rows_built
    index.rows()
    assert index.rows_built == built  # nothing changed on disk: nothing re-read


def test_tail_metrics_reads_a_bounded_tail(tmp_path):
    path = tmp_path / "events.jsonl"
    with EventWriter(path) as events:
        events.write("eval", step=1, eval_loss=9.0)
        for step in range(1, 5001):
            train_event(events, step, 1.0 + step / 10_000)
    assert path.stat().st_size > 100_000
    loss, eval_loss = tail_metrics(path, max_bytes=4096)
    assert loss == pytest.approx(1.5)
    assert eval_loss is None  # beyond the tail: the row falls back to status.json's eval_loss


def test_an_unreadable_status_is_a_row_and_never_hides_later_runs(tmp_path):
    """A status.json with `"step": "5"` once raised a TypeError here and emptied the list for good."""
    ws = Workspace(tmp_path).ensure()
    make_run(ws.runs, "20260101-000001-sft", state="completed", step=2)
    bad = RunDir(ws.runs / "20260101-000002-bad")
    bad.path.mkdir()
    bad.status_file.write_text('{"id": "20260101-000002-bad", "name": "bad", "method": "sft", "step": "5"}')
    torn = RunDir(ws.runs / "20260101-000003-torn")
    torn.path.mkdir()
    torn.status_file.write_text('{"id": "20260101-000003-torn", "na')
    make_run(ws.runs, "20260101-000004-dpo", method="dpo", state="stopped", step=3)
    index = RunsIndex(ws)
    rows = {r.id: r for r in index.rows()}
    assert list(rows) == [
        "20260101-000004-dpo",
        "20260101-000003-torn",
        "20260101-000002-bad",
        "20260101-000001-sft",
    ]
    assert rows["20260101-000004-dpo"].state == "stopped" and rows["20260101-000001-sft"].step == 2
    unreadable = rows["20260101-000002-bad"]
    assert unreadable.state == unreadable.state_label == "unreadable"
    assert (
        str(bad.status_file) in unreadable.error_message
        and "step: expected an integer" in unreadable.error_message
    )
    assert "not JSON" in rows["20260101-000003-torn"].error_message
    assert [r.id for r in index.rows(state="final")] == ["20260101-000004-dpo", "20260101-000001-sft"]

    bad.write_status(Status(id=bad.id, name="bad", method="sft", state="completed", step=5))  # repaired
    assert index.row(bad).state == "completed" and index.row(bad).step == 5


def test_a_folder_being_created_is_not_listed_until_it_has_a_status(tmp_path):
    ws = Workspace(tmp_path).ensure()
    fresh = RunDir(ws.runs / "20260101-000001-sft")
    fresh.path.mkdir()  # create_run writes its status.json next
    assert RunsIndex(ws).rows() == []
    os.utime(fresh.path, (time.time() - 3600, time.time() - 3600))  # an old folder without one: unreadable
    (row,) = RunsIndex(ws).rows()
    assert row.state == "unreadable" and "no such file" in row.error_message


def test_ill_typed_status_and_events_do_not_break_a_run_history(tmp_path):
    run = make_run(tmp_path, state="running", pid=dead_pid())
    run.status_file.write_text(run.status_file.read_text().replace('"step": 0', '"step": "5"'))
    with open(run.events_file, "w") as fh:
        fh.write('{"t": 1, "type": "train", "step": "5", "loss": 1.0}\n')  # a string step: skipped
        fh.write('{"t": "x", "type": "train", "step": 6, "loss": 1.0}\n')  # a string time: skipped
        fh.write('{"t": 2, "type": "train", "step": 7, "loss": 0.5}\n')
    history = RunHistory(run)
    result = history.refresh()
    assert result.events == 1 and history.series("loss").steps == (7,)
    assert history.status is None and history.progress().step == 7
