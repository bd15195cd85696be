"""End to end on the demo model: every shipped SFT recipe trains, its loss falls, final/ reloads and
generates; QLoRA keeps training its adapter after an evaluation pass."""

from __future__ import annotations

import json

import pytest

from tests.conftest import train_recipe
from tui_ft.recipe import load_recipe
from tui_ft.runs.rundir import read_events

pytestmark = pytest.mark.slow

STEPS = 12


def train_events(run):
    events, _ = read_events(run.events_file)
    return events


def run_recipe(ws, name, *overrides):
    return train_recipe(ws, name, f"training.max_steps={STEPS}", f"training.save_steps={STEPS}", *overrides)


# Extra overrides per recipe; QLoRA evaluates every 4 steps and keeps each checkpoint, so the same
# run also shows its adapter still learning after an evaluation pass.
EXTRA = {
    "sft-qlora": [
        "training.eval_strategy=steps",
        "training.eval_steps=4",
        "training.save_steps=4",
        "training.save_total_limit=5",
    ],
}
_TRAINED: dict[str, tuple] = {}


def trained(ws, name):
    """Each shipped recipe trains once per session; several tests look at the same run."""
    if name not in _TRAINED:
        _TRAINED[name] = run_recipe(ws, name, *EXTRA.get(name, []))
    return _TRAINED[name]


@pytest.mark.parametrize(
    "name", ["sft-lora", "sft-qlora", "sft-dora", "sft-full", "sft-freeze", "sft-prompt-tuning"]
)
def test_shipped_sft_recipe_trains_reloads_and_generates(demo_ws, name):
    from tui_ft.inference.generate import generate, load_for_generation

    run, status = trained(demo_ws, name)
    events = train_events(run)
    losses = [e["loss"] for e in events if e["type"] == "train" and "loss" in e]
    assert len(losses) == STEPS
    assert all(e["step"] == i + 1 for i, e in enumerate(e for e in events if e["type"] == "train"))
    first, last = losses[0], sum(losses[-3:]) / 3
    assert last < first, f"{name}: loss did not fall: {losses}"
    assert status.step == STEPS and status.loss == pytest.approx(losses[-1])
    assert any(e["type"] == "checkpoint" for e in events)
    assert (run.checkpoints / f"checkpoint-{STEPS}").is_dir()

    meta = json.loads((run.final / "tui-ft.json").read_text())
    assert meta["adapter"] == status.adapter
    is_adapter = (run.final / "adapter_config.json").exists()
    assert is_adapter == (name not in ("sft-full", "sft-freeze"))
    loaded = load_for_generation(run.id, demo_ws)
    assert loaded.ref.adapter == is_adapter
    out = generate(loaded, "What is the capital of Korvath?", max_new_tokens=8)
    assert out.new_tokens > 0 and out.text.strip()


def test_freeze_trains_only_the_last_blocks_and_head(demo_ws):
    import torch
    from transformers import AutoModelForCausalLM

    run, _ = trained(demo_ws, "sft-freeze")  # the recipe trains the last block only
    base = AutoModelForCausalLM.from_pretrained(demo_ws.models / "demo-tiny").state_dict()
    tuned = AutoModelForCausalLM.from_pretrained(run.final).state_dict()
    n_layers = max(int(k.split(".")[2]) for k in base if k.startswith("model.layers.")) + 1
    changed = {k for k in base if not torch.equal(base[k], tuned[k])}
    assert "lm_head.weight" in changed
    assert any(k.startswith(f"model.layers.{n_layers - 1}.") for k in changed)
    assert not any(k.startswith("model.layers.0.") for k in changed) or n_layers == 1
    assert "model.embed_tokens.weight" not in changed


def test_qlora_adapter_gets_gradients_after_an_evaluation_pass(demo_ws):
    """bitsandbytes repacks 4-bit weights on the first no-grad forward on AVX512-BF16 CPUs, after
    which backward passes silently stop reaching adapters below: the engine must prevent it."""
    import torch

    from tui_ft.engine.hardware import detect_hardware
    from tui_ft.engine.models import apply_adapter, load_model, load_tokenizer
    from tui_ft.modelref import resolve_model

    recipe = load_recipe("sft-qlora", cache_dir=demo_ws.cache).recipe
    ref = resolve_model(recipe.model.name, demo_ws)
    tok = load_tokenizer(ref)
    model = load_model(ref, recipe.model, detect_hardware(), recipe.adapter.type)
    model = apply_adapter(model, recipe.adapter, quantized=True, activation_checkpointing=False)
    batch = tok(["The capital of Avaria is Brell."] * 2, return_tensors="pt")
    model.eval()
    with torch.no_grad():
        model(**batch)  # what an evaluation (or generate) does
    model.train()
    out = model(**batch, labels=batch["input_ids"])
    out.loss.backward()
    # lora_B starts at zero (so lora_A's first gradient is zero by design): every B must get one
    lora_b = {n: p for n, p in model.named_parameters() if "lora_B" in n}
    assert len(lora_b) >= 7 * 2, "expected LoRA on every linear layer of both blocks"
    dead = [n for n, p in lora_b.items() if p.grad is None or not torch.any(p.grad != 0)]
    assert not dead, f"no gradient reached {dead}"


def test_qlora_recipe_with_evaluation_changes_every_adapter_after_eval(demo_ws):
    """The shipped QLoRA recipe evaluates during training; every LoRA matrix must still move after
    the first evaluation (compared between the checkpoint right after it and the final adapter)."""
    import torch
    from safetensors.torch import load_file

    run, _ = trained(demo_ws, "sft-qlora")
    events = train_events(run)
    assert [e["step"] for e in events if e["type"] == "eval"][:2] == [4, 8]
    after_eval = load_file(run.checkpoints / "checkpoint-4" / "adapter_model.safetensors")
    final = load_file(run.final / "adapter_model.safetensors")
    still = [k for k in after_eval if "lora_" in k and torch.equal(after_eval[k], final[k])]
    assert not still, f"adapter weights frozen after evaluation: {still}"


def config_event(run):
    return next(e for e in train_events(run) if e["type"] == "config")


def test_packing_activation_checkpointing_and_8bit_optimizer(demo_ws):
    run, _ = run_recipe(
        demo_ws,
        "sft-lora",
        "data.packing=true",
        "training.activation_checkpointing=true",
        "training.optim=adamw_bnb_8bit",
        "data.eval_split=0",
        "training.eval_strategy=no",
    )
    cfg = config_event(run)
    assert cfg["packing"] is True and cfg["activation_checkpointing"] is True
    assert cfg["optim"] == "adamw_bnb_8bit"
    assert cfg["bf16"] is False and cfg["fp16"] is False  # a plain CPU trains in fp32
    losses = [e["loss"] for e in train_events(run) if e["type"] == "train"]
    assert sum(losses[-3:]) / 3 < losses[0]


def test_8bit_quantized_lora(demo_ws):
    run, _ = run_recipe(
        demo_ws, "sft-lora", "model.quantization=8bit", "data.eval_split=0", "training.eval_strategy=no"
    )
    assert config_event(run)["quantization"] == "8bit"
    assert (run.final / "adapter_config.json").exists()
