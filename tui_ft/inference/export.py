"""Exporting a run's model so that another inference stack loads it.

Three forms, one entry point (`export_run`, behind `tui-ft export` and the export dialog of the Runs and
Chat screens):

- **adapter**: the adapter (or a checkpoint's) copied with its tokenizer, without the trainer's resume
  state. Prompt-tuning adapters only ever export like this: their virtual tokens are inputs put before
  every prompt, not weights, so there is nothing to merge them into.
- **safetensors** (`--merge`): the base loaded in its own dtype, every LoRA/DoRA layer merged into it
  (on the GPU when it has room, else on the CPU), saved as a full model with the tokenizer, the chat
  template and the generation config; it loads with `from_pretrained` and no peft.
- **gguf** (`--format gguf --quant f16|q8_0|bf16|f32`): the merged model written as one GGUF file by the
  `gguf` package (`gguf_export.py`) with an Ollama `Modelfile` beside it, then loaded back through
  transformers and its greedy output compared with the merged model's.

Every export is then loaded back and answers a smoke prompt; its size is measured. The work happens in a
temporary sibling folder renamed into place at the end: a failure (a full disk, out of memory, Ctrl-C)
removes it, so there is never a half-written export. A non-empty `--out` is refused unless it is a
previous export and `force` is given. Heavy imports (torch, transformers, peft, gguf) are lazy.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tui_ft.errors import NotFoundError, UserError, WorkFailed
from tui_ft.modelref import ModelRef, adapter_base, adapter_chain, resolve_model
from tui_ft.runs.registry import find_run
from tui_ft.workspace import Workspace

# Files a trainer checkpoint holds to resume training; an exported model does not need them.
TRAINING_STATE_FILES = (
    "optimizer.pt",
    "scheduler.pt",
    "scaler.pt",
    "trainer_state.json",
    "training_args.bin",
)
TRAINING_STATE_PREFIXES = ("rng_state",)
META_FILE = "tui-ft.json"
FORMATS = ("safetensors", "gguf")
DEVICES = ("auto", "cpu", "cuda")
SMOKE_PROMPT = "Say hello in one short sentence."
SMOKE_TOKENS = 32
VERIFY_PROMPTS = (
    "What is the capital of France?",
    "Write one sentence about the sea.",
    "List three colours.",
)
VERIFY_TOKENS = 16
# peft types whose adapter is virtual tokens (inputs), not weight deltas
PROMPT_LEARNING = ("PROMPT_TUNING", "P_TUNING", "PREFIX_TUNING", "MULTITASK_PROMPT_TUNING", "CPT")
NO_MERGE_SENTENCE = (
    "a {kind} adapter cannot be merged: its virtual tokens are inputs put before every prompt, "
    "not weights of the model"
)
NO_MERGE_HINT = "export it as an adapter (without --merge or --format gguf) and load it with peft on its base"
DTYPES = ("float32", "float16", "bfloat16")

Progress = Callable[[str, float], None]


@dataclass(frozen=True)
class ExportResult:
    """What an export wrote, and what loading it back said."""

    run_id: str
    source: Path  # the run's final/ or checkpoint-N folder
    out_dir: Path
    merged: bool  # True: a full model (base + adapter merged); False: a copy of what the run saved
    adapter: bool  # the source is a peft adapter
    base_model: str | None
    files: int
    bytes: int  # the export's size on disk
    seconds: float
    note: str | None = None
    format: str = "adapter"  # "adapter" | "model" (a full model copied) | "safetensors" | "gguf"
    dtype: str | None = None  # the merged weights' dtype (the base's own)
    quant: str | None = None  # the GGUF's type
    device: str | None = None  # where the merge ran
    device_reason: str | None = None
    gguf_file: Path | None = None
    modelfile: Path | None = None
    smoke: dict[str, Any] | None = None  # prompt, reply, new_tokens, seconds
    verify: dict[str, Any] | None = None  # GGUF against the merged model: prompts, same, agreement
    replaced: bool = False  # a previous export at out_dir was replaced (force)
    notes: tuple[str, ...] = field(default=())

    def to_json(self) -> dict[str, Any]:
        data = {k: getattr(self, k) for k in self.__dataclass_fields__}
        for key in ("source", "out_dir", "gguf_file", "modelfile"):
            data[key] = None if data[key] is None else str(data[key])
        data["seconds"] = round(self.seconds, 3)
        data["notes"] = list(self.notes)
        return data

    @property
    def what(self) -> str:
        return {
            "gguf": f"GGUF ({self.quant})",
            "safetensors": "full model (merged)",
            "model": "model",
        }.get(self.format, "adapter")

    def summary(self) -> str:
        """One sentence for the human output and the UI."""
        from tui_ft.estimate import format_bytes

        where = self.gguf_file if self.gguf_file else self.out_dir
        dtype = f", {self.dtype}" if self.dtype and self.format != "gguf" else ""
        return f"exported the {self.what} of {self.run_id} to {where} ({format_bytes(self.bytes)}{dtype})"


def resolve_export_source(ws: Workspace, run_ref: str) -> ModelRef:
    """The model of `RUN` (its final/) or `RUN:checkpoint-N`; NotFoundError (exit 2) otherwise."""
    run_part, sep, checkpoint = run_ref.strip().partition(":")
    run = find_run(ws, run_part)  # exit 2 with the closest ids for an unknown run
    return resolve_model(f"{run.id}{sep}{checkpoint}", ws, field="RUN")


def is_previous_export(folder: Path) -> bool:
    """`folder` holds an export tui-ft wrote (its tui-ft.json says where it was exported from)."""
    try:
        meta = json.loads((folder / META_FILE).read_text())
    except (OSError, ValueError):
        return False
    return isinstance(meta, dict) and "exported_from" in meta


def check_out_dir(out_dir: Path, *, force: bool = False) -> Path:
    """`out_dir` resolved; UserError (exit 2) when it is a file, or a folder that is not empty and not a
    previous export being replaced with `force`."""
    out = Path(out_dir).expanduser().resolve()
    if out.exists() and not out.is_dir():
        raise UserError(f"{out} is a file", field="--out", hint="give a folder to export into")
    if out.is_dir() and any(out.iterdir()):
        if not is_previous_export(out):
            raise UserError(
                f"{out} is not empty and holds no previous export",
                field="--out",
                hint="give a new folder (--force replaces only a folder tui-ft exported into)",
            )
        if not force:
            raise UserError(
                f"{out} is not empty: it holds a previous export",
                field="--out",
                hint="give a new folder, or --force to replace that export",
            )
    return out


def adapter_kind(source: ModelRef) -> str | None:
    """The peft type of the source's adapter (from adapter_config.json), None for a full model."""
    if not source.adapter:
        return None
    try:
        cfg = json.loads((Path(source.path) / "adapter_config.json").read_text())
    except (OSError, ValueError):
        return None
    return str(cfg.get("peft_type") or "") or None


