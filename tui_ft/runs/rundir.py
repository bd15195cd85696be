"""The run directory: the contract between the runner (writer) and every reader (CLI, UI).

runs/<id>/recipe.yaml      the resolved recipe, as run
runs/<id>/status.json      one JSON object, replaced atomically (tmp + rename) on every change
runs/<id>/events.jsonl     one JSON object per line, appended and flushed per event (docs/events.md)
runs/<id>/output.log       the runner's stdout/stderr, tracebacks included
runs/<id>/checkpoints/     checkpoint-N folders written by the trainer
runs/<id>/final/           the trained model or adapter, loadable with from_pretrained
"""

from __future__ import annotations

import json
import os
import re
import threading
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from tui_ft.errors import UserError

STATES = ("queued", "starting", "running", "stopping", "stopped", "completed", "failed", "crashed")
FINAL_STATES = ("stopped", "completed", "failed", "crashed")


class StatusError(UserError):
    """A status.json that is missing, not JSON, or whose fields have the wrong types (exit 2)."""


@dataclass
class Status:
    id: str
    name: str
    method: str
    state: str = "starting"
    pid: int | None = None
    step: int = 0
    max_steps: int | None = None
    epoch: float | None = None
    loss: float | None = None
    eval_loss: float | None = None
    created: float = field(default_factory=time.time)
    started: float | None = None
    updated: float = field(default_factory=time.time)
    ended: float | None = None
    error: dict[str, Any] | None = None  # {"kind", "message", "hint"}
    last_checkpoint: str | None = None
    output_dir: str | None = None
    world_size: int = 1
    devices: list[str] | None = None
    device: str | None = None
    model: str | None = None
    adapter: str | None = None
    sweep: str | None = None  # the sweep this run is a trial of

    @classmethod
    def from_dict(cls, data: Any, path: Path | str | None = None) -> Status:
        """A status from status.json's object; unknown keys are ignored (a newer writer's), known ones
        are checked against their types. StatusError (naming `path` and the field) otherwise."""
        if not isinstance(data, dict):
            raise StatusError(f"expected a JSON object, got {type(data).__name__}", path=path)
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        for name in ("id", "name", "method"):
            if name not in known:
                raise StatusError("missing", path=path, field=name)
        for name, value in known.items():
            problem = _type_problem(cls.__dataclass_fields__[name].type, value)
            if problem:
                raise StatusError(problem, path=path, field=name)
        return cls(**known)

    @property
    def is_final(self) -> bool:
        return self.state in FINAL_STATES


# The types of Status's fields (as annotated), and how to check a JSON value against each.
_JSON_TYPES: dict[str, tuple[str, tuple[type, ...]]] = {
    "str": ("a string", (str,)),
    "int": ("an integer", (int,)),
    "float": ("a number", (int, float)),
    "dict[str, Any]": ("an object", (dict,)),
    "list[str]": ("a list of strings", (list,)),
}


def _type_problem(annotation: Any, value: Any) -> str | None:
    """What is wrong with `value` for a field annotated `annotation` (a string, as postponed), or None."""
    base = str(annotation)
    optional = base.endswith(" | None")
    base = base.removesuffix(" | None")
    if value is None:
        return None if optional else "expected a value, got null"
    what, types = _JSON_TYPES[base]
    ok = isinstance(value, types) and not isinstance(value, bool)
    if ok and base == "list[str]":
        ok = all(isinstance(v, str) for v in value)
    return None if ok else f"expected {what}, got {json.dumps(value, default=str)[:60]}"


def new_run_id(name: str, runs_root: Path, now: datetime | None = None) -> str:
    """`20261122-014512-sft-lora`: sorts by time; a suffix keeps ids unique within a second."""
    slug = re.sub(r"[^A-Za-z0-9_-]+", "-", name).strip("-") or "run"
    stamp = (now or datetime.now()).strftime("%Y%m%d-%H%M%S")
    candidate = f"{stamp}-{slug}"
    n = 2
    while (runs_root / candidate).exists():
        candidate = f"{stamp}-{slug}-{n}"
        n += 1
    return candidate


