"""Generation from any model reference (workspace model, directory, run, checkpoint, hub id),
through the model's chat template, streamed piece by piece."""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol

from tui_ft.errors import UserError
from tui_ft.modelref import ModelRef, resolve_model
from tui_ft.workspace import Workspace


@dataclass
class LoadedModel:
    ref: ModelRef
    model: Any
    tokenizer: Any
    device: str


@dataclass
class Generation:
    text: str
    new_tokens: int
    seconds: float
    prompt_tokens: int


def refuse_reward_model(resolved) -> None:
    """A reward model scores text; it cannot write any. Say so instead of loading it as a generator."""
    from tui_ft.reward_checks import is_sequence_classifier

    if is_sequence_classifier(resolved):
        raise UserError(
            f"{resolved.ref} is a reward model (it scores text, it does not generate)",
            field="MODEL",
            hint="use it as rewards.models in a grpo or rloo recipe; generate with a policy model or run",
        )


DEVICES = ("auto", "cpu", "cuda")
QUANTIZATIONS = ("none", "4bit", "8bit")


def load_for_generation(
    ref: str,
    ws: Workspace,
    *,
    device: str = "auto",
    quantization: str = "none",
    progress: Callable[[str, float], None] | None = None,
) -> LoadedModel:
    """Load a model (an adapter on its base, kept as a PeftModel) ready for `generate`.

    `device`: auto (the GPU when there is one), cpu or cuda. `quantization`: none, 4bit (NF4) or 8bit
    through bitsandbytes, for a model that would not fit otherwise. `progress(stage, fraction)` is told
    what is being loaded."""
    from tui_ft.library_noise import quiet_library_noise

    if device not in DEVICES:
        raise UserError(f"unknown device {device!r}", field="device", hint=", ".join(DEVICES))
    if quantization not in QUANTIZATIONS:
        raise UserError(
            f"unknown quantization {quantization!r}", field="quantization", hint=", ".join(QUANTIZATIONS)
        )
    report = progress or (lambda stage, fraction: None)
    quiet_library_noise()
    report("resolving", 0.0)
    resolved = resolve_model(ref, ws)
    refuse_reward_model(resolved)
    from transformers import AutoModelForCausalLM

    from tui_ft.engine.hardware import detect_hardware, weights_dtype
    from tui_ft.engine.models import (
        disable_cpu_4bit_repacking,
        from_pretrained_through_adapters,
        load_tokenizer,
        quantization_config,
    )
    from tui_ft.recipe import ModelSpec

    hw = detect_hardware()
    if device == "cuda" and hw.device != "cuda":
        raise UserError(
            "no CUDA GPU is available to load on",
            field="device",
            hint="load on the CPU (device cpu); `tui-ft sysinfo` says why there is no GPU",
        )
    target = "cuda" if device == "auto" and hw.device == "cuda" else ("cpu" if device == "auto" else device)
    on_gpu_hw = hw if target == "cuda" else detect_cpu(hw)
    dtype = weights_dtype("auto", on_gpu_hw, "lora")
    report("tokenizer", 0.1)
    tokenizer = load_tokenizer(resolved)
    source = resolved.base if resolved.adapter else resolved.path
    if source is None:
        raise UserError(
            f"the adapter at {resolved.path} does not name its base model",
            field="MODEL",
            hint="its adapter_config.json needs base_model_name_or_path",
        )
    kwargs: dict[str, Any] = {"dtype": dtype}
    quant = quantization_config(ModelSpec(name=ref, quantization=quantization), dtype)
    if quant is not None:
        kwargs["quantization_config"] = quant
        kwargs["device_map"] = {"": 0 if target == "cuda" else "cpu"}
    report("weights", 0.2)
    # a transformers model, or a PeftModel over one (which forwards what it does not define)
    model: Any = from_pretrained_through_adapters(AutoModelForCausalLM, source, **kwargs)
    if resolved.adapter:
        from peft import PeftModel

        report("adapter", 0.7)
        model = PeftModel.from_pretrained(model, resolved.path)
    if quant is None:
        report("device", 0.85)
        model.to(target)
    else:
        disable_cpu_4bit_repacking(model)
    model.eval()
    report("ready", 1.0)
    return LoadedModel(resolved, model, tokenizer, target)


def detect_cpu(hw):
    """The CPU's view of `hw`: loading on the CPU of a GPU machine takes the CPU's precision."""
    from dataclasses import replace

    return replace(hw, device="cpu", bf16=False, fp16=False)


