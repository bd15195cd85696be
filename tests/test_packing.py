"""Packed, padding-free SFT: the demo model keeps packed sequences apart (sdpa and eager), the engine packs
only where that holds, the loss mask survives packing, nothing is cut silently, and the padding a padded
batch would carry is computed exactly."""

from __future__ import annotations

import itertools
import json
from collections import Counter

import pytest

from tui_ft.data.packing import packed_batch, padding_share

# --- padding share (no libraries) -------------------------------------------------------------------


def brute_force_share(lengths, batch_size, max_length):
    capped = [min(n, max_length) for n in lengths]
    batches = list(itertools.combinations(capped, batch_size))
    longest = sum(max(b) for b in batches) / len(batches)
    return 1 - (sum(capped) / len(capped)) / longest


@pytest.mark.parametrize(
    ("lengths", "batch_size", "max_length"),
    [([1, 3], 2, 100), ([5, 9, 2, 40, 7, 7, 13], 3, 100), ([5, 9, 2, 40, 7, 7, 13], 4, 10), ([8] * 6, 3, 64)],
)
def test_padding_share_is_the_expectation_over_random_batches(lengths, batch_size, max_length):
    assert padding_share(lengths, batch_size, max_length) == pytest.approx(
        brute_force_share(lengths, batch_size, max_length), abs=1e-12
    )


def test_padding_share_edges():
    assert padding_share([], 8, 512) == 0.0
    assert padding_share([10, 500], 1, 512) == 0.0  # one row per batch: nothing to pad
    assert padding_share([20] * 1000, 8, 512) == pytest.approx(0.0)
    skewed = [20] * 990 + [500] * 10
    assert 0.5 < padding_share(skewed, 16, 512) < 1.0
    # a million rows neither overflow nor take long
    assert 0.0 < padding_share([20 + i % 480 for i in range(1_000_000)], 8, 512) < 1.0


def test_packed_batch_keeps_a_padded_batchs_tokens_per_step():
    plan = packed_batch([100] * 50 + [300] * 50, batch_size=8, max_length=2048)
    assert plan.length == 1600 and plan.sequences == 1  # 8 rows of 200 on average: one sequence of 1600
    plan = packed_batch([100] * 100, batch_size=64, max_length=1024)
    assert plan.length == 1024 and plan.sequences == 6  # 6400 tokens a step: six full sequences
    plan = packed_batch([10, 900], batch_size=2, max_length=512)
    assert plan.length == 512  # never shorter than the longest example it keeps


# --- the model keeps packed sequences apart -----------------------------------------------------------


def load_demo(ws, attn: str):
    from tui_ft.engine.hardware import detect_hardware
    from tui_ft.engine.models import load_model, load_tokenizer
    from tui_ft.modelref import resolve_model
    from tui_ft.recipe import ModelSpec

    spec = ModelSpec(name="demo-tiny", attn_implementation=attn)
    ref = resolve_model("demo-tiny", ws)
    return load_model(ref, spec, detect_hardware(), "full"), load_tokenizer(ref, spec)


@pytest.mark.slow
@pytest.mark.parametrize("attn", ["sdpa", "eager"])
def test_packed_sequences_get_the_logits_they_get_alone(demo_ws, attn):
    import torch

    from tui_ft.engine.sft import packed_attention_problem

    model, tokenizer = load_demo(demo_ws, attn)
    assert model.config._attn_implementation == attn
    rows = [json.loads(line) for line in (demo_ws.data / "chat.jsonl").read_text().splitlines()[:2]]
    first, second = (
        torch.tensor(
            [tokenizer.apply_chat_template(r["messages"], tokenize=True, return_dict=True)["input_ids"]]
        )
        for r in rows
    )
    model.eval()
    with torch.no_grad():
        alone = [model(input_ids=s, use_cache=False).logits for s in (first, second)]
        positions = torch.cat([torch.arange(first.shape[1]), torch.arange(second.shape[1])]).unsqueeze(0)
        packed = model(
            input_ids=torch.cat([first, second], dim=1), position_ids=positions, use_cache=False
        ).logits
        # the same two rows side by side with positions running on: the second sees the first
        leaked = model(input_ids=torch.cat([first, second], dim=1), use_cache=False).logits
    split = first.shape[1]
    assert torch.allclose(packed[:, :split], alone[0], atol=1e-5, rtol=0)
    assert torch.allclose(packed[:, split:], alone[1], atol=1e-5, rtol=0)
    assert (leaked[:, split:] - alone[1]).abs().max() > 1e-2  # the check can tell a leak apart
    assert packed_attention_problem(model) is None


