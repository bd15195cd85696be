"""One run's history, read incrementally from its files.

`RunHistory` tails a run directory the way the dashboard needs it: each `refresh()` reads only the
bytes appended to events.jsonl since the previous one (a torn last line waits in memory for its end),
turns every numeric key of `train`/`eval` events into a series (step -> value, with wall time), the
`system` events into per-GPU and CPU/RAM series over time, and applies `resume` events (a resumed
run supersedes the earlier segment's steps after its checkpoint; docs/events.md). The full history
is kept; `downsample(name, width)` reduces a series for drawing without losing its extremes
(runs/series.py). The run list's rows are runs/listing.py.

No textual, no torch: the UI and the command line both use this.
"""

from __future__ import annotations

import os
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tui_ft.runs.metrics import confusion_of
from tui_ft.runs.registry import ACTIVE_STATES, Checkpoint, list_checkpoints, pid_alive
from tui_ft.runs.registry import refresh as refresh_status
from tui_ft.runs.rundir import FINAL_STATES, RunDir, Status, StatusError, file_key, parse_event_lines
from tui_ft.runs.series import Series, SeriesPoints

METRIC_EVENTS = ("train", "eval")
# Keys of train/eval events that are not metrics.
_NOT_METRICS = frozenset({"t", "type", "step"})
# Per-process figures of `system` events that become series (docs/events.md, `system`).
SYSTEM_KEYS = (
    "cpu_percent",
    "process_cpu_percent",
    "ram_used_mb",
    "ram_total_mb",
    "process_rss_mb",
    "load_1m",
)
GPU_KEYS = ("memory_used_mb", "memory_total_mb", "utilization_pct", "temperature_c", "power_w")
RATE_WINDOW = 20  # (time, step) samples behind the step rate used for the ETA


# ------------------------------------------------------------------------------------------------
# one run


@dataclass(frozen=True)
class Progress:
    step: int
    max_steps: int | None
    fraction: float | None  # 0..1, None when max_steps is unknown
    steps_per_s: float | None  # over the recent samples
    eta_s: float | None  # None when unknown or the run is not running
    elapsed_s: float | None  # since the run started (to its end when it ended)


@dataclass(frozen=True)
class RefreshResult:
    """What one `refresh()` found."""

    events: int  # new events applied
    bytes_read: int  # bytes read from events.jsonl by this refresh
    changed: frozenset[str]  # series that changed (metrics and system)
    resumed: bool  # a resume event superseded earlier points
    state_change: tuple[str | None, str] | None  # (before, after) when the run's state changed
    alert: str | None  # a sentence for people when the run ended (completed/stopped/failed/crashed)
    watchdog: tuple[dict[str, Any], ...] = ()  # watchdog events read by this refresh


@dataclass
class _SegmentInfo:
    """What the run's events say besides the series."""

    config: dict[str, Any] = field(default_factory=dict)
    summary: dict[str, Any] | None = None
    start: dict[str, Any] | None = None
    checkpoints: list[dict[str, Any]] = field(default_factory=list)
    messages: deque = field(default_factory=lambda: deque(maxlen=200))
    watchdog: list[dict[str, Any]] = field(default_factory=list)
    resumes: list[dict[str, Any]] = field(default_factory=list)
    states: deque = field(default_factory=lambda: deque(maxlen=100))  # `state` events, in order
    gpu_error: str | None = None
    gpu_names: dict[int, str] = field(default_factory=dict)
    confusion: dict[str, Any] | None = None  # a classifier's last confusion matrix: step, labels, matrix


