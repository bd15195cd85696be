"""The evaluation of a classifier (a `classify` run, or any sequence-classification model with named
classes): loss, accuracy, precision, recall and F1 (macro and per class) and the confusion matrix on
labelled text, computed by the same function the trainer's evaluations use
(`engine.classification.classification_metrics`), so `tui-ft eval` and the run's `eval` events agree.

The data is `--data FILE` (text and label, JSONL or CSV, read as training reads it) or, for a run, the
rows its training held out (`data.eval`, or the `data.eval_split` of `data.train` drawn with the run's
seed). Every label must be one of the model's classes: an unseen one is bad input naming the file and line.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tui_ft.errors import UserError

if TYPE_CHECKING:
    from tui_ft.evaluation.suite import EvalRequest, RunContext
    from tui_ft.modelref import ModelRef
    from tui_ft.workspace import Workspace

#: Options that mean something for generating models only.
GENERATION_ONLY = {
    "base": "a classifier's base has no trained head to compare with",
    "shots": "a classifier is not prompted",
    "forgetting": "a classifier writes no text to lose",
    "metrics": "metric functions score generated text",
}


@dataclass
class LabelledText:
    source: str
    texts: list[str]
    label_ids: list[int]


def class_names(resolved: ModelRef, ctx: RunContext, ws: Workspace) -> tuple[str, ...]:
    """The classes a classifier predicts, in label-id order: its config's `id2label` (a model saved
    whole), else, for a run (a LoRA classifier saves only its adapter and head), the classes of the run's
    training data, which is where the runner took them from (`data.training.load_for_training`)."""
    import json

    try:
        config = json.loads((Path(resolved.path) / "config.json").read_text())
    except (OSError, ValueError):
        config = {}
    id2label = config.get("id2label") or {}
    if id2label:
        return tuple(str(id2label[k]) for k in sorted(id2label, key=int))
    if ctx.run_id and ctx.train_data:
        from tui_ft.data.training import load_for_training

        loaded = load_for_training(str(ctx.train_data), method="classify", base_dir=ws.data)
        if loaded.labels:
            return tuple(loaded.labels)
    raise UserError(
        f"{resolved.ref} is a sequence-classification model whose config names no classes (id2label)",
        field="MODEL",
        hint="evaluate a classifier trained by tui-ft (method classify), or one saved with id2label",
    )


def check_options(request: EvalRequest) -> None:
    """Options that apply to generating models only: exit 2 naming the first one given."""
    given = {
        "base": request.base is not None,
        "shots": request.shots > 0,
        "forgetting": request.forgetting is not None,
        "metrics": bool(request.metrics),
    }
    for key, why in GENERATION_ONLY.items():
        if given[key]:
            raise UserError(f"does not apply to a classifier: {why}", field=request.field_name(key))


def read_labelled(
    request: EvalRequest, ctx: RunContext, labels: tuple[str, ...], ws: Workspace
) -> LabelledText:
    """The labelled text to evaluate on: `--data`, else the run's held-out rows."""
    from tui_ft.data.training import load_for_training

    field = request.field_name("data")
    if request.data:
        source, split, field_name = request.data, 0.0, field
    elif ctx.run_id and ctx.data_section.get("eval"):
        source, split, field_name = str(ctx.data_section["eval"]), 0.0, "data.eval"
    elif ctx.run_id and ctx.data_section.get("train") and (ctx.data_section.get("eval_split") or 0) > 0:
        source, split, field_name = (
            str(ctx.data_section["train"]),
            float(ctx.data_section["eval_split"]),
            "data.train",
        )
    else:
        raise UserError(
            "nothing to evaluate on" + (": the run held no data out" if ctx.run_id else ""),
            field=field,
            hint="give --data FILE with text and label rows",
        )
    try:
        if split:
            # the run's own split: its training data's classes and seed, as the runner drew it
            loaded = load_for_training(source, method="classify", base_dir=request.base_dir or ws.data)
            if loaded.labels is not None and tuple(loaded.labels) != labels:
                raise UserError(
                    f"the run's data has classes {', '.join(loaded.labels)} and the model {', '.join(labels)}",
                    field=request.field_name("model"),
                )
            rows = loaded.dataset.train_test_split(test_size=split, seed=ctx.seed)["test"]
        else:
            loaded = load_for_training(
                source, method="classify", base_dir=request.base_dir or ws.data, labels=labels
            )
            rows = loaded.dataset
    except UserError as exc:
        if exc.field in (None, "data.train"):
            exc.field = field_name
        raise
    count = len(rows) if request.limit is None else min(request.limit, len(rows))
    texts = [str(rows[i]["text"]) for i in range(count)]
    ids = [int(rows[i]["label"]) for i in range(count)]
    what = str(loaded.source) + (f" (the run's held-out {split:g})" if split else "")
    return LabelledText(what, texts, ids)


