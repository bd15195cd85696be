"""`tui-ft export` and `export_run`: a run's adapter copied to a folder of its own, merged into its base
model as a full model that loads without peft (LoRA and DoRA), or written as a GGUF (the gguf package's
writer) that transformers loads back with the same greedy tokens; a smoke prompt through every export;
prompt tuning says why it does not merge; a full disk leaves nothing behind; bad input exits 2.

SFT LoRA, DoRA and prompt-tuning runs on the demo are trained in-process once for the module."""

from __future__ import annotations

import errno
import json
import subprocess

import pytest

from tests.conftest import run_tui_ft, tui_ft_command
from tui_ft.errors import NotFoundError, UserError, WorkFailed
from tui_ft.inference.export import NO_MERGE_SENTENCE, VERIFY_PROMPTS, export_run


def _train(demo_ws, recipe: str, name: str, *extra: str):
    from tui_ft.engine.runner import execute
    from tui_ft.recipe import load_recipe
    from tui_ft.runs.prepare import create_run

    loaded = load_recipe(
        recipe,
        [
            "training.max_steps=4",
            "training.save_steps=2",
            "training.eval_strategy=no",
            f"name={name}",
            *extra,
        ],
        cache_dir=demo_ws.cache,
    )
    run = create_run(loaded, demo_ws)
    assert execute(run.path) == 0
    return run


@pytest.fixture(scope="module")
def trained(demo_ws):
    """A finished sft-lora run on the demo with two checkpoints (trained in this process)."""
    return _train(demo_ws, "sft-lora", "export-me")


@pytest.fixture(scope="module")
def trained_dora(demo_ws):
    return _train(demo_ws, "sft-dora", "export-dora")


@pytest.fixture(scope="module")
def trained_prompt(demo_ws):
    return _train(demo_ws, "sft-prompt-tuning", "export-prompt")


@pytest.fixture(scope="module")
def merged_lora(demo_ws, trained, tmp_path_factory):
    """The LoRA run merged once for the module (the smoke prompt included)."""
    return export_run(demo_ws, trained.id, tmp_path_factory.mktemp("m") / "merged", merge=True)


def _logits(model, tokenizer, texts):
    import torch

    with torch.no_grad():
        return [model(tokenizer(t, return_tensors="pt").input_ids).logits for t in texts]


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


@pytest.fixture(scope="module")
def stacked(demo_ws, trained):
    """A DPO run trained on top of the sft-lora run's adapter (`model.name=RUN`, as the README does)."""
    return _train(demo_ws, "dpo-lora", "dpo-on-sft", f"model.name={trained.id}")


