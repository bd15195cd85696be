"""Build the demo: a tiny Llama-style model made locally, and the sample datasets, in the workspace.

Nothing is downloaded. The tokenizer is a byte-level BPE trained on text shipped in `tui_ft/samples/`;
the model is randomly initialised from a fixed seed, so it starts knowing nothing and a few dozen
training steps on the sample data visibly teach it. Building takes seconds and happens once: a
second call only checks that the files are there (without importing torch).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tui_ft.workspace import Workspace

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerFast

DEMO_MODEL = "demo-tiny"

SAMPLES_DIR = Path(__file__).resolve().with_name("samples")

SAMPLE_FILES: dict[str, str] = {
    "chat": "chat.jsonl",
    "prompt_completion": "prompt_completion.jsonl",
    "preferences": "preferences.jsonl",
    "kto": "kto.jsonl",
    "prompts": "prompts.jsonl",
    "classification": "classification.jsonl",
    "ranking": "ranking.jsonl",
    "text": "text.jsonl",
}

# Text the tokenizer learns from besides the sample datasets.
CORPUS_FILE = "corpus.txt"

PAD_TOKEN = "<|endoftext|>"
IM_START = "<|im_start|>"
IM_END = "<|im_end|>"

# ChatML. Each assistant turn's content and its closing <|im_end|> sit inside {% generation %}, so
# `return_assistant_tokens_mask=True` marks exactly the tokens an assistant-only loss trains on,
# including the end-of-turn token the model must learn to emit. The newline after it stays outside.
CHAT_TEMPLATE = (
    "{%- for message in messages -%}"
    "{%- set content = message['content'] if message['content'] is string else '' -%}"
    "{%- if message['role'] == 'assistant' -%}"
    "{{- '<|im_start|>assistant\\n' -}}"
    "{%- generation -%}{{- content + '<|im_end|>' -}}{%- endgeneration -%}"
    "{{- '\\n' -}}"
    "{%- else -%}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + content + '<|im_end|>\\n' -}}"
    "{%- endif -%}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{- '<|im_start|>assistant\\n' -}}{%- endif -%}"
)

# Bump when the model, tokenizer or template recipe changes: an older build is then rebuilt.
DEMO_VERSION = 1
STAMP_FILE = "tui_ft_demo.json"

_VOCAB_SIZE = 3072
_SEED = 0
_HIDDEN = 64
_INTERMEDIATE = 176
_LAYERS = 2
_HEADS = 4
_KV_HEADS = 2
_MODEL_FILES = (
    "config.json",
    "generation_config.json",
    "model.safetensors",
    "tokenizer.json",
    "tokenizer_config.json",
    STAMP_FILE,
)


@dataclass(frozen=True)
class DemoBuild:
    """What `build_demo` left in the workspace."""

    model_dir: Path
    datasets: dict[str, Path]
    built: bool  # False when everything was already there


def build_demo(ws: Workspace, *, force: bool = False) -> DemoBuild:
    """Make the demo model and copy the sample datasets into `ws`, unless they are already there.

    With `force`, rebuild the model and overwrite the datasets. The model is written to a temporary
    folder and renamed into place, so an interrupted build never leaves a half model behind.
    """
    model_dir = ws.models / DEMO_MODEL
    datasets = {name: ws.data / file_name for name, file_name in SAMPLE_FILES.items()}
    model_missing = force or not _model_is_complete(model_dir)
    data_missing = [name for name, path in datasets.items() if force or not path.is_file()]
    if not model_missing and not data_missing:
        return DemoBuild(model_dir=model_dir, datasets=datasets, built=False)

    ws.ensure()
    for name in data_missing:
        _copy_atomically(SAMPLES_DIR / SAMPLE_FILES[name], datasets[name])
    if model_missing:
        _build_model_dir(model_dir)
    return DemoBuild(model_dir=model_dir, datasets=datasets, built=True)


def _model_is_complete(model_dir: Path) -> bool:
    if not all((model_dir / name).is_file() for name in _MODEL_FILES):
        return False
    try:
        stamp = json.loads((model_dir / STAMP_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(stamp, dict) and stamp.get("version") == DEMO_VERSION


def _copy_atomically(source: Path, dest: Path) -> None:
    tmp = dest.with_name(f".{dest.name}.tmp-{os.getpid()}")
    shutil.copyfile(source, tmp)
    os.replace(tmp, dest)


def _build_model_dir(model_dir: Path) -> None:
    model_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{model_dir.name}.building-", dir=model_dir.parent))
    tmp.chmod(0o755)  # mkdtemp makes it private; the model folder is ordinary workspace data
    try:
        tokenizer = train_tokenizer()
        model = make_model(tokenizer)
        pretrain(model, tokenizer)
        tokenizer.save_pretrained(tmp)
        _save_quietly(model, tmp)
        # The stamp is written last: the build is complete only with it.
        stamp = {"name": DEMO_MODEL, "version": DEMO_VERSION}
        (tmp / STAMP_FILE).write_text(json.dumps(stamp) + "\n", encoding="utf-8")
        _move_into_place(tmp, model_dir)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _save_quietly(model: PreTrainedModel, directory: Path) -> None:
    """`save_pretrained` without its progress bar, which would land in the terminal or the UI's log."""
    from transformers.utils import logging

    was_enabled = logging.is_progress_bar_enabled()
    logging.disable_progress_bar()
    try:
        model.save_pretrained(directory)
    finally:
        if was_enabled:
            logging.enable_progress_bar()