def refuse_prompt_learning_merge(source: ModelRef, *, merge: bool, fmt: str) -> None:
    """A prompt-tuning adapter asked to merge (or to become a GGUF): UserError saying why it cannot."""
    kind = adapter_kind(source)
    if kind in PROMPT_LEARNING and (merge or fmt == "gguf"):
        raise UserError(
            NO_MERGE_SENTENCE.format(kind=kind),
            field="--format" if fmt == "gguf" else "--merge",
            hint=NO_MERGE_HINT,
        )


def check_export_options(fmt: str, quant: str | None, device: str) -> None:
    from tui_ft.inference.gguf_export import GGUF_QUANTS

    if fmt not in FORMATS:
        raise UserError(f"unknown format {fmt!r}", field="--format", hint=", ".join(FORMATS))
    if quant is not None and fmt != "gguf":
        raise UserError("--quant applies to --format gguf only", field="--quant")
    if quant is not None and quant not in GGUF_QUANTS:
        raise UserError(f"unknown GGUF type {quant!r}", field="--quant", hint=", ".join(GGUF_QUANTS))
    if device not in DEVICES:
        raise UserError(f"unknown device {device!r}", field="--device", hint=", ".join(DEVICES))


def export_run(
    ws: Workspace,
    run_ref: str,
    out_dir: Path | str,
    merge: bool = False,
    *,
    fmt: str = "safetensors",
    quant: str | None = None,
    force: bool = False,
    smoke: bool = True,
    device: str = "auto",
    progress: Progress | None = None,
) -> ExportResult:
    """Export a run's model (`RUN`, or `RUN:checkpoint-N`) to `out_dir`.

    Without `merge` (and `fmt` "safetensors") the saved adapter (or full model) is copied with its
    tokenizer, leaving out the checkpoint's optimizer, scheduler and RNG state. With `merge`, the adapter
    is merged into its base in the base's dtype and saved as a full model. `fmt="gguf"` merges and
    writes a GGUF of type `quant` (f16 by default) with an Ollama Modelfile, verified against the merged
    model. `smoke`: load the export back and answer one prompt. `progress(stage, fraction)` is told
    what is happening. A run trained without an adapter is copied (or converted) as it is.
    """
    start = time.monotonic()
    check_export_options(fmt, quant, device)
    report = progress or (lambda stage, fraction: None)
    report("checking", 0.0)
    source = resolve_export_source(ws, run_ref)
    refuse_prompt_learning_merge(source, merge=merge, fmt=fmt)
    out = check_out_dir(Path(out_dir), force=force)
    src = Path(source.path)
    if fmt == "gguf":
        from tui_ft.inference.gguf_export import check_gguf_support

        check_gguf_support(Path(_base_dir(source, ws)) if source.adapter else src)
        quant = quant or "f16"
    meta = _run_meta(src, source)
    out.parent.mkdir(parents=True, exist_ok=True)
    _check_disk_room(source, ws, out, fmt)
    tmp = out.parent / f".{out.name}.export-{os.getpid()}.tmp"
    if tmp.exists():
        shutil.rmtree(tmp)
    notes: list[str] = []
    kind = adapter_kind(source)
    if kind in PROMPT_LEARNING:
        notes.append(NO_MERGE_SENTENCE.format(kind=kind) + ": exported as an adapter")
    info: dict[str, Any] = {}
    replaced = False
    try:
        if fmt == "gguf":
            result_format = "gguf"
            info = _export_gguf(ws, source, tmp, quant or "f16", device, report, notes)
        elif merge and source.adapter:
            result_format = "safetensors"
            info = _merge_into(ws, source, tmp, device, report)
        else:
            if merge:
                notes.append("the run trained the whole model (no adapter): copied as it is")
            result_format = "adapter" if source.adapter else "model"
            report("copying", 0.0)
            _copy_model(src, tmp)
            report("copying", 1.0)
        meta.update(
            {
                "exported_from": run_ref,
                "source": str(src),
                "merged": result_format in ("safetensors", "gguf"),
                "format": result_format,
                "dtype": info.get("dtype"),
                "quant": quant if fmt == "gguf" else None,
            }
        )
        (tmp / META_FILE).write_text(json.dumps(meta, indent=1) + "\n")
        replaced = _move_into_place(tmp, out)
    except BaseException as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        failure = _export_failure(exc, out, info.get("device"))
        if failure is not None:
            raise failure from exc
        raise
    report("written", 1.0)
    if smoke and fmt != "gguf":  # the folder in its place, loaded back as `tui-ft generate DIR` would
        report("smoke test", 0.0)
        where = info.get("device") or choose_merge_device(ws, _smoke_model(source, ws), device)[0]
        try:
            info["smoke"] = smoke_test(ws, out, device=where)
        except BaseException as exc:
            shutil.rmtree(out, ignore_errors=True)  # an export that does not load is not left behind
            if isinstance(exc, Exception) and not isinstance(exc, (UserError, WorkFailed)):
                raise WorkFailed(
                    f"the export was written to {out} but does not load back "
                    f"({type(exc).__name__}: {exc}); it was removed",
                    hint="export the adapter without --merge and load it with peft on its base",
                ) from exc
            raise
        report("smoke test", 1.0)
    report("done", 1.0)
    files = [p for p in out.rglob("*") if p.is_file()]
    gguf_name = info.get("gguf_file")
    return ExportResult(
        run_id=source.run_id or run_ref,
        source=src,
        out_dir=out,
        merged=result_format in ("safetensors", "gguf"),
        adapter=source.adapter,
        base_model=source.base,
        files=len(files),
        bytes=sum(p.stat().st_size for p in files),
        seconds=time.monotonic() - start,
        note="; ".join(notes) or None,
        format=result_format,
        dtype=info.get("dtype"),
        quant=quant if fmt == "gguf" else None,
        device=info.get("device"),
        device_reason=info.get("device_reason"),
        gguf_file=out / gguf_name if gguf_name else None,
        modelfile=out / "Modelfile" if gguf_name else None,
        smoke=info.get("smoke"),
        verify=info.get("verify"),
        replaced=replaced,
        notes=tuple(notes),
    )


