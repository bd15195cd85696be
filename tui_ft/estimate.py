"""How much accelerator memory a recipe needs, from the model's config.json (no torch, no download).

The estimate is a sum of parts, each with a one-line explanation, per device (per GPU):

  weights      parameters x bytes of `model.dtype` (auto: bfloat16 on a GPU, float32 on a CPU, as the
               engine loads them). 4bit: NF4 = 0.5 byte per quantized weight plus double-quantized block
               scales (8-bit absmax per 64 weights, fp32 per 256 blocks: ~0.516 byte in all); 8bit
               (LLM.int8): 1 byte plus an fp32 scale per row. Only the Linear layers inside the
               transformer blocks are quantized; embeddings, norms and the head stay in 16/32 bits, and
               peft's `prepare_model_for_kbit_training` upcasts them to float32.
  gradients    one per trainable parameter, in the trainable parameters' dtype: the weights' dtype for
               full and freeze, float32 for adapters (peft keeps adapter weights in float32).
  optimizer    `training.optim`: AdamW keeps two moments per trainable parameter in the parameters'
               dtype for torch's AdamW (so full fine-tuning with float32 weights is 4+4+8 = 16 bytes per
               parameter, and pure bfloat16 is 2+2+4 = 8) and float32 for bitsandbytes' 32-bit ones;
               8-bit optimizers keep 1 byte per moment (adamw_8bit, paged_adamw_8bit: 2 bytes/param);
               Lion/RMSprop/Adagrad keep one moment, AdEMAMix three, Adafactor factored rows and columns.
  activations  what autograd keeps for the backward pass of a Llama-style block, per token (each term
               held against autograd's saved tensors in tests/test_estimate.py): each RMSNorm a float32
               copy of its input, plus its normalised input when its weight trains; q and k after
               RoPE, v and the attention output (2h + 2 kv); the MLP's gate output, its activation and
               up's output (3 x intermediate); and the inputs of the Linear modules (each norm's output
               and the MLP's product) when their weights train or an adapter reads them: a frozen Linear
               needs only its weight (prompt tuning keeps none). In the compute dtype (2 bytes under
               bf16/fp16, 4 in float32); x batch x sequence x trained blocks. Attention is assumed
               memory-efficient (SDPA/flash: no seq^2 term) unless `attn_implementation: eager`.
               Activation checkpointing keeps only each block's input plus one block being recomputed.
               LoRA keeps A's output (r) per adapted module, and under 16-bit compute a 16-bit copy of
               the module's input cast for the float32 adapter; DoRA also keeps the base output and the
               LoRA branch's output (2 x out_features); dropout > 0 a dropped copy of the input.
               Then the LM head: TRL's chunked log-prob head (SFT, DPO, KTO, GRPO, RLOO, when the
               installed TRL has trl/kernels/chunked_logprob.py) never builds the logits: one tile of at
               most 4,096 tokens x 32,768 vocabulary entries at a time (on a GPU the matmul buffer; on a
               CPU torch's fallback also holds 7 float32 temporaries and a mask per element in the
               backward pass: compute + 29 bytes), plus the hidden states' float32 gradient. Otherwise
               (ORPO, older TRL) the logits: batch x sequence x vocab in the compute dtype, upcast to
               float32 for the loss, and the log-softmax kept for backward (compute + 8 bytes per logit).
               Every sequence is assumed `data.max_length` tokens long (the worst case: packing, or a
               batch holding a long example). Freeze training keeps activations of the trained blocks
               only; nothing below them needs a gradient.
  overlap      the backward pass frees each block's activations as it fills that block's gradients:
               the peak holds weights + optimizer + the larger of (activations + the head's gradient,
               filled first) and the gradients, not both (a negative part, "freed in backward").
  reference    DPO, KTO, GRPO (beta > 0) and RLOO compare with a reference model: none with an adapter
               (the base with the adapter disabled is the reference), a second copy of the weights for
               full and freeze training, unless DPO/KTO `precompute_ref_log_probs` computes the reference
               log-probabilities once before training. ORPO and reward modelling have no reference.
  generation   GRPO/RLOO generate completions: the KV cache of per_device_train_batch_size x
               steps_per_generation sequences of (prompt = data.max_length) + max_completion_length
               tokens: 2 x layers x kv_heads x head_dim x compute bytes per token. vLLM is not modelled.
  runtime      on a GPU, the CUDA context and kernels (~0.75 GiB), plus 10% of the rest for the
               allocator's fragmentation and short-lived buffers.

Pairs double the batch: DPO and ORPO run chosen and rejected together, the reward model scores both.
Under `accelerate` with DeepSpeed ZeRO-2, gradients and optimizer states are split over the processes;
ZeRO-3 and FSDP split the weights as well. The figures are estimates (expect +-25%): allocator caching,
kernels' workspaces and library versions move the real peak.

Parameters are counted from the safetensors headers next to config.json when they are there (exact,
any architecture), else from config.json for a Llama-style decoder (vocab, hidden, intermediate,
layers, heads and kv heads, tied embeddings; biases ignored).
"""

from __future__ import annotations

import functools
import json
import math
import re
import struct
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tui_ft.data.packing import padding_share
from tui_ft.errors import NotFoundError
from tui_ft.modelref import resolve_model
from tui_ft.workspace import Workspace

if TYPE_CHECKING:
    from tui_ft.monitor.system import GpuStatus
    from tui_ft.recipe import Recipe

