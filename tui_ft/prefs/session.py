"""An annotation session: the pairs to judge, in order, and one annotator's way through them.

A session NAME lives in `<workspace>/annotations/`: its decisions in the store `NAME.jsonl` (the truth,
fsynced per decision) and its own folder `sessions/NAME/` holding `session.json` (what it was started
with: the prompts file, the two sources, their settings) and `pairs.jsonl` (the candidates generated so
far, one line per pair, the latest line for a prompt winning after a regeneration). Nothing about the
annotator's place is kept apart from the store: the position is the first pair they have not decided,
so a restart after kill -9 continues at the right pair by construction.

Candidates come from two sources: two models (`a`, `b`), two samples of one model (`b` empty: two seeds,
or two temperatures), or a pairs file's own responses (review). Which source shows as A is decided per
pair from its id (the same for every annotator, so their labels compare) and recorded in each
response's `side`. Light: no torch, no textual, no data layer.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from tui_ft.errors import UserError
from tui_ft.prefs.store import LABELS, Decision, PreferenceStore, Response, new_decision, store_path
from tui_ft.workspace import Workspace

SESSION_VERSION = 1
DEFAULT_BUFFER = 4
DEFAULT_MAX_NEW_TOKENS = 64
DEFAULT_TEMPERATURE = 0.8


def sessions_dir(ws: Workspace) -> Path:
    return ws.annotations / "sessions"


def session_name_ok(name: str) -> bool:
    return bool(name) and all(c.isalnum() or c in "-_." for c in name) and not name.startswith(".")


# --- the annotator's name -----------------------------------------------------------------------------


def annotator_file(ws: Workspace) -> Path:
    return sessions_dir(ws) / "annotator.json"


def remembered_annotator(ws: Workspace) -> str | None:
    """The name given last time (asked once, then remembered for this workspace)."""
    try:
        name = json.loads(annotator_file(ws).read_text()).get("name")
    except (OSError, ValueError, AttributeError):
        return None
    return str(name) if name else None


def remember_annotator(ws: Workspace, name: str) -> None:
    _write_json(annotator_file(ws), {"name": name})


def _write_json(path: Path, doc: dict[str, Any]) -> None:
    """Written whole or not at all (a temporary file renamed over the old one)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(doc, indent=2, ensure_ascii=False) + "\n")
    os.replace(tmp, path)


# --- what a session was started with ----------------------------------------------------------------------


@dataclass
class SessionSpec:
    """How a session makes its pairs. `kind` is `generate` (from models) or `review` (a pairs file)."""

    name: str
    prompts: str  # the prompts or pairs file, absolute
    kind: str = "generate"
    a: str | None = None  # the first source: a model reference
    b: str | None = None  # the second model; None: a second sample of `a`
    settings_a: dict[str, Any] = field(default_factory=dict)  # temperature, max_new_tokens, seed
    settings_b: dict[str, Any] = field(default_factory=dict)
    buffer: int = DEFAULT_BUFFER  # pairs generated ahead of the annotator
    created: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return {"v": SESSION_VERSION, **asdict(self)}

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> SessionSpec:
        known = {k: doc[k] for k in cls.__dataclass_fields__ if k in doc}  # a newer version's keys ignored
        return cls(**known)

    def sources(self) -> str:
        """The two sources, for people."""
        if self.kind == "review":
            return f"pairs from {Path(self.prompts).name}"
        if self.b:
            return f"{self.a} vs {self.b}"
        ta, tb = self.settings_a.get("temperature"), self.settings_b.get("temperature")
        return f"{self.a}: two samples" + (f" (temperature {ta} and {tb})" if ta != tb else " (two seeds)")


def default_settings(
    temperature: float = DEFAULT_TEMPERATURE,
    max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS,
    seed: int = 0,
) -> dict[str, Any]:
    return {"temperature": temperature, "max_new_tokens": max_new_tokens, "seed": seed}


def spec_path(ws: Workspace, name: str) -> Path:
    return sessions_dir(ws) / name / "session.json"


def save_spec(ws: Workspace, spec: SessionSpec) -> None:
    if not spec.created:
        spec.created = time.time()
    _write_json(spec_path(ws, spec.name), spec.to_json())