def evaluate_classifier(
    request: EvalRequest, tuned: ModelRef, ctx: RunContext, ws: Workspace, say
) -> dict[str, Any]:
    """Load the classifier, predict every row in batches, and the result document (docs/eval.md)."""
    check_options(request)
    labels = class_names(tuned, ctx, ws)
    data = read_labelled(request, ctx, labels, ws)
    started = time.time()
    say(f"loading {tuned.ref} (a classifier of {len(labels)} classes)")
    t0 = time.perf_counter()
    model, tokenizer, device = _load(tuned, labels, request.device)
    say(f"classifying {len(data.texts)} rows")
    logits = _predict(model, tokenizer, device, data.texts, request.batch_size, ctx.max_length)
    metrics = _metrics(logits, data.label_ids, labels)
    per_class = {
        name: {
            "precision": metrics[f"precision/{name}"],
            "recall": metrics[f"recall/{name}"],
            "f1": metrics[f"f1/{name}"],
            "support": sum(1 for i in data.label_ids if i == k),
        }
        for k, name in enumerate(labels)
    }
    row = {
        "label": "tuned",
        "model": tuned.ref,
        "loss": metrics["loss"],
        "accuracy": metrics["accuracy"],
        "precision_macro": metrics["precision_macro"],
        "recall_macro": metrics["recall_macro"],
        "f1_macro": metrics["f1_macro"],
        "per_class": per_class,
        "seconds": round(time.perf_counter() - t0, 3),
    }
    return {
        "version": 1,
        "kind": "classification",
        "created": started,
        "model": tuned.ref,
        "resolved": tuned.path,
        "run": ctx.run_id,
        "base": None,
        "data": data.source,
        "format": "classification",
        "examples": len(data.texts),
        "generated": 0,
        "loss_on": None,
        "limit": request.limit,
        "classes": list(labels),
        "metrics": ["accuracy", "precision_macro", "recall_macro", "f1_macro"],
        "device": device,
        "rows": [row],
        "confusion": {"labels": list(labels), "matrix": metrics["confusion_matrix"]},
        "forgetting": None,
        "samples": [],
        "seconds": round(time.time() - started, 3),
    }


def _load(tuned: ModelRef, labels: tuple[str, ...], device: str):
    """The classifier (an adapter merged onto its base with the saved head) and its tokenizer."""
    from tui_ft.engine.hardware import detect_hardware
    from tui_ft.engine.models import load_model, load_tokenizer
    from tui_ft.library_noise import quiet_library_noise
    from tui_ft.recipe import ModelSpec

    quiet_library_noise()
    import transformers

    # The base loads without the head (`score.weight` missing) before the adapter brings the trained one:
    # transformers' load report would call it newly initialised. Only errors are worth showing here.
    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    hw = detect_hardware()
    use = "cuda" if device == "cuda" or (device == "auto" and hw.device == "cuda") else "cpu"
    if use == "cuda" and hw.device != "cuda":
        raise UserError("no CUDA device here", field="--device", hint="use --device cpu or auto")
    spec = ModelSpec(name=tuned.ref)
    tokenizer = load_tokenizer(tuned, spec)
    adapter = "lora" if tuned.adapter else "full"
    model = load_model(tuned, spec, hw, adapter, task="sequence_classification", labels=labels)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    model.config.pad_token_id = tokenizer.pad_token_id
    model.to(use).eval()
    return model, tokenizer, use


def _predict(model, tokenizer, device: str, texts: list[str], batch_size: int, max_length: int | None):
    import numpy as np
    import torch

    out = []
    with torch.inference_mode():
        for start in range(0, len(texts), batch_size):
            batch = tokenizer(
                texts[start : start + batch_size],
                padding=True,
                truncation=max_length is not None,
                max_length=max_length,
                return_tensors="pt",
            ).to(device)
            out.append(model(**batch).logits.float().cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, model.config.num_labels))


def _metrics(logits, label_ids: list[int], labels: tuple[str, ...]) -> dict[str, Any]:
    """The trainer's metrics on these logits, and the mean cross-entropy (the trainer's eval_loss)."""
    from types import SimpleNamespace

    import numpy as np

    from tui_ft.engine.classification import classification_metrics

    true = np.asarray(label_ids)
    metrics = classification_metrics(labels)(SimpleNamespace(predictions=logits, label_ids=true))
    if len(true):
        shifted = logits - logits.max(axis=-1, keepdims=True)
        log_probs = shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))
        metrics["loss"] = float(-log_probs[np.arange(len(true)), true].mean())
    else:
        metrics["loss"] = None
    return metrics
