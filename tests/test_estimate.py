"""Memory estimate: parameter counts from config.json / safetensors, and the parts against known figures."""

from __future__ import annotations

import json
import subprocess

import pytest

from tests.conftest import NO_GPU, tui_ft_command
from tui_ft.estimate import (
    NF4_BYTES,
    estimate_memory,
    model_shape,
    read_safetensors_header,
    shape_from_config,
)
from tui_ft.monitor.system import GpuSample, GpuStatus
from tui_ft.recipe import validate_recipe

LLAMA_7B = {
    "model_type": "llama",
    "vocab_size": 32000,
    "hidden_size": 4096,
    "intermediate_size": 11008,
    "num_hidden_layers": 32,
    "num_attention_heads": 32,
    "num_key_value_heads": 32,
    "tie_word_embeddings": False,
}
A100 = GpuStatus(True, None, "550", "12.4", (GpuSample(0, "A100-80GB", 0.0, 81920.0, 0.0, 40.0, 60.0, None),))


@pytest.fixture()
def llama7b(tmp_path):
    folder = tmp_path / "llama-7b"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(LLAMA_7B))
    return folder


def recipe(model_name: str, *, method: str = "sft", training=None, **sections):
    data = {
        "method": method,
        "model": {"name": model_name, **sections.get("model", {})},
        "adapter": sections.get("adapter", {"type": "lora"}),
        "data": {"train": "x.jsonl", "max_length": sections.get("max_length", 2048)},
        "training": {"per_device_train_batch_size": 1, **(training or {})},
    }
    if method in ("grpo", "rloo"):
        data["rewards"] = {"functions": ["rewards.py:length"]}
    return validate_recipe(data, check_training=False).recipe


def gb(n: int) -> float:
    return n / 1e9


def test_llama7b_parameters_from_config():
    shape = shape_from_config(LLAMA_7B)
    assert shape.total_params == 6_738_415_616  # Llama-2-7B's published count
    assert shape.embed_params == shape.head_params == 32000 * 4096
    assert len(shape.linears) == 32 * 7


def test_tied_and_gqa_change_the_count():
    tied = shape_from_config({**LLAMA_7B, "tie_word_embeddings": True})
    gqa = shape_from_config({**LLAMA_7B, "num_key_value_heads": 8})
    full = shape_from_config(LLAMA_7B)
    assert full.total_params - tied.total_params == 32000 * 4096
    # k and v shrink from 4096x4096 to 4096x1024 in every layer
    assert full.total_params - gqa.total_params == 32 * 2 * 4096 * (4096 - 1024)


def test_7b_bf16_weights_are_13_5_gb(demo_ws, llama7b):
    r = recipe(str(llama7b), model={"dtype": "bfloat16"}, adapter={"type": "full"})
    est = estimate_memory(r, demo_ws, gpu=A100)
    assert gb(est.part("weights").bytes) == pytest.approx(13.48, abs=0.05)


def test_full_fine_tuning_is_16_bytes_per_param_in_fp32_and_8_in_bf16(demo_ws, llama7b):
    for dtype, per_param in (("float32", 16), ("bfloat16", 8)):
        r = recipe(str(llama7b), model={"dtype": dtype}, adapter={"type": "full"})
        est = estimate_memory(r, demo_ws, gpu=A100)
        states = sum(est.part(k).bytes for k in ("weights", "gradients", "optimizer"))
        assert states == per_param * est.total_params
        assert est.part("activations").bytes > 0


def test_8bit_optimizer_cuts_optimizer_state(demo_ws, llama7b):
    base = recipe(str(llama7b), model={"dtype": "float32"}, adapter={"type": "full"})
    eight = recipe(
        str(llama7b),
        model={"dtype": "float32"},
        adapter={"type": "full"},
        training={"optim": "adamw_bnb_8bit"},
    )
    a = estimate_memory(base, demo_ws, gpu=A100).part("optimizer").bytes
    b = estimate_memory(eight, demo_ws, gpu=A100).part("optimizer").bytes
    assert a == 4 * b