def load_spec(ws: Workspace, name: str) -> SessionSpec | None:
    path = spec_path(ws, name)
    if not path.exists():
        return None
    try:
        doc = json.loads(path.read_text())
        if not isinstance(doc, dict):
            raise ValueError("not an object")
        return SessionSpec.from_json(doc)
    except (ValueError, TypeError) as exc:
        raise UserError(f"cannot read this session ({exc})", path=path) from None


def list_sessions(ws: Workspace) -> list[SessionSpec]:
    """Every session of the workspace, newest first."""
    found = []
    for path in sorted(sessions_dir(ws).glob("*/session.json")):
        try:
            spec = load_spec(ws, path.parent.name)
        except UserError:
            continue
        if spec is not None:
            found.append(spec)
    return sorted(found, key=lambda s: -s.created)


# --- pairs ----------------------------------------------------------------------------------------


@dataclass
class Pair:
    """Prompt `index` of the session and its two candidates as shown (A first), or why there are none."""

    index: int
    prompt: list[dict[str, str]]
    line: int = 0  # the prompt's line in its file
    id: str = ""
    responses: tuple[Response, Response] | None = None
    error: str | None = None  # the generation failed: the pair is marked and passed over

    @property
    def ready(self) -> bool:
        return self.responses is not None and self.error is None

    def to_json(self) -> dict[str, Any]:
        return {
            "type": "pair",
            "index": self.index,
            "pair": self.id,
            "line": self.line,
            "prompt": self.prompt,
            "responses": [r.to_json() for r in self.responses] if self.responses else None,
            "error": self.error,
            "time": time.time(),
        }


def a_shows_first(pair_id: str) -> bool:
    """Whether the first source shows as A for this pair: from its id, so the same for every annotator,
    and about half the pairs each way (against position bias)."""
    return hashlib.sha256(pair_id.encode()).digest()[0] & 1 == 0


def arrange(
    pair_id: str, first: tuple[str, str, dict[str, Any]], second: tuple[str, str, dict[str, Any]]
) -> tuple[Response, Response]:
    """(A, B) from the two sources' (text, source, settings), sides decided by `a_shows_first`."""
    one, two = (first, second) if a_shows_first(pair_id) else (second, first)
    return (Response(one[0], one[1], "A", dict(one[2])), Response(two[0], two[1], "B", dict(two[2])))


def review_pair_id(prompt: list[dict[str, str]], first: str, second: str) -> str:
    """A pair from a file has an id from its content: everyone reviewing that file judges the same ids."""
    digest = hashlib.sha256(json.dumps([prompt, first, second], ensure_ascii=False).encode()).hexdigest()
    return f"r-{digest[:16]}"


def side_settings(spec: SessionSpec, index: int, slot: str) -> dict[str, Any]:
    """The generation settings of source `slot` (a or b) for prompt `index`: its own seed per prompt."""
    settings = dict(spec.settings_a if slot == "a" else spec.settings_b)
    base = int(settings.get("seed") or 0)
    settings["seed"] = base + index
    settings["slot"] = slot
    return settings