def _move_into_place(tmp: Path, out: Path) -> bool:
    """Rename the finished export to `out`; a previous export there (checked before) is replaced."""
    if not out.is_dir():
        os.replace(tmp, out)
        return False
    if not any(out.iterdir()):
        out.rmdir()
        os.replace(tmp, out)
        return False
    old = out.parent / f".{out.name}.replaced-{os.getpid()}"
    os.replace(out, old)
    try:
        os.replace(tmp, out)
    except BaseException:
        os.replace(old, out)  # the previous export comes back
        raise
    shutil.rmtree(old, ignore_errors=True)
    return True


def _export_failure(exc: BaseException, out: Path, device: str | None) -> WorkFailed | None:
    """A full disk or out of memory said as a sentence; None for what the caller re-raises as it is."""
    from tui_ft.engine.errors import translate_exception

    if isinstance(exc, (UserError, WorkFailed, KeyboardInterrupt, SystemExit)):
        return None
    failure = translate_exception(exc) if isinstance(exc, Exception) else None
    if failure is None:
        return None
    if failure.kind == "disk_full":
        return WorkFailed(
            f"The disk is full: the export to {out} could not be written; nothing was left behind.",
            kind="disk_full",
            hint=f"free space on the disk of {out.parent}, or give --out on a larger disk",
        )
    if failure.kind == "oom":
        where = "GPU" if device == "cuda" else "RAM"
        return WorkFailed(
            f"Out of {where} while exporting to {out}; nothing was left behind.",
            kind="oom",
            hint="merge on the CPU (--device cpu)"
            if device == "cuda"
            else "close other programs to free RAM, or export on a machine with more memory",
        )
    return None


