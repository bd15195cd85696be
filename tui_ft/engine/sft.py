"""SFT as tui-ft trains it: packed and padding-free where the model keeps packed sequences apart (checked on
the model at start, else padded batches and a line saying why), an honest count of what max_length cuts,
and the tokenized data cached in the workspace for the next run with the same key.

TRL's `SFTTrainer` does the work: `_prepare_dataset` is wrapped so that it tokenizes first without cutting
or packing (to count what max_length would cut), then truncates or packs that tokenized copy with its own
code (it skips tokenizing a dataset that already has `input_ids`), and stores the result in the cache. torch,
transformers and trl are imported inside the functions (this module is imported by the method registry).
"""

from __future__ import annotations

import copy
import os
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tui_ft.data.packing import PackedBatch, packed_batch
from tui_ft.data.token_cache import TokenCache, cache_key, dataset_content_hash

Note = Callable[[str], None]


def _print_note(message: str) -> None:
    print(f"tui-ft: {message}", flush=True)


def packed_attention_problem(model: Any, tolerance: float | None = None) -> str | None:
    """None when `model` keeps packed sequences apart: two sequences side by side in one row, with position
    ids restarting at the second and no attention mask (as TRL's padding-free collator feeds them), give
    each the logits it gets alone. Otherwise a sentence saying what went wrong. Runs three tiny forward
    passes in eval mode without gradients, with the cache off (as training does). `tolerance` bounds the
    largest logit difference, relative to the largest logit (default: 1e-4 in float32, 3e-2 in half
    precision, where kernels for different lengths round differently); a leak across the boundary shifts
    logits by far more."""
    import torch

    impl = attention_name(model)
    try:
        param = next(p for p in model.parameters() if p.is_floating_point())
    except StopIteration:
        return "the model has no floating-point weights to check"
    vocab = model.get_input_embeddings().num_embeddings
    generator = torch.Generator().manual_seed(0)
    first = torch.randint(low=min(3, vocab - 1), high=vocab, size=(1, 11), generator=generator)
    second = torch.randint(low=min(3, vocab - 1), high=vocab, size=(1, 7), generator=generator)

    def logits(ids, positions):
        out = model(
            input_ids=ids.to(param.device),
            position_ids=positions.to(param.device).unsqueeze(0),
            use_cache=False,
        )
        return out.logits.float().cpu()

    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # peft's "position ids are not supported": the check says so
            alone = [logits(seq, torch.arange(seq.shape[1])) for seq in (first, second)]
            packed = logits(
                torch.cat([first, second], dim=1),
                torch.cat([torch.arange(first.shape[1]), torch.arange(second.shape[1])]),
            )
    except Exception as err:  # noqa: BLE001 - any failure means: do not pack this model
        return f"a forward pass with packed position ids failed ({type(err).__name__}: {err})"
    finally:
        model.train(was_training)
    if packed.shape[1] != first.shape[1] + second.shape[1]:
        return (
            f"it returns {packed.shape[1]} positions for {first.shape[1] + second.shape[1]} tokens, so it cannot "
            "see where packed sequences start (an adapter that adds virtual tokens, such as prompt tuning)"
        )
    split = first.shape[1]
    diff = max(
        float((packed[:, :split] - alone[0]).abs().max()), float((packed[:, split:] - alone[1]).abs().max())
    )
    scale = max(1.0, float(alone[0].abs().max()), float(alone[1].abs().max()))
    if tolerance is None:
        tolerance = 1e-4 if param.dtype == torch.float32 else 3e-2
    if diff > tolerance * scale:
        return (
            f"its attention ({impl}) does not keep packed sequences apart: a sequence's logits packed beside "
            f"another differ from its logits alone by {diff:.3g}"
        )
    return None


def attention_name(model: Any) -> str:
    config = getattr(model, "config", None)
    return str(getattr(config, "_attn_implementation", None) or "default")


