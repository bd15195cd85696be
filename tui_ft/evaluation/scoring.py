"""The two passes of an evaluation over a loaded model: the loss on the tokens training counts, and
greedy generations for a batch of prompts. Rows are tokenized by TRL's own function, as `SFTTrainer`
tokenizes them (chat template, assistant and completion masks, end-of-sequence on plain text), so the
loss here is the loss training reports on the same rows. torch is imported inside the functions.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

CONVERSATIONAL_FORMATS = ("messages", "sharegpt")
COMPLETION_FORMATS = ("prompt_completion", "alpaca")


@dataclass(frozen=True)
class LossScope:
    """Which tokens count, as `data.loss` makes training count them."""

    assistant_only: bool
    completion_only: bool
    label: str  # "assistant turns", "completions", "all tokens"


def loss_scope(loss: str, data_format: str, tokenizer) -> LossScope:
    """The tokens an SFT run with `data.loss: loss` trains on for data of `data_format`."""
    from tui_ft.engine.methods import has_generation_markers

    if loss == "all":
        return LossScope(False, False, "all tokens")
    if data_format in CONVERSATIONAL_FORMATS:
        if has_generation_markers(tokenizer):
            return LossScope(True, False, "assistant turns")
        return LossScope(False, False, "all tokens (the chat template marks no assistant turns)")
    if data_format in COMPLETION_FORMATS:
        return LossScope(False, True, "completions")
    return LossScope(False, False, "all tokens")


def _conversational(row: dict[str, Any]) -> bool:
    value = row.get("messages", row.get("prompt"))
    return isinstance(value, list)


def tokenize_row(
    tokenizer, row: dict[str, Any], scope: LossScope, max_length: int | None
) -> tuple[list[int], list[int]]:
    """(input ids, labels with -100 where the loss does not count) for one normalised SFT row."""
    from trl.data_utils import _tokenize, common_prefix_length

    row = dict(row)
    conversational = _conversational(row)
    if not conversational:  # TRL appends the end-of-sequence token to plain text and completions
        eos = tokenizer.eos_token
        key = "text" if "text" in row else "completion"
        if eos and not str(row[key]).endswith(eos):
            row[key] = str(row[key]) + eos
    masks: list[list[int]] = []
    if "prompt" in row:
        if conversational:
            prompt_ids = _tokenize(tokenizer, row["prompt"], add_generation_prompt=True)["input_ids"]
            full = _tokenize(
                tokenizer,
                row["prompt"] + row["completion"],
                return_assistant_tokens_mask=scope.assistant_only,
            )
            if "assistant_masks" in full:
                masks.append(list(full["assistant_masks"]))
        else:
            prompt_ids = _tokenize(tokenizer, row["prompt"])["input_ids"]
            full = _tokenize(tokenizer, row["prompt"] + row["completion"])
        ids = list(full["input_ids"])
        prompt_len = common_prefix_length(list(prompt_ids), ids)
        if scope.completion_only:
            masks.append([0] * prompt_len + [1] * (len(ids) - prompt_len))
    elif conversational:
        full = _tokenize(tokenizer, row["messages"], return_assistant_tokens_mask=scope.assistant_only)
        ids = list(full["input_ids"])
        if "assistant_masks" in full:
            masks.append(list(full["assistant_masks"]))
    else:
        ids = list(_tokenize(tokenizer, row["text"])["input_ids"])
    labels = [tok if all(bits) else -100 for tok, *bits in zip(ids, *masks, strict=False)]
    if max_length is not None:
        ids, labels = ids[:max_length], labels[:max_length]
    return ids, labels


@dataclass
class LossResult:
    loss: float | None  # mean negative log-likelihood per counted token
    tokens: int  # tokens counted
    rows: int

    @property
    def perplexity(self) -> float | None:
        return None if self.loss is None else math.exp(min(self.loss, 50.0))


def loss_pass(
    loaded,
    encoded: list[tuple[list[int], list[int]]],
    *,
    batch_size: int = 8,
    progress: Callable[[int], None] | None = None,
) -> LossResult:
    """The token-weighted mean loss of the model over `encoded` rows (ids, labels), batched by length."""
    import torch
    import torch.nn.functional as F

    model, device = loaded.model, loaded.device
    pad = loaded.tokenizer.pad_token_id if loaded.tokenizer.pad_token_id is not None else 0
    order = sorted(range(len(encoded)), key=lambda i: len(encoded[i][0]))
    total, counted = 0.0, 0
    with torch.no_grad():
        for start in range(0, len(order), batch_size):
            batch = [encoded[i] for i in order[start : start + batch_size]]
            width = max(len(ids) for ids, _ in batch)
            ids = torch.full((len(batch), width), pad, dtype=torch.long)
            labels = torch.full((len(batch), width), -100, dtype=torch.long)
            mask = torch.zeros((len(batch), width), dtype=torch.long)
            for row, (row_ids, row_labels) in enumerate(batch):
                ids[row, : len(row_ids)] = torch.tensor(row_ids)
                labels[row, : len(row_labels)] = torch.tensor(row_labels)
                mask[row, : len(row_ids)] = 1
            logits = model(input_ids=ids.to(device), attention_mask=mask.to(device)).logits
            shifted = labels[:, 1:].to(device)
            nll = F.cross_entropy(
                logits[:, :-1].float().reshape(-1, logits.shape[-1]),
                shifted.reshape(-1),
                ignore_index=-100,
                reduction="sum",
            )
            total += float(nll)
            counted += int((shifted != -100).sum())
            if progress is not None:
                progress(len(batch))
    return LossResult(total / counted if counted else None, counted, len(encoded))


def encode_prompt(tokenizer, prompt: list[dict[str, Any]] | str) -> list[int]:
    """Token ids a reply is generated after: a conversation through the chat template (the generation
    path of `tui-ft generate` and Chat), plain text as training tokenized the prompt."""
    if isinstance(prompt, list):
        from tui_ft.inference.generate import encode_messages

        input_ids, _ = encode_messages(tokenizer, prompt)
        return [int(t) for t in input_ids[0].tolist()]
    return list(tokenizer(text=prompt)["input_ids"])


@dataclass
class Completion:
    text: str
    new_tokens: int


def generate_batched(
    loaded,
    prompts: list[list[int]],
    *,
    max_new_tokens: int,
    batch_size: int = 16,
    progress: Callable[[int], None] | None = None,
) -> list[Completion]:
    """Greedy replies to token-id prompts, in batches of similar length padded on the left."""
    import torch

    tok = loaded.tokenizer
    pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    eos = tok.eos_token_id
    out: list[Completion | None] = [None] * len(prompts)
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
    with torch.no_grad():
        for start in range(0, len(order), batch_size):
            chunk = order[start : start + batch_size]
            width = max(len(prompts[i]) for i in chunk)
            ids = torch.full((len(chunk), width), pad, dtype=torch.long)
            mask = torch.zeros((len(chunk), width), dtype=torch.long)
            for row, i in enumerate(chunk):
                ids[row, width - len(prompts[i]) :] = torch.tensor(prompts[i])
                mask[row, width - len(prompts[i]) :] = 1
            generated = loaded.model.generate(
                input_ids=ids.to(loaded.device),
                attention_mask=mask.to(loaded.device),
                max_new_tokens=max_new_tokens,
                do_sample=False,
                temperature=None,
                top_p=None,
                top_k=None,
                pad_token_id=pad,
                eos_token_id=eos,
            )
            for row, i in enumerate(chunk):
                new = generated[row, width:].tolist()
                if eos is not None and eos in new:
                    new = new[: new.index(eos) + 1]
                while new and new[-1] == pad and pad != eos:
                    new.pop()
                out[i] = Completion(tok.decode(new, skip_special_tokens=True), len(new))
            if progress is not None:
                progress(len(chunk))
    return [c if c is not None else Completion("", 0) for c in out]
