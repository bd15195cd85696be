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
    # A second copy of the starting model, loaded on demand: the frozen reference of full-model
    # preference training. With an adapter there is none: the reference is the base, adapter off.
    load_reference: Callable[[], Any] | None = None
    workspace: Any = None
    dtype: Any = None  # the weights' dtype, for reward models loaded beside the policy


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


def _is_peft(model) -> bool:
    return hasattr(model, "disable_adapter") and hasattr(model, "peft_config")


def _reference_copy(inputs: TrainInputs, args) -> Any:
    """The reference model for DPO/KTO: none with an adapter (TRL switches the adapter off) or with
    precomputed reference log-probs; otherwise a frozen second copy of the starting model. TRL would
    load its own copy from `config._name_or_path`, which is the base, not a merged starting run."""
    if _is_peft(inputs.model) or getattr(args, "precompute_ref_log_probs", False):
        return None
    if inputs.load_reference is None:
        return None
    reference = inputs.load_reference()
    reference.eval()
    for p in reference.parameters():
        p.requires_grad_(False)
    return reference


def build_dpo(inputs: TrainInputs):
    from trl import DPOConfig, DPOTrainer

    args = DPOConfig(**inputs.config)
    return DPOTrainer(
        model=inputs.model,
        ref_model=_reference_copy(inputs, args),
        args=args,
        train_dataset=inputs.train_dataset,
        eval_dataset=inputs.eval_dataset,
        processing_class=inputs.tokenizer,
        callbacks=inputs.callbacks,
    )


def build_kto(inputs: TrainInputs):
    from trl import KTOConfig, KTOTrainer

    args = KTOConfig(**inputs.config)
    if args.per_device_train_batch_size < 2:
        raise RecipeError(
            "KTO estimates its KL term from mismatched pairs within a batch: it needs at least 2 examples per "
            "device batch",
            field="training.per_device_train_batch_size",
            hint="set it to 2 or more (use gradient_accumulation_steps for a larger effective batch)",
        )
    return KTOTrainer(
        model=inputs.model,
        ref_model=_reference_copy(inputs, args),
        args=args,
        train_dataset=inputs.train_dataset,
        eval_dataset=inputs.eval_dataset,
        processing_class=inputs.tokenizer,
        callbacks=inputs.callbacks,
    )


def build_orpo(inputs: TrainInputs):
    from trl.experimental.orpo import ORPOConfig, ORPOTrainer

    args = ORPOConfig(**inputs.config)
    return ORPOTrainer(
        model=inputs.model,
        args=args,
        train_dataset=inputs.train_dataset,
        eval_dataset=inputs.eval_dataset,
        processing_class=inputs.tokenizer,
        callbacks=inputs.callbacks,
    )


def build_reward(inputs: TrainInputs):
    from trl import RewardConfig, RewardTrainer

    args = RewardConfig(**inputs.config)
    return RewardTrainer(
        model=inputs.model,
        args=args,
        train_dataset=inputs.train_dataset,
        eval_dataset=inputs.eval_dataset,
        processing_class=inputs.tokenizer,
        callbacks=inputs.callbacks,
    )


def reward_sources(inputs: TrainInputs) -> tuple[list[Any], list[Any]]:
    """The recipe's reward models (loaded, frozen) and functions (imported, wrapped), with the tokenizer
    each one scores with (None for functions): TRL's `reward_funcs` and `reward_processing_classes`."""
    from tui_ft.engine.rewards import check_reward_model, load_reward_function, load_reward_model

    rewards = inputs.recipe.rewards
    funcs: list[Any] = []
    tokenizers: list[Any] = []
    if rewards is None:
        return funcs, tokenizers
    for ref in rewards.models:
        model, tokenizer = load_reward_model(check_reward_model(ref, inputs.workspace), inputs.dtype)
        funcs.append(model)
        tokenizers.append(tokenizer)
    for ref in rewards.functions:
        funcs.append(load_reward_function(ref))
        tokenizers.append(None)
    return funcs, tokenizers


def _build_rl(inputs: TrainInputs, config_cls, trainer_cls):
    args = config_cls(**inputs.config)
    funcs, tokenizers = reward_sources(inputs)
    return trainer_cls(
        model=inputs.model,
        reward_funcs=funcs,
        args=args,
        train_dataset=inputs.train_dataset,
        eval_dataset=inputs.eval_dataset,
        processing_class=inputs.tokenizer,
        reward_processing_classes=tokenizers,
        callbacks=inputs.callbacks,
    )


def build_grpo(inputs: TrainInputs):
    from trl import GRPOConfig, GRPOTrainer

    return _build_rl(inputs, GRPOConfig, GRPOTrainer)


def build_rloo(inputs: TrainInputs):
    from trl import RLOOConfig, RLOOTrainer

    return _build_rl(inputs, RLOOConfig, RLOOTrainer)


@dataclass(frozen=True)
class Method:
    name: str
    task: str  # "causal_lm" | "sequence_classification"
    build: Callable[[TrainInputs], Any]
    config_keys: Callable[..., tuple[dict[str, Any], str]] | None = None


METHODS: dict[str, Method] = {
    "sft": Method("sft", "causal_lm", build_sft, sft_loss_options),
    "dpo": Method("dpo", "causal_lm", build_dpo),
    "orpo": Method("orpo", "causal_lm", build_orpo),
    "kto": Method("kto", "causal_lm", build_kto),
    "reward": Method("reward", "sequence_classification", build_reward),
    "grpo": Method("grpo", "causal_lm", build_grpo),
    "rloo": Method("rloo", "causal_lm", build_rloo),
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
