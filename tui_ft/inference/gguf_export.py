"""A merged model folder written as one GGUF file for llama.cpp and Ollama, with an Ollama `Modelfile`.

The file is written by the `gguf` package (llama.cpp's own Python writer): `GGUFWriter` for the format,
`TensorNameMap` for llama.cpp's tensor names, `SpecialVocab` for the merges and special tokens, and
`gguf.quants` for q8_0. What this module adds is what llama.cpp's `convert_hf_to_gguf.py` does for a
Llama model: the hyperparameters as metadata, the query/key rows reordered for llama.cpp's rotary
layout, the byte-level BPE vocabulary, and 1-D tensors kept in f32.

Llama-architecture models with a byte-level BPE tokenizer are supported; anything else is refused with
the way out (export the merged safetensors and run llama.cpp's converter). Heavy imports are lazy.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tui_ft.errors import UserError

# --quant: the output types llama.cpp's converter offers (`--outtype`), all written by `gguf.quants`
GGUF_QUANTS = ("f16", "q8_0", "bf16", "f32")
SUPPORTED_ARCHITECTURES = ("LlamaForCausalLM",)
CONVERTER_HINT = (
    "export the merged safetensors (--format safetensors) and use llama.cpp's convert_hf_to_gguf.py"
)
# transformers-only Jinja tags (they mark the assistant's tokens for training masks); llama.cpp's
# template engine does not know them, and they do not change the rendered text
_GENERATION_TAGS = re.compile(r"\{%-?\s*(end)?generation\s*-?%\}")

Progress = Callable[[str, float], None]


@dataclass(frozen=True)
class GgufFile:
    path: Path
    quant: str
    tensors: int
    kept_f16: tuple[str, ...]  # tensors q8_0 could not take (a row not a multiple of 32): written as f16
    stop_tokens: tuple[str, ...]
    chat_template: str | None


def gguf_file_name(model_name: str, quant: str) -> str:
    safe = re.sub(r"[^A-Za-z0-9._-]+", "-", model_name).strip("-.") or "model"
    return f"{safe}-{quant}.gguf"


def check_gguf_support(model_dir: Path, *, field: str = "--format") -> dict[str, Any]:
    """The model's config when this writer supports it; UserError (exit 2) saying why not otherwise."""
    config = _read_json(model_dir / "config.json")
    archs = config.get("architectures") or [config.get("model_type") or "unknown"]
    arch = str(archs[0])
    if arch not in SUPPORTED_ARCHITECTURES:
        raise UserError(f"not supported for GGUF yet: {arch}", field=field, hint=CONVERTER_HINT)
    tokenizer = _read_json(model_dir / "tokenizer.json")
    model = tokenizer.get("model") or {}
    pre = tokenizer.get("pre_tokenizer") or {}
    pre_types = {pre.get("type")} | {p.get("type") for p in pre.get("pretokenizers") or []}
    if model.get("type") != "BPE" or "ByteLevel" not in pre_types:
        raise UserError(
            f"not supported for GGUF yet: {arch} with a {model.get('type') or 'unknown'} tokenizer "
            "that is not byte-level BPE",
            field=field,
            hint=CONVERTER_HINT,
        )
    return config


def gguf_chat_template(template: str | None) -> str | None:
    """The chat template as llama.cpp reads it (transformers' `{% generation %}` tags dropped)."""
    return _GENERATION_TAGS.sub("", template) if template else template


