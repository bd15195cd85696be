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


def load_for_generation(ref: str, ws: Workspace) -> LoadedModel:
    """Load a model (an adapter on its base, kept as a PeftModel) ready for `generate`."""
    from tui_ft.library_noise import quiet_library_noise

    quiet_library_noise()
    from transformers import AutoModelForCausalLM

    from tui_ft.engine.hardware import detect_hardware, weights_dtype
    from tui_ft.engine.models import load_tokenizer

    resolved = resolve_model(ref, ws)
    refuse_reward_model(resolved)
    hw = detect_hardware()
    dtype = weights_dtype("auto", hw, "lora")
    tokenizer = load_tokenizer(resolved)
    source = resolved.base if resolved.adapter else resolved.path
    if source is None:
        raise UserError(
            f"the adapter at {resolved.path} does not name its base model",
            field="MODEL",
            hint="its adapter_config.json needs base_model_name_or_path",
        )
    # a transformers model, or a PeftModel over one (which forwards what it does not define)
    model: Any = AutoModelForCausalLM.from_pretrained(source, dtype=dtype)
    if resolved.adapter:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, resolved.path)
    device = "cuda" if hw.device == "cuda" else "cpu"
    model.to(device)
    model.eval()
    return LoadedModel(resolved, model, tokenizer, device)


def encode_prompt(tokenizer, prompt: str, system: str | None = None, history: list[dict] | None = None):
    """Token ids for a user turn through the chat template (plain text when there is no template)."""
    if getattr(tokenizer, "chat_template", None):
        messages = []
        if system:
            messages.append({"role": "system", "content": system})
        messages.extend(history or [])
        messages.append({"role": "user", "content": prompt})
        encoded = tokenizer.apply_chat_template(
            messages, add_generation_prompt=True, return_dict=True, return_tensors="pt"
        )
        return encoded["input_ids"], encoded.get("attention_mask")
    encoded = tokenizer(prompt, return_tensors="pt")
    return encoded["input_ids"], encoded.get("attention_mask")


def stream(
    loaded: LoadedModel,
    prompt: str,
    *,
    system: str | None = None,
    max_new_tokens: int = 64,
    temperature: float = 0.0,
    top_p: float = 1.0,
    seed: int | None = 0,
    stop: Callable[[], bool] | None = None,
) -> Iterator[str]:
    """Yield the reply's text piece by piece as it is generated."""
    import torch
    from transformers import StoppingCriteria, StoppingCriteriaList, TextIteratorStreamer

    tok = loaded.tokenizer
    input_ids, attention_mask = encode_prompt(tok, prompt, system)
    streamer = TextIteratorStreamer(tok, skip_prompt=True, skip_special_tokens=True)

    class _Stop(StoppingCriteria):
        def __call__(self, input_ids, scores, **kwargs):  # noqa: ARG002
            return bool(stop and stop())

    kwargs: dict[str, Any] = {
        "input_ids": input_ids.to(loaded.device),
        "max_new_tokens": max_new_tokens,
        "streamer": streamer,
        "pad_token_id": tok.pad_token_id,
        "eos_token_id": tok.eos_token_id,
        "stopping_criteria": StoppingCriteriaList([_Stop()]),
    }
    if attention_mask is not None:
        kwargs["attention_mask"] = attention_mask.to(loaded.device)
    if temperature > 0:
        kwargs.update(do_sample=True, temperature=temperature, top_p=top_p)
    else:
        kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
    failure: list[BaseException] = []

    def work() -> None:
        try:
            if seed is not None:
                torch.manual_seed(seed)
            with torch.no_grad():
                loaded.model.generate(**kwargs)
        except BaseException as exc:  # noqa: BLE001 - re-raised in the caller's thread
            failure.append(exc)
            streamer.end()

    thread = threading.Thread(target=work, daemon=True)
    thread.start()
    yield from streamer
    thread.join()
    if failure:
        raise failure[0]


def generate(loaded: LoadedModel, prompt: str, **kwargs: Any) -> Generation:
    start = time.perf_counter()
    pieces = list(stream(loaded, prompt, **kwargs))
    text = "".join(pieces)
    ids, _ = encode_prompt(loaded.tokenizer, prompt, kwargs.get("system"))
    new_tokens = len(loaded.tokenizer(text, add_special_tokens=False)["input_ids"]) if text else 0
    return Generation(text, new_tokens, time.perf_counter() - start, int(ids.shape[-1]))
