"""The metrics each training method is judged by, and their last values in a run's events."""

from __future__ import annotations

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
