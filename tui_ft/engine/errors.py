"""Translating exceptions from torch, transformers, peft, bitsandbytes and the OS for people.

`translate_exception` turns whatever the stack raised into a `WorkFailed` with a `kind`, one
sentence and a concrete fix naming recipe keys. It only reads the exception: the caller logs the
traceback to the run's log. Library types are looked up only in modules already imported (an
exception from a module never imported cannot exist), so neither importing this module nor
translating imports torch; where a type is not available, the message decides.
"""

from __future__ import annotations

import errno
import re
import sys
from collections.abc import Callable, Iterator

from tui_ft.errors import UserError, WorkFailed

KINDS = (
    "oom",
    "no_cuda",
    "chat_template",
    "model_not_found",
    "disk_full",
    "bitsandbytes",
    "nan",
    "diverged",
    "interrupted",
    "reward_function",
    "error",
)

OOM_HINT = (
    "lower `training.per_device_train_batch_size` and raise `training.gradient_accumulation_steps` "
    "to keep the effective batch, set `training.activation_checkpointing: true`, use QLoRA "
    "(`model.quantization: 4bit` with a LoRA adapter), or shorten `data.max_length`"
)
NO_CUDA_HINT = (
    "to train on the CPU set `training.bf16: false` and `training.fp16: false` "
    "(and `training.use_cpu: true`); for a GPU, install an NVIDIA driver and a CUDA build of torch "
    "(check with `tui-ft sysinfo`)"
)
CHAT_TEMPLATE_HINT = (
    "set one with `model.chat_template` in the recipe, or use a base-format dataset "
    "(`text`, or `prompt`/`completion` columns) that needs no template"
)
TEMPLATE_RENDER_HINT = (
    "check that the messages' roles and order are what this template accepts, "
    "or set another with `model.chat_template`"
)
MODEL_HINT = (
    "check `model.name` (a workspace model, a local directory with config.json, a run id, or a hub id); "
    "`tui-ft demo` builds the demo model `demo-tiny`"
)
OFFLINE_HINT = (
    "download the model while online (it is then cached), or point `model.name` at a local directory"
)
GATED_HINT = "accept the model's licence on its hub page, then log in with `hf auth login`"
DISK_HINT = (
    "free space on that disk, keep fewer checkpoints with `training.save_total_limit`, "
    "or move the workspace ($TUI_FT_HOME) to a larger disk"
)
BNB_HINT = (
    "install a working build with `pip install -U 'bitsandbytes>=0.50'` (check with `tui-ft sysinfo`), "
    "or remove `model.quantization` to train without quantization"
)
NAN_HINT = (
    "lower `training.learning_rate`, keep `training.max_grad_norm` at 1.0 or below, use bf16 or fp32 "
    "instead of fp16, and check the data for empty or label-less examples"
)
INTERRUPTED_HINT = "resume it from its last checkpoint with `tui-ft resume RUN`"
PEFT_TARGETS_HINT = "set `adapter.target_modules` to names of linear layers in this model, or `all-linear`"


class LossNotFinite(ArithmeticError):
    """Training loss became NaN or infinite; raised by tui-ft's own watchdog."""

    def __init__(self, value: float, step: int | None = None) -> None:
        where = f" at step {step}" if step is not None else ""
        super().__init__(f"loss became {value}{where}")
        self.value = value
        self.step = step


def first_line(text: str, limit: int = 300) -> str:
    """The first non-empty line of `text`, cut to `limit` characters."""
    for line in str(text).splitlines():
        line = line.strip()
        if line:
            return line if len(line) <= limit else line[: limit - 1].rstrip() + "…"
    return ""


def _sentence(text: str) -> str:
    text = text.strip()
    return text if not text or text[-1] in ".!?…" else text + "."


