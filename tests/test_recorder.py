"""SystemRecorder: a real thread sampling this machine into a real events file, stopping promptly and
never raising into training."""

from __future__ import annotations

import time

import pytest

from tests.conftest import NO_NVIDIA
from tui_ft.monitor.recorder import SystemRecorder
from tui_ft.runs.history import RunHistory
from tui_ft.runs.rundir import EventWriter, RunDir, read_events


def wait_for(predicate, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return predicate()


def test_recorder_writes_system_events_a_history_can_chart(tmp_path):
    run = RunDir(tmp_path)
    steps = iter(range(100, 10_000))
    with EventWriter(run.events_file) as events:
        recorder = SystemRecorder(events.write, interval_s=0.1, step_fn=lambda: next(steps)).start()
        try:
            assert wait_for(lambda: recorder.samples_written >= 4)
        finally:
            recorder.stop()
    assert not recorder.running and recorder.failures == 0
    got, _ = read_events(run.events_file)
    assert len(got) >= 4 and {e["type"] for e in got} == {"system"}
    first = got[0]
    assert first["step"] == 100 and [e["step"] for e in got] == sorted(e["step"] for e in got)
    assert 0.0 <= first["cpu_percent"] <= 100.0 and first["cpu_count"] >= 1
    assert 0 < first["ram_used_mb"] < first["ram_total_mb"]
    assert first["process_rss_mb"] > 10  # this Python process
    assert first["process_cpu_percent"] >= 0.0
    if NO_NVIDIA:
        errors = [e["gpu_error"] for e in got if "gpu_error" in e]
        assert len(errors) == 1 and errors[0].startswith("no GPU: ")  # recorded once
        assert "gpus" not in first
    else:
        assert first["gpus"] and first["gpus"][0]["memory_total_mb"] > 0

    history = RunHistory(run)
    history.refresh()
    assert len(history.series("system/ram_used_mb")) == len(got)
    assert "system/process_cpu_percent" in history.system_names()


def test_stop_returns_promptly_in_the_middle_of_a_long_interval(tmp_path):
    with EventWriter(tmp_path / "events.jsonl") as events:
        recorder = SystemRecorder(events.write, interval_s=30.0).start()
        assert wait_for(lambda: recorder.samples_written == 1)  # the first sample comes at once
        started = time.monotonic()
        recorder.stop()
        latency = time.monotonic() - started
    assert not recorder.running
    assert latency < 2.0  # generous: a stop wakes the thread, it does not wait out the 30 s interval


def test_a_failing_writer_never_raises_into_training(tmp_path):
    def full_disk(kind, **fields):
        raise OSError(28, "No space left on device: closed file")

    recorder = SystemRecorder(full_disk, interval_s=0.05).start()
    try:
        assert wait_for(lambda: recorder.failures >= 3)
        assert recorder.running  # still sampling: the next write may succeed
    finally:
        recorder.stop()
    assert recorder.samples_written == 0
    assert "closed file" in recorder.last_failure


def test_interval_must_be_positive():
    with pytest.raises(ValueError, match="interval_s"):
        SystemRecorder(lambda *a, **k: None, interval_s=0)