class RunHistory:
    """The incrementally read history of one run directory (thread-safe; one reader at a time)."""

    def __init__(self, run: RunDir | Path, *, log_lines: int = 200, read_chunk: int = 1 << 20):
        self.run = run if isinstance(run, RunDir) else RunDir(Path(run))
        self.log_lines = log_lines
        self.read_chunk = read_chunk
        self._lock = threading.RLock()
        self._reset_events()
        self.status: Status | None = None
        self.status_error: str | None = None  # why status.json cannot be read now, if it cannot
        self._status_key: tuple[int, int, int] | None = None
        self.bytes_read_total = 0  # events.jsonl bytes read over this object's life
        self.last_bytes_read = 0
        self.refreshes = 0
        self.resets = 0  # times the events file was truncated or replaced and read again
        # output.log tail
        self._log_key: tuple[int, int] | None = None  # (inode, offset)
        self._log_lines: deque[str] = deque(maxlen=log_lines)
        self._log_partial = b""
        self.log_bytes_read = 0
        self._checkpoints: list[Checkpoint] | None = None

    def _reset_events(self) -> None:
        self._offset = 0
        self._inode: int | None = None
        self._pending = b""  # a torn last line, waiting for its end
        self._metrics: dict[str, Series] = {}
        self._system: dict[str, Series] = {}
        self.info = _SegmentInfo()
        self._rate: deque[tuple[float, int]] = deque(maxlen=RATE_WINDOW)
        self.events_read = 0
        self.last_step = 0
        self.last_event_t: float | None = None
        self._checkpoints = None

    # -- reading ------------------------------------------------------------------------------------
    def refresh(self) -> RefreshResult:
        """Read what was appended since the last call and the status; cheap when nothing changed."""
        with self._lock:
            self.refreshes += 1
            before = self.status.state if self.status is not None else None
            events, nbytes = self._read_new_events()
            changed: set[str] = set()
            resumed = False
            watchdog: list[dict[str, Any]] = []
            for event in events:
                kind = event.get("type")
                if kind == "resume":
                    resumed = True
                if kind == "watchdog":
                    watchdog.append(event)
                changed.update(self._apply(event))
            self.last_bytes_read = nbytes
            self.bytes_read_total += nbytes
            self._refresh_status()
            after = self.status.state if self.status is not None else None
            state_change = (before, after) if after is not None and after != before else None
            alert = self._alert(before, after) if state_change and before is not None else None
            if events and any(e.get("type") in ("checkpoint", "resume", "state") for e in events):
                self._checkpoints = None
            return RefreshResult(
                len(events), nbytes, frozenset(changed), resumed, state_change, alert, tuple(watchdog)
            )

    def _read_new_events(self) -> tuple[list[dict[str, Any]], int]:
        path = self.run.events_file
        try:
            st = os.stat(path)
        except FileNotFoundError:
            if self._offset:
                self._reset_events()
                self.resets += 1
            return [], 0
        if self._inode is not None and (st.st_ino != self._inode or st.st_size < self._offset):
            self._reset_events()  # truncated or replaced: its history is what the new file says
            self.resets += 1
        self._inode = st.st_ino
        if st.st_size == self._offset:
            return [], 0
        events: list[dict[str, Any]] = []
        nbytes = 0
        with open(path, "rb") as fh:
            fh.seek(self._offset)
            while True:
                chunk = fh.read(self.read_chunk)
                if not chunk:
                    break
                nbytes += len(chunk)
                self._offset += len(chunk)
                data = self._pending + chunk
                end = data.rfind(b"\n")
                if end < 0:
                    self._pending = data
                    continue
                self._pending = data[end + 1 :]
                events.extend(parse_event_lines(data[: end + 1]))  # garbled lines are skipped
        return events, nbytes

    def _apply(self, event: dict[str, Any]) -> set[str]:
        kind = event.get("type")
        t = event.get("t")
        t = float(t) if isinstance(t, (int, float)) else time.time()
        step = event.get("step")
        step = step if isinstance(step, int) and not isinstance(step, bool) else None
        self.events_read += 1
        self.last_event_t = t
        info = self.info
        changed: set[str] = set()
        if kind == "eval" and (confusion := confusion_of(event)) is not None:
            info.confusion = {"step": step, **confusion}
        if kind in METRIC_EVENTS:
            for key, value in event.items():
                if key in _NOT_METRICS or isinstance(value, bool) or not isinstance(value, (int, float)):
                    continue
                series = self._metrics.get(key)
                if series is None:
                    series = self._metrics[key] = Series(key)
                series.append(step, float(value), t)
                changed.add(key)
        elif kind == "system":
            changed.update(self._apply_system(event, step, t))
        elif kind == "resume":
            at = step or 0
            for name, series in self._metrics.items():
                if series.drop_after(at):
                    changed.add(name)
            info.checkpoints = [c for c in info.checkpoints if (c.get("step") or 0) <= at]
            if info.confusion is not None and (info.confusion["step"] or 0) > at:
                info.confusion = None
            info.resumes.append(event)
            self._rate.clear()  # the time between the stop and the resume is not a step rate
            self.last_step = at
        elif kind == "checkpoint":
            info.checkpoints.append(event)
        elif kind == "start":
            info.start = event
            self._rate.clear()
        elif kind == "config":
            info.config = {k: v for k, v in event.items() if k not in _NOT_METRICS}
        elif kind == "summary":
            info.summary = {k: v for k, v in event.items() if k not in ("t", "type")}
        elif kind == "message":
            info.messages.append(event)
        elif kind == "watchdog":
            info.watchdog.append(event)
        elif kind == "state":
            info.states.append(event)
        if step is not None and kind in ("train", "eval", "system", "checkpoint", "start"):
            if step > self.last_step or kind == "start":
                self.last_step = step
            if kind != "eval":  # an evaluation's time is not training time
                self._rate.append((t, step))
        return changed

    def _apply_system(self, event: dict[str, Any], step: int | None, t: float) -> set[str]:
        changed = set()
        for key in SYSTEM_KEYS:
            value = event.get(key)
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                changed.add(self._system_point(f"system/{key}", step, float(value), t))
        for gpu in event.get("gpus") or ():
            if not isinstance(gpu, dict) or not isinstance(gpu.get("index"), int):
                continue
            index = gpu["index"]
            if isinstance(gpu.get("name"), str):
                self.info.gpu_names[index] = gpu["name"]
            for key in GPU_KEYS:
                value = gpu.get(key)
                if isinstance(value, (int, float)) and not isinstance(value, bool):
                    changed.add(self._system_point(f"gpu{index}/{key}", step, float(value), t))
        if "gpu_error" in event:
            self.info.gpu_error = event["gpu_error"]
        return changed

    def _system_point(self, name: str, step: int | None, value: float, t: float) -> str:
        series = self._system.get(name)
        if series is None:
            series = self._system[name] = Series(name)
        series.append(step, value, t)
        return name

    def _refresh_status(self) -> None:
        """Re-read status.json when it changed (stat first); mark a dead runner's run crashed."""
        key = file_key(self.run.status_file)  # a rewrite is a rename: a new inode
        if key != self._status_key or self.status is None:
            try:
                self.status, self._status_key = self.run.load_status(), key
                self.status_error = None
            except StatusError as exc:  # kept: the last good status, and why this one is not
                self.status_error = str(exc)
                self._status_key = key
        status = self.status
        if status is not None and status.state in ACTIVE_STATES and not pid_alive(status.pid):
            checked = refresh_status(self.run)  # the registry's crash detection (grace for new runs)
            if checked is not None:
                self.status = checked

    def _alert(self, before: str | None, after: str | None) -> str | None:
        if after not in FINAL_STATES or before in FINAL_STATES:
            return None
        status = self.status
        assert status is not None
        where = f"at step {status.step}" + (f"/{status.max_steps}" if status.max_steps else "")
        if after == "completed":
            return f"run {status.id} completed {where}"
        if after == "stopped":
            return f"run {status.id} stopped {where}"
        error = status.error or {}
        kind = error.get("kind")
        message = error.get("message") or "no message"
        label = f"{after} ({kind})" if kind and kind != after else after
        return f"run {status.id} {label} {where}: {message}"

    # -- series -------------------------------------------------------------------------------------
    def metric_names(self) -> list[str]:
        """Every numeric key seen in train/eval events, in first-seen order."""
        with self._lock:
            return list(self._metrics)

    def system_names(self) -> list[str]:
        """`system/<key>` and `gpu<N>/<key>` series, in first-seen order."""
        with self._lock:
            return list(self._system)

    def _find(self, name: str) -> Series:
        series = self._metrics.get(name) or self._system.get(name)
        if series is None:
            raise KeyError(name)
        return series

    def has_series(self, name: str) -> bool:
        with self._lock:
            return name in self._metrics or name in self._system

    def series(self, name: str) -> SeriesPoints:
        """The full history of one metric or system series (a copy). KeyError for an unknown name."""
        with self._lock:
            return self._find(name).points()

    def last(self, name: str) -> float | None:
        with self._lock:
            series = self._metrics.get(name) or self._system.get(name)
            return series.last() if series is not None else None

    def downsample(self, name: str, width: int) -> SeriesPoints:
        """At most `2 * width + 2` points of the full history for a chart `width` columns wide: each
        column's min and max (or first NaN and max), the first and the last point. Cached per width; after
        the first call, a call costs in proportion to the points appended since."""
        with self._lock:
            return self._find(name).downsample(width)

    def gpu_indices(self) -> list[int]:
        with self._lock:
            found = {int(n[3:].split("/")[0]) for n in self._system if n.startswith("gpu")}
            return sorted(found | set(self.info.gpu_names))

    # -- progress, checkpoints, log -----------------------------------------------------------------
    def progress(self, now: float | None = None) -> Progress:
        """Step, fraction done, recent step rate and ETA, from the status and recent events."""
        with self._lock:
            now = time.time() if now is None else now
            status = self.status
            step = max(self.last_step, status.step if status else 0)
            max_steps = (status.max_steps if status else None) or (
                (self.info.start or {}).get("max_steps") or None
            )
            fraction = min(1.0, step / max_steps) if max_steps else None
            rate = None
            samples = list(self._rate)
            if (
                status is not None
                and status.state == "running"
                and status.step > (samples or [(0, 0)])[-1][1]
            ):
                samples.append((status.updated, status.step))
            if len(samples) >= 2:
                (t0, s0), (t1, s1) = samples[0], samples[-1]
                if t1 > t0 and s1 > s0:
                    rate = (s1 - s0) / (t1 - t0)
            eta = None
            running = status is None or status.state in ("running", "starting")
            if rate and max_steps and running and samples:
                since_last = max(0.0, now - samples[-1][0])
                eta = max(0.0, (max_steps - step) / rate - since_last)
            elapsed = None
            if status is not None and status.started:
                end = status.ended if status.ended and status.is_final else now
                elapsed = max(0.0, end - status.started)
            return Progress(step, max_steps, fraction, rate, eta, elapsed)

    def checkpoints(self) -> list[Checkpoint]:
        """The run's checkpoints on disk (complete or not); re-listed only after a checkpoint event."""
        with self._lock:
            if self._checkpoints is None:
                self._checkpoints = list_checkpoints(self.run)
            return list(self._checkpoints)

    def log_tail(self, lines: int | None = None) -> list[str]:
        """The last lines of output.log. The first call reads backwards from the end until it has
        enough lines; later calls read only the bytes appended since."""
        with self._lock:
            self._read_log()
            tail = list(self._log_lines)
            if self._log_partial:
                tail.append(self._log_partial.decode("utf-8", "replace"))
            return tail[-(lines or self.log_lines) :]

    def _read_log(self) -> None:
        path = self.run.log_file
        try:
            st = os.stat(path)
        except OSError:
            self._log_key, self._log_partial = None, b""
            self._log_lines.clear()
            return
        key = self._log_key
        if key is not None and (key[0] != st.st_ino or st.st_size < key[1]):
            key = None
        with open(path, "rb") as fh:
            if key is None:  # first read (or the log was replaced): from the end, backwards
                self._log_lines.clear()
                data, pos = b"", st.st_size
                block = 16384
                limit = max(65536, self.log_lines * 1024)  # enough for the lines, never the whole log
                while pos > 0 and data.count(b"\n") <= self.log_lines and st.st_size - pos < limit:
                    step = min(block, pos)
                    pos -= step
                    fh.seek(pos)
                    data = fh.read(step) + data
                self.log_bytes_read += st.st_size - pos
                if pos > 0:  # the first line is probably cut: drop it
                    data = data.split(b"\n", 1)[1] if b"\n" in data else b""
                self._log_partial = b""
            else:
                fh.seek(key[1])
                data = fh.read(st.st_size - key[1])
                self.log_bytes_read += len(data)
            data = self._log_partial + data
            end = data.rfind(b"\n")
            complete, self._log_partial = (data[: end + 1], data[end + 1 :]) if end >= 0 else (b"", data)
            for raw in complete.decode("utf-8", "replace").splitlines():
                self._log_lines.append(raw)
            self._log_key = (st.st_ino, st.st_size)
