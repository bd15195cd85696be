"""The runner's parameter counts agree with the memory estimate's (Configure, `tui-ft estimate`): the
model's own parameters are the same number on both sides, and what the adapter adds is said apart
(`417.2K parameters + 56.1K adapter, 56.1K trainable`), counted on the real model peft adapted."""

from __future__ import annotations

import pytest

from tests.conftest import NO_GPU
from tui_ft.display import format_params
from tui_ft.engine.hardware import detect_hardware
from tui_ft.engine.models import apply_adapter, count_parameters, load_model
from tui_ft.estimate import estimate_memory
from tui_ft.modelref import resolve_model
from tui_ft.recipe import find_recipe, load_recipe


@pytest.mark.parametrize(
    ("name", "overrides", "task"),
    [
        ("sft-lora", [], "causal_lm"),
        ("sft-dora", [], "causal_lm"),
        ("sft-prompt-tuning", [], "causal_lm"),
        ("sft-full", [], "causal_lm"),
        ("reward-lora", [], "sequence_classification"),
    ],
)
def test_runner_counts_agree_with_the_estimate(demo_ws, name, overrides, task):
    loaded = load_recipe(find_recipe(name), overrides)
    recipe = getattr(loaded, "recipe", loaded)
    ref = resolve_model(recipe.model.name, demo_ws, field="model.name")
    model = load_model(ref, recipe.model, detect_hardware(), recipe.adapter.type, task=task)
    model = apply_adapter(model, recipe.adapter, quantized=False, activation_checkpointing=False)
    counts = count_parameters(model)
    estimate = estimate_memory(recipe, demo_ws, gpu=NO_GPU)
    assert counts.model == estimate.total_params
    assert counts.trainable == estimate.trainable_params
    assert counts.total == sum(p.numel() for p in model.parameters())
    if recipe.adapter.type == "full":
        assert counts.adapter == 0 and counts.trainable == counts.model
        assert (
            counts.describe()
            == f"{format_params(counts.model)} parameters, {format_params(counts.model)} trainable"
        )
    else:
        assert counts.adapter > 0
        assert counts.describe().startswith(
            f"{format_params(estimate.total_params)} parameters + {format_params(counts.adapter)} adapter, "
        )


def test_sft_lora_on_the_demo_model_reads_as_configure_writes_it(demo_ws):
    recipe = load_recipe(find_recipe("sft-lora"), [])
    recipe = getattr(recipe, "recipe", recipe)
    ref = resolve_model(recipe.model.name, demo_ws, field="model.name")
    model = load_model(ref, recipe.model, detect_hardware(), "lora")
    counts = count_parameters(
        apply_adapter(model, recipe.adapter, quantized=False, activation_checkpointing=False)
    )
    # the runner's line once said 387.1K parameters (the model and the LoRA matrices together)
    assert counts.describe() == "417.2K parameters + 56.1K adapter, 56.1K trainable"
