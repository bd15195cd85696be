"""The method registry: how each recipe method becomes a TRL trainer."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tui_ft.errors import RecipeError
from tui_ft.recipe import Recipe

_GENERATION_TAG = re.compile(r"\{%-?\s*generation\s*-?%\}")


@dataclass
class TrainInputs:
    """Everything a method needs to build its trainer."""

    recipe: Recipe
    model: Any
    tokenizer: Any
    train_dataset: Any
    eval_dataset: Any
    data_format: str
    config: dict[str, Any]  # TRL config keyword arguments, managed keys included
    callbacks: list[Any]


def has_generation_markers(tokenizer) -> bool:
    template = getattr(tokenizer, "chat_template", None)
    return isinstance(template, str) and bool(_GENERATION_TAG.search(template))


CONVERSATIONAL = ("messages", "sharegpt")


def sft_loss_options(recipe: Recipe, data_format: str, tokenizer) -> tuple[dict[str, Any], str]:
    """SFTConfig loss keys for `data.loss`, and a sentence saying which tokens train."""
    loss = recipe.data.loss
    if loss == "all":
        return {"assistant_only_loss": False, "completion_only_loss": False}, "all tokens"
    if data_format in CONVERSATIONAL:
        if has_generation_markers(tokenizer):
            return {"assistant_only_loss": True}, "assistant turns only"
        if loss == "assistant_only":
            raise RecipeError(
                "assistant-only loss needs a chat template that marks assistant turns with "
                "{% generation %} ... {% endgeneration %}; this model's template does not",
                field="data.loss",
                hint="set model.chat_template to a template with generation markers, or data.loss: all",
            )
        return {"assistant_only_loss": False}, "all tokens (the chat template marks no assistant turns)"
    if data_format in ("prompt_completion", "alpaca"):
        return {"completion_only_loss": True}, "completions only"
    if loss in ("assistant_only", "completion_only"):
        raise RecipeError(
            f"{loss} loss needs {'chat' if loss == 'assistant_only' else 'prompt/completion'} data; "
            f"this data is {data_format}",
            field="data.loss",
        )
    return {}, "all tokens"


def build_sft(inputs: TrainInputs):
    from trl import SFTConfig, SFTTrainer

    args = SFTConfig(**inputs.config)
    return SFTTrainer(
        model=inputs.model,
        args=args,
        train_dataset=inputs.train_dataset,
        eval_dataset=inputs.eval_dataset,
        processing_class=inputs.tokenizer,
        callbacks=inputs.callbacks,
    )


@dataclass(frozen=True)
class Method:
    name: str
    task: str  # "causal_lm" | "sequence_classification"
    build: Callable[[TrainInputs], Any]
    config_keys: Callable[..., tuple[dict[str, Any], str]] | None = None


METHODS: dict[str, Method] = {
    "sft": Method("sft", "causal_lm", build_sft, sft_loss_options),
}


def get_method(name: str) -> Method:
    try:
        return METHODS[name]
    except KeyError:
        raise RecipeError(
            f"method {name} is not available in this version of tui-ft",
            field="method",
            hint=f"available: {', '.join(METHODS)}",
        ) from None