def generation_defaults(loaded: LoadedModel) -> dict[str, Any]:
    """Sampling settings from the model's own `generation_config` (greedy when it does not sample)."""
    cfg = getattr(loaded.model, "generation_config", None)
    sample = bool(getattr(cfg, "do_sample", False))
    max_new = getattr(cfg, "max_new_tokens", None)
    return {
        "temperature": float(getattr(cfg, "temperature", None) or 1.0) if sample else 0.0,
        "top_p": float(getattr(cfg, "top_p", None) or 1.0),
        "top_k": int(getattr(cfg, "top_k", None) or 0),
        "max_new_tokens": int(max_new) if max_new else 256,
        "repetition_penalty": float(getattr(cfg, "repetition_penalty", None) or 1.0),
    }


def model_info(loaded: LoadedModel) -> dict[str, Any]:
    """What the UI shows about a loaded model."""
    ref = loaded.ref
    params = sum(p.numel() for p in loaded.model.parameters())
    return {
        "ref": ref.ref,
        "kind": ref.kind,
        "path": ref.path,
        "adapter": ref.adapter,
        "base": ref.base,
        "run_id": ref.run_id,
        "device": loaded.device,
        "dtype": str(next(loaded.model.parameters()).dtype).removeprefix("torch."),
        "parameters": int(params),
        "chat_template": bool(getattr(loaded.tokenizer, "chat_template", None)),
        "defaults": generation_defaults(loaded),
    }


def conversation(prompt: str, system: str | None = None, history: list[dict] | None = None) -> list[dict]:
    """The turns for one user prompt after an optional system prompt and earlier turns."""
    messages = [{"role": "system", "content": system}] if system else []
    return [*messages, *(history or []), {"role": "user", "content": prompt}]


def encode_messages(tokenizer, messages: list[dict]):
    """Token ids (and attention mask) of a conversation through the chat template, ready for the reply.

    A tokenizer without a chat template continues the plain text of the turns instead."""
    if getattr(tokenizer, "chat_template", None):
        encoded = tokenizer.apply_chat_template(
            messages, add_generation_prompt=True, return_dict=True, return_tensors="pt"
        )
        return encoded["input_ids"], encoded.get("attention_mask")
    text = "\n\n".join(str(m.get("content", "")) for m in messages)
    encoded = tokenizer(text, return_tensors="pt")
    return encoded["input_ids"], encoded.get("attention_mask")


def encode_prompt(tokenizer, prompt: str, system: str | None = None, history: list[dict] | None = None):
    """Token ids for a user turn through the chat template (plain text when there is no template)."""
    return encode_messages(tokenizer, conversation(prompt, system, history))


@dataclass
class StreamResult:
    text: str
    prompt_tokens: int
    new_tokens: int
    seconds: float
    first_token_s: float | None
    stopped: bool  # cut short by `stop`

    def to_json(self) -> dict[str, Any]:
        return {
            "text": self.text,
            "prompt_tokens": self.prompt_tokens,
            "new_tokens": self.new_tokens,
            "seconds": round(self.seconds, 4),
            "first_token_s": None if self.first_token_s is None else round(self.first_token_s, 4),
            "stopped": self.stopped,
        }


class PieceStreamer(Protocol):
    """What `stream_messages` hands `model.generate` as its streamer: counts the new tokens, notes when
    the first one came, and calls `on_piece(text)` with the reply's text in whole words (a piece ends
    after a space, a newline or a CJK character; the rest waits for the next token).

    A fast tokenizer that decodes exactly as its Rust backend decodes (no `clean_up_tokenization_spaces`,
    no model-specific `decode`) is decoded incrementally by `tokenizers.decoders.DecodeStream`, a
    constant cost per token. Any other tokenizer goes through `transformers.TextStreamer`, which decodes
    the whole line so far on every token. Either way the pieces join to
    `tokenizer.decode(new_ids, skip_special_tokens=True)`, characters of several bytes split across
    tokens included. Built by `piece_streamer` (the class needs transformers, imported lazily)."""

    new_tokens: int
    first_token_at: float | None  # time.perf_counter() when the first new token came

    def put(self, value: Any) -> None: ...
    def end(self) -> None: ...


def incremental_decoding(tokenizer) -> bool:
    """Whether `tokenizer.decode` is exactly its Rust backend's `decode`, so that `DecodeStream`
    produces the same text."""
    from tokenizers import decoders
    from transformers import PreTrainedTokenizerFast

    cls = type(tokenizer)
    return (
        hasattr(decoders, "DecodeStream")
        and isinstance(tokenizer, PreTrainedTokenizerFast)
        and cls.decode is PreTrainedTokenizerFast.decode
        and cls._decode is PreTrainedTokenizerFast._decode
        and not getattr(tokenizer, "clean_up_tokenization_spaces", False)
    )


