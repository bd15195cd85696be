"""Run directory contract: atomic status, events tailing that survives torn lines, ids, crash marking."""

from __future__ import annotations

import json
import os

from tests.conftest import dead_pid
from tui_ft.runs.listing import RunsIndex
from tui_ft.runs.registry import find_run, refresh
from tui_ft.runs.rundir import EventWriter, RunDir, Status, new_run_id, read_events
from tui_ft.workspace import Workspace


def test_torn_last_line_is_left_for_the_next_read(tmp_path):
    path = tmp_path / "events.jsonl"
    with EventWriter(path) as events:
        events.write("train", step=1, loss=2.0)
        events.write("train", step=2, loss=1.5)
    with open(path, "a") as fh:
        fh.write('{"t": 1, "type": "train", "step": 3, "lo')  # a writer killed mid-line
    got, offset = read_events(path)
    assert [e["step"] for e in got] == [1, 2]
    with open(path, "a") as fh:
        fh.write('ss": 1.2}\n')
    more, offset2 = read_events(path, offset)
    assert [e["step"] for e in more] == [3] and offset2 == path.stat().st_size
    assert read_events(path, offset2) == ([], offset2)


def test_garbage_line_is_skipped_and_nan_survives(tmp_path):
    path = tmp_path / "events.jsonl"
    with EventWriter(path) as events:
        events.write("train", step=1, loss=float("nan"))
    with open(path, "a") as fh:
        fh.write("not json at all\n")
    with EventWriter(path) as events:
        events.write("train", step=2, loss=1.0)
    got, _ = read_events(path)
    assert [e["step"] for e in got] == [1, 2]
    assert got[0]["loss"] != got[0]["loss"]  # NaN is kept, so a watchdog can see it


def test_run_ids_sort_by_time_and_stay_unique(tmp_path):
    from datetime import datetime

    now = datetime(2026, 11, 22, 1, 45, 12)
    first = new_run_id("sft lora!", tmp_path, now)
    assert first == "20261122-014512-sft-lora"
    (tmp_path / first).mkdir()
    assert new_run_id("sft lora!", tmp_path, now) == "20261122-014512-sft-lora-2"


def test_status_writes_are_atomic_and_tolerant(tmp_path):
    run = RunDir(tmp_path / "r")
    run.path.mkdir()
    run.write_status(Status(id="r", name="r", method="sft", state="running", pid=os.getpid()))
    assert not list(run.path.glob(".*.tmp")), "no temporary file is left behind"
    data = json.loads(run.status_file.read_text())
    data["future_key"] = 1  # a newer writer's key: readers ignore it
    run.status_file.write_text(json.dumps(data))
    assert run.read_status().state == "running"
    run.status_file.write_text("{")  # unreadable: None, not an exception
    assert run.read_status() is None


def test_a_run_whose_process_is_gone_is_crashed(tmp_path):
    ws = Workspace(tmp_path).ensure()
    run = RunDir(ws.runs / "20261122-000000-x")
    run.path.mkdir()
    run.log_file.write_text("step 3\nKilled\n")
    run.write_status(Status(id=run.id, name="x", method="sft", state="running", pid=dead_pid(), created=0))
    status = refresh(run)
    assert status.state == "crashed"
    assert "Killed" in status.error["message"] and run.id in status.error["hint"]
    assert [row.state for row in RunsIndex(ws).rows()] == ["crashed"]
    assert find_run(ws, "last").id == run.id
    assert find_run(ws, "000000-x").id == run.id


def test_model_reference_last_is_the_newest_finished_run(tmp_path):
    import pytest

    from tui_ft.errors import NotFoundError
    from tui_ft.modelref import resolve_model

    ws = Workspace(tmp_path).ensure()
    with pytest.raises(NotFoundError):
        resolve_model("last", ws)
    for name, finished in (
        ("20261122-010000-a", True),
        ("20261122-020000-b", True),
        ("20261122-030000-c", False),
    ):
        run = ws.runs / name
        (run / "checkpoints" / "checkpoint-2").mkdir(parents=True)
        (run / "checkpoints" / "checkpoint-2" / "adapter_config.json").write_text(
            '{"base_model_name_or_path": "/m"}'
        )
        if finished:
            (run / "final").mkdir()
            (run / "final" / "config.json").write_text("{}")
    assert resolve_model("last", ws).run_id == "20261122-020000-b"
    ckpt = resolve_model("last:last", ws)
    assert (
        ckpt.run_id == "20261122-030000-c"
        and ckpt.kind == "checkpoint"
        and ckpt.adapter
        and ckpt.base == "/m"
    )


def test_status_fields_are_type_checked_and_the_error_names_file_and_field(tmp_path):
    import pytest

    from tui_ft.runs.registry import require_status
    from tui_ft.runs.rundir import StatusError

    run = RunDir(tmp_path / "r")
    run.path.mkdir()
    with pytest.raises(StatusError, match="no such file"):
        require_status(run)
    fields = {"id": "r", "name": "r", "method": "sft", "state": "completed"}
    for bad, message in [
        ({"step": "5"}, 'step: expected an integer, got "5"'),
        ({"pid": True}, "pid: expected an integer, got true"),
        ({"loss": "low"}, "loss: expected a number"),
        ({"devices": [0]}, "devices: expected a list of strings"),
        ({"error": "boom"}, "error: expected an object"),
        ({"method": None}, "method: expected a value, got null"),
    ]:
        run.status_file.write_text(json.dumps(fields | bad))
        assert run.read_status() is None
        with pytest.raises(StatusError) as err:
            require_status(run)
        assert str(err.value).startswith(f"{run.status_file}: {message}")
        assert err.value.exit_status == 2
    run.status_file.write_text("[1, 2]")
    with pytest.raises(StatusError, match="expected a JSON object"):
        require_status(run)
    run.status_file.write_text(json.dumps(fields | {"step": 5, "loss": 1, "created": 10}))
    assert require_status(run).step == 5  # an integer where a float is expected is a number


def test_events_with_ill_typed_keys_are_skipped(tmp_path):
    path = tmp_path / "events.jsonl"
    path.write_text(
        '{"t": 1, "type": "train", "step": "5", "loss": 1.0}\n'
        '{"t": 1, "type": 7, "step": 5}\n'
        '{"t": true, "type": "train", "step": 5}\n'
        '{"t": 1, "type": "train", "step": 5.5}\n'
        '{"t": 1, "type": "train", "step": 6, "loss": 0.5}\n'
        '{"type": "message", "text": "no t, no step: fine"}\n'
    )
    got, _ = read_events(path)
    assert [(e["type"], e.get("step")) for e in got] == [("train", 6), ("message", None)]