def write_json_atomic(path: Path, data: Any) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(data, fh, indent=1, default=str)
        fh.write("\n")
    os.replace(tmp, path)  # readers see the old file or the new one, never a half-written one


def file_key(path: Path) -> tuple[int, int, int] | None:
    """(inode, mtime, size): changes on every append and on every atomic replace."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_ino, st.st_mtime_ns, st.st_size)


class RunDir:
    """Paths and small reads/writes of one run directory."""

    def __init__(self, path: Path):
        self.path = Path(path)

    @property
    def id(self) -> str:
        return self.path.name

    recipe_file = property(lambda self: self.path / "recipe.yaml")
    status_file = property(lambda self: self.path / "status.json")
    events_file = property(lambda self: self.path / "events.jsonl")
    log_file = property(lambda self: self.path / "output.log")
    checkpoints = property(lambda self: self.path / "checkpoints")
    final = property(lambda self: self.path / "final")
    stop_file = property(lambda self: self.path / "stop-request")

    def load_status(self) -> Status:
        """The run's status; StatusError naming status.json when it is missing, unreadable or ill-typed."""
        path = self.status_file
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise StatusError(
                "no such file: the run never started, or the folder is not a run", path=path
            ) from None
        except (OSError, UnicodeDecodeError) as exc:
            raise StatusError(f"cannot be read ({exc})", path=path) from None
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise StatusError(f"not JSON ({exc})", path=path) from None
        return Status.from_dict(data, path)

    def read_status(self) -> Status | None:
        """The run's status, or None when status.json is missing, unreadable or ill-typed."""
        try:
            return self.load_status()
        except StatusError:
            return None

    def write_status(self, status: Status) -> None:
        status.updated = time.time()
        write_json_atomic(self.status_file, asdict(status))


class EventWriter:
    """Appends events to events.jsonl, one flushed line each."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self._fh = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 - held for the run's life
        self._lock = threading.Lock()  # the trainer and the system sampler write from two threads

    def write(self, kind: str, **fields: Any) -> dict[str, Any]:
        event = {"t": round(time.time(), 3), "type": kind, **fields}
        line = json.dumps(event, default=_json_default, allow_nan=True) + "\n"
        with self._lock:
            if not self._fh.closed:
                self._fh.write(line)
                self._fh.flush()
        return event

    def close(self) -> None:
        with self._lock:
            self._fh.close()

    def __enter__(self) -> EventWriter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _json_default(value: Any) -> Any:
    if hasattr(value, "item"):
        return value.item()
    return str(value)


def read_events(path: Path, offset: int = 0) -> tuple[list[dict[str, Any]], int]:
    """Events from byte `offset` on, and the offset to continue from.

    Only complete lines are read: a torn last line (a writer mid-write, or killed) is left for the next
    call, so tailing never loses or mangles an event. A complete line that is not JSON is skipped.
    """
    try:
        with open(path, "rb") as fh:
            fh.seek(offset)
            chunk = fh.read()
    except FileNotFoundError:
        return [], offset
    end = chunk.rfind(b"\n")
    if end < 0:
        return [], offset
    return parse_event_lines(chunk[: end + 1]), offset + end + 1


def parse_event_lines(data: bytes) -> list[dict[str, Any]]:
    """The events in `data`, complete lines of events.jsonl. A line that is not a JSON object, or whose
    `type` is not a string, `step` not an integer or `t` not a number, is skipped (garbled)."""
    events = []
    for raw in data.splitlines():
        if not raw.strip():
            continue
        try:
            event = json.loads(raw)
        except ValueError:
            continue
        if isinstance(event, dict) and _well_typed(event):
            events.append(event)
    return events


def _well_typed(event: dict[str, Any]) -> bool:
    """The keys every reader relies on have their documented types (docs/events.md)."""
    step, t = event.get("step"), event.get("t")
    return (
        isinstance(event.get("type"), str)
        and (step is None or (isinstance(step, int) and not isinstance(step, bool)))
        and (t is None or (isinstance(t, (int, float)) and not isinstance(t, bool)))
    )