def piece_streamer(
    tokenizer, on_piece: Callable[[str], None], *, incremental: bool | None = None
) -> PieceStreamer:
    """A streamer for one `model.generate` call (batch size 1, prompt skipped, special tokens left out).

    `incremental`: decode with `DecodeStream` (None: when `incremental_decoding(tokenizer)`)."""
    if incremental is None:
        incremental = incremental_decoding(tokenizer)
    return _streamer_class()(tokenizer, on_piece, incremental)


@functools.cache
def _streamer_class() -> type:
    from tokenizers.decoders import DecodeStream
    from transformers import TextStreamer

    class _PieceStreamer(TextStreamer):
        def __init__(self, tokenizer, on_piece: Callable[[str], None], incremental: bool) -> None:
            super().__init__(tokenizer, skip_prompt=True, skip_special_tokens=True)
            self.on_piece = on_piece
            self.new_tokens = 0
            self.first_token_at: float | None = None
            self._backend = tokenizer.backend_tokenizer if incremental else None
            self._decoder = DecodeStream(skip_special_tokens=True)
            self._ids: list[int] = []  # every new token, for the end of a reply cut inside a character
            self._decoded = 0  # characters the decoder has produced
            self._pending = 0  # tokens the decoder holds back (an unfinished character)
            self._word: list[str] = []  # text decoded but not handed out (an unfinished word)

        def put(self, value) -> None:  # the prompt first (skipped), then one token per step
            if self.next_tokens_are_prompt:
                self.next_tokens_are_prompt = False
                return
            if self.first_token_at is None:
                self.first_token_at = time.perf_counter()
            ids = value.tolist()
            if ids and isinstance(ids[0], list):  # shape (1, n)
                ids = ids[0]
            self.new_tokens += len(ids)
            if self._backend is None:
                super().put(value)
                return
            self._ids.extend(ids)
            try:
                texts = [self._decoder.step(self._backend, token) for token in ids]
            except Exception:  # noqa: BLE001 - DecodeStream lost its footing: whole lines from here on
                self._whole_lines_from_here(value, len(ids))
                return
            for text in texts:
                if text is None:  # an unfinished character (or a special token, which adds nothing)
                    self._pending += 1
                    continue
                self._pending = 0
                self._decoded += len(text)
                self._words(text)

        def _whole_lines_from_here(self, value, count: int) -> None:
            """Hand the reply over to `TextStreamer`, as if it had streamed it from the start."""
            held = "".join(self._word)
            self._word = []
            self.token_cache = self._ids[: len(self._ids) - count]
            self.print_len = self._decoded - len(held)
            self._backend = None
            super().put(value)

        def _words(self, text: str) -> None:
            if not text:
                return
            if text.endswith("\n") or self._is_chinese_char(ord(text[-1])):
                cut = len(text)
            else:
                cut = text.rfind(" ") + 1
            if cut:
                self._word.append(text[:cut])
                self.on_piece("".join(self._word))
                self._word = [text[cut:]] if cut < len(text) else []
            else:
                self._word.append(text)

        def end(self) -> None:
            if self._backend is None:
                super().end()
                return
            if self._pending:  # the reply ended inside a character: what a full decode gives for it
                self._words(self._backend.decode(self._ids, skip_special_tokens=True)[self._decoded :])
            if self._word:
                self.on_piece("".join(self._word))
                self._word = []
            self.next_tokens_are_prompt = True

        def on_finalized_text(self, text: str, stream_end: bool = False) -> None:  # noqa: ARG002
            if text:
                self.on_piece(text)

    return _PieceStreamer


