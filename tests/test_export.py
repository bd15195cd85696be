"""`tui-ft export` and `export_run`: a run's adapter copied to a folder of its own, or merged into its base
model as a full model that loads without peft; bad references and non-empty folders exit 2.

One SFT LoRA run on the demo is trained in-process once for the module (a few steps)."""

from __future__ import annotations

import json
import subprocess

import pytest

from tests.conftest import tui_ft_command
from tui_ft.errors import NotFoundError, UserError
from tui_ft.inference.export import export_run


@pytest.fixture(scope="module")
def trained(demo_ws):
    """A finished sft-lora run on the demo with two checkpoints (trained in this process)."""
    from tui_ft.engine.runner import execute
    from tui_ft.recipe import load_recipe
    from tui_ft.runs.prepare import create_run

    loaded = load_recipe(
        "sft-lora",
        ["training.max_steps=4", "training.save_steps=2", "training.eval_strategy=no", "name=export-me"],
        cache_dir=demo_ws.cache,
    )
    run = create_run(loaded, demo_ws)
    assert execute(run.path) == 0
    return run


def test_adapter_copy_leaves_the_training_state_out(demo_ws, trained, tmp_path):
    out = tmp_path / "adapter"
    result = export_run(demo_ws, trained.id, out)
    assert not result.merged and result.adapter and result.out_dir == out
    names = {p.name for p in out.iterdir()}
    assert {"adapter_config.json", "adapter_model.safetensors", "tokenizer_config.json"} <= names
    assert (out / "adapter_model.safetensors").read_bytes() == (
        trained.final / "adapter_model.safetensors"
    ).read_bytes()
    meta = json.loads((out / "tui-ft.json").read_text())
    assert meta["run"] == trained.id and meta["merged"] is False
    # a checkpoint: its weights, without the optimizer, scheduler and RNG state it carries for resuming
    ckpt = tmp_path / "ckpt"
    export_run(demo_ws, f"{trained.id}:checkpoint-2", ckpt)
    names = {p.name for p in ckpt.iterdir()}
    assert "adapter_model.safetensors" in names
    assert not names & {"optimizer.pt", "scheduler.pt", "trainer_state.json", "training_args.bin"}
    assert not any(n.startswith("rng_state") for n in names)
    assert (trained.checkpoints / "checkpoint-2" / "optimizer.pt").exists()


def test_merge_writes_a_full_model_that_matches_the_adapter(demo_ws, trained, tmp_path):
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out = tmp_path / "merged"
    result = export_run(demo_ws, trained.id, out, merge=True)
    assert result.merged
    assert not (out / "adapter_config.json").exists() and (out / "config.json").exists()
    merged = AutoModelForCausalLM.from_pretrained(out)
    tokenizer = AutoTokenizer.from_pretrained(out)
    assert not isinstance(merged, PeftModel)
    base_dir = json.loads((trained.final / "adapter_config.json").read_text())["base_model_name_or_path"]
    with_adapter = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base_dir), trained.final)
    base = AutoModelForCausalLM.from_pretrained(base_dir)
    ids = tokenizer("What is the capital of Varnia?", return_tensors="pt").input_ids
    with torch.no_grad():
        got = merged(ids).logits
        want = with_adapter(ids).logits
        plain = base(ids).logits
    assert torch.allclose(got, want, atol=1e-4)  # the merge is the adapter's model
    assert not torch.allclose(got, plain, atol=1e-4)  # and not the base's


def test_bad_inputs_are_refused(demo_ws, trained, tmp_path):
    with pytest.raises(NotFoundError, match="no run"):
        export_run(demo_ws, "no-such-run", tmp_path / "a")
    with pytest.raises(NotFoundError, match="checkpoint"):
        export_run(demo_ws, f"{trained.id}:checkpoint-99", tmp_path / "b")
    full = tmp_path / "full"
    full.mkdir()
    (full / "keep.txt").write_text("mine")
    with pytest.raises(UserError, match="not empty"):
        export_run(demo_ws, trained.id, full)
    assert (full / "keep.txt").read_text() == "mine"


def test_cli_export_json_and_exit_status(cli_env, trained, tmp_path):
    out = tmp_path / "cli"
    done = subprocess.run(
        [*tui_ft_command(), "export", trained.id, "--out", str(out), "--json"],
        env=cli_env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)
    assert doc["out_dir"] == str(out) and doc["merged"] is False and doc["files"] >= 3
    again = subprocess.run(
        [*tui_ft_command(), "export", trained.id, "--out", str(out)],
        env=cli_env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert again.returncode == 2 and "not empty" in again.stderr
    missing = subprocess.run(
        [*tui_ft_command(), "export", trained.id[:-3] + "xyz", "--out", str(tmp_path / "x")],
        env=cli_env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert missing.returncode == 2 and "closest" in missing.stderr


def test_cli_watch_refuses_an_unknown_run(cli_env, trained):
    done = subprocess.run(
        [*tui_ft_command(), "watch", trained.id[:-3] + "xyz"],
        env=cli_env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert "no run" in done.stderr and trained.id in done.stderr
