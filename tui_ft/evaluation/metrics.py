"""The generation metrics: exact match and contains (after normalising whitespace and case), ROUGE-L
(the `rouge-score` package), and a user's own functions named `FILE.py:NAME` like reward functions.

A metric function is called once per example as `NAME(prediction, reference, prompt=...)` (keyword
arguments it does not take are left out) and returns a number or a bool; the table shows its mean.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from tui_ft.errors import RecipeError, UserError

BUILTIN_METRICS = ("exact", "contains", "rouge_l")


def normalise(text: str) -> str:
    """Lower case, runs of whitespace as one space, no space at either end."""
    return " ".join(str(text).lower().split())


def exact_match(prediction: str, reference: str) -> float:
    return 1.0 if normalise(prediction) == normalise(reference) else 0.0


def contains(prediction: str, reference: str) -> float:
    """1 when the (normalised) reference appears in the (normalised) prediction."""
    return 1.0 if normalise(reference) in normalise(prediction) else 0.0


@lru_cache(maxsize=1)
def _rouge_scorer():
    from rouge_score import rouge_scorer  # type: ignore[import-untyped]

    return rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)


def rouge_l(prediction: str, reference: str) -> float:
    """ROUGE-L F-measure (longest common subsequence of words), 0..1."""
    return float(_rouge_scorer().score(reference, prediction)["rougeL"].fmeasure)


def builtin_scores(prediction: str, reference: str) -> dict[str, float]:
    return {
        "exact": exact_match(prediction, reference),
        "contains": contains(prediction, reference),
        "rouge_l": rouge_l(prediction, reference),
    }


@dataclass(frozen=True)
class UserMetric:
    """A user's metric function, imported and checked."""

    ref: str  # as given
    resolved: str  # its file made absolute
    name: str  # the column it fills
    func: Callable[..., Any]
    field: str  # where it was named: --metric or eval.metrics

    def score(self, prediction: str, reference: str, prompt: str) -> float:
        """The function's value for one example; UserError naming the metric when it raises or returns
        something that is not a number."""
        try:
            value = self.func(prediction, reference, **_accepted(self.func, {"prompt": prompt}))
        except Exception as exc:  # noqa: BLE001 - the user's code: any failure is reported as theirs
            raise UserError(
                f"{self.ref}: {self.name} raised {type(exc).__name__}: {exc}",
                field=self.field,
                hint=f"it is called as {self.name}(prediction, reference, prompt=...) and returns a number",
            ) from None
        if isinstance(value, bool):
            return 1.0 if value else 0.0
        if not isinstance(value, (int, float)) or math.isnan(float(value)):
            raise UserError(
                f"{self.ref}: {self.name} returned {value!r}, not a number",
                field=self.field,
                hint="return a float (or a bool) for each example",
            )
        return float(value)


def _accepted(func: Callable[..., Any], extra: dict[str, Any]) -> dict[str, Any]:
    """The keyword arguments of `extra` that `func` takes (all of them when it takes **kwargs)."""
    try:
        params = inspect.signature(func).parameters.values()
    except (TypeError, ValueError):
        return extra
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
        return extra
    names = {p.name for p in params}
    return {k: v for k, v in extra.items() if k in names}


def load_metric(ref: str, base_dir: Path | None, *, field: str = "--metric") -> UserMetric:
    """Resolve and import `FILE.py:NAME` (next to `base_dir`, else the current directory) or
    `package.module:NAME`; UserError (exit 2) naming `field`, the reference and the function otherwise."""
    from tui_ft.reward_checks import import_function, resolve_function_ref, split_function_ref

    try:
        _, name = split_function_ref(ref)
        resolved = resolve_function_ref(ref, base_dir)
        func = import_function(resolved)
    except RecipeError as exc:
        message = exc.message.replace("reward function reference", "metric function reference")
        raise UserError(f"{ref}: {message}", field=field, hint=exc.hint) from None
    if name in BUILTIN_METRICS:
        raise UserError(
            f"{ref}: {name} is the name of a built-in metric", field=field, hint="rename the function"
        )
    return UserMetric(ref, resolved, name, func, field)


def check_metric(metric: UserMetric, reference: str, prompt: str) -> None:
    """Call the metric once on a known pair (the reference as its own prediction), before any model is
    loaded, so a function that raises fails at once."""
    metric.score(reference, reference, prompt)