def _check_disk_room(source: ModelRef, ws: Workspace, out: Path, fmt: str) -> None:
    """Refuse at once (exit 1) when the disk clearly cannot hold the export."""
    src = Path(source.path)
    if source.adapter and fmt == "safetensors":
        need = sum(p.stat().st_size for p in src.rglob("*.safetensors"))
    else:
        base = Path(_base_dir(source, ws)) if source.adapter else src
        need = sum(p.stat().st_size for p in base.glob("*.safetensors"))
        if fmt == "gguf":
            need *= 2  # the merged model (scratch) and the GGUF, side by side for the check
    try:
        free = shutil.disk_usage(out.parent).free
    except OSError:
        return
    if need > free:
        from tui_ft.estimate import format_bytes

        raise WorkFailed(
            f"The disk is full: the export needs about {format_bytes(need)} and {out.parent} has "
            f"{format_bytes(free)} free; nothing was written.",
            kind="disk_full",
            hint="free space there, or give --out on a larger disk",
        )


def _base_dir(source: ModelRef, ws: Workspace) -> str:
    """Where the adapter's base model is (a directory, or a hub id when it is not local)."""
    base = source.base
    if not base:
        raise NotFoundError(f"the adapter at {source.path} does not name its base model", field="RUN")
    base, _ = adapter_chain(base)  # an adapter trained on another run's adapter: the model under both
    try:
        from tui_ft.estimate import locate_config

        return str(locate_config(base, ws))
    except UserError:
        return base


def _smoke_model(source: ModelRef, ws: Workspace) -> str:
    """The model whose size decides where the smoke test loads: the base of an adapter, else itself."""
    return _base_dir(source, ws) if source.adapter else source.path


