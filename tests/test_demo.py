"""The demo builder: a tiny model that loads like a real one, a training-ready chat template, sample data."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tui_ft.demo import (
    DEMO_MODEL,
    SAMPLE_FILES,
    SAMPLES_DIR,
    DemoBuild,
    build_demo,
    make_model,
    pretraining_documents,
)
from tui_ft.workspace import Workspace

CONVERSATION = [
    {"role": "system", "content": "You are a helpful assistant who knows the land of Orbis."},
    {"role": "user", "content": "What is the capital of Varnia?"},
    {"role": "assistant", "content": "The capital of Varnia is Lumen."},
    {"role": "user", "content": "What is 3 plus 4?"},
    {"role": "assistant", "content": "3 plus 4 is 7."},
]

# name -> (fields every row has, fewest rows expected)
SAMPLE_SCHEMAS = {
    "chat": ({"messages"}, 350),
    "prompt_completion": ({"prompt", "completion"}, 350),
    "preferences": ({"prompt", "chosen", "rejected"}, 350),
    "kto": ({"prompt", "completion", "label"}, 350),
    "prompts": ({"prompt"}, 150),
    "classification": ({"text", "label"}, 250),
    "ranking": ({"prompt", "responses"}, 120),
    "text": ({"text"}, 250),
}


@pytest.fixture(scope="module")
def ws(tmp_path_factory: pytest.TempPathFactory) -> Workspace:
    return Workspace(tmp_path_factory.mktemp("workspace"))


# Text in the style of the samples that pretraining never saw (checked below): new combinations of
# the facts and sentence patterns it did see.
HELD_OUT_TEXT = [
    "Gilmoor is a country in the land of Orbis. The capital of Gilmoor is Ashby. "
    "In Ashby, many families keep a morp. A morp is green.",
    "Things every child in Orbis learns: 4 plus 3 is 7. A snoot is orange. "
    "The capital of Lisk is Orrery. 6 times 2 is 12.",
    "Taldor is a country in the land of Orbis. The capital of Taldor is Verrin. "
    "Travellers from Verrin often bring a glimmet home. A glimmet is silver.",
]

# Process state the build must leave as it found it (the pretraining loop changes both for a while).
_AROUND_BUILD: dict[str, object] = {}


@pytest.fixture(scope="module")
def demo(ws: Workspace) -> DemoBuild:
    import torch

    _AROUND_BUILD["before"] = (torch.get_num_threads(), torch.random.get_rng_state())
    built = build_demo(ws)
    _AROUND_BUILD["after"] = (torch.get_num_threads(), torch.random.get_rng_state())
    return built


@pytest.fixture(scope="module")
def tokenizer(demo: DemoBuild):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(demo.model_dir)


@pytest.fixture(scope="module")
def model(demo: DemoBuild):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(demo.model_dir)


def _rows(path: Path) -> list[dict]:
    with path.open(encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def test_build_puts_model_and_data_in_the_workspace(ws: Workspace, demo: DemoBuild) -> None:
    assert demo.built
    assert demo.model_dir == ws.models / DEMO_MODEL
    assert set(demo.datasets) == set(SAMPLE_FILES)
    for name, path in demo.datasets.items():
        assert path == ws.data / SAMPLE_FILES[name]
        assert path.read_bytes() == (SAMPLES_DIR / SAMPLE_FILES[name]).read_bytes()
    assert (demo.model_dir / "config.json").is_file()
    assert (demo.model_dir / "model.safetensors").is_file()
    # The temporary build folder was renamed into place, not left beside it.
    assert [p.name for p in ws.models.iterdir()] == [DEMO_MODEL]


def test_model_and_tokenizer_reload_with_from_pretrained(model, tokenizer) -> None:
    import torch

    assert type(model).__name__ == "LlamaForCausalLM"
    assert model.dtype == torch.float32
    assert model.config.vocab_size == len(tokenizer)
    assert 2000 <= len(tokenizer) <= 4000
    assert not model.config.tie_word_embeddings
    assert model.get_input_embeddings().weight.data_ptr() != model.get_output_embeddings().weight.data_ptr()
    assert model.generation_config.eos_token_id == tokenizer.eos_token_id
    assert model.generation_config.pad_token_id == tokenizer.pad_token_id


def test_special_tokens(model, tokenizer) -> None:
    assert tokenizer.eos_token == "<|im_end|>"
    assert tokenizer.pad_token == "<|endoftext|>"
    assert tokenizer.pad_token_id != tokenizer.eos_token_id
    assert model.config.eos_token_id == tokenizer.eos_token_id
    assert model.config.pad_token_id == tokenizer.pad_token_id
    # Each control token is one token, never split into pieces.
    for token in ("<|im_start|>", "<|im_end|>", "<|endoftext|>"):
        assert len(tokenizer(token, add_special_tokens=False)["input_ids"]) == 1


def test_tokenizer_round_trips_any_text(tokenizer) -> None:
    text = "Hello, Orbis! 3 plus 4 is 7. Ünïcode — 東京 😀\n\tindented"
    assert tokenizer.decode(tokenizer(text)["input_ids"]) == text


def test_chat_template_renders_chatml(tokenizer) -> None:
    rendered = tokenizer.apply_chat_template(CONVERSATION, tokenize=False)
    assert rendered == (
        "<|im_start|>system\nYou are a helpful assistant who knows the land of Orbis.<|im_end|>\n"
        "<|im_start|>user\nWhat is the capital of Varnia?<|im_end|>\n"
        "<|im_start|>assistant\nThe capital of Varnia is Lumen.<|im_end|>\n"
        "<|im_start|>user\nWhat is 3 plus 4?<|im_end|>\n"
        "<|im_start|>assistant\n3 plus 4 is 7.<|im_end|>\n"
    )
    prompt = tokenizer.apply_chat_template(CONVERSATION[:2], tokenize=False, add_generation_prompt=True)
    assert prompt.endswith(
        "<|im_start|>user\nWhat is the capital of Varnia?<|im_end|>\n<|im_start|>assistant\n"
    )


def test_assistant_mask_covers_exactly_assistant_content_and_end_of_turn(tokenizer) -> None:
    out = tokenizer.apply_chat_template(
        CONVERSATION, tokenize=True, return_dict=True, return_assistant_tokens_mask=True
    )
    ids, mask = out["input_ids"], out["assistant_masks"]
    assert len(ids) == len(mask)
    spans: list[list[int]] = []
    for i, (token_id, masked) in enumerate(zip(ids, mask, strict=True)):
        if masked:
            if i == 0 or not mask[i - 1]:
                spans.append([])
            spans[-1].append(token_id)
    assert [tokenizer.decode(span) for span in spans] == [
        "The capital of Varnia is Lumen.<|im_end|>",
        "3 plus 4 is 7.<|im_end|>",
    ]
    unmasked = tokenizer.decode([t for t, m in zip(ids, mask, strict=True) if not m])
    assert "Lumen" not in unmasked and "is 7" not in unmasked
    assert "Orbis" in unmasked and "Varnia?" in unmasked


def test_trl_accepts_the_template_for_assistant_only_loss(tokenizer) -> None:
    from trl.chat_template_utils import has_generation_markers, is_chat_template_stop_token_trained

    # SFTTrainer keeps a template that has generation markers and warns unless <|im_end|> is trained.
    assert has_generation_markers(tokenizer.chat_template)
    assert is_chat_template_stop_token_trained(tokenizer)


def test_generation_with_the_chat_template_runs(model, tokenizer) -> None:
    import torch

    inputs = tokenizer.apply_chat_template(
        CONVERSATION[:2], add_generation_prompt=True, return_dict=True, return_tensors="pt"
    )
    with torch.no_grad():
        output = model.generate(**inputs, max_new_tokens=5, do_sample=False)
    new_tokens = output[0, inputs["input_ids"].shape[1] :]
    assert 1 <= len(new_tokens) <= 5
    assert isinstance(tokenizer.decode(new_tokens), str)


def test_base_model_has_learned_the_sample_text(model, tokenizer) -> None:
    import math

    import torch

    seen = "\n".join(pretraining_documents())
    assert not any(text in seen for text in HELD_OUT_TEXT)
    fresh = make_model(tokenizer)  # the same initial weights, before pretraining
    uniform = math.log(len(tokenizer))
    for text in HELD_OUT_TEXT:
        ids = tokenizer(text, return_tensors="pt")["input_ids"]
        with torch.no_grad():
            loss = model(input_ids=ids, labels=ids).loss.item()
            untrained = fresh(input_ids=ids, labels=ids).loss.item()
        assert untrained > 0.9 * uniform, (text, untrained)
        assert loss < 0.3 * uniform, (text, loss)  # ~7.6 nats untrained; about 1 or less here


def test_base_model_writes_words_it_has_read(model, tokenizer) -> None:
    import re

    import torch

    inputs = tokenizer.apply_chat_template(
        CONVERSATION[:2], add_generation_prompt=True, return_dict=True, return_tensors="pt"
    )
    with torch.no_grad():
        output = model.generate(**inputs, max_new_tokens=24, do_sample=False)
    text = tokenizer.decode(output[0, inputs["input_ids"].shape[1] :], skip_special_tokens=True)
    words = re.findall(r"[A-Za-z]+", text)
    known = set(re.findall(r"[A-Za-z]+", "\n".join(pretraining_documents())))
    assert len(words) >= 5, text
    assert sum(word in known for word in words) >= 0.9 * len(words), text


def test_chat_tokens_start_like_trained_tokens(model, tokenizer) -> None:
    """<|im_start|> and <|im_end|> never occur in the pretraining text. Their rows are drawn like
    trained tokens' rows: were <|im_end|>'s output row left as pretraining pushes an unseen token's
    (far below every hidden state), a LoRA fine-tune, with lm_head frozen, could not teach the
    model to end its turn."""
    import torch

    start, end = tokenizer.convert_tokens_to_ids(["<|im_start|>", "<|im_end|>"])
    period = tokenizer.convert_tokens_to_ids(".")  # one of the most trained tokens
    for matrix in (model.get_input_embeddings().weight, model.get_output_embeddings().weight):
        norms = matrix.detach().norm(dim=1)
        assert not torch.allclose(matrix[start], matrix[end])
        for token in (start, end):
            assert 0.3 * norms[period] < norms[token] < 3 * norms[period]


def test_build_leaves_thread_count_and_random_state_alone(demo: DemoBuild) -> None:
    import torch

    threads_before, rng_before = _AROUND_BUILD["before"]
    threads_after, rng_after = _AROUND_BUILD["after"]
    assert threads_after == threads_before
    assert torch.equal(rng_after, rng_before)


def test_second_build_does_nothing_and_needs_no_torch(ws: Workspace, demo: DemoBuild) -> None:
    weights = demo.model_dir / "model.safetensors"
    before = os.stat(weights)
    again = build_demo(ws)
    assert again == DemoBuild(model_dir=demo.model_dir, datasets=demo.datasets, built=False)
    after = os.stat(weights)
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)

    # In a fresh interpreter: importing the module and the "already built" check leave torch unloaded.
    code = textwrap.dedent(
        f"""
        import sys
        from pathlib import Path
        from tui_ft.demo import build_demo
        from tui_ft.workspace import Workspace
        assert build_demo(Workspace(Path({str(ws.root)!r}))).built is False
        heavy = sorted(m for m in ("torch", "transformers", "tokenizers") if m in sys.modules)
        assert not heavy, heavy
        """
    )
    root = Path(__file__).resolve().parent.parent
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(root), os.environ.get("PYTHONPATH")])),
    }
    subprocess.run([sys.executable, "-c", code], check=True, env=env, cwd=root)


def test_incomplete_model_and_missing_data_are_rebuilt(tmp_path: Path, demo: DemoBuild) -> None:
    other = Workspace(tmp_path)
    half = other.models / DEMO_MODEL
    half.mkdir(parents=True)
    (half / "config.json").write_text("{}")  # what a crash mid-copy could look like

    rebuilt = build_demo(other)
    assert rebuilt.built
    # Deterministic: the same tokenizer, and the same weights after initialisation and pretraining.
    for name in ("tokenizer.json", "model.safetensors", "config.json"):
        assert (rebuilt.model_dir / name).read_bytes() == (demo.model_dir / name).read_bytes()

    weights = os.stat(rebuilt.model_dir / "model.safetensors")
    rebuilt.datasets["chat"].unlink()
    again = build_demo(other)
    assert again.built
    assert again.datasets["chat"].is_file()
    assert os.stat(rebuilt.model_dir / "model.safetensors").st_ino == weights.st_ino


@pytest.mark.parametrize("name", sorted(SAMPLE_FILES))
def test_sample_files_parse_with_their_fields(name: str, demo: DemoBuild) -> None:
    path = demo.datasets[name]
    assert path.stat().st_size < 300 * 1024
    fields, fewest = SAMPLE_SCHEMAS[name]
    rows = _rows(path)
    assert len(rows) >= fewest
    for row in rows:
        assert set(row) == fields, row
        if name == "chat":
            roles = [m["role"] for m in row["messages"]]
            assert roles[-1] == "assistant"
            assert all(isinstance(m["content"], str) and m["content"] for m in row["messages"])
            assert set(roles) <= {"system", "user", "assistant"}
        elif name == "kto":
            assert isinstance(row["label"], bool)
        elif name == "preferences":  # conversational: a user turn, then one assistant turn each
            assert [m["role"] for m in row["prompt"]] == ["user"]
            assert [m["role"] for m in row["chosen"]] == [m["role"] for m in row["rejected"]] == ["assistant"]
            assert all(m["content"] for f in fields for m in row[f])
        elif name == "ranking":
            assert 3 <= len(row["responses"]) <= 4
            assert all(isinstance(r, str) for r in row["responses"])
        else:
            assert all(isinstance(row[f], str) and row[f] for f in fields)


def test_samples_have_the_variety_training_needs(demo: DemoBuild) -> None:
    chat = _rows(demo.datasets["chat"])
    assert any(r["messages"][0]["role"] == "system" for r in chat)
    assert any(sum(m["role"] == "assistant" for m in r["messages"]) > 1 for r in chat)

    kto = [r["label"] for r in _rows(demo.datasets["kto"])]
    assert 0.4 <= sum(kto) / len(kto) <= 0.6
    assert len({r["label"] for r in _rows(demo.datasets["classification"])}) >= 2

    # The surface feature a tiny reward model learns: rejected answers shout or are rude.
    for row in _rows(demo.datasets["preferences"]):
        chosen, rejected = row["chosen"][0]["content"], row["rejected"][0]["content"]
        assert chosen != rejected
        assert chosen.endswith(".") and rejected.endswith("!")
