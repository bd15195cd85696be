"""The run list: one row per run directory of a workspace, newest first, shared by the CLI and the UI.

`RunsIndex` gives the rows from status.json and a bounded tail of events.jsonl, cached by file size and
modification time, so listing a workspace on every refresh stays cheap. A run whose status.json is
missing, unreadable or ill-typed is a row in the state `unreadable` with the reason: it never hides
the others. No textual, no torch.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tui_ft.runs.registry import ACTIVE_STATES, pid_alive, require_status
from tui_ft.runs.rundir import FINAL_STATES, RunDir, Status, StatusError, file_key
from tui_ft.workspace import Workspace


@dataclass(frozen=True)
class RunRow:
    """One row of the run list."""

    id: str
    name: str
    method: str
    adapter: str | None
    model: str | None
    state: str
    pid: int | None
    error_kind: str | None
    error_message: str | None
    step: int
    max_steps: int | None
    progress: float | None
    last_loss: float | None
    last_eval_loss: float | None
    created: float
    started: float | None
    ended: float | None
    duration_s: float | None
    path: Path
    error_hint: str | None = None
    last_checkpoint: str | None = None
    sweep: str | None = None  # the sweep this run is a trial of

    @property
    def state_label(self) -> str:
        """`failed (oom)`, `crashed`, `running`: the state with the error kind where it adds something."""
        if self.error_kind and self.error_kind != self.state:
            return f"{self.state} ({self.error_kind})"
        return self.state

    def matches(self, text: str) -> bool:
        """Every word of `text` occurs (case-insensitively) in the id, name, method, adapter, model or state."""
        haystack = " ".join(
            str(v)
            for v in (self.id, self.name, self.method, self.adapter, self.model, self.state_label, self.sweep)
            if v
        ).lower()
        return all(word in haystack for word in text.lower().split())

    def to_json(self) -> dict[str, Any]:
        """Every field, plus `state_label`, and `loss`, `eval_loss` and `error` as `tui-ft runs --json`
        has always written them."""
        data = {k: getattr(self, k) for k in self.__dataclass_fields__}
        data["path"] = str(self.path)
        data["state_label"] = self.state_label
        data["loss"], data["eval_loss"] = self.last_loss, self.last_eval_loss
        data["error"] = (
            {"kind": self.error_kind, "message": self.error_message, "hint": self.error_hint}
            if self.error_kind or self.error_message
            else None
        )
        return data


UNREADABLE = "unreadable"  # the state of a row whose status.json cannot be read
NEW_RUN_GRACE_S = 30  # a folder this young without a status.json is a run being created, not listed


TAIL_BYTES = 16384  # how much of events.jsonl a run-list row reads, from the end


def tail_metrics(path: Path, max_bytes: int = TAIL_BYTES) -> tuple[float | None, float | None]:
    """The last `loss` and `eval_loss` within the last `max_bytes` of an events file."""
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - max_bytes))
            data = fh.read()
    except OSError:
        return None, None
    loss = eval_loss = None
    for raw in reversed(data.splitlines()):
        if loss is not None and eval_loss is not None:
            break
        if b'"loss"' not in raw and b'"eval_loss"' not in raw:
            continue
        try:
            event = json.loads(raw)
        except ValueError:
            continue  # the cut first line, or a torn last one
        if not isinstance(event, dict):
            continue
        if loss is None and event.get("type") == "train" and isinstance(event.get("loss"), (int, float)):
            loss = float(event["loss"])
        if (
            eval_loss is None
            and event.get("type") == "eval"
            and isinstance(event.get("eval_loss"), (int, float))
        ):
            eval_loss = float(event["eval_loss"])
    return loss, eval_loss


class RunsIndex:
    """The rows of a workspace's run list, re-read per run only when its files changed."""

    def __init__(self, ws: Workspace):
        self.ws = ws
        self._cache: dict[str, tuple[tuple, RunRow]] = {}
        self.rows_built = 0  # rows (re)built from files, for tests and benchmarks

    def rows(self, text: str = "", state: str | None = None, now: float | None = None) -> list[RunRow]:
        """Every run, newest first, filtered by `text` (words in id/name/method/...) and `state`
        (a state, or `active` / `final`)."""
        now = time.time() if now is None else now
        rows = []
        root = self.ws.runs
        seen = set()
        if root.is_dir():
            for entry in sorted(os.scandir(root), key=lambda e: e.name, reverse=True):
                if not entry.is_dir():
                    continue
                seen.add(entry.name)
                row = self._row(Path(entry.path), now)
                if row is None:
                    continue
                if state and not _state_matches(row.state, state):
                    continue
                if text and not row.matches(text):
                    continue
                rows.append(row)
        for gone in set(self._cache) - seen:
            del self._cache[gone]
        return rows

    def row(self, run: RunDir, now: float | None = None) -> RunRow:
        """The row of one run (an `unreadable` one when its status.json cannot be read)."""
        row = self._row(run.path, time.time() if now is None else now, include_new=True)
        assert row is not None
        return row

    def _row(self, path: Path, now: float, include_new: bool = False) -> RunRow | None:
        run = RunDir(path)
        key = (file_key(run.status_file), file_key(run.events_file))
        cached = self._cache.get(run.id)
        if cached is not None and cached[0] == key:
            row = cached[1]
            if row.state not in ACTIVE_STATES:
                return row
            if pid_alive(row.pid):  # still running: only its duration moves
                return _with_duration(row, now)
        try:
            status = require_status(run)  # with crash detection for a run whose runner is gone
        except StatusError as exc:
            if not include_new and key[0] is None and _younger_than(run.path, NEW_RUN_GRACE_S, now):
                return None  # being created: its status.json is written next
            row = unreadable_row(run, exc)
            self._cache[run.id] = (key, row)
            self.rows_built += 1
            return row
        key = (file_key(run.status_file), key[1])
        loss, eval_loss = tail_metrics(run.events_file)
        row = row_from_status(run, status, loss, eval_loss, now)
        self._cache[run.id] = (key, row)
        self.rows_built += 1
        return row