GIB = 1024**3
DTYPE_BYTES = {"float32": 4, "bfloat16": 2, "float16": 2}
NF4_BYTES = 0.5 + 1 / 64 + 4 / (64 * 256)  # 4-bit weight + 8-bit absmax per 64 + fp32 per 256 absmax
NF4_BYTES_SINGLE = 0.5 + 4 / 64  # without double quantization (not used by tui-ft, kept for reference)
CUDA_CONTEXT = int(0.75 * GIB)
# TRL's chunked log-prob LM head (trl/kernels/chunked_logprob.py): tokens and vocabulary per tile.
FUSED_TILE_TOKENS = 4096
FUSED_TILE_VOCAB = 32768
FUSED_HEAD_METHODS = ("sft", "dpo", "kto", "grpo", "rloo")
FRAGMENTATION = 0.10

# TRL's defaults (trl 1.x) for the keys the estimate reads, when the recipe does not set them.
TRL_DEFAULTS: dict[str, Any] = {
    "per_device_train_batch_size": 8,
    "gradient_accumulation_steps": 1,
    "optim": "adamw_torch_fused",
    "precompute_ref_log_probs": False,
    "max_completion_length": 512,
    "steps_per_generation": None,
}
BETA_DEFAULTS = {"dpo": 0.1, "kto": 0.1, "orpo": 0.1, "grpo": 0.0, "rloo": 0.05}
PAIRED_METHODS = ("dpo", "orpo", "reward")
REFERENCE_METHODS = ("dpo", "kto", "grpo", "rloo")
GENERATING_METHODS = ("grpo", "rloo")
# Methods whose model swaps the LM head for a small score head (sequence classification), and its
# outputs: the reward model's one score; a classifier's classes, known only from its data, assumed here
# (the head is hidden x classes, small beside everything else either way).
SCORE_HEAD_OUTPUTS = {"reward": 1, "classify": 8}
# Architectures whose MLP has two matrices (up, down) rather than a gated three (gate, up, down).
NON_GATED = ("gpt2", "gpt_neo", "gpt_neox", "gptj", "opt", "bloom", "falcon", "phi", "starcoder2", "mpt")
_LAYER = re.compile(r"\.(?:layers|h|blocks|layer|decoder_layers)\.(\d+)\.")
_FLOAT_DTYPES = {"F64": 8, "F32": 4, "BF16": 2, "F16": 2, "F8_E4M3": 1, "F8_E5M2": 1}


@dataclass(frozen=True)
class Linear:
    """One Linear module inside a transformer block."""

    name: str  # full module name, e.g. model.layers.0.self_attn.q_proj
    in_features: int
    out_features: int

    @property
    def short(self) -> str:
        return self.name.rsplit(".", 1)[-1]

    @property
    def params(self) -> int:
        return self.in_features * self.out_features


@dataclass(frozen=True)
class ModelShape:
    """What the estimate needs to know about a model's architecture."""

    source: str  # "safetensors" | "config.json"
    total_params: int
    embed_params: int
    head_params: int  # 0 when the head is tied to the embeddings
    layer_params: int  # all blocks together
    other_params: int  # final norm and the like
    num_layers: int
    hidden: int
    intermediate: int
    heads: int
    kv_heads: int
    head_dim: int
    vocab: int
    tied: bool
    experts_per_token: int = 1
    linears: tuple[Linear, ...] = ()
    notes: tuple[str, ...] = ()

    @property
    def quantizable_params(self) -> int:
        return sum(lin.params for lin in self.linears)

    @property
    def kv_dim(self) -> int:
        return self.kv_heads * self.head_dim


@dataclass(frozen=True)
class MemoryPart:
    key: str  # weights | gradients | optimizer | activations | reference | generation | runtime
    label: str
    bytes: int
    explanation: str


@dataclass(frozen=True)
class MemoryEstimate:
    """Per-device memory for a recipe, part by part, and how it compares with the GPU here."""

    model: str
    model_source: str
    total_params: int
    trainable_params: int
    dtype: str
    batch: int
    seq_len: int
    parts: tuple[MemoryPart, ...]
    device: str  # what the total is compared with, in words
    device_bytes: int | None  # the smallest GPU's memory, None without a GPU
    assumptions: tuple[str, ...] = field(default_factory=tuple)

    @property
    def total_bytes(self) -> int:
        return sum(p.bytes for p in self.parts)

    @property
    def fits(self) -> bool | None:
        return None if self.device_bytes is None else self.total_bytes <= self.device_bytes

    def verdict(self) -> str:
        """One line: fits, does not fit, or no GPU to compare with."""
        total = format_bytes(self.total_bytes)
        if self.device_bytes is None:
            return f"needs ~{total} per device; {self.device}"
        if self.fits:
            share = 100 * self.total_bytes / self.device_bytes
            return f"fits: ~{total} of {format_bytes(self.device_bytes)} ({share:.0f}%) on {self.device}"
        return f"does not fit: ~{total} > {format_bytes(self.device_bytes)} on {self.device}"

    def part(self, key: str) -> MemoryPart | None:
        return next((p for p in self.parts if p.key == key), None)

    def to_json(self) -> dict[str, Any]:
        doc = asdict(self)
        doc["total_bytes"] = self.total_bytes
        doc["fits"] = self.fits
        doc["verdict"] = self.verdict()
        return doc


