"""Recipe schema: YAML in, --set overrides, TRL-checked training keys, errors naming file/line/field."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tui_ft.errors import RecipeError
from tui_ft.recipe import dump_recipe, load_recipe, shipped_recipes, validate_recipe

SFT_RECIPES = ["sft-lora", "sft-qlora", "sft-dora", "sft-full", "sft-freeze", "sft-prompt-tuning"]


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("cache")


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "r.yaml"
    path.write_text(text)
    return path


BASE = """\
method: sft
model:
  name: demo-tiny
data:
  train: chat.jsonl
training:
  max_steps: 10
  learning_rate: 1.0e-3
"""


def test_every_shipped_sft_recipe_validates(cache):
    names = {p.stem for p in shipped_recipes()}
    assert set(SFT_RECIPES) <= names
    for name in SFT_RECIPES:
        loaded = load_recipe(name, cache_dir=cache)
        assert loaded.recipe.method == "sft"
        assert loaded.recipe.name == name
        text = loaded.source.read_text()
        assert "For a real model" in text, f"{name} must document what to change for a real model"


def test_overrides_are_typed(cache, tmp_path):
    loaded = load_recipe(
        write(tmp_path, BASE),
        ["training.max_steps=50", "training.learning_rate=1e-3", "adapter.r=8", "data.packing=true"],
        cache_dir=cache,
    )
    r = loaded.recipe
    assert r.training["max_steps"] == 50 and isinstance(r.training["max_steps"], int)
    assert r.training["learning_rate"] == pytest.approx(1e-3) and isinstance(
        r.training["learning_rate"], float
    )
    assert r.adapter.r == 8 and r.data.packing is True
    assert r.name == "r"


@pytest.mark.parametrize(
    ("override", "field", "line", "words"),
    [
        ("training.learing_rate=1e-4", "training.learing_rate", None, "did you mean training.learning_rate"),
        ("training.max_steps=lots", "training.max_steps", None, "expected int"),
        ("training.eval_strategy=step", "training.eval_strategy", None, "did you mean 'steps'"),
        ("adapter.typ=lora", "adapter.typ", None, "did you mean adapter.type"),
        ("model.quantization=3bit", "model.quantization", None, "'4bit'"),
        ("training.max_length=512", "training.max_length", None, "data.max_length"),
    ],
)
def test_bad_overrides_name_the_set(cache, tmp_path, override, field, line, words):
    with pytest.raises(RecipeError) as info:
        load_recipe(write(tmp_path, BASE), [override], cache_dir=cache)
    err = info.value
    assert err.field == field
    assert err.path == f"--set {override}"
    assert words in str(err)


def test_bad_key_in_file_names_path_line_field(cache, tmp_path):
    path = write(tmp_path, BASE.replace("  learning_rate: 1.0e-3", "  learnin_rate: 1.0e-3"))
    with pytest.raises(RecipeError) as info:
        load_recipe(path, cache_dir=cache)
    assert str(info.value).startswith(f"{path}:8: training.learnin_rate: unknown key")
    assert "did you mean training.learning_rate" in str(info.value)


def test_wrong_type_in_file(cache, tmp_path):
    path = write(tmp_path, BASE.replace("max_steps: 10", "max_steps: [1, 2]"))
    with pytest.raises(RecipeError) as info:
        load_recipe(path, cache_dir=cache)
    assert str(info.value).startswith(f"{path}:7: training.max_steps:")


def test_missing_section_and_bad_yaml(cache, tmp_path):
    path = write(tmp_path, "method: sft\nmodel:\n  name: demo-tiny\n")
    with pytest.raises(RecipeError) as info:
        load_recipe(path, cache_dir=cache)
    assert info.value.field == "data" and "required" in str(info.value)
    path = write(tmp_path, "method: sft\nmodel: [\n")
    with pytest.raises(RecipeError) as info:
        load_recipe(path, cache_dir=cache)
    assert "not valid YAML" in str(info.value) and info.value.line is not None


def test_quantized_full_training_is_refused(cache):
    with pytest.raises(RecipeError) as info:
        validate_recipe(
            yaml.safe_load(BASE)
            | {"adapter": {"type": "full"}, "model": {"name": "x", "quantization": "4bit"}}
        )
    assert info.value.field == "adapter.type"


def test_dump_round_trips(cache):
    loaded = load_recipe("sft-qlora", cache_dir=cache)
    again = validate_recipe(yaml.safe_load(dump_recipe(loaded.recipe)), cache_dir=cache)
    assert again.recipe == loaded.recipe


def test_unknown_recipe_name_suggests(cache):
    with pytest.raises(RecipeError) as info:
        load_recipe("sft-lor", cache_dir=cache)
    assert "did you mean sft-lora" in str(info.value)


def test_dpo_loss_type_takes_one_name_or_a_list_checked_against_trls_own_list(tmp_path):
    one = load_recipe("dpo-lora", ["training.loss_type=ipo"], cache_dir=tmp_path)
    assert one.recipe.training["loss_type"] == ["ipo"]
    mixed = load_recipe("dpo-lora", ["training.loss_type=[sigmoid, sft]"], cache_dir=tmp_path)
    assert mixed.recipe.training["loss_type"] == ["sigmoid", "sft"]
    with pytest.raises(
        RecipeError, match=r"'sigmodi' is not one of sigmoid, hinge, ipo.*did you mean 'sigmoid'"
    ):
        load_recipe("dpo-lora", ["training.loss_type=sigmodi"], cache_dir=tmp_path)


@pytest.mark.parametrize(
    ("recipe", "override", "words"),
    [
        ("sft-lora", "training.learning_rate=-1e-4", "expected a value > 0"),
        ("sft-lora", "training.max_steps=0", ">= 1, or -1"),
        ("sft-lora", "training.per_device_train_batch_size=0", ">= 1"),
        ("sft-lora", "training.gradient_accumulation_steps=-2", ">= 1"),
        ("sft-lora", "training.warmup_steps=-1", ">= 0"),
        ("sft-lora", "training.adam_beta2=1.0", "in [0, 1)"),
        ("sft-lora", "training.weight_decay=-0.1", ">= 0"),
        ("dpo-lora", "training.beta=0", "> 0"),
        ("dpo-lora", "training.label_smoothing=0.5", "in [0, 0.5)"),
        ("kto-lora", "training.desirable_weight=0", "> 0"),
        ("orpo-lora", "training.beta=-1", "> 0"),
        ("reward-lora", "training.num_train_epochs=0", "> 0"),
        ("grpo-lora", "training.num_generations=1", ">= 2"),
        ("grpo-lora", "training.temperature=0", "> 0"),
        ("grpo-lora", "training.top_p=1.5", "in (0, 1]"),
        ("grpo-lora", "training.beta=-0.1", ">= 0"),
        ("rloo-lora", "training.max_completion_length=0", ">= 1"),
        ("classify-lora", "training.learning_rate=0", "> 0"),
    ],
)
def test_values_out_of_range_are_refused_at_load(cache, recipe, override, words):
    """Every method's numeric training keys are range-checked when the recipe loads (exit 2 naming the
    `--set` and the field), not by the optimizer after the model has loaded."""
    with pytest.raises(RecipeError) as info:
        load_recipe(recipe, [override], cache_dir=cache)
    err = info.value
    assert err.exit_status == 2
    assert err.field == override.partition("=")[0] and err.path == f"--set {override}"
    assert "out of range" in str(err) and words in str(err)


@pytest.mark.parametrize(
    ("recipe", "override"),
    [
        ("sft-lora", "training.max_steps=-1"),  # -1: train for num_train_epochs
        ("sft-lora", "training.warmup_steps=0.1"),  # below 1: a ratio of the steps
        ("sft-lora", "training.max_grad_norm=0"),  # 0: no clipping
        ("grpo-lora", "training.beta=0.0"),  # GRPO: no KL term, no reference model
        ("grpo-lora", "training.top_p=1.0"),
        ("dpo-lora", "training.label_smoothing=0.1"),
    ],
)
def test_values_at_the_edges_of_their_range_load(cache, recipe, override):
    load_recipe(recipe, [override], cache_dir=cache)


def test_out_of_range_value_in_a_file_names_its_line(cache, tmp_path):
    path = write(tmp_path, BASE.replace("learning_rate: 1.0e-3", "learning_rate: -1.0e-3"))
    with pytest.raises(RecipeError) as info:
        load_recipe(path, cache_dir=cache)
    assert str(info.value).startswith(f"{path}:8: training.learning_rate: -0.001 is out of range")


def test_recipe_sections_refuse_values_out_of_range(cache, tmp_path):
    for override, field in [
        ("adapter.r=0", "adapter.r"),
        ("adapter.dropout=1.0", "adapter.dropout"),
        ("data.eval_split=1.5", "data.eval_split"),
        ("data.max_length=0", "data.max_length"),
    ]:
        with pytest.raises(RecipeError) as info:
            load_recipe(write(tmp_path, BASE), [override], cache_dir=cache)
        assert info.value.field == field, override
