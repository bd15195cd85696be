"""Conversations as the Chat screen keeps them: saved to and loaded from `<workspace>/chats/`, and the
few-shot turns (k examples from a dataset) that make the in-context baseline a fine-tune is measured
against. Light: no torch."""

from __future__ import annotations

import json
import random
import re
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from tui_ft.errors import DataError, UserError
from tui_ft.workspace import Workspace

_NAME = re.compile(r"^[\w][\w.-]{0,99}$")
FEW_SHOT_POOL = 500  # examples are drawn from the first rows of a dataset: large files stay cheap


@dataclass
class Reply:
    """One model's answer to a user turn, with how it was made."""

    model: str
    text: str
    new_tokens: int = 0
    seconds: float = 0.0
    stopped: bool = False
    error: str | None = None
    prompt_tokens: int = 0


@dataclass
class Turn:
    """A user message and the replies to it (one, or two when comparing)."""

    user: str
    replies: list[Reply] = field(default_factory=list)
    preferred: int | None = None  # when comparing: the reply judged better, which later turns build on

    def kept_reply(self) -> Reply | None:
        """The reply later turns build on."""
        if self.preferred is not None and self.preferred < len(self.replies):
            return self.replies[self.preferred]
        return next((r for r in self.replies if r.error is None), None)


@dataclass
class Conversation:
    """What a chat holds: its settings and its turns."""

    models: list[str]
    system: str = ""
    settings: dict[str, Any] = field(default_factory=dict)
    few_shot: list[dict[str, str]] = field(default_factory=list)
    turns: list[Turn] = field(default_factory=list)
    created: float = field(default_factory=time.time)

    def prompt_for(self, index: int) -> list[dict[str, str]]:
        """The turns a model answers at turn `index`: the system prompt, the few-shot examples, the
        earlier turns (each with its preferred reply, else the first that did not fail) and the user's
        message of turn `index`. Both models of a comparison see the same history."""
        messages = [{"role": "system", "content": self.system}] if self.system else []
        messages.extend(self.few_shot)
        for turn in self.turns[:index]:
            messages.append({"role": "user", "content": turn.user})
            reply = turn.kept_reply()
            if reply is not None:
                messages.append({"role": "assistant", "content": reply.text})
        messages.append({"role": "user", "content": self.turns[index].user})
        return messages

    def to_json(self) -> dict[str, Any]:
        return {"version": 1, **asdict(self)}

    @classmethod
    def from_json(cls, doc: dict[str, Any], path: Path | str = "") -> Conversation:
        try:
            turns = [
                Turn(
                    str(t["user"]),
                    [Reply(**_known(Reply, r)) for r in t.get("replies", [])],
                    t.get("preferred") if isinstance(t.get("preferred"), int) else None,
                )
                for t in doc.get("turns", [])
            ]
            return cls(
                models=[str(m) for m in doc.get("models", [])],
                system=str(doc.get("system") or ""),
                settings=dict(doc.get("settings") or {}),
                few_shot=[
                    {"role": str(m["role"]), "content": str(m["content"])} for m in doc.get("few_shot", [])
                ],
                turns=turns,
                created=float(doc.get("created") or time.time()),
            )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise DataError(f"not a saved conversation ({type(exc).__name__}: {exc})", path=path) from exc


def _known(cls: type, data: dict[str, Any]) -> dict[str, Any]:
    """The keys of `data` that `cls` has (a file from a newer version may carry more)."""
    names = {f.name for f in fields(cls)}
    return {k: v for k, v in data.items() if k in names}


def chats_dir(ws: Workspace) -> Path:
    return ws.root / "chats"


def save_conversation(ws: Workspace, name: str, conversation: Conversation) -> Path:
    """Write `<workspace>/chats/NAME.json` (replacing it atomically)."""
    name = name.removesuffix(".json")
    if not _NAME.match(name):
        raise UserError(
            f"{name!r} is not a usable chat name", field="name", hint="letters, digits, '.', '-' and '_'"
        )
    folder = chats_dir(ws)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(conversation.to_json(), indent=1, ensure_ascii=False))
    tmp.replace(path)
    return path


def list_conversations(ws: Workspace) -> list[Path]:
    """Saved conversations, newest first."""
    folder = chats_dir(ws)
    if not folder.is_dir():
        return []
    return sorted(folder.glob("*.json"), key=lambda p: p.stat().st_mtime, reverse=True)


def load_conversation(ws: Workspace, name: str) -> Conversation:
    path = Path(name)
    if not path.is_file():
        path = chats_dir(ws) / f"{name.removesuffix('.json')}.json"
    try:
        doc = json.loads(path.read_text())
    except OSError as exc:
        raise UserError(f"no saved conversation {name!r}", path=path, hint="`ls` the chats/ folder") from exc
    except ValueError as exc:
        raise DataError(f"not valid JSON: {exc}", path=path) from exc
    if not isinstance(doc, dict):
        raise DataError("not a saved conversation (expected a JSON object)", path=path)
    return Conversation.from_json(doc, path)


def example_turns(record: dict[str, Any]) -> list[dict[str, str]] | None:
    """One dataset row as a user turn and the assistant's answer, or None when it has no such pair."""
    from tui_ft.data.formats import Format, detect_format, normalise, validate_record

    fmt = detect_format(record)
    if fmt is None or validate_record(record, fmt):
        return None
    row = normalise(record, fmt)
    if "messages" in row:
        turns = [m for m in row["messages"] if m["role"] in ("user", "assistant")]
        for i in range(len(turns) - 1):
            if turns[i]["role"] == "user" and turns[i + 1]["role"] == "assistant":
                return [_turn(turns[i]), _turn(turns[i + 1])]
        return None
    if fmt in (Format.prompt_completion, Format.alpaca):
        prompt, completion = row["prompt"], row["completion"]
        user = prompt[-1]["content"] if isinstance(prompt, list) else prompt
        answer = completion[0]["content"] if isinstance(completion, list) else completion
        return [{"role": "user", "content": str(user)}, {"role": "assistant", "content": str(answer)}]
    return None


def _turn(message: dict[str, Any]) -> dict[str, str]:
    content = message.get("content")
    return {"role": str(message["role"]), "content": content if isinstance(content, str) else str(content)}


def few_shot_turns(ref: str, k: int, ws: Workspace, *, seed: int = 0) -> list[dict[str, str]]:
    """k examples drawn (with `seed`) from a chat or prompt/completion dataset, as alternating turns."""
    from tui_ft.data.sources import open_dataset

    if k < 1:
        raise UserError("the number of examples must be at least 1", field="k")
    examples: list[list[dict[str, str]]] = []
    with open_dataset(ref, base_dir=ws.data) as source:
        for n, row in enumerate(source):
            if n >= FEW_SHOT_POOL:
                break
            pair = example_turns(row.data)
            if pair is not None:
                examples.append(pair)
    if not examples:
        raise DataError(
            "no example with a user turn and an answer in the first rows",
            path=ref,
            hint="few-shot examples come from chat (messages) or prompt/completion data",
        )
    picked = random.Random(seed).sample(examples, min(k, len(examples)))
    return [turn for pair in picked for turn in pair]