def format_bytes(n: float) -> str:
    """1536 -> '1.5 KiB', 13.5e9 -> '12.6 GiB', -2048 -> '-2.0 KiB'."""
    if n < 0:
        return "-" + format_bytes(-n)
    for unit, size in (("GiB", GIB), ("MiB", 1024**2), ("KiB", 1024)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{int(n)} B"


def format_count(n: int) -> str:
    """6738415616 -> '6.74B', 40_000_000 -> '40.0M'."""
    for unit, size in (("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if n >= size:
            return f"{n / size:.{2 if unit == 'B' else 1}f}{unit}"
    return str(n)


# ---------------------------------------------------------------------------------------------------
# the model's shape


def read_safetensors_header(path: Path) -> dict[str, Any]:
    """The JSON header of a .safetensors file (tensor names, dtypes, shapes), without reading tensors."""
    with open(path, "rb") as fh:
        (length,) = struct.unpack("<Q", fh.read(8))
        if length > 100 * 1024 * 1024:
            raise ValueError(f"{path}: implausible safetensors header length {length}")
        header = json.loads(fh.read(length))
    header.pop("__metadata__", None)
    return header


def _safetensors_files(model_dir: Path) -> list[Path]:
    index = model_dir / "model.safetensors.index.json"
    if index.is_file():
        weight_map = json.loads(index.read_text()).get("weight_map", {})
        return [model_dir / name for name in sorted(set(weight_map.values()))]
    return sorted(model_dir.glob("*.safetensors"))


def _text_config(config: dict[str, Any]) -> dict[str, Any]:
    inner = config.get("text_config")
    return {**config, **inner} if isinstance(inner, dict) else config


def _first(config: dict[str, Any], *keys: str, default: Any = None) -> Any:
    for key in keys:
        if config.get(key) is not None:
            return config[key]
    return default


def _dims(config: dict[str, Any]) -> dict[str, Any]:
    """The dimensions that matter, under the names the common config classes give them."""
    cfg = _text_config(config)
    hidden = int(_first(cfg, "hidden_size", "n_embd", "d_model", "dim"))
    heads = int(_first(cfg, "num_attention_heads", "n_head", "num_heads"))
    kv_heads = _first(cfg, "num_key_value_heads", "num_kv_heads", "n_head_kv")
    if kv_heads is None:
        kv_heads = 1 if cfg.get("multi_query") else heads
    experts = int(_first(cfg, "num_local_experts", "num_experts", "n_routed_experts", default=1) or 1)
    return {
        "model_type": str(cfg.get("model_type", "")),
        "vocab": int(_first(cfg, "vocab_size", "padded_vocab_size")),
        "hidden": hidden,
        "intermediate": int(
            _first(cfg, "moe_intermediate_size" if experts > 1 else "intermediate_size", "intermediate_size")
            or _first(cfg, "n_inner", "ffn_dim", "ffn_hidden_size", default=4 * hidden)
        ),
        "layers": int(_first(cfg, "num_hidden_layers", "n_layer", "num_layers", "n_layers")),
        "heads": heads,
        "kv_heads": int(kv_heads),
        "head_dim": int(_first(cfg, "head_dim", default=hidden // heads)),
        "tied": cfg.get("tie_word_embeddings"),
        "experts": experts,
        "experts_per_token": int(_first(cfg, "num_experts_per_tok", "top_k", default=1) or 1),
    }


def shape_from_config(config: dict[str, Any]) -> ModelShape:
    """Count a Llama-style decoder's parameters from its config.json."""
    try:
        d = _dims(config)
    except (TypeError, ValueError, ZeroDivisionError) as exc:
        raise ValueError(f"config.json lacks the sizes needed ({exc})") from None
    notes = []
    tied = d["tied"]
    if tied is None:
        tied = False
        notes.append("config.json does not say whether embeddings are tied: assumed untied")
    h, i, hd = d["hidden"], d["intermediate"], d["head_dim"]
    q_out, kv_out = d["heads"] * hd, d["kv_heads"] * hd
    gated = d["model_type"] not in NON_GATED
    linears: list[Linear] = []
    for n in range(d["layers"]):
        attn = f"model.layers.{n}.self_attn"
        mlp = f"model.layers.{n}.mlp"
        linears += [
            Linear(f"{attn}.q_proj", h, q_out),
            Linear(f"{attn}.k_proj", h, kv_out),
            Linear(f"{attn}.v_proj", h, kv_out),
            Linear(f"{attn}.o_proj", q_out, h),
        ]
        for e in range(d["experts"]):
            prefix = f"{mlp}.experts.{e}" if d["experts"] > 1 else mlp
            if gated:
                linears.append(Linear(f"{prefix}.gate_proj", h, i))
            linears += [Linear(f"{prefix}.up_proj", h, i), Linear(f"{prefix}.down_proj", i, h)]
    router = d["layers"] * h * d["experts"] if d["experts"] > 1 else 0
    norms = d["layers"] * 2 * h
    layer_params = sum(lin.params for lin in linears) + norms + router
    embed = d["vocab"] * h
    head = 0 if tied else d["vocab"] * h
    other = h  # the final norm
    return ModelShape(
        source="config.json",
        total_params=embed + head + layer_params + other,
        embed_params=embed,
        head_params=head,
        layer_params=layer_params,
        other_params=other,
        num_layers=d["layers"],
        hidden=h,
        intermediate=i,
        heads=d["heads"],
        kv_heads=d["kv_heads"],
        head_dim=hd,
        vocab=d["vocab"],
        tied=tied,
        experts_per_token=min(d["experts_per_token"], d["experts"]),
        linears=tuple(linears),
        notes=tuple(notes),
    )


def shape_from_safetensors(config: dict[str, Any], files: list[Path]) -> ModelShape | None:
    """Exact counts from the safetensors headers; None if the weights are stored quantized."""
    d = _dims(config)
    embed = head = layers = other = 0
    linears: list[Linear] = []
    for path in files:
        for name, info in read_safetensors_header(path).items():
            if info.get("dtype") not in _FLOAT_DTYPES:
                return None  # packed/quantized weights: the shapes do not count parameters
            shape = info.get("shape") or []
            n = math.prod(shape)
            if "lm_head" in name or name.endswith(("score.weight", "embed_out.weight")):
                head += n
            elif _LAYER.search(name):
                layers += n
                if len(shape) == 2 and name.endswith(".weight"):
                    linears.append(Linear(name.removesuffix(".weight"), int(shape[1]), int(shape[0])))
            elif len(shape) == 2 and shape[0] >= d["vocab"] and ("embed" in name or "wte" in name):
                embed += n
            else:
                other += n
    if not embed and not layers:
        return None
    return ModelShape(
        source="safetensors",
        total_params=embed + head + layers + other,
        embed_params=embed,
        head_params=head,
        layer_params=layers,
        other_params=other,
        num_layers=d["layers"],
        hidden=d["hidden"],
        intermediate=d["intermediate"],
        heads=d["heads"],
        kv_heads=d["kv_heads"],
        head_dim=d["head_dim"],
        vocab=d["vocab"],
        tied=head == 0,
        experts_per_token=min(d["experts_per_token"], d["experts"]),
        linears=tuple(linears),
    )


def model_shape(model_dir: Path) -> ModelShape:
    """The shape of the model in `model_dir` (its config.json, and safetensors headers if present)."""
    config_file = model_dir / "config.json"
    try:
        config = json.loads(config_file.read_text())
    except (OSError, ValueError) as exc:
        raise NotFoundError(f"cannot read {config_file}: {exc}", field="model.name") from None
    files = [f for f in _safetensors_files(model_dir) if f.is_file()]
    if files:
        try:
            shape = shape_from_safetensors(config, files)
        except (OSError, ValueError, KeyError, TypeError, struct.error):
            shape = None
        if shape is not None:
            return shape
    try:
        return shape_from_config(config)
    except ValueError as exc:
        raise NotFoundError(f"{config_file}: {exc}", field="model.name") from None


def locate_config(model: str, ws: Workspace, revision: str | None = None) -> Path:
    """The directory holding the model's config.json: local, a run's base, or the hub cache (no download)."""
    local = Path(model).expanduser()
    if local.is_absolute() and (local / "config.json").is_file():
        return local  # (resolve_model would take an absolute path for a run id: ws.runs / "/x" is "/x")
    ref = resolve_model(model, ws, field="model.name")
    path = ref.path
    if ref.adapter:
        if not ref.base:
            raise NotFoundError(f"the adapter at {ref.path} does not name its base model", field="model.name")
        from tui_ft.modelref import adapter_chain

        root, _ = adapter_chain(ref.base)  # an adapter trained on another adapter: the model under both
        base = Path(root).expanduser()
        if base.is_dir():
            return base
        path = root
    elif ref.local:
        return Path(path)
    try:
        from huggingface_hub import try_to_load_from_cache

        cached = try_to_load_from_cache(path, "config.json", revision=revision)
    except Exception:  # noqa: BLE001 - a malformed id or a broken cache: same answer for the user
        cached = None
    if isinstance(cached, str):
        return Path(cached).parent
    raise NotFoundError(
        f"{path}'s config.json is not in the local Hugging Face cache",
        field="model.name",
        hint=f"fetch it once: huggingface-cli download {path} config.json",
    )


# ---------------------------------------------------------------------------------------------------
# the estimate


def _matches(target: str | list[str], lin: Linear) -> bool:
    """peft's rule: a list matches a module's last name part(s); a string is a regex on the full name."""
    if target == "all-linear":
        return True
    if isinstance(target, str):
        return re.fullmatch(target, lin.name) is not None
    return any(lin.name == t or lin.name.endswith("." + t) for t in target)


def _optimizer(optim: str, param_bytes: int, trainable: int, hidden: int) -> tuple[int, str]:
    """Bytes of optimizer state for `trainable` parameters stored in `param_bytes` each."""
    name = optim.lower()
    if name in ("sgd", "lomo", "adalomo"):
        return 0, f"{optim}: no per-parameter state"
    if "adafactor" in name:
        # factored second moment: a row and a column vector per matrix, ~ 2/hidden of the parameters
        return int(trainable * 4 * 2 / max(hidden, 1)), f"{optim}: factored second moment (rows + columns)"
    moments = 3 if "ademamix" in name else 1 if any(k in name for k in ("lion", "rmsprop", "adagrad")) else 2
    if "8bit" in name:
        per = 1.0
        kind = "8-bit"
    elif "4bit" in name:
        per = 0.5
        kind = "4-bit"
    elif name.startswith(("adamw_torch", "adamw_anyprecision", "sgd", "adagrad")) or name == "rmsprop":
        per = float(param_bytes)
        kind = {4: "float32", 2: "16-bit"}.get(param_bytes, f"{param_bytes}-byte")
    else:
        per = 4.0
        kind = "float32"
    total = int(trainable * moments * per)
    return total, f"{optim}: {moments} {kind} moment{'s' if moments > 1 else ''} x {format_count(trainable)}"


@functools.cache
def trl_fuses_lm_head() -> bool:
    """Whether the installed TRL computes log-probs through its chunked LM head (never imports trl)."""
    from importlib import metadata

    try:
        files = metadata.distribution("trl").files or []
    except metadata.PackageNotFoundError:
        return False
    return any(str(f).replace("\\", "/").endswith("trl/kernels/chunked_logprob.py") for f in files)


def _trl_default(method: str, key: str, ws: Workspace) -> Any:
    """TRL's default for `key` from the cached field table if there is one (never imports trl)."""
    from tui_ft.training_fields import _cache_file, training_fields

    try:
        if _cache_file(ws.cache).exists():
            fields = training_fields(method, cache_dir=ws.cache)
            if key in fields:
                return fields[key].default
    except (OSError, ValueError, KeyError, ImportError):
        pass
    if key == "beta":
        return BETA_DEFAULTS.get(method, 0.0)
    if key == "num_generations":
        return 8 if method == "grpo" else 2
    return TRL_DEFAULTS.get(key)


def _gpu_status() -> GpuStatus:
    from tui_ft.monitor.system import GpuSampler

    with GpuSampler() as sampler:
        return sampler.sample()


def _setting(recipe: Recipe, workspace: Workspace, key: str) -> Any:
    """A training setting from the recipe, else TRL's default for the method."""
    training = recipe.training
    return training[key] if key in training else _trl_default(recipe.method, key, workspace)


@dataclass(frozen=True)
class _Plan:
    """What every part of the estimate reads: the recipe under its method, what trains, the batch."""

    recipe: Recipe
    workspace: Workspace
    shape: ModelShape
    on_gpu: bool
    assumptions: list[str]  # notes for the reader, in the order they were made; parts add theirs
    dtype: str  # the weights' dtype (model.dtype, auto resolved)
    half_compute: bool  # activations in 16 bits (bf16/fp16 weights or mixed precision)
    total: int  # parameters of the model under the method
    trainable: int
    train_bytes: int  # bytes per trainable parameter (and per gradient)
    train_what: str
    adapted: list[Linear]  # the Linear modules an adapter wraps
    batch: int
    seq: int  # prompt tokens per sequence (plus virtual tokens)
    completion: int  # generated tokens per sequence (GRPO/RLOO)

    @property
    def method(self) -> str:
        return self.recipe.method

    @property
    def kind(self) -> str:
        return self.recipe.adapter.type

    @property
    def quant(self) -> str:
        return self.recipe.model.quantization

    @property
    def wbytes(self) -> int:
        return DTYPE_BYTES[self.dtype]

    @property
    def abytes(self) -> int:
        return 2 if self.half_compute else 4

    @property
    def rows(self) -> int:
        """Sequences per batch: pairs (chosen and rejected) count twice."""
        return self.batch * (2 if self.method in PAIRED_METHODS else 1)

    @property
    def seq_total(self) -> int:
        return self.seq + self.completion

    @property
    def tokens(self) -> int:
        return self.rows * self.seq_total

    def setting(self, key: str) -> Any:
        return _setting(self.recipe, self.workspace, key)


def _precision(recipe: Recipe, on_gpu: bool, assumptions: list[str]) -> tuple[str, bool]:
    """The weights' dtype and whether compute runs in 16 bits, as the engine chooses them."""
    training = recipe.training
    dtype = recipe.model.dtype
    if dtype == "auto":
        dtype = "bfloat16" if on_gpu else "float32"
        assumptions.append(
            f"model.dtype auto: {dtype} ({'assuming a bf16-capable GPU' if on_gpu else 'no GPU here'})"
        )
    half_compute = DTYPE_BYTES[dtype] == 2 or bool(training.get("bf16")) or bool(training.get("fp16"))
    if dtype == "float32" and on_gpu and "bf16" not in training and "fp16" not in training:
        half_compute = True  # the engine turns bf16 mixed precision on where the GPU has it
    return dtype, half_compute


def _method_size(recipe: Recipe, shape: ModelShape) -> tuple[int, int]:
    """(parameters, head parameters) under the method: a reward model swaps the LM head for a
    one-logit score head, a classifier for one with a logit per class."""
    outputs = SCORE_HEAD_OUTPUTS.get(recipe.method)
    if outputs is not None:
        return shape.total_params - shape.head_params + shape.hidden * outputs, shape.hidden * outputs
    return shape.total_params, shape.head_params


def _trainable(
    recipe: Recipe, shape: ModelShape, wbytes: int, assumptions: list[str]
) -> tuple[int, int, str, list[Linear]]:
    """What trains under the adapter: (parameters, bytes per parameter, in words, adapted modules)."""
    adapter, kind = recipe.adapter, recipe.adapter.type
    total, head = _method_size(recipe, shape)
    adapted = [lin for lin in shape.linears if _matches(adapter.target_modules, lin)]
    if kind == "full":
        return total, wbytes, "every parameter", adapted
    if recipe.method == "classify":
        assumptions.append(f"classify: assuming {SCORE_HEAD_OUTPUTS['classify']} classes for the head")
    if kind == "freeze" and recipe.method == "classify" and adapter.trainable_layers == 0:
        return head, wbytes, "the classification head only (backbone frozen)", adapted
    if kind == "freeze":
        lm_head_trainable = head if head else shape.embed_params  # tied: the embeddings are the head
        layers_trained = min(adapter.trainable_layers, shape.num_layers)
        per_layer = shape.layer_params // max(shape.num_layers, 1)
        trainable = per_layer * layers_trained + lm_head_trainable + shape.other_params
        return trainable, wbytes, f"last {layers_trained} block(s) + final norm + head", adapted
    if kind in ("lora", "dora"):
        trainable = sum(adapter.r * (lin.in_features + lin.out_features) for lin in adapted)
        if kind == "dora":
            trainable += sum(lin.out_features for lin in adapted)
        if not adapted:
            assumptions.append(f"adapter.target_modules {adapter.target_modules!r} matches no Linear module")
        if recipe.method in SCORE_HEAD_OUTPUTS:
            trainable += head  # the new score head trains too (modules_to_save)
        return trainable, 4, f"r={adapter.r} on {len(adapted)} modules", adapted
    # prompt_tuning
    trainable = adapter.num_virtual_tokens * shape.hidden
    return trainable, 4, f"{adapter.num_virtual_tokens} virtual tokens x {shape.hidden}", adapted


def _sequence(recipe: Recipe, workspace: Workspace, assumptions: list[str]) -> tuple[int, int]:
    """(prompt, completion) tokens per sequence: every one data.max_length long, the worst case."""
    seq = recipe.data.max_length
    if seq is None:
        seq = 1024
        assumptions.append("data.max_length not set: assuming 1024 tokens")
    if recipe.adapter.type == "prompt_tuning":
        seq += recipe.adapter.num_virtual_tokens
    completion = 0
    if recipe.method in GENERATING_METHODS:
        completion = int(_setting(recipe, workspace, "max_completion_length") or 512)
    return seq, completion


def _plan(recipe: Recipe, workspace: Workspace, shape: ModelShape, on_gpu: bool) -> _Plan:
    assumptions = list(shape.notes)
    dtype, half_compute = _precision(recipe, on_gpu, assumptions)
    trainable, train_bytes, train_what, adapted = _trainable(recipe, shape, DTYPE_BYTES[dtype], assumptions)
    batch = int(_setting(recipe, workspace, "per_device_train_batch_size") or 1)
    seq, completion = _sequence(recipe, workspace, assumptions)
    return _Plan(
        recipe=recipe,
        workspace=workspace,
        shape=shape,
        on_gpu=on_gpu,
        assumptions=assumptions,
        dtype=dtype,
        half_compute=half_compute,
        total=_method_size(recipe, shape)[0],
        trainable=trainable,
        train_bytes=train_bytes,
        train_what=train_what,
        adapted=adapted,
        batch=batch,
        seq=seq,
        completion=completion,
    )


def _weights(plan: _Plan) -> MemoryPart:
    """The model's weights (quantized or not), plus an adapter's own weights."""
    shape, total, quant = plan.shape, plan.total, plan.quant
    if quant == "none":
        weights = total * plan.wbytes
        weights_why = f"{format_count(total)} params x {plan.wbytes} B ({plan.dtype})"
    else:
        qparams = shape.quantizable_params
        rest = total - qparams
        if quant == "4bit":
            qbytes = qparams * NF4_BYTES
            qwhy = "NF4 4-bit + double-quant scales"
        else:
            qbytes = qparams + 4 * sum(lin.out_features for lin in shape.linears)
            qwhy = "int8 + fp32 row scales"
        weights = int(qbytes + rest * 4)
        weights_why = f"{format_count(qparams)} {qwhy}; {format_count(rest)} others in fp32 (k-bit prep)"
    if plan.kind in ("lora", "dora", "prompt_tuning"):
        weights += plan.trainable * plan.train_bytes
    return MemoryPart("weights", "weights", int(weights), weights_why)


def _gradients(plan: _Plan) -> MemoryPart:
    """One gradient per trainable parameter."""
    return MemoryPart(
        "gradients",
        "gradients",
        plan.trainable * plan.train_bytes,
        f"{format_count(plan.trainable)} trainable ({plan.train_what}) x {plan.train_bytes} B",
    )


def _optimizer_state(plan: _Plan) -> MemoryPart:
    """The optimizer's per-parameter state (`training.optim`)."""
    optim = str(plan.setting("optim") or "adamw_torch")
    opt_bytes, opt_why = _optimizer(optim, plan.train_bytes, plan.trainable, plan.shape.hidden)
    return MemoryPart("optimizer", "optimizer", opt_bytes, opt_why)


def _adapter_activations_per_token(plan: _Plan) -> int:
    """What LoRA/DoRA modules keep per token in the block that has the most of them."""
    adapter = plan.recipe.adapter
    per_layer_adapted: dict[int, int] = {}
    for lin in plan.adapted:
        m = _LAYER.search("." + lin.name + ".")
        extra = lora_module_bytes_per_token(
            lin,
            adapter.r,
            plan.abytes,
            dora=plan.kind == "dora",
            dropout=adapter.dropout > 0,
            input_cast=plan.half_compute,
        )
        layer = int(m.group(1)) if m else 0
        per_layer_adapted[layer] = per_layer_adapted.get(layer, 0) + extra
    return max(per_layer_adapted.values(), default=0)


def block_bytes_per_token(
    hidden: int,
    kv_dim: int,
    intermediate: int,
    abytes: int,
    *,
    norms_train: bool = True,
    linears_read: bool = True,
) -> int:
    """What autograd keeps per token for one Llama-style block (memory-efficient attention).

    Each RMSNorm keeps a float32 copy of its input (the input itself in float32), and its normalised
    input when its weight trains (`norms_train`); attention keeps q and k after RoPE, v and its output
    (2 hidden + 2 kv); the gated MLP keeps the gate's output, its activation and up's output
    (3 x intermediate). The inputs of the Linear modules (each norm's output, the MLP's product) are
    kept when their weights train or an adapter reads them (`linears_read`); a frozen Linear needs
    only its weight for the backward pass."""
    norms = 2 * (4 + abytes * (int(norms_train) + int(linears_read))) * hidden
    attention = abytes * (2 * hidden + 2 * kv_dim)
    mlp = (3 + int(linears_read)) * abytes * intermediate
    return norms + attention + mlp


def lora_module_bytes_per_token(
    lin: Linear, r: int, abytes: int, *, dora: bool = False, dropout: bool = False, input_cast: bool = False
) -> int:
    """What one LoRA/DoRA-wrapped Linear keeps per token beside the base Linear's own input.

    LoRA: A's output (r) for B. `input_cast`: the input cast to the adapter's float32 weights (16-bit
    compute: under autocast a 16-bit copy, one per module even where q, k, v share an input).
    DoRA also keeps the base Linear's output recomputed for the magnitude and the LoRA branch's
    output (2 x out_features). Dropout > 0: the dropped copy of the input and its mask."""
    extra = abytes * r
    if input_cast:
        extra += abytes * lin.in_features
    if dora:
        extra += 2 * abytes * lin.out_features
    if dropout:
        extra += (abytes + 1) * lin.in_features
    return extra


def logits_bytes(tokens: int, width: int, hidden: int, abytes: int, *, fused: bool, on_gpu: bool) -> int:
    """What the LM head and the loss hold at their peak for `tokens` positions of `width` logits.

    `fused` (TRL's chunked log-prob head, SFT/DPO/KTO/GRPO/RLOO): the logits are never materialised;
    one tile of at most 4,096 tokens x 32,768 vocabulary entries at a time, plus the float32 gradient
    of the hidden states. On a GPU the tile is the matmul buffer alone (Triton folds it in place);
    on a CPU torch's fallback also holds 7 float32 temporaries and a boolean mask per tile element
    in the backward pass (compute + 29 bytes). Otherwise the logits in the compute dtype, upcast to
    float32 for the loss, and the log-softmax kept for backward (compute + 8 bytes per logit)."""
    if not fused:
        return tokens * width * (abytes + 8)
    tile = min(tokens, FUSED_TILE_TOKENS) * min(width, FUSED_TILE_VOCAB)
    per_element = abytes if on_gpu else abytes + 29
    return tile * per_element + tokens * hidden * 4


def _activations(plan: _Plan) -> MemoryPart:
    """What autograd keeps for the backward pass: the trained blocks' activations and the logits."""
    shape, abytes, tokens, seq_total = plan.shape, plan.abytes, plan.tokens, plan.seq_total
    training, adapter, kind = plan.recipe.training, plan.recipe.adapter, plan.kind
    h, kv, i = shape.hidden, shape.kv_dim, shape.intermediate * shape.experts_per_token
    per_token_layer = block_bytes_per_token(
        h, kv, i, abytes, norms_train=kind in ("full", "freeze"), linears_read=kind != "prompt_tuning"
    )
    if kind in ("lora", "dora"):
        per_token_layer += _adapter_activations_per_token(plan)
    eager = plan.recipe.model.attn_implementation == "eager"
    per_layer_eager = plan.rows * shape.heads * seq_total * seq_total * 2 * abytes if eager else 0
    trained_layers = min(adapter.trainable_layers, shape.num_layers) if kind == "freeze" else shape.num_layers
    checkpointing = bool(training.get("activation_checkpointing", training.get("gradient_checkpointing")))
    full_layer = tokens * per_token_layer + per_layer_eager
    if checkpointing and trained_layers:
        layer_acts = trained_layers * tokens * h * abytes + full_layer
        ckpt_why = "checkpointed: block inputs + 1 block"
    else:
        layer_acts = trained_layers * full_layer
        ckpt_why = f"{trained_layers} block(s) kept"
    logit_width = SCORE_HEAD_OUTPUTS.get(plan.method, shape.vocab)
    fused = plan.method in FUSED_HEAD_METHODS and trl_fuses_lm_head()
    logits = logits_bytes(tokens, logit_width, h, abytes, fused=fused, on_gpu=plan.on_gpu)
    final_norm = tokens * (4 + (2 if kind in ("full", "freeze") else 1) * abytes) * h
    if plan.method in PAIRED_METHODS:
        plan.assumptions.append(f"{plan.method}: chosen and rejected run together (batch x 2)")
    return MemoryPart(
        "activations",
        "activations",
        int(layer_acts + final_norm + logits),
        f"{plan.rows} x {seq_total} tokens, {ckpt_why}; "
        + (f"LM head in tiles {format_bytes(logits)}" if fused else f"logits {format_bytes(logits)}")
        + ("; eager attention seq^2" if eager else ""),
    )


def _head_gradient(plan: _Plan) -> int:
    """Bytes of the gradient of the output head when it trains (filled first in the backward pass)."""
    if plan.kind == "prompt_tuning" or (
        plan.kind in ("lora", "dora") and plan.method not in SCORE_HEAD_OUTPUTS
    ):
        return 0
    head = _method_size(plan.recipe, plan.shape)[1] or plan.shape.embed_params  # tied: the embeddings
    return min(head, plan.trainable) * plan.train_bytes


def _overlap(plan: _Plan, gradients: MemoryPart, activations: MemoryPart) -> MemoryPart | None:
    """The backward pass frees each block's activations as it fills that block's gradients, so the
    peak holds weights + optimizer + max(activations + the head's gradient, gradients), not both sums.
    None when nothing overlaps."""
    overlap = min(gradients.bytes - _head_gradient(plan), activations.bytes)
    if overlap <= 0:
        return None
    return MemoryPart(
        "overlap",
        "freed in backward",
        -overlap,
        "gradients fill as the backward pass frees activations: the peak holds the larger of the two",
    )


def _reference(plan: _Plan) -> MemoryPart | None:
    """The reference model DPO, KTO, GRPO and RLOO compare with; None for methods without one."""
    method, kind = plan.method, plan.kind
    if method not in REFERENCE_METHODS:
        return None
    beta = plan.setting("beta")
    precompute = method in ("dpo", "kto") and bool(plan.setting("precompute_ref_log_probs"))
    if method in GENERATING_METHODS and not beta:
        ref_bytes, ref_why = 0, "beta = 0: no reference model"
    elif kind in ("lora", "dora", "prompt_tuning"):
        ref_bytes, ref_why = 0, "the base with the adapter disabled (no copy)"
    elif precompute:
        ref_bytes, ref_why = 0, "log-probs precomputed before training (no copy kept)"
    else:
        ref_bytes, ref_why = (
            plan.total * plan.wbytes,
            f"a second copy of the weights ({plan.dtype}), no gradients",
        )
    return MemoryPart("reference", "reference", ref_bytes, ref_why)


def _generation(plan: _Plan) -> MemoryPart | None:
    """The KV cache of the completions GRPO/RLOO generate; None for the other methods."""
    if plan.method not in GENERATING_METHODS:
        return None
    steps = plan.setting("steps_per_generation") or plan.setting("gradient_accumulation_steps") or 1
    sequences = plan.batch * int(steps)
    kv_bytes = 2 * plan.shape.num_layers * plan.shape.kv_dim * plan.abytes * sequences * plan.seq_total
    if plan.recipe.training.get("use_vllm"):
        plan.assumptions.append("use_vllm: vLLM's own memory is not included")
    return MemoryPart(
        "generation",
        "KV cache",
        int(kv_bytes),
        f"{sequences} sequences x {plan.seq} prompt + {plan.completion} completion tokens",
    )


def _sharded(plan: _Plan, parts: list[MemoryPart]) -> list[MemoryPart]:
    """The parts divided over the processes where DeepSpeed ZeRO or FSDP splits them."""
    launcher = plan.recipe.launcher
    machines, n = launcher.world()
    if n <= 1:
        return parts
    config = launcher.config
    world = f"world size {n}" + (f": {machines} machines x {n // machines}" if machines > 1 else "")
    plan.assumptions.append(f"per device, {world}")
    sharded = {
        "deepspeed-zero2": ("gradients", "optimizer"),
        "deepspeed-zero3": ("weights", "gradients", "optimizer", "reference"),
        "fsdp": ("weights", "gradients", "optimizer", "reference"),
    }.get(config, ())
    if sharded:
        return [
            MemoryPart(p.key, p.label, p.bytes // n, p.explanation + f" / {n} ({config}, {world})")
            if p.key in sharded
            else p
            for p in parts
        ]
    if config == "ddp":
        plan.assumptions.append(f"ddp: each of the {n} processes ({world}) holds everything")
    return parts


def _runtime(plan: _Plan, subtotal: int) -> MemoryPart:
    """The runtime's margin over the other parts: CUDA context, allocator slack, transient copies."""
    shape, kind = plan.shape, plan.kind
    runtime = int(subtotal * FRAGMENTATION) + (CUDA_CONTEXT if plan.on_gpu else 0)
    runtime_why = "10% allocator slack" + (" + CUDA context ~0.75 GiB" if plan.on_gpu else "")
    if plan.quant == "4bit" or kind == "dora":
        biggest = max((lin.params for lin in shape.linears), default=0)
        runtime += biggest * plan.abytes * (2 if kind == "dora" else 1)
        runtime_why += "; one dequantized/merged matrix at a time"
    if plan.dtype == "float32" and plan.half_compute and plan.quant == "none":
        runtime += plan.total * 2
        runtime_why += "; autocast's 16-bit weight copies"
    return MemoryPart("runtime", "runtime", runtime, runtime_why)


def _device(plan: _Plan, gpu: GpuStatus) -> tuple[int | None, str]:
    """The memory to compare with (the smallest GPU the run uses) and its name; None without a GPU."""
    if not plan.on_gpu:
        if gpu.reason:
            plan.assumptions.append(f"GPU: {gpu.reason}")
        return None, "no GPU detected to compare with"
    launcher = plan.recipe.launcher
    if launcher.type == "slurm" or launcher.hosts:
        where = "the Slurm job's nodes" if launcher.type == "slurm" else "the hosts in launcher.hosts"
        return None, f"the run trains on {where}: compare with their GPUs (this machine's are not used)"
    wanted = launcher.gpus
    gpus = [g for g in gpu.gpus if wanted is None or g.index in wanted] or list(gpu.gpus)
    known = [g for g in gpus if g.memory_total_mb]
    if not known:
        return None, "the GPU does not report its memory"
    smallest = min(known, key=lambda g: g.memory_total_mb or 0)
    return int((smallest.memory_total_mb or 0) * 1024 * 1024), f"GPU {smallest.index} {smallest.name}"


def estimate_memory(
    recipe: Recipe,
    workspace: Workspace,
    *,
    gpu: GpuStatus | None = None,
    shape: ModelShape | None = None,
) -> MemoryEstimate:
    """Estimate the per-device memory `recipe` needs (see the module docstring for the formula).

    `gpu` is the NVML view to compare with (sampled when not given); `shape` skips reading the model.
    Raises NotFoundError (a user error) when the model or its config.json cannot be found.
    """
    if gpu is None:
        gpu = _gpu_status()
    if shape is None:
        shape = model_shape(locate_config(recipe.model.name, workspace, recipe.model.revision))
    plan = _plan(recipe, workspace, shape, on_gpu=gpu.available and bool(gpu.gpus))

    parts = [_weights(plan), _gradients(plan), _optimizer_state(plan), _activations(plan)]
    parts += [part for part in (_reference(plan), _generation(plan)) if part is not None]
    parts = _sharded(plan, parts)
    by_key = {p.key: p for p in parts}
    overlap = _overlap(plan, by_key["gradients"], by_key["activations"])
    if overlap is not None:
        parts.insert(4, overlap)
    parts.append(_runtime(plan, sum(p.bytes for p in parts)))
    device_bytes, device = _device(plan, gpu)

    quant = recipe.model.quantization
    return MemoryEstimate(
        model=recipe.model.name,
        model_source=shape.source,
        total_params=plan.total,
        trainable_params=plan.trainable,
        dtype=plan.dtype + (f" + {quant}" if quant != "none" else ""),
        batch=plan.batch,
        seq_len=plan.seq_total,
        parts=tuple(parts),
        device=device,
        device_bytes=device_bytes,
        assumptions=tuple(plan.assumptions),
    )


# ---------------------------------------------------------------------------------------------------
# padding: how much of a padded batch would be pad tokens (SFT)


def describe_padding(
    lengths: list[int], batch: int, max_length: int | None, packing: bool, *, sampled: bool
) -> str:
    """One line for the estimate: the share of a padded batch of `batch` rows (cut at `max_length`) that
    would be pad tokens, for examples of these token `lengths`, and whether the run pads at all (packed,
    padding-free SFT has next to none). `sampled`: only the file's first rows were measured."""
    if not lengths:
        return "padding: no row of the data could be measured"
    share = padding_share(lengths, batch, max_length)
    cut = f"max_length {max_length}" if max_length else "no max_length"
    rows = f"{'first ' if sampled else ''}{len(lengths):,} row{'s' if len(lengths) != 1 else ''}"
    if packing:  # (short words: the estimate's pane is about 28 columns at 80x24)
        return f"padding: ~0% (packing on); padded batches of {batch}, {cut}, would be {share:.0%} padding ({rows})"
    return f"padding: {share:.0%} of a padded batch (batch {batch}, {cut}); packing off ({rows})"