def base_dtype(model_dir: str) -> str | None:
    """The dtype the base model's weights are stored in: its config's `dtype`/`torch_dtype`, else the
    first floating tensor's in its safetensors header. None when neither says."""
    folder = Path(model_dir)
    try:
        config = json.loads((folder / "config.json").read_text())
    except (OSError, ValueError):
        config = {}
    for key in ("dtype", "torch_dtype"):
        value = str(config.get(key) or "").removeprefix("torch.")
        if value in DTYPES:
            return value
    names = {"F32": "float32", "F16": "float16", "BF16": "bfloat16"}
    for shard in sorted(folder.glob("*.safetensors")):
        try:
            with shard.open("rb") as f:
                size = int.from_bytes(f.read(8), "little")
                header = json.loads(f.read(min(size, 100_000_000)))
        except (OSError, ValueError):
            continue
        for value in header.values():
            if isinstance(value, dict) and value.get("dtype") in names:
                return names[value["dtype"]]
    return None


def choose_merge_device(ws: Workspace, base: str, device: str = "auto") -> tuple[str, str]:
    """Where to merge: the GPU when there is one with room for the base, else the CPU; and why."""
    if device == "cpu":
        return "cpu", "the CPU was asked for"
    from tui_ft.engine.hardware import detect_hardware

    if detect_hardware().device != "cuda":
        if device == "cuda":
            raise UserError(
                "no CUDA GPU is available to merge on",
                field="--device",
                hint="merge on the CPU (--device cpu); `tui-ft sysinfo` says why there is no GPU",
            )
        return "cpu", "no GPU here"
    from tui_ft.inference.resources import advise_load
    from tui_ft.monitor.system import GpuSampler

    with GpuSampler() as sampler:
        gpu = sampler.sample()
    try:
        advice = advise_load(base, ws, gpu=gpu, device="cuda")
    except UserError:
        return "cuda", "GPU (its size could not be estimated)"
    if advice.fits or device == "cuda":
        return "cuda", "the base fits on the GPU"
    return "cpu", f"{advice.problem}: merging on the CPU"


def _run_meta(src: Path, source: ModelRef) -> dict[str, Any]:
    """What the run recorded about its model (final/tui-ft.json), or what the reference tells."""
    for candidate in (src / META_FILE, src.parent.parent / "final" / META_FILE):
        try:
            meta = json.loads(candidate.read_text())
        except (OSError, ValueError):
            continue
        if isinstance(meta, dict):
            if candidate.parent != src:
                meta.pop("step", None)  # the final model's step, not this checkpoint's
            return meta
    return {"run": source.run_id, "base_model": source.base}


def _is_training_state(path: Path) -> bool:
    return path.name in TRAINING_STATE_FILES or path.name.startswith(TRAINING_STATE_PREFIXES)


def _copy_model(src: Path, dest: Path) -> None:
    """Copy the model or adapter files of `src` (recursively), without the trainer's resume state."""
    dest.mkdir(parents=True)
    for entry in sorted(src.iterdir()):
        if entry.is_dir():
            shutil.copytree(entry, dest / entry.name)
        elif not _is_training_state(entry) and entry.name != META_FILE:
            shutil.copy2(entry, dest / entry.name)