def build(ws, recipe, *overrides):
    """The run's trainer, built as the runner builds it (no training)."""
    from tui_ft.engine.runner import build_trainer
    from tui_ft.recipe import load_recipe
    from tui_ft.runs.prepare import create_run
    from tui_ft.runs.rundir import Status

    base = ["data.eval_split=0", "training.eval_strategy=no"]
    loaded = load_recipe(recipe, [*base, *overrides], cache_dir=ws.cache)
    run = create_run(loaded, ws)
    trainer, _, _ = build_trainer(run, ws, Status(id=run.id, name=run.id, method="sft"), None, None)
    return trainer


@pytest.mark.slow
def test_prompt_tuning_falls_back_to_padding_and_says_why(demo_ws, capsys):
    trainer = build(demo_ws, "sft-prompt-tuning")
    out = capsys.readouterr().out
    assert trainer.args.packing is False and not trainer.padding_free
    assert "packing off, padded batches instead:" in out and "cannot see where packed sequences start" in out


@pytest.mark.slow
def test_data_packing_false_pads(demo_ws, capsys):
    trainer = build(demo_ws, "sft-lora", "data.packing=false")
    assert trainer.args.packing is False and not trainer.padding_free
    assert "packing off (data.packing: false)" in capsys.readouterr().out


# --- the loss mask survives packing --------------------------------------------------------------------


def segments(trainer):
    """The packed train set collated as one padding-free batch, cut where the position ids restart: each
    segment's (input_ids, labels)."""
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(len(trainer.train_dataset))])
    ids, labels, positions = (batch[k][0].tolist() for k in ("input_ids", "labels", "position_ids"))
    starts = [i for i, p in enumerate(positions) if p == 0] + [len(positions)]
    return [(tuple(ids[a:b]), labels[a:b]) for a, b in zip(starts, starts[1:], strict=False)]


@pytest.mark.slow
@pytest.mark.parametrize(
    ("data", "scope"), [("chat.jsonl", "assistant"), ("prompt_completion.jsonl", "completion")]
)
def test_trained_tokens_of_a_packed_batch_are_each_examples_own(demo_ws, data, scope):
    packed = build(demo_ws, "sft-lora", f"data.train={data}")
    padded = build(demo_ws, "sft-lora", f"data.train={data}", "data.packing=false")
    assert packed.args.packing and packed.padding_free
    own = {tuple(r["input_ids"]): r["labels"] for r in padded.train_dataset}
    pieces = segments(packed)
    assert Counter(ids for ids, _ in pieces) == Counter(tuple(r["input_ids"]) for r in padded.train_dataset)
    trained = total = 0
    for ids, labels in pieces:
        # the first token of a sequence is never a target (nothing before it predicts it), packed or not
        assert labels[0] == -100
        assert labels[1:] == own[ids][1:], "a packed example trains other tokens than it does alone"
        trained += sum(label != -100 for label in labels[1:])
        total += len(ids) - 1
    assert 0 < trained < total  # only the assistant turns / completions train
    if scope == "completion":  # the prompt's tokens never train
        for _ids, labels in pieces:
            assert labels[1] == -100


@pytest.mark.slow
def test_examples_longer_than_max_length_are_counted(demo_ws, capsys):
    padded = build(demo_ws, "sft-lora", "data.packing=false", "data.max_length=1024")
    lengths = [len(r["input_ids"]) for r in padded.train_dataset]
    capsys.readouterr()
    limit = sorted(lengths)[len(lengths) // 2]
    over = sum(n > limit for n in lengths)
    trainer = build(demo_ws, "sft-lora", f"data.max_length={limit}")
    out = capsys.readouterr().out
    assert f"{over} of {len(lengths)} examples are longer than max_length {limit}" in out
    assert f"{sum(n - limit for n in lengths if n > limit)} tokens cut" in out
    assert max(sum(row["seq_lengths"]) for row in trainer.train_dataset) <= limit
