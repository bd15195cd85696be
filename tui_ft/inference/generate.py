"""Generation from any model reference (workspace model, directory, run, checkpoint, hub id),
through the model's chat template, streamed piece by piece."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

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
    from tui_ft.engine.models import disable_cpu_4bit_repacking, load_tokenizer, quantization_config
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
    model: Any = AutoModelForCausalLM.from_pretrained(source, **kwargs)
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
    from transformers import StoppingCriteria, StoppingCriteriaList, TextStreamer

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
    first: list[float] = []
    pieces: list[str] = []
    counted = [0]

    class _Pieces(TextStreamer):
        def put(self, value):  # the prompt first (skipped), then one token per step
            if not self.next_tokens_are_prompt:
                counted[0] += int(value.numel())
                if not first:
                    first.append(time.perf_counter() - start)
            super().put(value)

        def on_finalized_text(self, text: str, stream_end: bool = False) -> None:  # noqa: ARG002
            if text:
                pieces.append(text)
                on_piece(text)

    stopped = [False]

    class _Stop(StoppingCriteria):
        def __call__(self, input_ids, scores, **kwargs):  # noqa: ARG002
            flag = bool(stop and stop())
            stopped[0] = stopped[0] or flag
            return torch.full((input_ids.shape[0],), flag, dtype=torch.bool, device=input_ids.device)

    kwargs: dict[str, Any] = {
        "input_ids": input_ids.to(loaded.device),
        "max_new_tokens": settings["max_new_tokens"],
        "streamer": _Pieces(tok, skip_prompt=True, skip_special_tokens=True),
        "pad_token_id": tok.pad_token_id,
        "eos_token_id": tok.eos_token_id,
        "stopping_criteria": StoppingCriteriaList([_Stop()]),
        "repetition_penalty": settings["repetition_penalty"],
    }
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
        new_tokens=counted[0],
        seconds=time.perf_counter() - start,
        first_token_s=first[0] if first else None,
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
