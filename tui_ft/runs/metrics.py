"""The metrics each training method is judged by, and their last values in a run's events."""

from __future__ import annotations

import re
from typing import Any

from tui_ft.runs.rundir import RunDir, read_events

# The metrics each method is judged by, as its trainer logs them (train, then eval_ for evaluation).
METHOD_METRICS = (
    "rewards/margins",
    "rewards/accuracies",
    "accuracy",
    "margin",
    "reward",
    "reward_std",
    "kl",
    "completions/mean_length",
    "log_odds_ratio",
    "mean_token_accuracy",
    "precision_macro",  # classify: macro averages over the classes
    "recall_macro",
    "f1_macro",
)
# Metrics named per class (`f1/<class>`; classify).
METHOD_METRIC_PREFIXES = ("precision/", "recall/", "f1/")


def _wanted(key: str) -> bool:
    name = key.removeprefix("eval_")
    return name in METHOD_METRICS or name.startswith(METHOD_METRIC_PREFIXES)


def last_method_metrics(run: RunDir) -> dict[str, float]:
    """The last logged value of each of METHOD_METRICS and the per-class metrics (train and eval_) in
    the run's events."""
    found: dict[str, float] = {}
    events, _ = read_events(run.events_file)
    for event in events:
        if event.get("type") in ("train", "eval"):
            found.update(
                {
                    k: v
                    for k, v in event.items()
                    if _wanted(k) and isinstance(v, (int, float)) and not isinstance(v, bool)
                }
            )
    return dict(sorted(found.items()))


def last_confusion_matrix(run: RunDir) -> dict[str, Any] | None:
    """The last evaluation's confusion matrix of a classifier: {"step", "labels", "matrix"} (rows: the
    true class, columns: the predicted one), or None when the run logged none."""
    events, _ = read_events(run.events_file)
    for event in reversed(events):
        if event.get("type") == "eval" and confusion_of(event) is not None:
            return {"step": event.get("step"), **(confusion_of(event) or {})}
    return None


def confusion_of(event: dict[str, Any]) -> dict[str, Any] | None:
    """{"labels", "matrix"} from an `eval` event that carries a well-formed confusion matrix, else None."""
    matrix, labels = event.get("eval_confusion_matrix"), event.get("eval_confusion_labels")
    if not isinstance(matrix, list) or not isinstance(labels, list) or len(matrix) != len(labels):
        return None
    if not all(isinstance(row, list) and len(row) == len(labels) for row in matrix):
        return None
    return {"labels": [str(label) for label in labels], "matrix": matrix}


# `tui-ft runs RUN --steps`: the columns of the per-step table, in this order where the run logged them.
# Every method's optimizer state first, then what its trainer is judged by (METHOD_METRICS), DPO's
# chosen/rejected rewards, and GRPO/RLOO's per-function reward means and completion lengths.
STEP_COLUMNS = (
    "loss",
    "learning_rate",
    "grad_norm",
    "rewards/chosen",
    "rewards/rejected",
    *METHOD_METRICS,
    "completions/min_length",
    "completions/max_length",
    "completions/clipped_ratio",
)
# Per-function rewards of GRPO and RLOO: `rewards/<function>/mean`.
_PER_FUNCTION_REWARD = re.compile(r"^rewards/[^/]+/mean$")


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def step_table(run: RunDir, kind: str = "train") -> tuple[list[str], list[dict[str, Any]]]:
    """Each logged step of `kind` ("train" or "eval") with the method's metrics: (columns, rows), a row
    per step (`{"step": N, column: value}`), oldest first. A `resume` event at step s supersedes the
    earlier segment's later steps, as the dashboard reads them. Eval columns keep their `eval_` prefix."""
    events, _ = read_events(run.events_file)
    by_step: dict[int, dict[str, Any]] = {}
    for event in events:
        step = event.get("step")
        if event.get("type") == "resume" and isinstance(step, int):
            by_step = {s: row for s, row in by_step.items() if s <= step}
        if event.get("type") != kind or not isinstance(step, int) or isinstance(step, bool):
            continue
        row = by_step.setdefault(step, {"step": step})
        row.update({k: v for k, v in event.items() if _is_number(v) and k != "step"})
    prefix = "eval_" if kind == "eval" else ""
    wanted = [prefix + name for name in STEP_COLUMNS]
    seen = {k for row in by_step.values() for k in row}
    columns = [c for c in wanted if c in seen]
    columns += sorted(
        k for k in seen if _PER_FUNCTION_REWARD.match(k.removeprefix(prefix)) and k not in columns
    )
    if kind == "eval":  # a mixture's loss per task: eval_<task>_loss
        columns += sorted(k for k in seen if re.fullmatch(r"eval_.+_loss", k) and k not in columns)
    rows = [
        {"step": step, **{c: row[c] for c in columns if c in row}}
        for step, row in sorted(by_step.items())
        if any(c in row for c in columns)
    ]
    return columns, rows