def _merge_into(ws: Workspace, source: ModelRef, dest: Path, device: str, report: Progress) -> dict[str, Any]:
    """Load the base in its own dtype, merge every adapter layer into it, save the full model, the
    tokenizer (with its chat template) and the generation config into `dest`."""
    from tui_ft.library_noise import quiet_library_noise

    quiet_library_noise()
    report("loading the base", 0.0)
    import torch
    import transformers
    from peft import PeftConfig, PeftModel
    from peft.tuners.tuners_utils import BaseTunerLayer

    from tui_ft.engine.models import from_pretrained_through_adapters

    adapter_dir = Path(source.path)
    config = PeftConfig.from_pretrained(str(adapter_dir))
    if config.is_prompt_learning:
        raise UserError(NO_MERGE_SENTENCE.format(kind=config.peft_type), field="--merge", hint=NO_MERGE_HINT)
    base = _base_dir(source, ws) if source.base else config.base_model_name_or_path
    if not base:
        raise NotFoundError(f"the adapter at {adapter_dir} does not name its base model", field="RUN")
    dtype_name = base_dtype(base) or "float32"
    target, why = choose_merge_device(ws, base, device)
    dtype = getattr(torch, dtype_name)
    # The adapter's own base (config.base_model_name_or_path) may be another run's adapter: merged in first.
    parent = config.base_model_name_or_path
    under = parent if parent and adapter_base(parent) else base
    if config.task_type == "SEQ_CLS":  # a reward model: one score per sequence
        model = from_pretrained_through_adapters(
            transformers.AutoModelForSequenceClassification, under, num_labels=1, dtype=dtype
        )
    else:
        model = from_pretrained_through_adapters(transformers.AutoModelForCausalLM, under, dtype=dtype)
    report("loading the base", 0.6)
    model.to(target)
    peft_model = PeftModel.from_pretrained(model, str(adapter_dir), torch_device=target)
    report("loading the base", 1.0)
    layers = [m for m in peft_model.modules() if isinstance(m, BaseTunerLayer)]
    with torch.no_grad():
        for done, layer in enumerate(layers):
            try:
                layer.merge(safe_merge=True)
            except ValueError as exc:  # safe_merge: the merged weights hold NaN or inf
                raise WorkFailed(
                    f"merging the adapter broke the weights ({exc})",
                    kind="nan",
                    hint="export the adapter without --merge, or an earlier checkpoint (RUN:checkpoint-N)",
                ) from exc
            report("merging", (done + 1) / max(1, len(layers)))
    merged = peft_model.unload()  # the merged base layers, without the adapter's modules
    merged.to("cpu")
    report("saving", 0.0)
    from tui_ft.engine.models import load_tokenizer

    tokenizer = load_tokenizer(source)
    if config.task_type == "SEQ_CLS" and tokenizer.pad_token_id is not None:
        merged.config.pad_token_id = tokenizer.pad_token_id
    merged.config.dtype = dtype
    merged.save_pretrained(str(dest))
    report("saving", 0.8)
    tokenizer.save_pretrained(str(dest))
    _keep_generation_config(base, dest)
    report("saving", 1.0)
    return {"dtype": dtype_name, "device": target, "device_reason": why}


def _keep_generation_config(base: str, dest: Path) -> None:
    """The base's generation_config.json when saving did not write one (a model without a head's)."""
    theirs = Path(base) / "generation_config.json"
    if not (dest / "generation_config.json").exists() and theirs.is_file():
        shutil.copy2(theirs, dest / "generation_config.json")


def _export_gguf(
    ws: Workspace,
    source: ModelRef,
    dest: Path,
    quant: str,
    device: str,
    report: Progress,
    notes: list[str],
) -> dict[str, Any]:
    """Merge into a scratch folder, write the GGUF and the Modelfile into `dest`, load the GGUF back and
    compare its greedy output with the merged model's, answer the smoke prompt; drop the scratch."""
    from tui_ft.inference.gguf_export import gguf_file_name, ollama_modelfile, write_gguf

    dest.mkdir(parents=True)
    scratch = dest / ".merged"
    if source.adapter:
        info = _merge_into(ws, source, scratch, device, report)
    else:  # a fully trained model: already one folder of weights
        _copy_model(Path(source.path), scratch)
        info = {"dtype": base_dtype(str(scratch)), "device": None, "device_reason": None}
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(scratch))
    name = source.run_id or Path(source.path).name
    gguf_name = gguf_file_name(name, quant)
    written = write_gguf(
        scratch,
        dest / gguf_name,
        quant=quant,
        name=name,
        chat_template=tokenizer.chat_template,
        progress=report,
    )
    if written.kept_f16:
        notes.append(
            f"{len(written.kept_f16)} tensor(s) kept in f16 (their rows are not a multiple of 32, "
            f"which {quant} needs): {', '.join(written.kept_f16)}"
        )
    (dest / "Modelfile").write_text(ollama_modelfile(gguf_name, tokenizer.chat_template, written.stop_tokens))
    report("verifying", 0.0)
    verify, smoke = verify_gguf(scratch, dest, gguf_name, report)
    if not verify["same"]:
        notes.append(
            f"the GGUF's greedy tokens agree with the merged model's on {verify['agreement']:.0%} "
            f"({quant} rounds the weights)"
        )
    shutil.rmtree(scratch)
    return {**info, "gguf_file": gguf_name, "verify": verify, "smoke": smoke}