def test_a_run_trained_on_another_runs_adapter_loads_with_both(demo_ws, trained, stacked, tmp_path):
    """DPO after SFT trains on the SFT adapter merged into the base: its adapter names the SFT adapter as
    its base, and loading it (generate, chat, eval) or merging it (export) merges the SFT adapter
    first. Dropping it (base + DPO adapter alone) was a silent loss of everything SFT taught."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from tui_ft.inference.generate import load_for_generation

    named = json.loads((stacked.final / "adapter_config.json").read_text())["base_model_name_or_path"]
    assert named == str(trained.final)
    base_dir = json.loads((trained.final / "adapter_config.json").read_text())["base_model_name_or_path"]
    sft = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base_dir), trained.final)
    want = PeftModel.from_pretrained(sft.merge_and_unload(), stacked.final).eval()
    without_sft = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base_dir), stacked.final)
    tokenizer = AutoTokenizer.from_pretrained(base_dir)
    texts = ["What is the capital of Varnia?", "Spell tree backwards."]
    loaded = load_for_generation(stacked.id, demo_ws, device="cpu")
    out = tmp_path / "merged"
    assert export_run(demo_ws, stacked.id, out, merge=True).merged
    merged = AutoModelForCausalLM.from_pretrained(out).eval()
    for got_gen, got_merged, expected, dropped in zip(
        _logits(loaded.model, tokenizer, texts),
        _logits(merged, tokenizer, texts),
        _logits(want, tokenizer, texts),
        _logits(without_sft.eval(), tokenizer, texts),
        strict=True,
    ):
        assert torch.allclose(got_gen, expected, atol=1e-4)
        assert torch.allclose(got_merged, expected, atol=1e-4)
        assert not torch.allclose(expected, dropped, atol=1e-3)


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


TEXTS = ("What is the capital of Varnia?", "Tell me about the sea.", "1 2 3")


def test_dora_merge_equals_the_adapter_in_the_base_dtype(demo_ws, trained_dora, tmp_path):
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out = tmp_path / "dora"
    result = export_run(demo_ws, trained_dora.id, out, merge=True)
    assert result.format == "safetensors" and result.dtype == "float32"  # the demo base's own dtype
    assert result.device == "cpu" and result.bytes > 0
    names = {p.name for p in out.iterdir()}
    assert {"model.safetensors", "generation_config.json", "chat_template.jinja", "tokenizer.json"} <= names
    merged = AutoModelForCausalLM.from_pretrained(out)
    tokenizer = AutoTokenizer.from_pretrained(out)
    assert tokenizer.chat_template and "<|im_start|>" in tokenizer.chat_template
    base_dir = result.base_model
    with_adapter = PeftModel.from_pretrained(
        AutoModelForCausalLM.from_pretrained(base_dir), trained_dora.final
    )
    for got, want in zip(
        _logits(merged, tokenizer, TEXTS), _logits(with_adapter, tokenizer, TEXTS), strict=True
    ):
        assert torch.allclose(got, want, atol=1e-4)
    assert (
        result.smoke and result.smoke["new_tokens"] > 0 and result.smoke["loaded_with"] == "tui-ft generate"
    )


def test_lora_merge_logits_on_several_inputs(demo_ws, trained, merged_lora):
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    merged = AutoModelForCausalLM.from_pretrained(merged_lora.out_dir)
    tokenizer = AutoTokenizer.from_pretrained(merged_lora.out_dir)
    with_adapter = PeftModel.from_pretrained(
        AutoModelForCausalLM.from_pretrained(merged_lora.base_model), trained.final
    )
    for got, want in zip(
        _logits(merged, tokenizer, TEXTS), _logits(with_adapter, tokenizer, TEXTS), strict=True
    ):
        assert torch.allclose(got, want, atol=1e-4)
    assert json.loads((merged_lora.out_dir / "tui-ft.json").read_text())["dtype"] == "float32"


def test_generate_command_works_on_the_export(cli_env, merged_lora):
    done = run_tui_ft(
        cli_env, "generate", str(merged_lora.out_dir), "--prompt", "Hello", "--max-new-tokens", "8"
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip()


def _greedy(model, tokenizer, prompt, n=12):
    from tui_ft.inference.generate import encode_messages

    ids, mask = encode_messages(tokenizer, [{"role": "user", "content": prompt}])
    out = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=n, do_sample=False)
    return out[0, ids.shape[-1] :].tolist()


def test_gguf_round_trip_gives_the_merged_models_greedy_tokens(demo_ws, trained, merged_lora, tmp_path):
    import gguf
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out = tmp_path / "gguf"
    result = export_run(demo_ws, trained.id, out, fmt="gguf", quant="f16")
    assert result.format == "gguf" and result.quant == "f16" and result.merged
    assert result.gguf_file == out / f"{trained.id}-f16.gguf" and result.gguf_file.exists()
    assert {p.name for p in out.iterdir()} == {
        result.gguf_file.name,
        "Modelfile",
        "tui-ft.json",
    }  # no scratch
    assert result.verify["same"] and result.verify["same_tokenizer"] and result.verify["agreement"] == 1.0
    assert len(result.verify["prompts"]) == len(VERIFY_PROMPTS)
    assert result.smoke["loaded_with"].startswith("transformers")
    # loaded back here, independently: the same greedy tokens as the merged safetensors
    reader = gguf.GGUFReader(str(result.gguf_file))
    template = reader.fields["tokenizer.chat_template"]
    assert "<|im_start|>" in bytes(template.parts[template.data[0]]).decode()
    merged = AutoModelForCausalLM.from_pretrained(merged_lora.out_dir)
    tokenizer = AutoTokenizer.from_pretrained(merged_lora.out_dir)
    from_gguf = AutoModelForCausalLM.from_pretrained(out, gguf_file=result.gguf_file.name, dtype="float32")
    gguf_tokenizer = AutoTokenizer.from_pretrained(out, gguf_file=result.gguf_file.name)
    for prompt in ("What is the capital of Varnia?", "Name a fruit.", "Count to five."):
        assert _greedy(from_gguf, gguf_tokenizer, prompt) == _greedy(merged, tokenizer, prompt)
    modelfile = (out / "Modelfile").read_text()
    assert f"FROM ./{result.gguf_file.name}" in modelfile
    assert "<|im_start|>{{ .Role }}" in modelfile and 'PARAMETER stop "<|im_end|>"' in modelfile
    # q8_0: loads back and mostly agrees (rows of 176 stay f16, which q8_0 cannot pack)
    q8 = export_run(demo_ws, trained.id, tmp_path / "q8", fmt="gguf", quant="q8_0", smoke=False)
    assert q8.verify["agreement"] >= 0.5
    assert q8.bytes < result.bytes


def test_gguf_of_an_unsupported_architecture_exits_2(demo_ws, tmp_path):
    from tui_ft.inference.gguf_export import check_gguf_support

    folder = tmp_path / "gpt2ish"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"architectures": ["GPT2LMHeadModel"]}))
    with pytest.raises(UserError, match="not supported for GGUF yet: GPT2LMHeadModel") as caught:
        check_gguf_support(folder)
    assert "convert_hf_to_gguf.py" in str(caught.value) and caught.value.exit_status == 2


def test_prompt_tuning_exports_as_an_adapter_and_says_why_it_does_not_merge(
    demo_ws, cli_env, trained_prompt, tmp_path
):
    result = export_run(demo_ws, trained_prompt.id, tmp_path / "pt")
    assert result.format == "adapter" and "virtual tokens are inputs" in (result.note or "")
    assert result.smoke and result.smoke["new_tokens"] > 0
    with pytest.raises(UserError, match="virtual tokens are inputs") as caught:
        export_run(demo_ws, trained_prompt.id, tmp_path / "pt-merge", merge=True)
    assert caught.value.exit_status == 2 and not (tmp_path / "pt-merge").exists()
    done = run_tui_ft(
        cli_env, "export", trained_prompt.id, "--out", str(tmp_path / "pt-gguf"), "--format", "gguf"
    )
    assert done.returncode == 2
    assert NO_MERGE_SENTENCE.format(kind="PROMPT_TUNING") in " ".join(done.stderr.split())
    assert not (tmp_path / "pt-gguf").exists()


def test_a_full_disk_mid_save_leaves_no_folder_and_exits_1(demo_ws, trained, tmp_path, monkeypatch, capsys):
    import transformers

    from tui_ft.cli import main

    real_save = transformers.PreTrainedModel.save_pretrained

    def save_then_fill_the_disk(self, directory, *args, **kwargs):
        real_save(self, directory, *args, **kwargs)  # half the export is on disk...
        raise OSError(errno.ENOSPC, "No space left on device", str(directory))

    monkeypatch.setattr(transformers.PreTrainedModel, "save_pretrained", save_then_fill_the_disk)
    monkeypatch.setenv("TUI_FT_HOME", str(demo_ws.root))
    out = tmp_path / "full-disk"
    with pytest.raises(WorkFailed, match="disk is full"):
        export_run(demo_ws, trained.id, out, merge=True, smoke=False)
    assert main(["export", trained.id, "--out", str(out), "--merge", "--json"]) == 1
    err = capsys.readouterr().err
    assert "The disk is full" in err and "nothing was left behind" in err
    assert list(tmp_path.iterdir()) == []  # neither the folder nor its temporary sibling


def test_force_replaces_a_previous_export_only(demo_ws, trained, tmp_path):
    out = tmp_path / "again"
    export_run(demo_ws, trained.id, out, smoke=False)
    with pytest.raises(UserError, match="previous export"):
        export_run(demo_ws, trained.id, out, smoke=False)
    result = export_run(demo_ws, f"{trained.id}:checkpoint-2", out, smoke=False, force=True)
    assert result.replaced and json.loads((out / "tui-ft.json").read_text())["exported_from"].endswith(
        "checkpoint-2"
    )
    assert [p.name for p in tmp_path.iterdir()] == ["again"]
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep")
    with pytest.raises(UserError, match="holds no previous export"):
        export_run(demo_ws, trained.id, mine, force=True)
    assert (mine / "notes.txt").read_text() == "keep"


def test_cli_json_fields_of_a_merge(cli_env, trained, tmp_path):
    out = tmp_path / "json"
    done = run_tui_ft(cli_env, "export", trained.id, "--out", str(out), "--merge", "--json")
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)
    assert doc["format"] == "safetensors" and doc["merged"] is True and doc["dtype"] == "float32"
    assert doc["device"] == "cpu" and doc["device_reason"] and doc["bytes"] > 0 and doc["out_dir"] == str(out)
    assert doc["smoke"]["prompt"] and isinstance(doc["smoke"]["reply"], str)
    assert doc["gguf_file"] is None and doc["verify"] is None
    assert "merging" not in done.stderr  # no stages printed in --json mode
    human = run_tui_ft(cli_env, "export", trained.id, "--out", str(tmp_path / "human"), "--merge")
    assert human.returncode == 0, human.stderr
    assert "full model (merged)" in human.stdout and "smoke:" in human.stdout and "float32" in human.stdout
    bad = run_tui_ft(cli_env, "export", trained.id, "--out", str(tmp_path / "q"), "--quant", "q8_0")
    assert bad.returncode == 2 and "--quant" in bad.stderr
