"""Loading models and tokenizers (one code path for workspace, local and hub models), quantization,
and what trains: full, freeze, LoRA, DoRA, prompt tuning."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tui_ft.display import format_params
from tui_ft.engine.hardware import Hardware, weights_dtype
from tui_ft.errors import RecipeError, WorkFailed
from tui_ft.modelref import ModelRef
from tui_ft.recipe import AdapterSpec, ModelSpec


def load_tokenizer(ref: ModelRef, spec: ModelSpec | None = None):
    """The tokenizer of a model (an adapter's own copy if it saved one, else its base's)."""
    from transformers import AutoTokenizer

    source = ref.path
    if ref.adapter and not (Path(ref.path) / "tokenizer_config.json").exists() and ref.base:
        source = ref.base
    kwargs: dict[str, Any] = {}
    if spec is not None:
        kwargs["trust_remote_code"] = spec.trust_remote_code
        if spec.revision and not ref.local:
            kwargs["revision"] = spec.revision
    tokenizer = AutoTokenizer.from_pretrained(source, **kwargs)
    if spec is not None and spec.chat_template:
        path = Path(spec.chat_template).expanduser()
        tokenizer.chat_template = path.read_text() if path.is_file() else spec.chat_template
    if tokenizer.pad_token is None:
        # Padding with eos would hide eos from the loss in some collators; prefer a dedicated token.
        for candidate in ("<|endoftext|>", "<pad>", "<|pad|>"):
            if candidate in tokenizer.get_vocab() and candidate != tokenizer.eos_token:
                tokenizer.pad_token = candidate
                break
        else:
            tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def bitsandbytes_problem() -> str | None:
    """Why bitsandbytes cannot quantize here, or None when it can. Cheap: imports bitsandbytes only."""
    try:
        import bitsandbytes  # noqa: F401
    except Exception as exc:  # noqa: BLE001 - any import failure means the same to the user
        return f"bitsandbytes cannot be loaded ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})"
    return None


def quantization_config(spec: ModelSpec, compute_dtype):
    if spec.quantization == "none":
        return None
    problem = bitsandbytes_problem()
    if problem:
        raise RecipeError(
            f"{spec.quantization} quantization needs bitsandbytes: {problem}",
            field="model.quantization",
            hint="pip install 'bitsandbytes>=0.50', or set model.quantization: none",
        )
    from transformers import BitsAndBytesConfig

    if spec.quantization == "4bit":
        return BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=compute_dtype,
        )
    return BitsAndBytesConfig(load_in_8bit=True)


def disable_cpu_4bit_repacking(model) -> int:
    """Keep bitsandbytes from repacking 4-bit weights for CPU inference kernels.

    On CPUs with AVX512-BF16, the first no-grad forward (an evaluation, a generate) repacks Linear4bit
    weights, and later backward passes silently get no input gradient through them: LoRA adapters
    below stop learning. Turning the repacking off keeps training correct; returns how many layers.
    """
    try:
        import bitsandbytes as bnb
    except Exception:  # noqa: BLE001
        return 0
    count = 0
    for module in model.modules():
        if isinstance(module, bnb.nn.Linear4bit) and hasattr(module, "support_avx512bf16_for_cpu"):
            module.support_avx512bf16_for_cpu = False
            count += 1
    return count


def load_model(
    ref: ModelRef,
    spec: ModelSpec,
    hw: Hardware,
    adapter_type: str,
    *,
    task: str = "causal_lm",
    num_labels: int = 1,
    labels: tuple[str, ...] | None = None,
):
    """Load the model to train or run: `task` causal_lm or sequence_classification (a reward model's one
    score, or with `labels`, a classifier of those classes: its head gets one output per class and its
    config names them, `id2label`/`label2id`, so the saved model says what it predicts)."""
    import transformers

    dtype = weights_dtype(spec.dtype, hw, adapter_type)
    kwargs: dict[str, Any] = {"dtype": dtype, "trust_remote_code": spec.trust_remote_code}
    if spec.revision and not ref.local:
        kwargs["revision"] = spec.revision
    if spec.attn_implementation != "auto":
        kwargs["attn_implementation"] = spec.attn_implementation
    quant = quantization_config(spec, compute_dtype=dtype)
    if quant is not None:
        kwargs["quantization_config"] = quant
        if hw.device == "cuda":
            import os

            kwargs["device_map"] = {"": int(os.environ.get("LOCAL_RANK", "0"))}
    cls = (
        transformers.AutoModelForSequenceClassification
        if task == "sequence_classification"
        else transformers.AutoModelForCausalLM
    )
    if task == "sequence_classification":
        kwargs["num_labels"] = num_labels
        if labels is not None:
            kwargs["num_labels"] = len(labels)
            kwargs["id2label"] = dict(enumerate(labels))
            kwargs["label2id"] = {name: i for i, name in enumerate(labels)}
    source = ref.base if ref.adapter else ref.path
    if source is None:
        raise WorkFailed(f"the adapter at {ref.path} does not name its base model", kind="model_not_found")
    model = from_pretrained_through_adapters(cls, source, **kwargs)
    if spec.quantization == "4bit":
        disable_cpu_4bit_repacking(model)
    if ref.adapter:
        model = _merge_or_continue(model, ref, quantized=spec.quantization != "none")
    return model


def _merge_or_continue(model, ref: ModelRef, *, quantized: bool):
    """Starting from an adapter (a run's LoRA): merge it into the base so a new adapter trains on top.
    On a quantized base a merge is lossy, so the adapter itself continues training instead.

    The merged model is named after the adapter it merged (`name_or_path`), so the new adapter's
    `adapter_config.json` names that adapter as its base, not the model under it: loading the new
    run then merges the chain again (`from_pretrained_through_adapters`) instead of silently
    dropping what the first run taught."""
    from peft import PeftModel

    peft_model = PeftModel.from_pretrained(model, ref.path, is_trainable=quantized)
    if quantized:
        return peft_model
    merged = peft_model.merge_and_unload()
    merged.name_or_path = ref.path
    merged.config._name_or_path = ref.path
    return merged


def from_pretrained_through_adapters(cls, source: str, **kwargs):
    """`cls.from_pretrained(source, **kwargs)`, where `source` may be an adapter (the base of a run
    trained on another run's adapter): the full model under the chain is loaded and each adapter of
    the chain merged into it in order, bottom up."""
    from tui_ft.modelref import adapter_chain

    root, adapters = adapter_chain(source)
    model = cls.from_pretrained(root, **kwargs)
    if adapters:
        from peft import PeftModel

        for adapter in adapters:
            model = PeftModel.from_pretrained(model, adapter).merge_and_unload()
        model.name_or_path = source
        model.config._name_or_path = source
    return model


def apply_adapter(model, adapter: AdapterSpec, *, quantized: bool, activation_checkpointing: bool):
    """Make the right parameters trainable; returns the (possibly peft-wrapped) model."""
    from peft import PeftModel

    if isinstance(model, PeftModel):
        return model  # continuing a quantized run's adapter (see _merge_or_continue)
    if quantized:
        from peft import prepare_model_for_kbit_training

        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=activation_checkpointing)
    kind = adapter.type
    if kind == "full":
        for p in model.parameters():
            p.requires_grad_(True)
        return model
    if kind == "freeze":
        return _freeze_all_but_last(model, adapter.trainable_layers)
    from peft import get_peft_model

    if kind in ("lora", "dora"):
        from peft import LoraConfig

        task_type = "SEQ_CLS" if _is_classifier(model) else "CAUSAL_LM"
        config = LoraConfig(
            r=adapter.r,
            lora_alpha=adapter.alpha,
            lora_dropout=adapter.dropout,
            target_modules=adapter.target_modules,
            use_dora=kind == "dora",
            task_type=task_type,
        )
        return get_peft_model(model, config)
    if kind == "prompt_tuning":
        from peft import PromptTuningConfig, PromptTuningInit

        init = PromptTuningInit.TEXT if adapter.prompt_init_text else PromptTuningInit.RANDOM
        prompt_config = PromptTuningConfig(
            task_type="CAUSAL_LM",
            num_virtual_tokens=adapter.num_virtual_tokens,
            prompt_tuning_init=init,
            prompt_tuning_init_text=adapter.prompt_init_text,
            tokenizer_name_or_path=getattr(model, "name_or_path", None) if adapter.prompt_init_text else None,
        )
        return get_peft_model(model, prompt_config)
    raise ValueError(f"unknown adapter type {kind}")


def _is_classifier(model) -> bool:
    return type(model).__name__.endswith("ForSequenceClassification")


def _freeze_all_but_last(model, n_layers: int):
    """Freeze everything, then let the last `n_layers` transformer blocks, the final norm and the head train.

    A classifier with `n_layers` 0 trains its head alone: the backbone, final norm included, is a fixed
    feature extractor."""
    import torch

    for p in model.parameters():
        p.requires_grad_(False)
    blocks = None
    for module in model.modules():
        if isinstance(module, torch.nn.ModuleList) and len(module) > 0:
            blocks = module  # the decoder layers: the largest ModuleList of identical blocks
            break
    if blocks is None:
        raise WorkFailed("freeze training could not find the model's transformer blocks", kind="error")
    if n_layers > len(blocks):
        raise RecipeError(
            f"the model has {len(blocks)} blocks; cannot train the last {n_layers}",
            field="adapter.trainable_layers",
        )
    for block in list(blocks)[len(blocks) - n_layers :]:
        for p in block.parameters():
            p.requires_grad_(True)
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    if head is None and hasattr(model, "score"):
        head = model.score
    if head is not None:
        for p in head.parameters():
            p.requires_grad_(True)
    if n_layers == 0 and _is_classifier(model):
        return model
    for name, module in model.named_modules():
        if name.endswith(("model.norm", "final_layernorm", "ln_f")):
            for p in module.parameters():
                p.requires_grad_(True)
    return model


@dataclass(frozen=True)
class ParameterCounts:
    """A loaded model's parameters, counted as the memory estimate counts them: `model` is the model's
    own (as loaded; a score head in place of the LM head for reward models and classifiers), `adapter`
    what the adapter adds beside it (LoRA/DoRA matrices, prompt-tuning embeddings, the trained copy of a
    head peft keeps in `modules_to_save`), `trainable` what the optimizer updates."""

    model: int
    adapter: int
    trainable: int

    @property
    def total(self) -> int:
        return self.model + self.adapter

    def describe(self) -> str:
        """`417.2K parameters + 56.1K adapter, 56.1K trainable` (no adapter part without one)."""
        added = f" + {format_params(self.adapter)} adapter" if self.adapter else ""
        return f"{format_params(self.model)} parameters{added}, {format_params(self.trainable)} trainable"


def count_parameters(model) -> ParameterCounts:
    """The model's own, the adapter's and the trainable parameters; 4-bit weights count as their logical
    size. peft names each parameter it adds after the adapter (`lora_A.default.weight`,
    `prompt_encoder.default.embedding.weight`, `score.modules_to_save.default.weight`): those are the
    adapter's."""
    adapter_names = list(getattr(model, "peft_config", None) or {})
    marks = tuple(f".{name}." for name in adapter_names)
    own = added = trainable = 0
    for name, p in model.named_parameters():
        n = p.numel()
        if getattr(p, "quant_state", None) is not None or p.__class__.__name__ == "Params4bit":
            n *= 2
        if marks and any(mark in f".{name}." for mark in marks):
            added += n
        else:
            own += n
        if p.requires_grad:
            trainable += n
    return ParameterCounts(own, added, trainable)
