"""Evaluation data: a dataset read the way training reads it (validated, normalised for SFT), each row
with what the model is asked (the conversation before the last answer, or the prompt) and the reference
answer it is scored against. Text data has no reference answers: it is evaluated by its loss only."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tui_ft.errors import DataError, UserError

#: Formats whose rows carry a reference answer.
REFERENCE_FORMATS = ("messages", "sharegpt", "prompt_completion", "alpaca")
#: Formats an evaluation reads (the loss of text data is the forgetting check's measure).
EVAL_FORMATS = (*REFERENCE_FORMATS, "text")
_FORMAT_HINT = (
    "use chat (messages), prompt/completion or alpaca data; plain text is evaluated by its loss only"
)


@dataclass(frozen=True)
class Example:
    row: dict[str, Any]  # the normalised row, as training tokenizes it
    prompt: list[dict[str, Any]] | str | None  # what a reply is generated to (None: no reference)
    reference: str | None
    prompt_text: str  # the last user turn or the prompt (shown, and given to metric functions)


@dataclass(frozen=True)
class EvalData:
    path: str
    format: str
    examples: list[Example]

    @property
    def has_references(self) -> bool:
        return any(e.reference is not None for e in self.examples)


def _content(message: dict[str, Any]) -> str:
    content = message.get("content")
    return content if isinstance(content, str) else ("" if content is None else str(content))


def example_from_row(row: dict[str, Any]) -> Example:
    """The prompt and reference answer of one normalised SFT row."""
    if "messages" in row:
        messages = row["messages"]
        last = max((i for i, m in enumerate(messages) if m.get("role") == "assistant"), default=None)
        if last is None:
            return Example(row, None, None, "")
        prompt = messages[:last]
        user = next((_content(m) for m in reversed(prompt) if m.get("role") == "user"), "")
        return Example(row, prompt, _content(messages[last]), user)
    if "prompt" in row and "completion" in row:
        prompt, completion = row["prompt"], row["completion"]
        if isinstance(prompt, list):
            user = next((_content(m) for m in reversed(prompt) if m.get("role") == "user"), "")
            answer = " ".join(_content(m) for m in completion) if isinstance(completion, list) else completion
            return Example(row, prompt, str(answer), user)
        return Example(row, str(prompt), str(completion), str(prompt))
    return Example(row, None, None, str(row.get("text", ""))[:200])


def read_eval_data(
    ref: str, *, base_dir: Path | None, limit: int | None = None, field: str = "--data"
) -> EvalData:
    """Read and validate a dataset for evaluation; DataError (exit 2) naming `field` when it cannot be
    read or is in a format an evaluation has no use for (preferences, classification, prompts only)."""
    from tui_ft.data.training import load_for_training

    try:
        loaded = load_for_training(ref, method="sft", base_dir=base_dir)
    except UserError as exc:
        if exc.field is None or exc.field == "data.train":
            exc.field = field
        if "method sft needs" in exc.message:  # a format SFT cannot read has nothing to compare with
            exc.message = exc.message.split(";")[0] + ", which has no reference answers to evaluate against"
            exc.hint = _FORMAT_HINT
        raise
    fmt = loaded.format.value
    if fmt not in EVAL_FORMATS:
        raise DataError(
            f"{fmt} data has no reference answers to evaluate against",
            path=loaded.source,
            field=field,
            hint=_FORMAT_HINT,
        )
    dataset = loaded.dataset
    count = len(dataset) if limit is None else min(limit, len(dataset))
    examples = [example_from_row(dict(dataset[i])) for i in range(count)]
    return EvalData(str(loaded.source), fmt, examples)