def _state_matches(state: str, wanted: str) -> bool:
    if wanted == "active":
        return state in ACTIVE_STATES
    if wanted == "final":
        return state in FINAL_STATES
    return state == wanted


def _younger_than(path: Path, seconds: float, now: float) -> bool:
    try:
        return now - os.stat(path).st_mtime < seconds
    except OSError:
        return True  # gone since it was listed


def unreadable_row(run: RunDir, error: StatusError) -> RunRow:
    """The row of a run whose status.json cannot be read: its id, the state `unreadable`, the reason."""
    try:
        created = os.stat(run.path).st_mtime
    except OSError:
        created = 0.0
    return RunRow(
        id=run.id,
        name=run.id,
        method="",
        adapter=None,
        model=None,
        state=UNREADABLE,
        pid=None,
        error_kind=UNREADABLE,
        error_message=str(error),
        step=0,
        max_steps=None,
        progress=None,
        last_loss=None,
        last_eval_loss=None,
        created=created,
        started=None,
        ended=None,
        duration_s=None,
        path=run.path,
    )


def _with_duration(row: RunRow, now: float) -> RunRow:
    from dataclasses import replace

    if row.started is None or row.ended is not None:
        return row
    return replace(row, duration_s=max(0.0, now - row.started))


def row_from_status(
    run: RunDir, status: Status, loss: float | None, eval_loss: float | None, now: float | None = None
) -> RunRow:
    """A run-list row from a status and the losses found at the end of its events."""
    now = time.time() if now is None else now
    error = status.error or {}
    duration = None
    if status.started:
        end = status.ended if status.ended else (now if status.state in ACTIVE_STATES else status.updated)
        duration = max(0.0, end - status.started)
    progress = min(1.0, status.step / status.max_steps) if status.max_steps else None
    return RunRow(
        id=status.id or run.id,
        name=status.name,
        method=status.method,
        adapter=status.adapter,
        sweep=status.sweep,
        model=status.model,
        state=status.state,
        pid=status.pid,
        error_kind=error.get("kind"),
        error_message=error.get("message"),
        step=status.step,
        max_steps=status.max_steps,
        progress=progress,
        last_loss=loss if loss is not None else status.loss,
        last_eval_loss=eval_loss if eval_loss is not None else status.eval_loss,
        created=status.created,
        started=status.started,
        ended=status.ended,
        duration_s=duration,
        path=run.path,
        error_hint=error.get("hint"),
        last_checkpoint=status.last_checkpoint,
    )
