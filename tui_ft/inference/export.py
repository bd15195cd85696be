"""Exporting a run's model: its final adapter (or a checkpoint's) copied to a folder of its own, or merged
into its base model and saved as one full model with its tokenizer.

`export_run` is the domain function behind `tui-ft export RUN --out DIR [--merge]` and the Runs screen's
export action. Copying reads only files; merging imports torch, transformers and peft, lazily.
The export is written to a temporary folder next to `out_dir` and renamed into place at the end, so an
interrupted export never leaves a folder that looks complete.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tui_ft.errors import NotFoundError, UserError
from tui_ft.modelref import ModelRef, resolve_model
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


@dataclass(frozen=True)
class ExportResult:
    """What an export wrote."""

    run_id: str
    source: Path  # the run's final/ or checkpoint-N folder
    out_dir: Path
    merged: bool  # True: a full model (base + adapter merged); False: a copy of what the run saved
    adapter: bool  # the source is a peft adapter
    base_model: str | None
    files: int
    bytes: int
    seconds: float
    note: str | None = None

    def to_json(self) -> dict[str, Any]:
        data = {k: getattr(self, k) for k in self.__dataclass_fields__}
        data["source"], data["out_dir"] = str(self.source), str(self.out_dir)
        data["seconds"] = round(self.seconds, 3)
        return data


def resolve_export_source(ws: Workspace, run_ref: str) -> ModelRef:
    """The model of `RUN` (its final/) or `RUN:checkpoint-N`; NotFoundError (exit 2) otherwise."""
    run_part, sep, checkpoint = run_ref.strip().partition(":")
    run = find_run(ws, run_part)  # exit 2 with the closest ids for an unknown run
    return resolve_model(f"{run.id}{sep}{checkpoint}", ws, field="RUN")


def check_out_dir(out_dir: Path) -> Path:
    """`out_dir` resolved; UserError (exit 2) when it is a file or a folder that is not empty."""
    out = Path(out_dir).expanduser().resolve()
    if out.exists() and not out.is_dir():
        raise UserError(f"{out} is a file", field="--out", hint="give a folder to export into")
    if out.is_dir() and any(out.iterdir()):
        raise UserError(
            f"{out} is not empty", field="--out", hint="give a new folder (an export never overwrites)"
        )
    return out


def export_run(ws: Workspace, run_ref: str, out_dir: Path | str, merge: bool = False) -> ExportResult:
    """Export a run's adapter (`RUN`, or `RUN:checkpoint-N`) to `out_dir`.

    Without `merge`, the saved adapter (or full model) is copied, with its tokenizer, leaving out the
    checkpoint's optimizer, scheduler and RNG state. With `merge`, the base model is loaded, the adapter
    merged into it (peft `merge_and_unload`) and the result saved as a full model with the tokenizer,
    loadable with `from_pretrained` and no peft. A run trained without an adapter is copied either way.
    """
    start = time.monotonic()
    source = resolve_export_source(ws, run_ref)
    out = check_out_dir(Path(out_dir))
    src = Path(source.path)
    meta = _run_meta(src, source)
    tmp = out.parent / f".{out.name}.export-{os.getpid()}.tmp"
    if tmp.exists():
        shutil.rmtree(tmp)
    out.parent.mkdir(parents=True, exist_ok=True)
    note = None
    merged = False
    try:
        if merge and source.adapter:
            _merge_into(source, tmp)
            merged = True
        else:
            if merge:
                note = "the run trained the whole model (no adapter): copied as it is"
            _copy_model(src, tmp)
        meta.update({"exported_from": run_ref, "source": str(src), "merged": merged})
        (tmp / META_FILE).write_text(json.dumps(meta, indent=1) + "\n")
        if out.is_dir():
            out.rmdir()  # empty (checked above)
        os.replace(tmp, out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    files = [p for p in out.rglob("*") if p.is_file()]
    return ExportResult(
        run_id=source.run_id or run_ref,
        source=src,
        out_dir=out,
        merged=merged,
        adapter=source.adapter,
        base_model=source.base,
        files=len(files),
        bytes=sum(p.stat().st_size for p in files),
        seconds=time.monotonic() - start,
        note=note,
    )


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


def _merge_into(source: ModelRef, dest: Path) -> None:
    """Load the base, merge the adapter into it, save the full model and the tokenizer into `dest`."""
    from tui_ft.library_noise import quiet_library_noise

    quiet_library_noise()
    import transformers
    from peft import PeftConfig, PeftModel

    adapter_dir = Path(source.path)
    config = PeftConfig.from_pretrained(str(adapter_dir))
    if config.is_prompt_learning:
        raise UserError(
            f"a {config.peft_type} adapter adds virtual tokens; it cannot be merged into the weights",
            field="--merge",
            hint="export the adapter without --merge and load it with peft",
        )
    base = source.base or config.base_model_name_or_path
    if not base:
        raise NotFoundError(f"the adapter at {adapter_dir} does not name its base model", field="RUN")
    if config.task_type == "SEQ_CLS":  # a reward model: one score per sequence
        model = transformers.AutoModelForSequenceClassification.from_pretrained(
            base, num_labels=1, dtype="auto"
        )
    else:
        model = transformers.AutoModelForCausalLM.from_pretrained(base, dtype="auto")
    model = PeftModel.from_pretrained(model, str(adapter_dir)).merge_and_unload()
    model.save_pretrained(str(dest))
    from tui_ft.engine.models import load_tokenizer

    tokenizer = load_tokenizer(source)
    if config.task_type == "SEQ_CLS" and tokenizer.pad_token_id is not None:
        model.config.pad_token_id = tokenizer.pad_token_id
        model.config.save_pretrained(str(dest))
    tokenizer.save_pretrained(str(dest))