def _move_into_place(tmp: Path, model_dir: Path) -> None:
    old = None
    if model_dir.exists():
        # Renaming a folder onto an empty one replaces it, so a fresh unique name is safe to move to.
        old = Path(tempfile.mkdtemp(prefix=f".{model_dir.name}.old-", dir=model_dir.parent))
        os.rename(model_dir, old)
    try:
        os.rename(tmp, model_dir)
    except OSError:
        # Another process finished its build first; its model is as good as ours.
        if not _model_is_complete(model_dir):
            raise
    finally:
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)


def _training_texts() -> Iterator[str]:
    """The corpus lines, then every string in the sample datasets."""
    with (SAMPLES_DIR / CORPUS_FILE).open(encoding="utf-8") as f:
        yield from f
    for file_name in SAMPLE_FILES.values():
        with (SAMPLES_DIR / file_name).open(encoding="utf-8") as f:
            for line in f:
                if line.strip():
                    yield from _strings_in(json.loads(line))


def _strings_in(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _strings_in(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings_in(item)


def train_tokenizer() -> PreTrainedTokenizerFast:
    """A byte-level BPE trained on the shipped text, with ChatML special tokens and chat template."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    backend.decoder = decoders.ByteLevel()
    # Untrimmed offsets keep every character owned by a token, which the assistant mask relies on.
    backend.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=_VOCAB_SIZE,
        min_frequency=2,
        special_tokens=[PAD_TOKEN, IM_START, IM_END],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    backend.train_from_iterator(_training_texts(), trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token=None,
        unk_token=None,
        eos_token=IM_END,
        pad_token=PAD_TOKEN,
        padding_side="right",
        model_max_length=1024,
        clean_up_tokenization_spaces=False,
        chat_template=CHAT_TEMPLATE,
    )


def make_model(tokenizer: PreTrainedTokenizerFast) -> PreTrainedModel:
    """A tiny float32 Llama, initialised from a fixed seed, with eos and pad ids from `tokenizer`."""
    import torch
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM

    eos_id = tokenizer.convert_tokens_to_ids(IM_END)
    pad_id = tokenizer.convert_tokens_to_ids(PAD_TOKEN)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=_HIDDEN,
        intermediate_size=_INTERMEDIATE,
        num_hidden_layers=_LAYERS,
        num_attention_heads=_HEADS,
        num_key_value_heads=_KV_HEADS,
        max_position_embeddings=1024,
        tie_word_embeddings=False,
        bos_token_id=None,
        eos_token_id=eos_id,
        pad_token_id=pad_id,
    )
    # Seed a forked generator so the caller's random state is left as it was.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(_SEED)
        model = LlamaForCausalLM(config).to(torch.float32)
    model.config.dtype = torch.float32
    model.generation_config = GenerationConfig(bos_token_id=None, eos_token_id=eos_id, pad_token_id=pad_id)
    return model


def pretraining_documents() -> list[str]:
    """The plain text the base model reads before it is saved: no chat template, no special tokens.

    The corpus paragraphs, `text.jsonl`, and each sample row's strings joined as plain text (a
    conversation's turns one per line, a prompt followed by its good completion). Wrong and rude
    answers (rejected, undesirable, lower-ranked) are left out, so the base knows Orbis as it is.
    """
    docs = [p.strip() for p in (SAMPLES_DIR / CORPUS_FILE).read_text(encoding="utf-8").split("\n\n")]

    def rows(name: str) -> Iterator[dict]:
        with (SAMPLES_DIR / SAMPLE_FILES[name]).open(encoding="utf-8") as f:
            for line in f:
                if line.strip():
                    yield json.loads(line)

    docs += [r["text"] for r in rows("text")]
    docs += ["\n".join(m["content"] for m in r["messages"]) for r in rows("chat")]
    docs += [r["prompt"] + r["completion"] for r in rows("prompt_completion")]
    docs += [r["prompt"] + r["chosen"] for r in rows("preferences")]
    docs += [r["prompt"] + r["completion"] for r in rows("kto") if r["label"]]
    docs += [r["prompt"] + r["responses"][0] for r in rows("ranking")]
    docs += [r["prompt"] for r in rows("prompts")]
    docs += [r["text"] for r in rows("classification")]
    return [d for d in docs if d]


_PRETRAIN_STEPS = 120
_PRETRAIN_BATCH = 16
_PRETRAIN_BLOCK = 128
_PRETRAIN_LR = 3e-3
_PRETRAIN_WARMUP = 10


def _pretraining_blocks(tokenizer: PreTrainedTokenizerFast, count: int) -> list[list[int]]:
    """`count` blocks of token ids: the documents in a seeded order, separated by the pad token
    (<|endoftext|>, as in GPT-2 style pretraining) and cut into equal lengths; reshuffled per pass."""
    import random

    docs = pretraining_documents()
    encoded = tokenizer(docs, add_special_tokens=False)["input_ids"]
    sep = tokenizer.convert_tokens_to_ids(PAD_TOKEN)
    blocks: list[list[int]] = []
    rng = random.Random(_SEED)
    while len(blocks) < count:
        order = list(range(len(encoded)))
        rng.shuffle(order)
        stream: list[int] = []
        for i in order:
            stream.extend(encoded[i])
            stream.append(sep)
        n = len(stream) // _PRETRAIN_BLOCK
        blocks.extend(stream[k * _PRETRAIN_BLOCK : (k + 1) * _PRETRAIN_BLOCK] for k in range(n))
    return blocks[:count]


def pretrain(model: PreTrainedModel, tokenizer: PreTrainedTokenizerFast) -> list[float]:
    """A short full-parameter causal-LM pass over `pretraining_documents()`, deterministic.

    Plain torch (AdamW, linear warmup then cosine decay, fixed seed and batch order), in place;
    returns the loss of every step. Leaves the model in eval mode and the caller's RNG untouched.
    """
    import math

    import torch

    blocks = _pretraining_blocks(tokenizer, _PRETRAIN_STEPS * _PRETRAIN_BATCH)
    data = torch.tensor(blocks, dtype=torch.long)
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.ndim < 2]
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": 0.1}, {"params": no_decay, "weight_decay": 0.0}],
        lr=_PRETRAIN_LR,
        betas=(0.9, 0.95),
        fused=True,
    )

    def lr_at(step: int) -> float:
        if step < _PRETRAIN_WARMUP:
            return (step + 1) / _PRETRAIN_WARMUP
        progress = (step - _PRETRAIN_WARMUP) / max(1, _PRETRAIN_STEPS - _PRETRAIN_WARMUP)
        return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress))

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_at)
    losses: list[float] = []
    threads = torch.get_num_threads()
    # One thread: on matrices this small, a second one only adds synchronisation, which is slow
    # when other processes share the cores; and the result does not depend on the core count.
    torch.set_num_threads(1)
    # Adam's second moments of rarely seen tokens decay into denormals, which are very slow on CPUs.
    torch.set_flush_denormal(True)
    model.train()
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(_SEED)
            for step in range(_PRETRAIN_STEPS):
                batch = data[step * _PRETRAIN_BATCH : (step + 1) * _PRETRAIN_BATCH]
                loss = model(input_ids=batch, labels=batch).loss
                loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad(set_to_none=True)
                losses.append(loss.item())
    finally:
        model.eval()
        torch.set_flush_denormal(False)
        torch.set_num_threads(threads)
    if _MEAN_INIT:
        _init_chat_tokens(model, tokenizer)
    return losses


_MEAN_INIT = True


def _init_chat_tokens(model: PreTrainedModel, tokenizer: PreTrainedTokenizerFast) -> None:
    """Give <|im_start|> and <|im_end|>, which pretraining never shows, the mean input embedding and
    the mean output row of the tokens it did train, as is usual for tokens added to a trained model.

    Left as they are, their input embeddings are random noise that the attention layers have never
    seen and pretraining has pushed their logits far down; with the mean they start as an ordinary,
    uninformative token, and fine-tuning only has to teach what they mean.
    """
    import torch

    chat_ids = tokenizer.convert_tokens_to_ids([IM_START, IM_END])
    mats = [model.get_input_embeddings().weight]
    if _MEAN_INIT in ("both", "seen"):
        mats.append(model.get_output_embeddings().weight)
    seen = torch.zeros(mats[0].shape[0], dtype=torch.bool)
    if _MEAN_INIT == "seen":
        for doc in tokenizer(pretraining_documents(), add_special_tokens=False)["input_ids"]:
            seen[doc] = True
    else:
        seen[:] = True
    seen[chat_ids] = False
    with torch.no_grad():
        for matrix in mats:
            matrix[chat_ids] = matrix[seen].mean(dim=0)