def write_gguf(
    model_dir: Path,
    out_file: Path,
    *,
    quant: str = "f16",
    name: str = "model",
    chat_template: str | None = None,
    progress: Progress | None = None,
) -> GgufFile:
    """Write the full (merged) model in `model_dir` as one GGUF file at `out_file`."""
    import gguf
    import numpy as np
    import torch
    from safetensors import safe_open

    if quant not in GGUF_QUANTS:
        raise UserError(f"unknown GGUF type {quant!r}", field="--quant", hint=", ".join(GGUF_QUANTS))
    report = progress or (lambda stage, fraction: None)
    config = check_gguf_support(model_dir)
    tok_config = _read_json(model_dir / "tokenizer_config.json", missing_ok=True)
    n_layers = int(config["num_hidden_layers"])
    n_head = int(config["num_attention_heads"])
    n_kv = int(config.get("num_key_value_heads") or n_head)
    hidden = int(config["hidden_size"])
    head_dim = int(config.get("head_dim") or hidden // n_head)
    rope = config.get("rope_parameters") or config.get("rope_scaling") or {}
    rope_type = rope.get("rope_type") or rope.get("type") or "default"
    if rope_type not in ("default", "linear"):
        raise UserError(
            f"not supported for GGUF yet: LlamaForCausalLM with {rope_type} rope scaling",
            field="--format",
            hint=CONVERTER_HINT,
        )
    rope_theta = float(rope.get("rope_theta") or config.get("rope_theta") or 10000.0)

    writer = gguf.GGUFWriter(str(out_file), gguf.MODEL_ARCH_NAMES[gguf.MODEL_ARCH.LLAMA])
    file_type = {
        "f32": gguf.LlamaFileType.ALL_F32,
        "f16": gguf.LlamaFileType.MOSTLY_F16,
        "bf16": gguf.LlamaFileType.MOSTLY_BF16,
        "q8_0": gguf.LlamaFileType.MOSTLY_Q8_0,
    }[quant]
    writer.add_name(name)
    writer.add_context_length(int(config.get("max_position_embeddings") or 2048))
    writer.add_embedding_length(hidden)
    writer.add_block_count(n_layers)
    writer.add_feed_forward_length(int(config["intermediate_size"]))
    writer.add_head_count(n_head)
    writer.add_head_count_kv(n_kv)
    writer.add_layer_norm_rms_eps(float(config.get("rms_norm_eps") or 1e-6))
    writer.add_rope_freq_base(rope_theta)
    writer.add_rope_dimension_count(head_dim)
    if rope_type == "linear" and rope.get("factor"):
        writer.add_rope_scaling_type(gguf.RopeScalingType.LINEAR)
        writer.add_rope_scaling_factor(float(rope["factor"]))
    if head_dim != hidden // n_head:
        writer.add_key_length(head_dim)
        writer.add_value_length(head_dim)
    writer.add_vocab_size(int(config["vocab_size"]))
    writer.add_file_type(file_type)
    writer.add_quantization_version(gguf.GGML_QUANT_VERSION)

    report("gguf vocabulary", 0.0)
    stop_tokens = _add_vocab(writer, model_dir, config, tok_config, gguf)
    template = gguf_chat_template(chat_template)
    if template:
        writer.add_chat_template(template)

    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH.LLAMA, n_layers)
    qtype = {
        "f32": gguf.GGMLQuantizationType.F32,
        "f16": gguf.GGMLQuantizationType.F16,
        "bf16": gguf.GGMLQuantizationType.BF16,
        "q8_0": gguf.GGMLQuantizationType.Q8_0,
    }[quant]
    shards = sorted(model_dir.glob("*.safetensors"))
    keys: list[tuple[Path, str]] = []
    for shard in shards:
        with safe_open(str(shard), framework="pt") as f:
            keys += [(shard, key) for key in f.keys()]  # noqa: SIM118 - safe_open is not a dict
    kept_f16: list[str] = []
    written = 0
    for done, (shard, key) in enumerate(keys):
        if key.endswith("rotary_emb.inv_freq"):
            continue
        if key == "lm_head.weight" and config.get("tie_word_embeddings"):
            continue
        with safe_open(str(shard), framework="pt") as f:
            data = f.get_tensor(key).to(torch.float32).numpy()
        gguf_name = names.get_name(key, try_suffixes=(".weight", ".bias"))
        if gguf_name is None:
            raise UserError(
                f"{model_dir}: tensor {key} has no llama.cpp name", field="--format", hint=CONVERTER_HINT
            )
        if key.endswith("q_proj.weight"):
            data = _permute(data, n_head, n_head)
        elif key.endswith("k_proj.weight"):
            data = _permute(data, n_head, n_kv)
        target = gguf.GGMLQuantizationType.F32 if data.ndim <= 1 else qtype
        try:
            out = gguf.quants.quantize(data, target)
        except gguf.QuantError:  # q8_0 packs rows in blocks of 32; a row of another length stays f16
            target = gguf.GGMLQuantizationType.F16
            out = gguf.quants.quantize(data, target)
            kept_f16.append(gguf_name)
        if target == gguf.GGMLQuantizationType.F32:
            out = np.asarray(out, dtype=np.float32)
        writer.add_tensor(gguf_name, out, raw_shape=out.shape, raw_dtype=target)
        written += 1
        report("gguf tensors", (done + 1) / max(1, len(keys)))
    report("gguf writing", 1.0)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return GgufFile(out_file, quant, written, tuple(kept_f16), stop_tokens, template)