def _chain(exc: BaseException) -> Iterator[BaseException]:
    """The exception and what it was explicitly raised from (`raise ... from`), outermost first."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen and len(seen) < 8:
        seen.add(id(current))
        yield current
        current = current.__cause__


def _is_instance(exc: BaseException, module: str, name: str) -> bool:
    """isinstance against `module.name` if that module is already imported (never imports, never raises)."""
    cls = getattr(sys.modules.get(module), name, None)
    return isinstance(cls, type) and isinstance(exc, cls)


def _gib(num_bytes: int) -> str:
    return f"{num_bytes / 1024**3:.2f} GiB"


# --- one function per kind: each returns a WorkFailed or None ------------------------------------


def _oom(exc: BaseException) -> WorkFailed | None:
    text = str(exc)
    gpu = _is_instance(exc, "torch", "OutOfMemoryError") or bool(
        re.search(r"\b(CUDA|HIP|XPU|MPS backend) out of memory", text)
    )
    if gpu:
        asked = re.search(r"Tried to allocate ([\d.]+ [KMGT]i?B)", text)
        detail = f" (tried to allocate {asked.group(1)})" if asked else ""
        return WorkFailed(f"Out of GPU memory{detail}.", kind="oom", hint=OOM_HINT)
    cpu = "DefaultCPUAllocator: can't allocate memory" in text
    if cpu or isinstance(exc, MemoryError) or (isinstance(exc, OSError) and exc.errno == errno.ENOMEM):
        asked = re.search(r"tried to allocate (\d+) bytes", text)
        detail = f" (tried to allocate {_gib(int(asked.group(1)))})" if asked else ""
        return WorkFailed(f"Out of RAM{detail}.", kind="oom", hint=OOM_HINT)
    return None


_NO_CUDA_PATTERNS = (
    (
        "Torch not compiled with CUDA enabled",
        "This torch build has no CUDA support, but the run asked for CUDA.",
    ),
    ("Found no NVIDIA driver", "The run asked for CUDA, but no NVIDIA driver was found."),
    ("No CUDA GPUs are available", "The run asked for CUDA, but no GPU is visible."),
    ("CUDA driver initialization failed", "The run asked for CUDA, but the CUDA driver failed to start."),
    ("doesn't support bf16/gpu", "bf16 was asked for, but this machine has no GPU that supports it."),
    ("fp16 mixed precision requires a", "fp16 mixed precision was asked for, but there is no GPU."),
    (
        "bf16 mixed precision requires",
        "bf16 mixed precision was asked for, but this device does not support it.",
    ),
    (
        "Attempting to deserialize object on a CUDA device",
        "The checkpoint holds CUDA tensors, but CUDA is not available here.",
    ),
)


def _no_cuda(exc: BaseException) -> WorkFailed | None:
    text = str(exc)
    for needle, sentence in _NO_CUDA_PATTERNS:
        if needle in text:
            return WorkFailed(sentence, kind="no_cuda", hint=NO_CUDA_HINT)
    return None


def _chat_template(exc: BaseException) -> WorkFailed | None:
    text = str(exc)
    if "chat_template is not set" in text or "does not have a chat template" in text:
        return WorkFailed(
            "The tokenizer has no chat template, so conversational (messages) data cannot be rendered.",
            kind="chat_template",
            hint=CHAT_TEMPLATE_HINT,
        )
    if _is_instance(exc, "jinja2", "TemplateError"):
        kind_of = "is not valid Jinja" if _is_instance(exc, "jinja2", "TemplateSyntaxError") else "failed"
        return WorkFailed(
            _sentence(f"The chat template {kind_of}: {first_line(text) or type(exc).__name__}"),
            kind="chat_template",
            hint=TEMPLATE_RENDER_HINT,
        )
    return None


def _quoted_ref(text: str) -> str | None:
    found = re.search(r": '([^']+)'", text)
    return found.group(1) if found else None


def _looks_like_path(ref: str) -> bool:
    return ref.startswith(("/", "./", "../", "~", ".\\")) or ref.count("/") > 1 or "\\" in ref


def _model_not_found(exc: BaseException) -> WorkFailed | None:
    text = str(exc)
    line = first_line(text)

    def failed(message: str, hint: str = MODEL_HINT) -> WorkFailed:
        return WorkFailed(_sentence(message), kind="model_not_found", hint=hint)

    if _is_instance(exc, "huggingface_hub.errors", "GatedRepoError") or "access a gated repo" in text:
        return failed(
            "The model is gated on the Hugging Face Hub and this machine has no access to it", GATED_HINT
        )
    local_missing = _is_instance(exc, "huggingface_hub.errors", "LocalEntryNotFoundError")
    offline = _is_instance(exc, "huggingface_hub.errors", "OfflineModeIsEnabled")
    if "couldn't connect to" in text or local_missing or offline:
        return failed(
            "The model is not a local directory and not in the download cache, and the Hugging Face Hub "
            "could not be reached (offline)",
            OFFLINE_HINT,
        )
    found = re.search(r"^(.+?) is not a local folder and is not a valid model identifier", line)
    if found or _is_instance(exc, "huggingface_hub.errors", "RepositoryNotFoundError"):
        ref = found.group(1) if found else "The model"
        return failed(f"{ref} is neither a local directory nor a model on the Hugging Face Hub")
    if line.startswith("Repo id must") or _is_instance(exc, "huggingface_hub.errors", "HFValidationError"):
        ref = _quoted_ref(line)
        if ref and _looks_like_path(ref):
            return failed(f"Model directory {ref} does not exist")
        return failed(f"{ref or 'The model name'} is neither a local directory nor a valid hub id")
    found = re.search(r"^(.+?) does not appear to have a file named (\S+?)\.?(?: Checkout|$)", line)
    if found:
        return failed(f"{found.group(1)} has no {found.group(2)}; it is not a complete model directory")
    found = re.search(r"^Unrecognized model in (.+?)\. Should have a `model_type` key", line)
    if found:
        return failed(f"{found.group(1)} is not a model directory (no config.json with a model_type)")
    found = re.search(r"^(.+?) is not a valid git identifier", line)
    if found:
        return failed(f"Revision {found.group(1)} does not exist for this model")
    return None


def _disk_full(exc: BaseException) -> WorkFailed | None:
    errnos = (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC))
    text = str(exc)
    if isinstance(exc, OSError) and exc.errno in errnos:
        where = f" while writing {exc.filename}" if exc.filename else ""
        quota = " (disk quota exceeded)" if exc.errno != errno.ENOSPC else ""
        return WorkFailed(f"The disk is full{quota}{where}.", kind="disk_full", hint=DISK_HINT)
    if "No space left on device" in text or "Disk quota exceeded" in text:
        return WorkFailed("The disk is full.", kind="disk_full", hint=DISK_HINT)
    return None


def _bitsandbytes(exc: BaseException) -> WorkFailed | None:
    text = str(exc)
    if isinstance(exc, ImportError) and (exc.name or "").split(".")[0] == "bitsandbytes":
        return WorkFailed(
            "bitsandbytes is not installed, and quantization (`model.quantization`) needs it.",
            kind="bitsandbytes",
            hint=BNB_HINT,
        )
    module = type(exc).__module__ or ""
    if module.startswith("bitsandbytes") or (
        "bitsandbytes" in text
        and "requires accelerate" not in text
        and isinstance(exc, (ImportError, RuntimeError, NotImplementedError))
    ):
        return WorkFailed(
            _sentence(f"bitsandbytes cannot run here: {first_line(text) or type(exc).__name__}"),
            kind="bitsandbytes",
            hint=BNB_HINT,
        )
    return None


def _nan(exc: BaseException) -> WorkFailed | None:
    if isinstance(exc, LossNotFinite):
        return WorkFailed(_sentence(f"Training diverged: {exc}"), kind="nan", hint=NAN_HINT)
    text = str(exc)
    if re.search(r"returned nan values|loss (is|became|was) (nan|inf)", text, re.IGNORECASE):
        return WorkFailed(_sentence(f"Training diverged: {first_line(text)}"), kind="nan", hint=NAN_HINT)
    return None


def _interrupted(exc: BaseException) -> WorkFailed | None:
    if isinstance(exc, KeyboardInterrupt):
        return WorkFailed("The run was interrupted.", kind="interrupted", hint=INTERRUPTED_HINT)
    return None


def _peft_targets(exc: BaseException) -> WorkFailed | None:
    found = re.search(r"Target modules (.+?) not found in the base model", first_line(str(exc)))
    if found:
        return WorkFailed(
            f"The adapter's target modules {found.group(1)} are not in this model.",
            kind="error",
            hint=PEFT_TARGETS_HINT,
        )
    return None


# Order matters: specific before generic (a MemoryError is not a disk problem; a bitsandbytes
# error that mentions CUDA is about bitsandbytes first).
_RULES: tuple[Callable[[BaseException], WorkFailed | None], ...] = (
    _interrupted,
    _nan,
    _oom,
    _disk_full,
    _chat_template,
    _bitsandbytes,
    _no_cuda,
    _model_not_found,
    _peft_targets,
)


def translate_exception(exc: BaseException) -> WorkFailed:
    """A `WorkFailed` for people from any exception: `kind` (one of KINDS), a sentence and a fix.

    Checks the exception and the ones it was raised `from`. Unrecognised exceptions become
    kind "error" with the type name and the first line of the message. Never raises.
    """
    if isinstance(exc, WorkFailed):
        return exc
    if isinstance(exc, UserError):
        return WorkFailed(_sentence(exc.message), kind="error", hint=exc.hint)
    for link in _chain(exc):
        for rule in _RULES:
            try:
                translated = rule(link)
            except Exception:  # a translator must never hide the error it is translating
                translated = None
            if translated is not None:
                return translated
    detail = first_line(str(exc))
    message = f"{type(exc).__name__}: {detail}" if detail else type(exc).__name__
    return WorkFailed(_sentence(message), kind="error", hint=None)
