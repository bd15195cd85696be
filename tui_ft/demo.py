"""Build the demo: a tiny Llama-style model made locally, and the sample datasets, in the workspace.

Nothing is downloaded. The tokenizer is a byte-level BPE trained on text shipped in `tui_ft/samples/`.
The model is a base model the way real ones are, only much smaller: initialised from a fixed seed,
then pretrained for a few seconds (full-parameter, plain causal LM) on the shipped text *without*
the chat template, so it writes English-looking text and knows the sample facts and phrasings, but
has never seen a conversation. It reads each Orbis fact stated several ways, and questions answered in
prose with their answers at varying distances (`pretraining.jsonl`), so it knows a fact about its
subject and repeats a question's subject wherever the question stands. Supervised fine-tuning then has
the chat format and answering in it to teach: a LoRA adapter on the sample chats (`sft-lora`, 40 steps)
unlocks the facts the base read as text, answering each question with its own fact.
Building takes some seconds and happens once: a second call only checks that the files are there
(without importing torch).
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

# What the base model reads besides the corpus and the samples (written by scripts/make_samples.py): the
# Orbis facts stated in several ways and contexts, and questions answered in prose. Not a sample dataset:
# it stays out of the workspace.
PRETRAINING_FILE = "pretraining.jsonl"

# General text (nothing about Orbis) for the forgetting check of `tui-ft eval --forgetting`: copied into
# the workspace's data/ beside the samples, but held out of the tokenizer and the pretraining.
GENERAL_TEXT_FILE = "general.jsonl"

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
DEMO_VERSION = 4
STAMP_FILE = "tui_ft_demo.json"

_VOCAB_SIZE = 3072
_SEED = 0
_HIDDEN = 64
_INTERMEDIATE = 176
_LAYERS = 3
_HEADS = 4
_KV_HEADS = 2
# Pretraining (see `pretrain`): 600 steps of 8 x 64 tokens, about 4 passes over the text (77k tokens).
# With fewer steps, or two layers, the base knows the facts but does not yet repeat a made-up name from a
# question wherever the question stands, and the tuned model answers many questions with one name (issue
# 14). Whether it has learned that by step 600 also depends on the seed and the text: after a change to
# either, check tests/test_demo_story.py.
_PRETRAIN_STEPS = 600
_PRETRAIN_BATCH = 8
_PRETRAIN_BLOCK = 64
_PRETRAIN_LR = 1e-2
_PRETRAIN_WARMUP = 10
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
    general = ws.data / GENERAL_TEXT_FILE
    if not model_missing and not data_missing and general.is_file():
        return DemoBuild(model_dir=model_dir, datasets=datasets, built=False)

    ws.ensure()
    for name in data_missing:
        _copy_atomically(SAMPLES_DIR / SAMPLE_FILES[name], datasets[name])
    if force or not general.is_file():
        _copy_atomically(SAMPLES_DIR / GENERAL_TEXT_FILE, general)
    if not model_missing and not data_missing:
        return DemoBuild(model_dir=model_dir, datasets=datasets, built=False)
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
    for file_name in [PRETRAINING_FILE, *SAMPLE_FILES.values()]:
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


def _token_id(tokenizer: PreTrainedTokenizerFast, token: str) -> int:
    """The id of one token of the vocabulary (convert_tokens_to_ids answers a list for a list)."""
    token_id = tokenizer.convert_tokens_to_ids(token)
    assert isinstance(token_id, int), token
    return token_id


def make_model(tokenizer: PreTrainedTokenizerFast) -> PreTrainedModel:
    """A tiny float32 Llama, initialised from a fixed seed, with eos and pad ids from `tokenizer`."""
    import torch
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM

    eos_id = _token_id(tokenizer, IM_END)
    pad_id = _token_id(tokenizer, PAD_TOKEN)
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
        # transformers wraps PreTrainedModel.to in a decorator whose stub drops the signature
        model = LlamaForCausalLM(config).to(torch.float32)  # type: ignore[arg-type]
    model.config.dtype = torch.float32
    model.generation_config = GenerationConfig(bos_token_id=None, eos_token_id=eos_id, pad_token_id=pad_id)
    return model


def pretraining_documents() -> list[str]:
    """The plain text the base model reads before it is saved: no chat template, no special tokens.

    The corpus paragraphs, `pretraining.jsonl`, `text.jsonl`, and the other samples' strings as plain text: a
    conversation's turns one per line, a prompt followed by its good completion. Wrong or rude
    answers (rejected, undesirable, lower-ranked) are left out, so the base knows Orbis as it is.
    """
    corpus = (SAMPLES_DIR / CORPUS_FILE).read_text(encoding="utf-8")
    docs = [paragraph.strip() for paragraph in corpus.split("\n\n")]

    def rows(name: str) -> Iterator[dict[str, Any]]:
        with (SAMPLES_DIR / SAMPLE_FILES.get(name, name)).open(encoding="utf-8") as f:
            for line in f:
                if line.strip():
                    yield json.loads(line)

    docs += [row["text"] for row in rows(PRETRAINING_FILE)]
    docs += [row["text"] for row in rows("text")]
    docs += ["\n".join(m["content"] for m in row["messages"]) for row in rows("chat")]
    docs += [row["prompt"] + row["completion"] for row in rows("prompt_completion")]
    docs += [_plain(row["prompt"]) + _plain(row["chosen"], joiner="\n") for row in rows("preferences")]
    docs += [row["prompt"] + row["completion"] for row in rows("kto") if row["label"]]
    docs += [row["prompt"] + row["responses"][0] for row in rows("ranking")]
    docs += [row["prompt"] for row in rows("prompts")]
    docs += [row["text"] for row in rows("classification")]
    return [doc for doc in docs if doc]


def _plain(value: str | list[dict[str, Any]], joiner: str = "") -> str:
    """A prompt or answer as plain text: a string as it is, conversational turns one per line (after
    `joiner`, which stands between a prompt and its answer)."""
    if isinstance(value, str):
        return value
    return joiner + "\n".join(turn["content"] for turn in value)


def _pretraining_batches(tokenizer: PreTrainedTokenizerFast) -> list[list[list[int]]]:
    """`_PRETRAIN_STEPS` batches of `_PRETRAIN_BATCH` rows of `_PRETRAIN_BLOCK` token ids.

    Each pass over the data puts the documents in a new seeded order, joins them with the pad token
    (<|endoftext|>) between them and cuts the stream into blocks, as GPT-style pretraining packs text.
    """
    import random

    encoded = tokenizer(pretraining_documents(), add_special_tokens=False)["input_ids"]
    separator = _token_id(tokenizer, PAD_TOKEN)
    rng = random.Random(_SEED)
    needed = _PRETRAIN_STEPS * _PRETRAIN_BATCH
    blocks: list[list[int]] = []
    while len(blocks) < needed:
        order = list(range(len(encoded)))
        rng.shuffle(order)
        stream: list[int] = []
        for i in order:
            stream.extend(encoded[i])
            stream.append(separator)
        blocks.extend(
            stream[start : start + _PRETRAIN_BLOCK]
            for start in range(0, len(stream) - _PRETRAIN_BLOCK + 1, _PRETRAIN_BLOCK)
        )
    return [blocks[i : i + _PRETRAIN_BATCH] for i in range(0, needed, _PRETRAIN_BATCH)]


def pretrain(model: PreTrainedModel, tokenizer: PreTrainedTokenizerFast) -> list[float]:
    """Turn the freshly initialised `model` into a small base model, in place; returns each step's loss.

    A short full-parameter causal-LM pass over `pretraining_documents()` in plain torch: AdamW, linear
    warmup then cosine decay, a fixed seed and batch order, one CPU thread, so two builds give the
    same weights. The separator between packed documents is context, never a target, so the base
    does not learn to emit the pad token. Then <|im_start|> and <|im_end|>, which the text never
    contains, get embeddings like those of trained tokens (`_init_chat_tokens`). The caller's random
    state and thread count are left as they were; the model is left in eval mode.
    """
    import math

    import torch

    batches = _pretraining_batches(tokenizer)
    separator = _token_id(tokenizer, PAD_TOKEN)
    matrices = [p for p in model.parameters() if p.ndim >= 2]
    vectors = [p for p in model.parameters() if p.ndim < 2]  # norm weights: no weight decay
    optimizer = torch.optim.AdamW(
        [{"params": matrices, "weight_decay": 0.1}, {"params": vectors, "weight_decay": 0.0}],
        lr=_PRETRAIN_LR,
        betas=(0.9, 0.95),
        fused=True,
    )

    def lr_factor(step: int) -> float:
        if step < _PRETRAIN_WARMUP:
            return (step + 1) / _PRETRAIN_WARMUP
        progress = (step - _PRETRAIN_WARMUP) / max(1, _PRETRAIN_STEPS - _PRETRAIN_WARMUP)
        return 0.1 + 0.45 * (1 + math.cos(math.pi * progress))  # cosine from 1 down to 0.1

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_factor)
    losses: list[float] = []
    threads = torch.get_num_threads()
    # One thread: on matrices this small a second one mostly waits for the first (and is far slower
    # when other processes share the cores), and the weights then do not depend on the core count.
    torch.set_num_threads(1)
    model.train()
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(_SEED)
            for batch in batches:
                input_ids = torch.tensor(batch, dtype=torch.long)
                labels = input_ids.masked_fill(input_ids == separator, -100)
                loss = model(input_ids=input_ids, labels=labels, use_cache=False).loss
                loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad(set_to_none=True)
                losses.append(loss.item())
        seen = torch.zeros(model.config.vocab_size, dtype=torch.bool)
        seen[torch.tensor(batches).flatten()] = True
        seen[separator] = False  # never a target: its output row is as untrained as the others'
        _init_chat_tokens(model, [_token_id(tokenizer, IM_START), _token_id(tokenizer, IM_END)], seen)
    finally:
        torch.set_num_threads(threads)
        model.eval()
    return losses


def _init_chat_tokens(model: PreTrainedModel, token_ids: list[int], trained: Any) -> None:
    """Give `token_ids` input embeddings and output rows drawn from the distribution of the `trained`
    tokens' (their mean and covariance), as `resize_token_embeddings` does for tokens added to a model.

    Pretraining never shows the chat tokens, and AdamW's normalised updates drive the output rows of
    tokens that are never a target far below every hidden state: a LoRA fine-tune, which leaves
    lm_head frozen, could then not make <|im_end|> likely at the end of an answer, and the model
    would never stop. Drawn like this they start as ordinary, distinct, uninformative tokens.
    """
    import torch

    generator = torch.Generator().manual_seed(_SEED)
    with torch.no_grad():
        for module in (model.get_input_embeddings(), model.get_output_embeddings()):
            matrix = module.weight
            assert isinstance(matrix, torch.Tensor)
            rows = matrix[trained]
            mean = rows.mean(dim=0)
            # mean + (rows - mean)^T z / sqrt(n), z ~ N(0, I): a sample with the rows' covariance.
            z = torch.randn(len(token_ids), rows.shape[0], generator=generator)
            matrix[token_ids] = mean + z @ (rows - mean) / rows.shape[0] ** 0.5