def _permute(weights: Any, n_head: int, n_head_kv: int) -> Any:
    """llama.cpp's rotary layout for the query/key rows (as `convert_hf_to_gguf.py` LlamaModel.permute)."""
    if n_head_kv is not None and n_head != n_head_kv:
        n_head = n_head_kv
    return (
        weights.reshape(n_head, 2, weights.shape[0] // n_head // 2, *weights.shape[1:])
        .swapaxes(1, 2)
        .reshape(weights.shape)
    )


def _add_vocab(writer: Any, model_dir: Path, config: dict, tok_config: dict, gguf: Any) -> tuple[str, ...]:
    """The byte-level BPE vocabulary ("gpt2" in llama.cpp's terms), its merges and special tokens."""
    tokenizer = _read_json(model_dir / "tokenizer.json")
    vocab: dict[str, int] = dict(tokenizer["model"]["vocab"])
    added = {t["content"]: t for t in tokenizer.get("added_tokens") or []}
    for content, token in added.items():
        vocab[content] = int(token["id"])
    size = max(int(config["vocab_size"]), max(vocab.values()) + 1)
    by_id = {i: t for t, i in vocab.items()}
    tokens: list[str] = []
    types: list[int] = []
    for i in range(size):
        text = by_id.get(i)
        if text is None:  # the embedding matrix is larger than the vocabulary: padding rows
            tokens.append(f"[PAD{i}]")
            types.append(gguf.TokenType.UNUSED)
        elif text in added:
            tokens.append(text)
            types.append(
                gguf.TokenType.CONTROL if added[text].get("special") else gguf.TokenType.USER_DEFINED
            )
        else:
            tokens.append(text)
            types.append(gguf.TokenType.NORMAL)
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("default")
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    special = gguf.SpecialVocab(model_dir, load_merges=True, n_vocab=size)
    special.chat_template = None  # written by the caller, in llama.cpp's dialect
    special.add_to_gguf(writer, quiet=True)
    if "bos" not in special.add_special_token:
        writer.add_add_bos_token(bool(tok_config.get("add_bos_token", False)))
    stops = [
        t for t in (tok_config.get("eos_token"), "<|im_end|>", "<|eot_id|>", "<|end|>") if t and t in vocab
    ]
    return tuple(dict.fromkeys(stops))


# --- Ollama -----------------------------------------------------------------------------------------

# Go-template versions of the chat formats tui-ft's models use; Ollama reads TEMPLATE, not Jinja
CHATML_TEMPLATE = """{{- if .System }}<|im_start|>system
{{ .System }}<|im_end|>
{{ end }}{{- range .Messages }}<|im_start|>{{ .Role }}
{{ .Content }}<|im_end|>
{{ end }}<|im_start|>assistant
"""
LLAMA3_TEMPLATE = """{{- if .System }}<|start_header_id|>system<|end_header_id|>

{{ .System }}<|eot_id|>{{ end }}{{- range .Messages }}<|start_header_id|>{{ .Role }}<|end_header_id|>

{{ .Content }}<|eot_id|>{{ end }}<|start_header_id|>assistant<|end_header_id|>

"""


def ollama_template(chat_template: str | None) -> tuple[str | None, str]:
    """The Ollama TEMPLATE for a chat template (None when not known) and the format's name."""
    if chat_template and "<|im_start|>" in chat_template:
        return CHATML_TEMPLATE, "ChatML"
    if chat_template and "<|start_header_id|>" in chat_template:
        return LLAMA3_TEMPLATE, "Llama 3"
    return None, "unknown"


def ollama_modelfile(gguf_name: str, chat_template: str | None, stop_tokens: tuple[str, ...]) -> str:
    """An Ollama Modelfile for the GGUF beside it: FROM, TEMPLATE and the stop tokens."""
    template, fmt = ollama_template(chat_template)
    lines = [f"# Ollama: ollama create NAME -f Modelfile   (chat format: {fmt})", f"FROM ./{gguf_name}", ""]
    if template is not None:
        lines += [f'TEMPLATE """{template}"""', ""]
    else:
        lines += [
            "# The chat template is not one tui-ft knows how to write for Ollama; Ollama reads the",
            "# Jinja template from the GGUF's tokenizer.chat_template when it recognises it.",
            "",
        ]
    lines += [f'PARAMETER stop "{token}"' for token in stop_tokens]
    return "\n".join(lines) + "\n"


def _read_json(path: Path, *, missing_ok: bool = False) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        if missing_ok:
            return {}
        raise UserError(f"{path} is missing", field="--format", hint=CONVERTER_HINT) from None
    except (OSError, ValueError) as exc:
        raise UserError(f"{path} cannot be read: {exc}", field="--format") from None
    return data if isinstance(data, dict) else {}