def prepare_sft(inputs: Any) -> None:
    """Decide packing for this run (`data.packing`, default on) and set TRL's keys in `inputs.config`:
    packed with best-fit decreasing and padding-free where the model passes `packed_attention_problem`,
    else padded batches, with a line in the run's log saying why. Evaluation stays unpacked, so eval loss
    means what it meant without packing."""
    note: Note = inputs.note or _print_note
    config = inputs.config
    if not inputs.recipe.data.packing:
        config["packing"] = False
        note("packing off (data.packing: false): padded batches")
        return
    if config.get("max_length") is None:
        config["packing"] = False
        note("packing off: packing needs data.max_length (the longest packed sequence); padded batches")
        return
    problem = packed_attention_problem(inputs.model)
    if problem is not None:
        config["packing"] = False
        note(f"packing off, padded batches instead: {problem}")
        return
    config["packing"] = True
    config.setdefault("packing_strategy", "bfd")
    config.setdefault("padding_free", True)
    config.setdefault("eval_packing", False)
    note(
        f"packing on: best-fit decreasing, padding-free ({attention_name(inputs.model)} attention keeps packed "
        "sequences apart: checked on this model)"
    )


@dataclass
class SftExtras:
    """What tui-ft adds to TRL's SFTTrainer: where to cache, where to write log lines."""

    cache: TokenCache | None
    note: Note
    rank_zero: bool = True


def sft_trainer_inputs(inputs: Any, args: Any) -> dict[str, Any]:  # noqa: ARG001 - the Method hook's signature
    cache = TokenCache.for_workspace(inputs.workspace) if inputs.workspace is not None else None
    extras = SftExtras(cache, inputs.note or _print_note, int(os.environ.get("RANK", "0")) == 0)
    return {"tui_ft": extras}


def sft_trainer(*, tui_ft: SftExtras | None = None, **kwargs: Any) -> Any:
    """TRL's SFTTrainer with tui-ft's dataset preparation (counted cuts, packed batch sizing, the cache)."""
    return _trainer_class()(tui_ft=tui_ft, **kwargs)


_CLASS: list[type] = []


def _trainer_class() -> type:
    if _CLASS:
        return _CLASS[0]
    from trl import SFTTrainer

    class TuiFtSFTTrainer(SFTTrainer):
        def __init__(self, *args: Any, tui_ft: SftExtras | None = None, **kwargs: Any) -> None:
            self._tui_ft = tui_ft
            super().__init__(*args, **kwargs)

        def _prepare_dataset(self, dataset, processing_class, args, packing, formatting_func, dataset_name):
            import datasets

            extras = self._tui_ft
            if (
                extras is None
                or self._is_vision_dataset
                or not isinstance(dataset, datasets.Dataset)
                or "input_ids" in dataset.column_names
            ):
                return super()._prepare_dataset(
                    dataset, processing_class, args, packing, formatting_func, dataset_name
                )
            return _prepare_cached(
                self, super()._prepare_dataset, extras, dataset, processing_class, args, packing, formatting_func,
                dataset_name,
            )  # fmt: skip

    _CLASS.append(TuiFtSFTTrainer)
    return TuiFtSFTTrainer


def token_settings(trainer: Any, processing_class: Any, args: Any, packing: bool, dataset_name: str) -> dict:
    """Everything besides the rows that decides the prepared tokens (the cache key's other half)."""
    import transformers
    import trl

    tokenizer = getattr(processing_class, "tokenizer", processing_class)
    backend = getattr(tokenizer, "backend_tokenizer", None)
    vocabulary = (
        cache_key({"tokenizer": backend.to_str()})
        if backend is not None
        else cache_key({"vocab": sorted(tokenizer.get_vocab().items())})
    )
    train_packing = packing and dataset_name == "train"
    return {
        "versions": [trl.__version__, transformers.__version__],
        "tokenizer": [
            type(tokenizer).__name__,
            vocabulary,
            str(getattr(tokenizer, "special_tokens_map", "")),
        ],
        "eos": tokenizer.eos_token,
        "chat_template": trainer.chat_template or getattr(processing_class, "chat_template", None),
        "assistant_only_loss": bool(args.assistant_only_loss),
        "completion_only_loss": bool(trainer.completion_only_loss),
        "text_field": args.dataset_text_field,
        "max_length": args.max_length,
        "truncation_mode": args.truncation_mode,
        "packing": [bool(packing), args.packing_strategy if packing else None],
        # a packed train set is binned to hold about one padded batch of rows per step
        "batch": args.per_device_train_batch_size if train_packing else None,
        "shuffle": [bool(args.shuffle_dataset), args.seed if args.shuffle_dataset else None],
    }


