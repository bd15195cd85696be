"""The method registry: how each recipe method becomes a trainer (TRL's, or transformers' Trainer for
classification)."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tui_ft.engine.classification import classification_trainer_inputs
from tui_ft.engine.sft import prepare_sft, sft_trainer_inputs
from tui_ft.errors import RecipeError
from tui_ft.recipe import Recipe
from tui_ft.training_fields import CONFIG_CLASSES

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
    note: Callable[[str], None] | None = None  # a line for the run's log (and its events); None: printed


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


def reward_sources(inputs: TrainInputs) -> tuple[list[Any], list[Any]]:
    """The recipe's reward models (loaded, frozen) and functions (imported, wrapped), with the tokenizer
    each one scores with (None for functions): TRL's `reward_funcs` and `reward_processing_classes`."""
    from tui_ft.engine.rewards import load_reward_function, load_reward_model
    from tui_ft.reward_checks import check_reward_model

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


def _check_kto_batch(args) -> None:
    if args.per_device_train_batch_size < 2:
        raise RecipeError(
            "KTO estimates its KL term from mismatched pairs within a batch: it needs at least 2 examples per "
            "device batch",
            field="training.per_device_train_batch_size",
            hint="set it to 2 or more (use gradient_accumulation_steps for a larger effective batch)",
        )


@dataclass(frozen=True)
class Method:
    """How a recipe method becomes a trainer: its trainer class (`module:Class`, imported when a run
    starts; the config class is training_fields.CONFIG_CLASSES') and what else the trainer is given."""

    name: str
    task: str  # "causal_lm" | "sequence_classification" (reward models, classifiers)
    trainer_class: str
    reference: bool = False  # takes ref_model: a frozen copy, or none under an adapter
    rewards: bool = False  # takes reward_funcs (+ their tokenizers)
    check: Callable[[Any], None] | None = None  # raises RecipeError for settings the method cannot use
    config_keys: Callable[..., tuple[dict[str, Any], str]] | None = None
    # (inputs, args) -> trainer keyword arguments replacing or adding to the common ones (datasets
    # prepared for a trainer that does not prepare its own, compute_metrics)
    trainer_inputs: Callable[[TrainInputs, Any], dict[str, Any]] | None = None
    # decides settings that depend on the loaded model (SFT: packing), in inputs.config, before the config
    # class is built
    prepare: Callable[[TrainInputs], None] | None = None

    def build(self, inputs: TrainInputs):
        import importlib

        def load(path: str):
            module, _, name = path.partition(":")
            return getattr(importlib.import_module(module), name)

        if self.prepare is not None:
            self.prepare(inputs)
        args = load(":".join(CONFIG_CLASSES[self.name]))(**inputs.config)
        if self.check is not None:
            self.check(args)
        kwargs: dict[str, Any] = {}
        if self.reference:
            kwargs["ref_model"] = _reference_copy(inputs, args)
        if self.rewards:
            kwargs["reward_funcs"], kwargs["reward_processing_classes"] = reward_sources(inputs)
        common: dict[str, Any] = {
            "model": inputs.model,
            "args": args,
            "train_dataset": inputs.train_dataset,
            "eval_dataset": inputs.eval_dataset,
            "processing_class": inputs.tokenizer,
            "callbacks": inputs.callbacks,
        }
        if self.trainer_inputs is not None:
            common.update(self.trainer_inputs(inputs, args))
        return load(self.trainer_class)(**common, **kwargs)


METHODS: dict[str, Method] = {
    m.name: m
    for m in (
        # TRL's SFTTrainer, packed where the model allows and with its tokenized data cached (engine/sft.py)
        Method(
            "sft",
            "causal_lm",
            "tui_ft.engine.sft:sft_trainer",
            config_keys=sft_loss_options,
            prepare=prepare_sft,
            trainer_inputs=sft_trainer_inputs,
        ),
        Method("dpo", "causal_lm", "trl:DPOTrainer", reference=True),
        Method("orpo", "causal_lm", "trl.experimental.orpo:ORPOTrainer"),
        Method("kto", "causal_lm", "trl:KTOTrainer", reference=True, check=_check_kto_batch),
        Method("reward", "sequence_classification", "trl:RewardTrainer"),
        Method("grpo", "causal_lm", "trl:GRPOTrainer", rewards=True),
        Method("rloo", "causal_lm", "trl:RLOOTrainer", rewards=True),
        # No TRL trainer classifies: transformers' Trainer, configured by TrainingArguments, on text
        # tokenized here, with accuracy/precision/recall/F1 and a confusion matrix at every evaluation.
        Method(
            "classify",
            "sequence_classification",
            "transformers:Trainer",
            trainer_inputs=classification_trainer_inputs,
        ),
    )
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
