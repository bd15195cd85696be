"""The annotation store: `<workspace>/annotations/NAME.jsonl`, append-only, one JSON object per line,
flushed and fsynced per line so a decision made is never lost (kill -9, power cut).

A `decision` line records one judgement of two responses to one prompt; undo appends a `retract`
line naming the decision it takes back. Readers apply retractions, ignore keys they do not know (a
newer version may add some) and skip a torn last line, reporting it. The fields are documented in
docs/annotations.md. Light: no torch, no textual.
"""

from __future__ import annotations

import json
import os
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tui_ft.errors import DataError

VERSION = 1
LABELS = ("A", "B", "tie", "both_bad", "skip")
SIDES = ("A", "B")


@dataclass(frozen=True)
class Response:
    """One candidate as shown: its text, where it came from, and the side it was shown on."""

    text: str
    source: str  # a model reference, "file:<path>" for a pairs file, ...
    side: str  # "A" (left/top) or "B"
    settings: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"text": self.text, "source": self.source, "side": self.side, "settings": self.settings}


@dataclass(frozen=True)
class Decision:
    """A judgement of responses A and B to `prompt` (a list of chat turns ending with the user's)."""

    id: str
    pair: str  # the pair being judged: the same pair judged by two annotators shares it
    prompt: list[dict[str, str]]
    responses: tuple[Response, Response]  # A, then B
    label: str  # one of LABELS: A or B better, tie, both bad, skipped
    annotator: str
    time: float
    rationale: str = ""
    origin: str = "annotate"  # "annotate" | "chat"
    line: int = 0  # where it stands in the store (1-based), for messages

    @property
    def chosen(self) -> Response | None:
        """The better response, when the label says which."""
        return {"A": self.responses[0], "B": self.responses[1]}.get(self.label)

    @property
    def rejected(self) -> Response | None:
        return {"A": self.responses[1], "B": self.responses[0]}.get(self.label)

    def to_json(self) -> dict[str, Any]:
        return {
            "type": "decision",
            "v": VERSION,
            "id": self.id,
            "pair": self.pair,
            "prompt": self.prompt,
            "responses": [r.to_json() for r in self.responses],
            "label": self.label,
            "annotator": self.annotator,
            "time": self.time,
            "rationale": self.rationale,
            "origin": self.origin,
        }


def new_decision(
    prompt: list[dict[str, str]],
    a: Response,
    b: Response,
    label: str,
    *,
    annotator: str,
    pair: str | None = None,
    rationale: str = "",
    origin: str = "annotate",
) -> Decision:
    if label not in LABELS:
        raise ValueError(f"label must be one of {', '.join(LABELS)}, not {label!r}")
    return Decision(
        id=uuid.uuid4().hex[:16],
        pair=pair or uuid.uuid4().hex[:16],
        prompt=prompt,
        responses=(a, b),
        label=label,
        annotator=annotator,
        time=time.time(),
        rationale=rationale,
        origin=origin,
    )


@dataclass
class StoreContents:
    """What a store holds once retractions are applied."""

    decisions: list[Decision]  # in the order they were made, retracted ones left out
    retracted: int = 0
    torn_lines: list[int] = field(default_factory=list)  # lines cut short by a crash, skipped
    unknown_lines: list[int] = field(default_factory=list)  # lines of a type this version does not know


class PreferenceStore:
    """Append decisions and retractions to one JSONL file; read it back."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()

    def _append(self, doc: dict[str, Any]) -> None:
        line = json.dumps(doc, ensure_ascii=False) + "\n"
        with self._lock:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                if self._ends_torn(fd):
                    line = "\n" + line  # a torn line before ours stays torn; ours starts clean
                os.write(fd, line.encode())
                os.fsync(fd)
            finally:
                os.close(fd)

    def _ends_torn(self, fd: int) -> bool:
        size = os.fstat(fd).st_size
        if size == 0:
            return False
        return os.pread(fd, 1, size - 1) != b"\n"

    def add(self, decision: Decision) -> Decision:
        """Append one decision (on disk when this returns)."""
        self._append(decision.to_json())
        return decision

    def retract(self, decision_id: str, *, annotator: str) -> None:
        """Take a decision back (undo): appended, never rewritten."""
        self._append(
            {
                "type": "retract",
                "v": VERSION,
                "id": uuid.uuid4().hex[:16],
                "retracts": decision_id,
                "annotator": annotator,
                "time": time.time(),
            }
        )

    def read(self) -> StoreContents:
        """The decisions that stand. A line cut short by a crash (no closing brace) is skipped and
        reported; any other line that is not a JSON object is bad input (path:line)."""
        contents = StoreContents([])
        if not self.path.exists():
            return contents
        decisions: dict[str, Decision] = {}
        for number, data in enumerate(self.path.read_bytes().split(b"\n"), start=1):
            if not data.strip():
                continue
            try:
                doc = json.loads(data)
                if not isinstance(doc, dict):
                    raise ValueError("not an object")
            except ValueError as exc:
                if not data.rstrip().endswith(b"}"):
                    contents.torn_lines.append(number)
                    continue
                raise DataError(f"not a JSON object ({exc})", path=self.path, line=number) from exc
            kind = doc.get("type")
            if kind == "decision":
                decision = decision_from_json(doc, self.path, number)
                decisions[decision.id] = decision
            elif kind == "retract":
                if decisions.pop(str(doc.get("retracts")), None) is not None:
                    contents.retracted += 1
            else:
                contents.unknown_lines.append(number)
        contents.decisions = list(decisions.values())
        return contents


def decision_from_json(doc: dict[str, Any], path: Path | str | None = None, line: int = 0) -> Decision:
    """A decision line read back; DataError (path:line: field) when a field it needs is wrong."""

    def bad(what: str) -> DataError:
        return DataError(what, path=path, line=line)

    responses = doc.get("responses")
    if not isinstance(responses, list) or len(responses) != 2:
        raise bad("responses: expected a list of two responses")
    parsed = []
    for i, r in enumerate(responses):
        if not isinstance(r, dict) or not isinstance(r.get("text"), str):
            raise bad(f"responses[{i}].text: expected a string")
        parsed.append(
            Response(
                r["text"],
                str(r.get("source", "")),
                str(r.get("side", SIDES[i])),
                dict(r.get("settings") or {}),
            )
        )
    label = doc.get("label")
    if label not in LABELS:
        raise bad(f"label: expected one of {', '.join(LABELS)}, got {label!r}")
    prompt = doc.get("prompt")
    if isinstance(prompt, str):
        prompt = [{"role": "user", "content": prompt}]
    if not isinstance(prompt, list) or not all(isinstance(m, dict) and "content" in m for m in prompt):
        raise bad("prompt: expected a list of turns ({role, content})")
    return Decision(
        id=str(doc.get("id")),
        pair=str(doc.get("pair") or doc.get("id")),
        prompt=prompt,
        responses=(parsed[0], parsed[1]),
        label=label,
        annotator=str(doc.get("annotator") or ""),
        time=float(doc.get("time") or 0.0),
        rationale=str(doc.get("rationale") or ""),
        origin=str(doc.get("origin") or "annotate"),
        line=line,
    )


def store_path(annotations_dir: Path, name: str) -> Path:
    """`annotations/NAME.jsonl` for a store name (a path is taken as it is)."""
    path = Path(name)
    if path.suffix == ".jsonl" and (path.is_absolute() or path.parent != Path(".")):
        return path
    return annotations_dir / f"{name.removesuffix('.jsonl')}.jsonl"
