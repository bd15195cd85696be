"""Multi-task mixtures: several datasets, each a task with its own format, weight and evaluation data,
interleaved into one training set (`datasets.interleave_datasets`) with per-task evaluation sets, which
the trainer evaluates one by one and logs as `eval_<task>_loss`.

Sampling: task i is drawn with probability proportional to (weight_i x rows_i) ** (1 / temperature).
Equal weights at temperature 1 mix in proportion to the tasks' sizes (as concatenating and shuffling
would); a higher temperature flattens towards equal shares (T5's temperature sampling); weights raise
or lower one task's share. Interleaving runs until every task has been seen whole once
(`all_exhausted`): a small task with a large share is repeated.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tui_ft.data.formats import Format
from tui_ft.data.training import load_for_training
from tui_ft.errors import DataError

if TYPE_CHECKING:
    import datasets


@dataclass
class Mixed:
    train: datasets.Dataset
    evals: dict[str, datasets.Dataset] | None  # task -> its evaluation rows (tasks without any left out)
    format: Format
    probabilities: dict[str, float]


def probabilities(weights: list[float], rows: list[int], temperature: float) -> list[float]:
    """Each task's sampling probability: (weight x rows) ** (1 / temperature), normalised."""
    raw = [(w * max(n, 1)) ** (1.0 / temperature) for w, n in zip(weights, rows, strict=True)]
    total = sum(raw)
    return [r / total for r in raw]


def _as_messages(row: dict[str, Any]) -> dict[str, Any]:
    """A prompt/completion row as the same exchange in chat turns (the completion as the assistant's)."""
    prompt, completion = row["prompt"], row["completion"]
    turns = prompt if isinstance(prompt, list) else [{"role": "user", "content": prompt}]
    answer = completion if isinstance(completion, list) else [{"role": "assistant", "content": completion}]
    return {"messages": [*turns, *answer]}


def load_mixture(
    tasks: list[Any],
    *,
    method: str,
    ranking_mode: str,
    temperature: float,
    cache: Path,
    seed: int,
    note: Callable[..., None] = lambda *a, **k: None,
) -> Mixed:
    """A recipe's `data.mixture` (its tasks: name, train, weight, eval, eval_split) as one interleaved
    training set and one evaluation set per task."""
    import datasets

    trains: list[Any] = []
    formats: list[Format] = []
    evals: dict[str, Any] = {}
    for task in tasks:
        loaded = load_for_training(
            task.train,
            method=method,
            ranking_mode=ranking_mode,
            cache_dir=cache / "mixture" / task.name / "train",
        )
        train, fmt = loaded.dataset, loaded.format
        if task.eval:
            evals[task.name] = load_for_training(
                task.eval,
                method=method,
                ranking_mode=ranking_mode,
                cache_dir=cache / "mixture" / task.name / "eval",
            ).dataset
        elif task.eval_split > 0:
            split = train.train_test_split(test_size=task.eval_split, seed=seed)
            train, evals[task.name] = split["train"], split["test"]
        trains.append(train)
        formats.append(fmt)
    # One kind of data for one trainer: chats and prompt/completion pairs meet as chats.
    if len({tuple(sorted(t.column_names)) for t in trains}) > 1 and set(formats) <= {
        Format.messages,
        Format.sharegpt,
        Format.prompt_completion,
        Format.alpaca,
    }:
        for i in range(len(formats)):
            if "messages" not in trains[i].column_names:
                trains[i] = trains[i].map(_as_messages, remove_columns=trains[i].column_names)
                if tasks[i].name in evals:
                    evals[tasks[i].name] = evals[tasks[i].name].map(
                        _as_messages, remove_columns=evals[tasks[i].name].column_names
                    )
                formats[i] = Format.messages
    first_columns = sorted(trains[0].column_names)
    for i, train in enumerate(trains[1:], start=1):
        if sorted(train.column_names) != first_columns:
            raise DataError(
                f"task {tasks[i].name!r} has columns {', '.join(sorted(train.column_names))} and task "
                f"{tasks[0].name!r} has {', '.join(first_columns)}: a mixture trains one kind of data",
                path=tasks[i].train,
                field=f"data.mixture[{i}].train",
                hint="mix datasets of one kind (chats with chats or prompt/completion pairs; preference pairs "
                "with preference pairs)",
            )
        trains[i] = train.cast(trains[0].features)
    for name in evals:
        evals[name] = evals[name].cast(trains[0].features)
    shares = probabilities([t.weight for t in tasks], [len(t) for t in trains], temperature)
    mixed = datasets.interleave_datasets(
        trains, probabilities=shares, seed=seed, stopping_strategy="all_exhausted"
    )
    note(
        "mixture: "
        + ", ".join(
            f"{t.name} {len(d)} rows ({p:.0%})" for t, d, p in zip(tasks, trains, shares, strict=True)
        )
        + f" -> {len(mixed)} rows interleaved",
        tasks={t.name: round(p, 4) for t, p in zip(tasks, shares, strict=True)},
    )
    return Mixed(mixed, evals or None, formats[0], {t.name: p for t, p in zip(tasks, shares, strict=True)})