class PairCache:
    """`sessions/NAME/pairs.jsonl`: the candidates generated so far (appended; the latest per prompt wins)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()

    def add(self, pair: Pair) -> None:
        line = json.dumps(pair.to_json(), ensure_ascii=False) + "\n"
        with self._lock:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.path, "a", encoding="utf-8") as fh:
                fh.write(line)
                fh.flush()
                os.fsync(fh.fileno())

    def read(self) -> dict[int, Pair]:
        out: dict[int, Pair] = {}
        if not self.path.exists():
            return out
        for raw in self.path.read_text(encoding="utf-8").splitlines():
            try:
                doc = json.loads(raw)
                responses = doc.get("responses")
                pair = Pair(
                    index=int(doc["index"]),
                    prompt=list(doc["prompt"]),
                    line=int(doc.get("line") or 0),
                    id=str(doc["pair"]),
                    responses=tuple(  # type: ignore[arg-type]
                        Response(
                            str(r["text"]),
                            str(r.get("source", "")),
                            str(r["side"]),
                            dict(r.get("settings") or {}),
                        )
                        for r in responses
                    )
                    if responses
                    else None,
                    error=doc.get("error"),
                )
            except (ValueError, KeyError, TypeError, AttributeError):
                continue  # a torn last line: that pair is generated again
            out[pair.index] = pair
        return out


# --- one annotator's way through a session ----------------------------------------------------------------


@dataclass(frozen=True)
class Progress:
    done: int
    total: int
    failed: int
    pace: float | None  # decisions per minute in this sitting
    left_s: float | None  # time left at that pace
    shares: dict[str, float]  # A / B / tie / both_bad / skip -> share of this annotator's decisions

    def line(self) -> str:
        parts = [f"{self.done}/{self.total} done"]
        if self.failed:
            parts.append(f"{self.failed} failed")
        if self.pace:
            parts.append(f"{self.pace:.1f}/min")
        if self.left_s is not None:
            minutes = self.left_s / 60
            parts.append(f"~{minutes:.0f} min left" if minutes >= 1 else f"~{self.left_s:.0f} s left")
        if self.done:
            parts.append(
                " ".join(f"{label} {self.shares.get(label, 0.0):.0%}" for label in ("A", "B", "tie"))
            )
        return " · ".join(parts)


class AnnotationSession:
    """The pairs of one session and one annotator's decisions on them (the store is the truth).

    Called from the UI's event loop only, except `pairs_to_make`/`set_pair` which the generation worker
    also uses (under a lock)."""

    def __init__(self, ws: Workspace, spec: SessionSpec, prompts: list[Pair], annotator: str) -> None:
        self.ws = ws
        self.spec = spec
        self.annotator = annotator
        self.store = PreferenceStore(store_path(ws.annotations, spec.name))
        self.cache = PairCache(sessions_dir(ws) / spec.name / "pairs.jsonl")
        self.pairs: list[Pair] = prompts
        self._lock = threading.RLock()
        if spec.kind == "generate":
            for index, cached in self.cache.read().items():
                if index < len(self.pairs) and cached.prompt == self.pairs[index].prompt:
                    self.pairs[index] = cached
        self.mine: dict[str, Decision] = {}  # pair id -> my standing decision
        self.history: list[Decision] = []  # my standing decisions, oldest first (undo takes the last)
        self.torn_lines: list[int] = []
        self.reload()
        self.position = self.first_undecided()
        self.regenerate_asked: set[int] = set()
        self.started = time.monotonic()
        self.decided_now = 0  # decisions made in this sitting (the pace)

    def reload(self) -> None:
        """Read my standing decisions back from the store."""
        contents = self.store.read()
        self.torn_lines = contents.torn_lines
        ids = {p.id for p in self.pairs if p.id}
        mine = [d for d in contents.decisions if d.annotator == self.annotator and d.pair in ids]
        self.history = sorted(mine, key=lambda d: (d.time, d.line))
        self.mine = {d.pair: d for d in self.history}

    # --- where the annotator is -----------------------------------------------------------------------

    @property
    def total(self) -> int:
        return len(self.pairs)

    @property
    def current(self) -> Pair | None:
        return self.pairs[self.position] if 0 <= self.position < len(self.pairs) else None

    def decision_on(self, pair: Pair | None) -> Decision | None:
        return self.mine.get(pair.id) if pair is not None and pair.id else None

    def first_undecided(self, start: int = 0) -> int:
        """The first pair from `start` not decided by this annotator (failed ones passed over); the end
        (`total`) when every one is."""
        for i in range(start, len(self.pairs)):
            pair = self.pairs[i]
            if pair.error is None and self.decision_on(pair) is None:
                return i
        return len(self.pairs)

    def move(self, step: int) -> None:
        self.position = max(0, min(len(self.pairs), self.position + step))

    # --- deciding ------------------------------------------------------------------------------------------

    def decide(self, label: str, rationale: str = "") -> Decision:
        """Judge the current pair (a pair judged before is judged again: the old decision is retracted),
        on disk when this returns; the position moves to the next undecided pair."""
        if label not in LABELS:
            raise ValueError(label)
        pair = self.current
        if pair is None or not pair.ready or pair.responses is None:
            raise UserError("this pair has no candidates to judge yet")
        old = self.decision_on(pair)
        if old is not None:
            self.store.retract(old.id, annotator=self.annotator)
            self.history.remove(old)
        decision = new_decision(
            pair.prompt,
            pair.responses[0],
            pair.responses[1],
            label,
            annotator=self.annotator,
            pair=pair.id,
            rationale=rationale,
            origin="annotate",
        )
        self.store.add(decision)
        self.history.append(decision)
        self.mine[pair.id] = decision
        self.decided_now += 1
        following = self.first_undecided(self.position + 1)
        self.position = following if following < len(self.pairs) else self.first_undecided(0)
        return decision

    def undo(self) -> Decision | None:
        """Take back my last decision (a retraction appended) and go back to its pair."""
        if not self.history:
            return None
        decision = self.history.pop()
        self.store.retract(decision.id, annotator=self.annotator)
        self.mine.pop(decision.pair, None)
        self.decided_now = max(0, self.decided_now - 1)
        for i, pair in enumerate(self.pairs):
            if pair.id == decision.pair:
                self.position = i
                break
        return decision

    # --- candidates -----------------------------------------------------------------------------------------

    def pairs_to_make(self) -> list[int]:
        """Prompts whose candidates the generator should make next: regenerations asked for first, then
        the pairs from the position up to `buffer` ahead that have none."""
        with self._lock:
            asked = sorted(self.regenerate_asked)
            ahead = [
                i
                for i in range(self.position, min(len(self.pairs), self.position + max(1, self.spec.buffer)))
                if self.pairs[i].responses is None and self.pairs[i].error is None
            ]
            return asked + [i for i in ahead if i not in asked]

    def buffered(self) -> int:
        """Ready pairs from the position on that the annotator has not decided."""
        return sum(1 for p in self.pairs[self.position :] if p.ready and self.decision_on(p) is None)

    def made(self, index: int, texts: tuple[str, str] | None, error: str | None = None) -> Pair:
        """Record the candidates generated for prompt `index` (or why they failed) as a new pair."""
        spec = self.spec
        with self._lock:
            old = self.pairs[index]
            pair = Pair(index, old.prompt, old.line, id=uuid.uuid4().hex[:16])
            if texts is None:
                pair.error = error or "the generation failed"
            else:
                sources = (spec.a or "", spec.b or spec.a or "")
                pair.responses = arrange(
                    pair.id,
                    (texts[0], sources[0], side_settings(spec, index, "a")),
                    (texts[1], sources[1], side_settings(spec, index, "b")),
                )
            self.cache.add(pair)
            self.pairs[index] = pair
            self.regenerate_asked.discard(index)
            return pair

    def regenerate(self, index: int) -> None:
        """Ask for new candidates for prompt `index` (a decision on the old ones stays as it was made)."""
        with self._lock:
            self.regenerate_asked.add(index)
            if self.pairs[index].error is not None:
                self.pairs[index].error = None

    # --- progress -----------------------------------------------------------------------------------------

    def progress(self) -> Progress:
        done = sum(1 for p in self.pairs if self.decision_on(p) is not None)
        failed = sum(1 for p in self.pairs if p.error is not None)
        left = max(0, len(self.pairs) - done - failed)
        minutes = (time.monotonic() - self.started) / 60
        pace = self.decided_now / minutes if self.decided_now and minutes > 0 else None
        labels = [d.label for d in self.mine.values()]
        shares = {label: labels.count(label) / len(labels) for label in LABELS} if labels else {}
        return Progress(done, len(self.pairs), failed, pace, left / pace * 60 if pace else None, shares)


def prompt_pairs(items: list[Any], spec: SessionSpec) -> list[Pair]:
    """The session's pairs from the prompt items of its file (`data.prompts.PromptItem`): for a review,
    the file's two responses arranged; otherwise prompts waiting for candidates."""
    pairs = []
    name = Path(spec.prompts).name
    for index, item in enumerate(items):
        pair = Pair(index, item.prompt, item.line)
        if spec.kind == "review":
            first, second = item.candidates
            pair.id = review_pair_id(item.prompt, first.text, second.text)
            pair.responses = arrange(
                pair.id,
                (first.text, f"file:{name}#{first.origin}", {}),
                (second.text, f"file:{name}#{second.origin}", {}),
            )
        pairs.append(pair)
    return pairs