def test_7b_qlora_fits_in_6_to_10_gb(demo_ws, llama7b):
    r = recipe(
        str(llama7b),
        model={"dtype": "bfloat16", "quantization": "4bit"},
        adapter={"type": "lora", "r": 16, "dropout": 0.0},
        training={"activation_checkpointing": True},
    )
    est = estimate_memory(r, demo_ws, gpu=A100)
    assert 6e9 < est.total_bytes < 10e9
    assert est.fits is True
    # r * (in + out) over q, k, v, o, gate, up, down in 32 layers
    assert est.trainable_params == 32 * 16 * (4 * 8192 + 3 * (4096 + 11008))
    quantized = 32 * (4 * 4096 * 4096 + 3 * 4096 * 11008)
    assert est.part("weights").bytes >= quantized * NF4_BYTES


def test_lora_is_far_smaller_than_full_and_checkpointing_cuts_activations(demo_ws, llama7b):
    full = estimate_memory(recipe(str(llama7b), adapter={"type": "full"}), demo_ws, gpu=A100)
    lora = estimate_memory(recipe(str(llama7b), adapter={"type": "lora"}), demo_ws, gpu=A100)
    ckpt = estimate_memory(
        recipe(str(llama7b), adapter={"type": "lora"}, training={"activation_checkpointing": True}),
        demo_ws,
        gpu=A100,
    )
    assert lora.part("optimizer").bytes < full.part("optimizer").bytes / 50
    assert ckpt.part("activations").bytes < lora.part("activations").bytes / 4
    assert full.fits is not None  # compared with the GPU given
    bigger = estimate_memory(
        recipe(str(llama7b), adapter={"type": "lora"}, training={"per_device_train_batch_size": 4}),
        demo_ws,
        gpu=A100,
    )
    assert bigger.part("activations").bytes == pytest.approx(4 * lora.part("activations").bytes, rel=0.01)


def test_freeze_and_prompt_tuning_trainables(demo_ws, llama7b):
    shape = shape_from_config(LLAMA_7B)
    freeze = estimate_memory(
        recipe(str(llama7b), adapter={"type": "freeze", "trainable_layers": 2}), demo_ws, gpu=A100
    )
    per_layer = shape.layer_params // 32
    assert freeze.trainable_params == 2 * per_layer + shape.head_params + shape.other_params
    prompt = estimate_memory(
        recipe(str(llama7b), adapter={"type": "prompt_tuning", "num_virtual_tokens": 20}), demo_ws, gpu=A100
    )
    assert prompt.trainable_params == 20 * 4096


def test_reference_model_only_for_full_training_without_precompute(demo_ws, llama7b):
    def ref(**kw):
        return estimate_memory(recipe(str(llama7b), **kw), demo_ws, gpu=A100).part("reference")

    full = ref(method="dpo", adapter={"type": "full"}, model={"dtype": "bfloat16"})
    assert full.bytes == pytest.approx(13.48e9, rel=0.01)
    assert ref(method="dpo", adapter={"type": "lora"}).bytes == 0
    assert ref(method="dpo", adapter={"type": "full"}, training={"precompute_ref_log_probs": True}).bytes == 0
    assert ref(method="orpo", adapter={"type": "full"}) is None
    assert ref(method="grpo", adapter={"type": "full"}, training={"beta": 0.0}).bytes == 0
    assert ref(method="grpo", adapter={"type": "full"}, training={"beta": 0.04}).bytes > 0


def test_grpo_adds_a_kv_cache(demo_ws, llama7b):
    r = recipe(
        str(llama7b),
        method="grpo",
        max_length=256,
        model={"dtype": "bfloat16"},
        training={"per_device_train_batch_size": 8, "max_completion_length": 256, "steps_per_generation": 2},
    )
    est = estimate_memory(r, demo_ws, gpu=A100)
    # 2 (k, v) x 32 layers x 4096 x 2 bytes per token, 16 sequences of 512 tokens
    assert est.part("generation").bytes == 2 * 32 * 4096 * 2 * 16 * 512


