"""Rewards for RL methods (GRPO, RLOO), loaded in the training process: the user's reward functions,
wrapped, and trained reward models.

A reward function is called the way TRL calls reward functions,
`NAME(prompts=..., completions=..., completion_ids=..., **dataset_columns)`, and returns one float
(or None) per completion. A function that raises fails the run with its own error, named.
The references were checked before the run started (`tui_ft.reward_checks`).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from tui_ft.errors import WorkFailed
from tui_ft.modelref import ModelRef
from tui_ft.reward_checks import import_function


class RewardFunctionFailed(WorkFailed):
    """A user's reward function raised or returned something unusable."""

    def __init__(self, name: str, message: str):
        super().__init__(
            f"reward function {name} failed: {message}",
            kind="reward_function",
            hint="fix the function (the traceback is in the run's output.log), then `tui-ft resume RUN`",
        )


def load_reward_function(ref: str) -> Callable[..., list[float | None]]:
    """The user's function wrapped so that a failure names it and bad return values are caught early."""
    func = import_function(ref)
    label = ref.rpartition(":")[2]

    @functools.wraps(func)
    def reward(*args: Any, **kwargs: Any) -> list[float | None]:
        completions = kwargs.get("completions")
        try:
            values = func(*args, **kwargs)
        except Exception as exc:  # noqa: BLE001 - the user's error, reported as theirs
            raise RewardFunctionFailed(label, f"{type(exc).__name__}: {exc}") from exc
        try:
            values = list(values)
        except TypeError:
            raise RewardFunctionFailed(
                label, f"returned {type(values).__name__}; expected a list of floats"
            ) from None
        if completions is not None and len(values) != len(completions):
            raise RewardFunctionFailed(
                label, f"returned {len(values)} rewards for {len(completions)} completions"
            )
        out: list[float | None] = []
        for v in values:
            if v is None:
                out.append(None)
                continue
            try:
                out.append(float(v))
            except (TypeError, ValueError):
                raise RewardFunctionFailed(
                    label, f"returned {v!r}; rewards must be numbers or None"
                ) from None
        return out

    return reward


def load_reward_model(ref: ModelRef, dtype: Any):
    """Load a reward model (full, or a peft adapter over its base, merged) and its tokenizer, for scoring."""
    import transformers

    source = ref.base if ref.adapter else ref.path
    if source is None:
        raise WorkFailed(f"the adapter at {ref.path} does not name its base model", kind="model_not_found")
    from tui_ft.engine.models import from_pretrained_through_adapters

    model = from_pretrained_through_adapters(
        transformers.AutoModelForSequenceClassification, source, num_labels=1, dtype=dtype
    )
    if ref.adapter:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, ref.path).merge_and_unload()
    tokenizer = transformers.AutoTokenizer.from_pretrained(ref.path if ref.local else source)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model.config.pad_token_id = tokenizer.pad_token_id
    # TRL names a reward model's metrics (rewards/NAME/mean) after this; use the recipe's reference.
    model.config._name_or_path = ref.ref
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model, tokenizer