def _prepare_cached(trainer, prepare, extras: SftExtras, dataset, processing_class, args, packing, fmt, name):
    """Look the prepared dataset up in the cache; on a miss tokenize (uncut), count what max_length cuts,
    size packed batches, let TRL truncate or pack, and store the result."""
    import datasets

    note = extras.note
    settings = token_settings(trainer, processing_class, args, packing, name)
    key = cache_key({"rows": dataset_content_hash(dataset), **settings})
    entry = extras.cache.lookup(key) if extras.cache is not None else None
    if entry is not None:
        try:
            prepared = datasets.load_from_disk(str(entry.path / "data"))
        except Exception:  # noqa: BLE001 - a damaged entry is a miss
            entry = None
        else:
            meta = entry.meta
            _apply_packed_batch(args, meta.get("packed_batch"), name)
            note(
                f"{name}: tokenized data from the cache ({meta.get('rows', len(prepared))} rows, key {key[:12]})"
            )
            for line in meta.get("notes", []):
                note(line)
            return prepared

    plain = copy.copy(args)  # tokenize only: no cut, no packing, no shuffle (TRL does those next, below)
    plain.max_length = None
    plain.shuffle_dataset = False
    tokenized = prepare(dataset, processing_class, plain, False, fmt, name)
    lengths, trained_cut = _lengths_and_trained_cut(tokenized, args.max_length)
    notes = []
    cut_line = _cut_line(name, lengths, trained_cut, args.max_length, packing)
    if cut_line:
        notes.append(cut_line)
    batch: PackedBatch | None = None
    if packing and name == "train" and args.max_length is not None:
        batch = packed_batch(lengths, args.per_device_train_batch_size, args.max_length)
        notes.append(f"packed batches: {batch.describe(args.per_device_train_batch_size)}")
        _apply_packed_batch(args, {"length": batch.length, "sequences": batch.sequences}, name)
        pack_args = copy.copy(args)
        pack_args.max_length = batch.length
        prepared = prepare(tokenized, processing_class, pack_args, True, None, name)
    else:
        prepared = prepare(tokenized, processing_class, args, packing, None, name)
        dropped = len(tokenized) - len(prepared)
        if dropped and not packing:
            notes.append(f"{name}: {dropped} examples left no trained token after the cut and are skipped")
    for line in notes:
        note(line)
    meta = {
        "rows": len(tokenized),
        "prepared_rows": len(prepared),
        "dataset": name,
        "packed_batch": {"length": batch.length, "sequences": batch.sequences} if batch else None,
        "notes": notes,
        "max_length": args.max_length,
        "packing": bool(packing),
    }
    stored = None
    if extras.cache is not None and extras.rank_zero:
        try:
            stored = extras.cache.store(key, lambda path: prepared.save_to_disk(str(path / "data")), meta)
        except OSError as err:
            note(f"{name}: tokenized {len(tokenized)} rows, not cached ({err})")
            return prepared
    if stored is not None:
        note(f"{name}: tokenized {len(tokenized)} rows, cached (key {key[:12]})")
        return datasets.load_from_disk(str(stored.path / "data"))
    note(f"{name}: tokenized {len(tokenized)} rows" + (", not cached" if extras.rank_zero else ""))
    return prepared


def _apply_packed_batch(args: Any, batch: dict | None, name: str) -> None:
    if batch and name == "train":
        args.per_device_train_batch_size = int(batch["sequences"])


def _lengths_and_trained_cut(tokenized: Any, max_length: int | None) -> tuple[list[int], int]:
    """Each example's token count, and how many of its trained tokens (labels not -100) lie past max_length."""
    import pyarrow.compute as pc

    table = tokenized.with_format("arrow")[:]
    lengths = pc.list_value_length(table["input_ids"]).to_pylist()
    trained_cut = 0
    if max_length is not None and "labels" in table.column_names:
        for i in (i for i, n in enumerate(lengths) if n > max_length):
            trained_cut += sum(1 for label in table["labels"][i].as_py()[max_length:] if label != -100)
    return lengths, trained_cut


def _cut_line(name: str, lengths: list[int], trained_cut: int, max_length: int | None, packing: bool) -> str:
    """The run's log line counting the examples max_length cuts (nothing is cut silently)."""
    if max_length is None:
        return ""
    over = [n for n in lengths if n > max_length]
    if not over:
        return (
            f"{name}: every example fits max_length {max_length} (longest {max(lengths, default=0)} tokens)"
        )
    cut = sum(n - max_length for n in over)
    how = "truncated to it before packing" if packing else "truncated to it"
    return (
        f"{name}: {len(over)} of {len(lengths)} examples are longer than max_length {max_length} "
        f"(longest {max(over)}): {how}, {cut} tokens cut, {trained_cut} of them trained tokens; "
        "raise data.max_length to keep them"
    )