def test_no_gpu_is_said_not_crashed(demo_ws, llama7b):
    est = estimate_memory(recipe(str(llama7b)), demo_ws, gpu=NO_GPU)
    assert est.fits is None and est.device_bytes is None
    assert "no GPU" in est.verdict()
    small = GpuStatus(True, None, "1", "1", (GpuSample(0, "T4", 0.0, 4096.0, 0.0, 0.0, 0.0, None),))
    assert estimate_memory(recipe(str(llama7b)), demo_ws, gpu=small).fits is False


def test_demo_model_counts_from_safetensors_match_its_config(demo_ws):
    folder = demo_ws.models / "demo-tiny"
    config = json.loads((folder / "config.json").read_text())
    exact = model_shape(folder)
    derived = shape_from_config(config)
    assert exact.source == "safetensors"
    header = read_safetensors_header(folder / "model.safetensors")
    assert exact.total_params == sum(_numel(v["shape"]) for v in header.values())
    assert exact.total_params == derived.total_params
    est = estimate_memory(recipe("demo-tiny", max_length=256), demo_ws, gpu=NO_GPU)
    assert est.dtype == "float32"  # auto without a GPU, as the engine loads it
    assert est.part("weights").bytes == pytest.approx(4 * exact.total_params, rel=0.2)


def _numel(shape):
    n = 1
    for d in shape:
        n *= d
    return n


def test_unknown_model_is_a_user_error(demo_ws):
    from tui_ft.errors import NotFoundError

    with pytest.raises(NotFoundError):
        estimate_memory(recipe("no-such-model-here"), demo_ws, gpu=NO_GPU)


