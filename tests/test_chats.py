"""Conversations saved and loaded, the shared history of a comparison, few-shot turns from the sample
data, model choices for the picker, and the fit check before a model loads."""

from __future__ import annotations

import json

import pytest

from tui_ft.errors import DataError, UserError
from tui_ft.inference.chats import (
    Conversation,
    Reply,
    Turn,
    example_turns,
    few_shot_turns,
    list_conversations,
    load_conversation,
    save_conversation,
)
from tui_ft.monitor.system import GpuSample, GpuStatus


def test_conversation_round_trips_through_chats_folder(tmp_path):
    from tui_ft.workspace import Workspace

    ws = Workspace(tmp_path).ensure()
    conv = Conversation(models=["demo-tiny", "sft-lora"], system="Be brief.", settings={"temperature": 0.0})
    conv.turns.append(
        Turn("hi", [Reply("demo-tiny", "hello", 3, 0.1), Reply("sft-lora", "hey", 2, 0.1, True)], 1)
    )
    path = save_conversation(ws, "first", conv)
    assert path == tmp_path / "chats" / "first.json"
    again = load_conversation(ws, "first")
    assert again == conv
    assert list_conversations(ws) == [path]
    with pytest.raises(UserError):
        save_conversation(ws, "../escape", conv)
    (tmp_path / "chats" / "bad.json").write_text('{"turns": [{"nouser": 1}]}')
    with pytest.raises(DataError) as err:
        load_conversation(ws, "bad")
    assert "bad.json" in str(err.value)


def test_history_takes_the_preferred_reply_and_skips_failed_ones():
    conv = Conversation(
        models=["a", "b"],
        system="S",
        few_shot=[{"role": "user", "content": "q"}, {"role": "assistant", "content": "r"}],
    )
    conv.turns = [
        Turn("one", [Reply("a", "A1"), Reply("b", "B1")], preferred=1),
        Turn("two", [Reply("a", "", error="oom"), Reply("b", "B2")]),
        Turn("three"),
    ]
    assert conv.prompt_for(2) == [
        {"role": "system", "content": "S"},
        {"role": "user", "content": "q"},
        {"role": "assistant", "content": "r"},
        {"role": "user", "content": "one"},
        {"role": "assistant", "content": "B1"},
        {"role": "user", "content": "two"},
        {"role": "assistant", "content": "B2"},
        {"role": "user", "content": "three"},
    ]


def test_few_shot_turns_come_from_the_sample_chats(demo_ws):
    turns = few_shot_turns("chat.jsonl", 3, demo_ws, seed=1)
    assert [t["role"] for t in turns] == ["user", "assistant"] * 3
    assert turns == few_shot_turns("chat.jsonl", 3, demo_ws, seed=1)  # the seed decides
    pc = few_shot_turns("prompt_completion.jsonl", 2, demo_ws)
    assert len(pc) == 4 and all(t["content"] for t in pc)
    with pytest.raises(DataError) as err:
        few_shot_turns("preferences.jsonl", 2, demo_ws)
    assert "few-shot" in str(err.value)
    assert example_turns({"text": "just text"}) is None


def test_model_choices_list_models_runs_checkpoints_and_recipe_names(demo_ws, tmp_path):
    from tui_ft.modelref import model_choices, resolve_model
    from tui_ft.workspace import Workspace

    ws = Workspace(tmp_path).ensure()
    model = ws.models / "m"
    model.mkdir()
    (model / "config.json").write_text("{}")
    run = ws.runs / "20261130-010203-sft-lora"
    for part in ("final", "checkpoints/checkpoint-5", "checkpoints/checkpoint-10"):
        (run / part).mkdir(parents=True)
        (run / part / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": str(model)}))
    refs = [ref for ref, _ in model_choices(ws)]
    assert refs == [
        "last",
        "m",
        run.name,
        f"{run.name}:checkpoint-10",
        f"{run.name}:checkpoint-5",
        "sft-lora",
    ]
    for ref in refs:
        assert resolve_model(ref, ws).path


def _gpu(total_mb: float, used_mb: float) -> GpuStatus:
    sample = GpuSample(0, "NVIDIA H200", used_mb, total_mb, 90.0, 60.0, 400.0, "GPU-x")
    return GpuStatus(True, None, "560", "12.6", (sample,))


def test_load_advice_offers_cpu_or_4bit_when_the_gpu_is_full(demo_ws):
    from tui_ft.inference.resources import advise_load, weights_bytes

    need = weights_bytes("demo-tiny", demo_ws, device="cuda")
    assert need > 0
    roomy = advise_load("demo-tiny", demo_ws, gpu=_gpu(80_000, 1_000))
    assert roomy.fits and roomy.device == "cuda"
    full_mb = 80_000 - need / 1024**2 * 0.5  # half of what the weights need is free
    full = advise_load("demo-tiny", demo_ws, gpu=_gpu(80_000, full_mb), busy_runs=("20261130-sft",))
    assert not full.fits and full.options[0] == "cpu"
    assert "20261130-sft" in full.problem and "demo-tiny" in full.problem
    cpu = advise_load("demo-tiny", demo_ws, gpu=GpuStatus(False, "no driver", None, None), ram_available=10)
    assert cpu.device == "cpu" and not cpu.fits and "memory" in cpu.problem
    q4 = weights_bytes("demo-tiny", demo_ws, quantization="4bit")
    assert q4 < need
