"""The metrics each training method is judged by, and their last values in a run's events."""

from __future__ import annotations

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
)


def last_method_metrics(run: RunDir) -> dict[str, float]:
    """The last logged value of each of METHOD_METRICS (train and eval_) in the run's events."""
    wanted = set(METHOD_METRICS) | {f"eval_{k}" for k in METHOD_METRICS}
    found: dict[str, float] = {}
    events, _ = read_events(run.events_file)
    for event in events:
        if event.get("type") in ("train", "eval"):
            found.update({k: v for k, v in event.items() if k in wanted and isinstance(v, (int, float))})
    return dict(sorted(found.items()))