def test_cli_estimate_json_and_bad_recipe(cli_env, llama7b):
    cmd = tui_ft_command()
    out = subprocess.run(
        [
            *cmd,
            "estimate",
            "sft-qlora",
            "--set",
            f"model.name={llama7b}",
            "--set",
            "model.dtype=bfloat16",
            "--json",
        ],
        env=cli_env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    assert doc["total_params"] == 6_738_415_616
    assert {p["key"] for p in doc["parts"]} >= {"weights", "gradients", "optimizer", "activations"}
    bad = subprocess.run(
        [*cmd, "estimate", "sft-lora", "--set", "adapter.r=0"],
        env=cli_env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert bad.returncode == 2
    assert "adapter.r" in bad.stderr and "greater than 0" in bad.stderr


# ---------------------------------------------------------------------------------------------------
# the formula's parts, each against what torch and TRL actually keep


def _saved_bytes_per_layer(model, input_ids, **inputs) -> dict[int, int]:
    """Bytes of the tensors autograd keeps for backward after the forward pass, per decoder block
    (parameters excluded; a tensor saved by a graph already freed, as DoRA's weight norm, is not kept)."""
    import re
    import weakref

    import torch

    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    current = [-1]
    for name, module in model.named_modules():
        m = re.search(r"layers\.(\d+)$", name)
        if m:
            index = int(m.group(1))
            module.register_forward_pre_hook(lambda mod, args, n=index: current.__setitem__(0, n))
            module.register_forward_hook(lambda mod, args, out: current.__setitem__(0, -1))
    saved: list[tuple[int, weakref.ref]] = []

    def pack(t):
        if current[0] >= 0 and t.untyped_storage().data_ptr() not in params:
            saved.append((current[0], weakref.ref(t)))
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = model(input_ids=input_ids, use_cache=False, **inputs)
    seen: set[int] = set()
    per_layer: dict[int, int] = {}
    for layer, ref in saved:
        t = ref()
        if t is not None and t.untyped_storage().data_ptr() not in seen:
            seen.add(t.untyped_storage().data_ptr())
            per_layer[layer] = per_layer.get(layer, 0) + t.untyped_storage().nbytes()
    del out
    return per_layer


def _tiny_llama(hidden=64, intermediate=160, heads=4, kv_heads=2):
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=256,
        hidden_size=hidden,
        intermediate_size=intermediate,
        num_hidden_layers=2,
        num_attention_heads=heads,
        num_key_value_heads=kv_heads,
        attn_implementation="sdpa",
    )
    return LlamaForCausalLM(config)


def test_block_activations_match_what_autograd_saves_in_float32():
    import torch

    from tui_ft.estimate import block_bytes_per_token

    model = _tiny_llama()
    batch, seq = 2, 48
    saved = _saved_bytes_per_layer(model, torch.randint(0, 256, (batch, seq)))
    expected = block_bytes_per_token(64, 2 * 16, 160, abytes=4) * batch * seq
    assert expected == (32 * 64 + 8 * 32 + 16 * 160) * batch * seq  # norms 2x3h, q k v out, 4 x MLP
    for layer in (0, 1):
        assert saved[layer] == pytest.approx(expected, rel=0.02)  # + per-row norms' rsqrt, attention's lse
    # a frozen model (prompt tuning): frozen Linear modules and norms keep no inputs
    for p in model.parameters():
        p.requires_grad_(False)
    embeds = model.get_input_embeddings()(torch.randint(0, 256, (batch, seq))).requires_grad_(True)
    saved = _saved_bytes_per_layer(model, None, inputs_embeds=embeds)
    frozen = block_bytes_per_token(64, 32, 160, 4, norms_train=False, linears_read=False) * batch * seq
    assert frozen == (16 * 64 + 8 * 32 + 12 * 160) * batch * seq  # norms 2 x 4h, q k v out, 3 x MLP
    assert saved[1] == pytest.approx(frozen, rel=0.03)


def test_lora_and_dora_activations_match_what_autograd_saves():
    import torch
    from peft import LoraConfig, get_peft_model

    from tui_ft.estimate import Linear, block_bytes_per_token, lora_module_bytes_per_token

    h, kv, i, r = 64, 32, 160, 8
    modules = [Linear("q", h, h), Linear("k", h, kv), Linear("v", h, kv), Linear("o", h, h)]
    modules += [Linear("gate", h, i), Linear("up", h, i), Linear("down", i, h)]
    batch, seq = 2, 48
    ids = torch.randint(0, 256, (batch, seq))
    for dora in (False, True):
        config = LoraConfig(r=r, lora_alpha=16, lora_dropout=0.0, target_modules="all-linear", use_dora=dora)
        model = get_peft_model(_tiny_llama(), config)
        saved = _saved_bytes_per_layer(model, ids)
        extra = sum(lora_module_bytes_per_token(lin, r, 4, dora=dora) for lin in modules)
        base = block_bytes_per_token(h, kv, i, 4, norms_train=False)  # the norms' weights are frozen
        expected = (base + extra) * batch * seq
        assert saved[1] == pytest.approx(expected, rel=0.03), dora
    lin = Linear("q", 4096, 1024)
    assert lora_module_bytes_per_token(lin, 16, 2) == 2 * 16
    assert lora_module_bytes_per_token(lin, 16, 2, input_cast=True) == 2 * (16 + 4096)
    assert lora_module_bytes_per_token(lin, 16, 2, dora=True) == 2 * (16 + 2 * 1024)
    assert lora_module_bytes_per_token(lin, 16, 2, dropout=True) == 2 * 16 + 3 * 4096


def test_logits_in_tiles_under_trls_fused_head():
    from tui_ft.estimate import FUSED_TILE_TOKENS, FUSED_TILE_VOCAB, logits_bytes

    # materialised: compute dtype + a float32 upcast + the log-softmax kept for backward
    assert logits_bytes(1000, 32000, 2048, 2, fused=False, on_gpu=True) == 1000 * 32000 * 10
    # fused: one tile at a time, whatever the batch or vocabulary, plus the hidden states' float32 gradient
    big = logits_bytes(100_000, 150_000, 4096, 2, fused=True, on_gpu=True)
    assert big == FUSED_TILE_TOKENS * FUSED_TILE_VOCAB * 2 + 100_000 * 4096 * 4
    # on a CPU torch's fallback holds the tile's temporaries too: 33 bytes per element in float32
    small = logits_bytes(510, 32000, 768, 4, fused=True, on_gpu=False)
    assert small == 510 * 32000 * 33 + 510 * 768 * 4


def test_sft_and_dpo_use_the_fused_head_orpo_does_not(demo_ws, llama7b):
    from tui_ft.estimate import trl_fuses_lm_head

    assert trl_fuses_lm_head()  # the TRL tui-ft is tested with has trl/kernels/chunked_logprob.py
    for method, fused in (("sft", True), ("dpo", True), ("orpo", False)):
        est = estimate_memory(recipe(str(llama7b), method=method), demo_ws, gpu=A100)
        assert ("LM head in tiles" in est.part("activations").explanation) is fused, method


def test_backward_frees_activations_as_gradients_fill(demo_ws, llama7b):
    def states(est):
        return {p.key: p.bytes for p in est.parts}

    # full fine-tuning: the peak holds weights + optimizer + the larger of (activations + head gradient)
    # and gradients, not both
    full = estimate_memory(
        recipe(str(llama7b), adapter={"type": "full"}, model={"dtype": "bfloat16"}), demo_ws, gpu=A100
    )
    p = states(full)
    head_grad = 32000 * 4096 * 2
    peak = p["weights"] + p["optimizer"] + max(p["activations"] + head_grad, p["gradients"])
    assert sum(v for k, v in p.items() if k != "runtime") == peak
    assert p["overlap"] == -min(p["gradients"] - head_grad, p["activations"])
    # LoRA: the adapter's few gradients fill while the activations are freed
    lora = states(estimate_memory(recipe(str(llama7b)), demo_ws, gpu=A100))
    assert lora["overlap"] == -lora["gradients"]


def test_format_bytes_of_a_negative_part():
    from tui_ft.estimate import format_bytes

    assert format_bytes(-2048) == "-2.0 KiB"
    assert format_bytes(3 * 1024**3) == "3.0 GiB"


def test_the_estimate_speaks_per_device_with_the_world_size_of_a_multi_node_run(demo_ws, llama7b):
    """ZeRO-3 over two machines of two processes each shards weights, gradients and optimizer four ways
    (the world size, not one machine's processes); the GPUs compared with are the hosts', not this
    machine's."""

    def launched(launcher):
        data = {
            "method": "sft",
            "model": {"name": str(llama7b), "dtype": "bfloat16"},
            "adapter": {"type": "full"},
            "data": {"train": "x.jsonl", "max_length": 512},
            "training": {"per_device_train_batch_size": 1},
            "launcher": launcher,
        }
        return estimate_memory(validate_recipe(data, check_training=False).recipe, demo_ws, gpu=A100)

    one = launched({"type": "accelerate", "num_processes": 2, "config": "deepspeed-zero3"})
    two = launched(
        {"type": "accelerate", "num_processes": 2, "config": "deepspeed-zero3", "hosts": ["a:2", "b:2"]}
    )
    for key in ("weights", "gradients", "optimizer"):
        assert two.part(key).bytes == pytest.approx(one.part(key).bytes / 2, rel=1e-6)
        assert "world size 4: 2 machines x 2" in two.part(key).explanation
    assert "per device, world size 4: 2 machines x 2" in two.assumptions
    assert two.device_bytes is None and "launcher.hosts" in two.device
    assert one.device_bytes is not None  # one machine: compared with its own GPU


def test_padding_line_says_the_share_and_whether_the_run_pads():
    from tui_ft.data.packing import padding_share
    from tui_ft.estimate import describe_padding

    lengths = [20, 40, 80, 300] * 50
    share = f"{padding_share(lengths, 8, 256):.0%}"
    off = describe_padding(lengths, 8, 256, False, sampled=False)
    assert off == f"padding: {share} of a padded batch (batch 8, max_length 256); packing off (200 rows)"
    on = describe_padding(lengths, 8, 256, True, sampled=True)
    assert on.startswith("padding: ~0% (packing on)") and f"would be {share} padding (first 200 rows)" in on
    assert (
        describe_padding([], 8, 256, False, sampled=False) == "padding: no row of the data could be measured"
    )
    assert "no max_length" in describe_padding(lengths, 8, None, False, sampled=False)