def _greedy(
    model: Any, input_ids: Any, attention_mask: Any, max_new_tokens: int, eos: Any, pad: Any
) -> list[int]:
    import torch

    with torch.no_grad():
        out = model.generate(
            input_ids=input_ids,
            attention_mask=attention_mask,
            max_new_tokens=max_new_tokens,
            do_sample=False,
            temperature=None,
            top_p=None,
            top_k=None,
            eos_token_id=eos,
            pad_token_id=pad,
        )
    return [int(t) for t in out[0, input_ids.shape[-1] :]]


def verify_gguf(
    merged_dir: Path, gguf_dir: Path, gguf_name: str, report: Progress | None = None
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Load the GGUF back with transformers (model and tokenizer) and generate greedily from the same
    prompts as the merged model. Returns (verify, smoke): per prompt whether the tokens are the same and
    the share of positions that agree; and the GGUF model's reply to the smoke prompt."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from tui_ft.inference.generate import encode_messages

    say = report or (lambda stage, fraction: None)
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # the dequantizing bar; our own progress says "verifying"
    tokenizer = AutoTokenizer.from_pretrained(str(merged_dir))
    merged = AutoModelForCausalLM.from_pretrained(str(merged_dir), dtype="float32").eval()
    try:
        gguf_tok = AutoTokenizer.from_pretrained(str(gguf_dir), gguf_file=gguf_name)
        gguf_model = AutoModelForCausalLM.from_pretrained(
            str(gguf_dir), gguf_file=gguf_name, dtype="float32"
        ).eval()
    except Exception as exc:
        raise WorkFailed(
            f"the GGUF that was written does not load back: {type(exc).__name__}: {exc}",
            hint="export the merged safetensors (--format safetensors) and use llama.cpp's convert_hf_to_gguf.py",
        ) from exc
    eos, pad = tokenizer.eos_token_id, tokenizer.pad_token_id
    prompts = []
    same_tokenizer = True
    agree = total = 0
    for i, prompt in enumerate(VERIFY_PROMPTS):
        messages = [{"role": "user", "content": prompt}]
        ids, mask = encode_messages(tokenizer, messages)
        their_ids, _ = encode_messages(gguf_tok, messages)
        same_tokenizer = same_tokenizer and ids.tolist() == their_ids.tolist()
        want = _greedy(merged, ids, mask, VERIFY_TOKENS, eos, pad)
        got = _greedy(gguf_model, ids, mask, VERIFY_TOKENS, eos, pad)
        matching = sum(a == b for a, b in zip(want, got, strict=False))
        agree += matching
        total += max(len(want), len(got))
        prompts.append({"prompt": prompt, "same": want == got, "merged": want, "gguf": got})
        say("verifying", (i + 1) / (len(VERIFY_PROMPTS) + 1))
    start = time.perf_counter()
    ids, mask = encode_messages(gguf_tok, [{"role": "user", "content": SMOKE_PROMPT}])
    reply_ids = _greedy(gguf_model, ids, mask, SMOKE_TOKENS, gguf_tok.eos_token_id, gguf_tok.pad_token_id)
    smoke = {
        "prompt": SMOKE_PROMPT,
        "reply": gguf_tok.decode(reply_ids, skip_special_tokens=True),
        "new_tokens": len(reply_ids),
        "seconds": round(time.perf_counter() - start, 3),
        "loaded_with": "transformers (gguf_file)",
    }
    say("verifying", 1.0)
    verify = {
        "prompts": prompts,
        "same": all(p["same"] for p in prompts),
        "agreement": round(agree / total, 4) if total else 1.0,
        "same_tokenizer": same_tokenizer,
    }
    return verify, smoke


def smoke_test(ws: Workspace, folder: Path, *, device: str = "cpu") -> dict[str, Any]:
    """Load the export in `folder` the way `tui-ft generate` does and answer the smoke prompt greedily."""
    from tui_ft.inference.generate import generate, load_for_generation

    loaded = load_for_generation(str(folder), ws, device=device)
    reply = generate(loaded, SMOKE_PROMPT, max_new_tokens=SMOKE_TOKENS)
    return {
        "prompt": SMOKE_PROMPT,
        "reply": reply.text,
        "new_tokens": reply.new_tokens,
        "seconds": round(reply.seconds, 3),
        "loaded_with": "tui-ft generate",
    }
