"""Prompts to annotate, read from a dataset: prompt-only, chat, prompt/completion, preference or ranking
files give prompts to generate candidates for; preference and ranking files also give candidate pairs to
review and relabel.

A bad row does not stop the rest: it is reported (line, field, message) and the good rows are used.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tui_ft.data.formats import Format, normalise, split_implicit_prompt
from tui_ft.data.sources import open_dataset
from tui_ft.data.validation import FormatTracker, RowProblem
from tui_ft.errors import DataError

#: Formats whose rows hold two or more responses to review.
PAIR_FORMATS = (Format.preference, Format.preference_implicit, Format.ranking)
#: Formats that give prompts.
PROMPT_FORMATS = (
    Format.prompt_only,
    Format.prompt_completion,
    Format.messages,
    Format.sharegpt,
    Format.alpaca,
    *PAIR_FORMATS,
)


@dataclass(frozen=True)
class Candidate:
    """A response from a pairs file, and where it came from (`chosen`, `rejected`, `responses[i]`)."""

    text: str
    origin: str


@dataclass(frozen=True)
class PromptItem:
    """One prompt (chat turns ending with the user's) from line `line`, with candidates from a pairs file."""

    line: int
    prompt: list[dict[str, str]]
    candidates: tuple[Candidate, Candidate] | None = None


@dataclass
class PromptSet:
    path: Path
    format: Format | None
    items: list[PromptItem] = field(default_factory=list)
    problems: list[RowProblem] = field(default_factory=list)

    @property
    def has_pairs(self) -> bool:
        return self.format in PAIR_FORMATS


def _turns(value: Any) -> list[dict[str, str]]:
    if isinstance(value, str):
        return [{"role": "user", "content": value}]
    return [{"role": str(m["role"]), "content": str(m.get("content") or "")} for m in value]


def _text(value: Any) -> str:
    """A response as text: a string, or the assistant turns of a message list."""
    if isinstance(value, str):
        return value.strip()
    return "\n".join(str(m.get("content") or "") for m in value if m.get("role") == "assistant").strip()


def _items(record: dict[str, Any], fmt: Format, line: int) -> list[PromptItem]:
    """The prompt item(s) of one valid, normalised record."""
    if fmt is Format.messages:
        messages = record["messages"]
        last = max((i for i, m in enumerate(messages) if m["role"] == "assistant"), default=len(messages))
        return [PromptItem(line, _turns(messages[:last] or messages))]
    if fmt is Format.preference_implicit or (fmt is Format.preference and "prompt" not in record):
        prompt, chosen, rejected = split_implicit_prompt(record["chosen"], record["rejected"])
        record = {"prompt": prompt, "chosen": chosen, "rejected": rejected}
    prompt = _turns(record["prompt"])
    if fmt in (Format.preference, Format.preference_implicit):
        pair = (
            Candidate(_text(record["chosen"]), "chosen"),
            Candidate(_text(record["rejected"]), "rejected"),
        )
        return [PromptItem(line, prompt, pair)]
    if fmt is Format.ranking:
        responses = record["responses"]
        return [
            PromptItem(
                line,
                prompt,
                (
                    Candidate(_text(responses[i]), f"responses[{i}]"),
                    Candidate(_text(responses[i + 1]), f"responses[{i + 1}]"),
                ),
            )
            for i in range(len(responses) - 1)
        ]
    return [PromptItem(line, prompt)]


def read_prompts(ref: str | Path, *, base_dir: Path | None = None) -> PromptSet:
    """The prompts (and pairs) of a dataset, with every bad row's problem; the file's own problems
    (missing, unreadable, a format with no prompts) raise DataError."""
    source = open_dataset(ref, base_dir=base_dir)
    result = PromptSet(Path(str(source.path)), None)
    tracker = FormatTracker()
    with source:
        for row in source.scan():
            if isinstance(row, DataError):
                result.problems.append(RowProblem(row.line, row.field, row.message, row.hint))
                continue
            found = tracker.check(row)
            if found:
                result.problems.extend(found)
                continue
            fmt = tracker.format
            assert fmt is not None
            if fmt not in PROMPT_FORMATS:
                raise DataError(
                    f"this file is in format {fmt.value}, which holds no prompts to annotate",
                    path=source.path,
                    hint="give a prompt-only, chat, prompt/completion, preference or ranking file",
                )
            result.format = fmt
            result.items.extend(_items(normalise(row.data, fmt), fmt, row.line))
    if not result.items and not result.problems:
        raise DataError("no prompts in this file", path=source.path)
    return result