def stream_messages(
    loaded: LoadedModel,
    messages: list[dict],
    *,
    on_piece: Callable[[str], None],
    stop: Callable[[], bool] | None = None,
    temperature: float | None = None,
    top_p: float | None = None,
    top_k: int | None = None,
    max_new_tokens: int | None = None,
    repetition_penalty: float | None = None,
    seed: int | None = 0,
) -> StreamResult:
    """Generate the reply to `messages`, calling `on_piece(text)` as whole words form (in this thread).

    Settings left as None take the model's own defaults (`generation_defaults`); `stop()` is asked
    before every new token and ends the reply early, keeping what came."""
    import torch
    from transformers import StoppingCriteria, StoppingCriteriaList

    defaults = generation_defaults(loaded)
    settings = {
        "temperature": defaults["temperature"] if temperature is None else float(temperature),
        "top_p": defaults["top_p"] if top_p is None else float(top_p),
        "top_k": defaults["top_k"] if top_k is None else int(top_k),
        "max_new_tokens": defaults["max_new_tokens"] if max_new_tokens is None else int(max_new_tokens),
        "repetition_penalty": (
            defaults["repetition_penalty"] if repetition_penalty is None else float(repetition_penalty)
        ),
    }
    if settings["max_new_tokens"] < 1:
        raise UserError("max_new_tokens must be at least 1", field="max_new_tokens")
    if settings["temperature"] < 0 or not 0 < settings["top_p"] <= 1 or settings["repetition_penalty"] <= 0:
        raise UserError("temperature must be >= 0, top_p in (0, 1], repetition_penalty > 0", field="params")
    tok = loaded.tokenizer
    input_ids, attention_mask = encode_messages(tok, messages)
    start = time.perf_counter()
    pieces: list[str] = []

    def piece(text: str) -> None:
        pieces.append(text)
        on_piece(text)

    streamer = piece_streamer(tok, piece)
    stopped = [False]

    class _Stop(StoppingCriteria):
        """Asks `stop()` once per token; the answer "go on" is one tensor made once (the list of
        criteria ORs it into a new one, never in place)."""

        go_on: Any = None

        def __call__(self, input_ids, scores, **kwargs):  # noqa: ARG002
            if stop is not None and stop():
                stopped[0] = True
                return torch.ones((input_ids.shape[0],), dtype=torch.bool, device=input_ids.device)
            if self.go_on is None or self.go_on.shape[0] != input_ids.shape[0]:
                self.go_on = torch.zeros((input_ids.shape[0],), dtype=torch.bool, device=input_ids.device)
            return self.go_on

    kwargs: dict[str, Any] = {
        "input_ids": input_ids.to(loaded.device),
        "max_new_tokens": settings["max_new_tokens"],
        "streamer": streamer,
        "pad_token_id": tok.pad_token_id,
        "eos_token_id": tok.eos_token_id,
        "repetition_penalty": settings["repetition_penalty"],
    }
    if stop is not None:
        kwargs["stopping_criteria"] = StoppingCriteriaList([_Stop()])
    if attention_mask is not None:
        kwargs["attention_mask"] = attention_mask.to(loaded.device)
    if settings["temperature"] > 0:
        kwargs.update(
            do_sample=True,
            temperature=settings["temperature"],
            top_p=settings["top_p"],
            top_k=settings["top_k"] or None,
        )
    else:
        kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
    if seed is not None:
        torch.manual_seed(int(seed))
    with torch.no_grad():
        loaded.model.generate(**kwargs)
    return StreamResult(
        text="".join(pieces),
        prompt_tokens=int(input_ids.shape[-1]),
        new_tokens=streamer.new_tokens,
        seconds=time.perf_counter() - start,
        first_token_s=None if streamer.first_token_at is None else streamer.first_token_at - start,
        stopped=stopped[0],
    )


def stream(
    loaded: LoadedModel,
    prompt: str,
    *,
    system: str | None = None,
    stop: Callable[[], bool] | None = None,
    **settings: Any,
) -> Iterator[str]:
    """Yield the reply's text piece by piece as it is generated (generation on a thread)."""
    import queue

    pieces: queue.Queue[str | None] = queue.Queue()
    failure: list[BaseException] = []

    def work() -> None:
        try:
            stream_messages(loaded, conversation(prompt, system), on_piece=pieces.put, stop=stop, **settings)
        except BaseException as exc:  # noqa: BLE001 - re-raised in the caller's thread
            failure.append(exc)
        finally:
            pieces.put(None)

    thread = threading.Thread(target=work, daemon=True)
    thread.start()
    while (piece := pieces.get()) is not None:
        yield piece
    thread.join()
    if failure:
        raise failure[0]


def generate(loaded: LoadedModel, prompt: str, *, system: str | None = None, **settings: Any) -> Generation:
    """The whole reply to one prompt (greedy unless `temperature` > 0)."""
    settings.setdefault("temperature", 0.0)
    pieces: list[str] = []
    result = stream_messages(loaded, conversation(prompt, system), on_piece=pieces.append, **settings)
    return Generation(result.text, result.new_tokens, result.seconds, result.prompt_tokens)
