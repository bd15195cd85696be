"""One evaluation: the tuned model, its base and a few-shot prompted base on the same data, and the
forgetting check (base against tuned on general text). Loads one model at a time.

Everything that can be checked without a model is checked first (the model references, the data and its
format, the metric functions called once on a known pair), so bad input fails with exit status 2 before
any weights load.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tui_ft.errors import NotFoundError, UserError
from tui_ft.evaluation.examples import EvalData, Example, example_from_row, read_eval_data
from tui_ft.evaluation.metrics import BUILTIN_METRICS, UserMetric, builtin_scores, check_metric, load_metric
from tui_ft.modelref import ModelRef, resolve_model
from tui_ft.workspace import Workspace

RESULT_VERSION = 1
SAMPLES_KEPT = 8  # generations kept in the result file, for people to read


@dataclass
class EvalRequest:
    """What to evaluate and against what; `fields` names each setting in messages (the command's
    options, or the recipe's `eval.*` keys)."""

    model: str
    data: str | None = None
    base: str | None = None  # None: the run's base model (or the adapter's), when there is one
    shots: int = 0
    shots_data: str | None = None  # None: the run's training data
    forgetting: str | None = None  # a text file; "" for the demo's general-text sample
    metrics: list[str] = field(default_factory=list)
    max_new_tokens: int = 64
    limit: int | None = None
    batch_size: int = 16
    device: str = "auto"
    seed: int = 0
    base_dir: Path | None = None  # where relative data and metric files are looked up first
    fields: dict[str, str] = field(default_factory=dict)

    def field_name(self, key: str) -> str:
        return self.fields.get(key, f"--{key.replace('_', '-')}" if key != "model" else "MODEL")


@dataclass
class RunContext:
    """What a run tells an evaluation of its model: its recipe's data settings and its base."""

    run_id: str | None = None
    loss: str = "auto"
    max_length: int | None = 1024
    train_data: str | None = None
    base: str | None = None
    method: str | None = None
    seed: int = 42
    data_section: dict[str, Any] = field(default_factory=dict)  # the run's recipe `data:` as written


def run_context(resolved: ModelRef, ws: Workspace) -> RunContext:
    """The recipe settings and base model of the run a model reference points into (or defaults)."""
    import yaml

    ctx = RunContext()
    if resolved.base:
        ctx.base = resolved.base
    if not resolved.run_id:
        return ctx
    ctx.run_id = resolved.run_id
    run_dir = ws.runs / resolved.run_id
    try:
        recipe = yaml.safe_load((run_dir / "recipe.yaml").read_text()) or {}
    except (OSError, yaml.YAMLError):
        recipe = {}
    data = recipe.get("data") or {}
    ctx.loss = str(data.get("loss") or "auto")
    if "max_length" in data:
        ctx.max_length = data["max_length"]
    ctx.train_data = data.get("train")
    ctx.method = recipe.get("method")
    ctx.data_section = data if isinstance(data, dict) else {}
    seed = (recipe.get("training") or {}).get("seed", 42)
    ctx.seed = seed if isinstance(seed, int) and not isinstance(seed, bool) else 42
    try:
        meta = json.loads((run_dir / "final" / "tui-ft.json").read_text())
    except (OSError, ValueError):
        meta = {}
    ctx.base = meta.get("model_ref") or (recipe.get("model") or {}).get("name") or ctx.base
    return ctx


def general_text_path(ws: Workspace) -> Path:
    """The demo's general-text sample: the workspace's copy, else the one shipped in the package."""
    from tui_ft.demo import GENERAL_TEXT_FILE, SAMPLES_DIR

    copy = ws.data / GENERAL_TEXT_FILE
    return copy if copy.is_file() else SAMPLES_DIR / GENERAL_TEXT_FILE


#: Methods whose data an evaluation reads as it is (chats, prompt/completion, text).
HELD_OUT_METHODS = ("sft",)


def held_out_sets(ctx: RunContext, ws: Workspace, limit: int | None) -> dict[str, EvalData]:
    """A run's own held-out data, as its training held it out: `data.eval`, or the `data.eval_split` of
    `data.train` (the same rows: the split is drawn with the run's seed, as the runner draws it), or each
    `data.mixture` task's `eval`/`eval_split`. Keys: the task names ("" for a run of one dataset); empty
    when the run held nothing out or its method's data has no reference answers."""
    from tui_ft.data.training import load_for_training

    if ctx.run_id is None or ctx.method not in HELD_OUT_METHODS:
        return {}
    section = ctx.data_section
    mixture = section.get("mixture")
    tasks: list[tuple[str, dict[str, Any], str]] = []  # (name, where its rows are, the recipe key)
    if isinstance(mixture, list):
        for i, task in enumerate(mixture):
            if isinstance(task, dict) and task.get("train"):
                tasks.append((str(task.get("name") or f"task{i}"), task, f"data.mixture[{i}]"))
    elif section.get("train"):
        tasks.append(("", section, "data"))
    sets: dict[str, EvalData] = {}
    for name, spec, key in tasks:
        if spec.get("eval"):
            sets[name] = read_eval_data(str(spec["eval"]), base_dir=ws.data, limit=limit, field=f"{key}.eval")
            continue
        split = spec.get("eval_split") or 0
        if not isinstance(split, (int, float)) or not 0 < split < 1:
            continue
        loaded = load_for_training(str(spec["train"]), method="sft", base_dir=ws.data)
        rows = loaded.dataset.train_test_split(test_size=split, seed=ctx.seed)["test"]
        count = len(rows) if limit is None else min(limit, len(rows))
        sets[name] = EvalData(
            f"{loaded.source} (the run's held-out {split:g})",
            loaded.format.value,
            [example_from_row(dict(rows[i])) for i in range(count)],
        )
    return sets


@dataclass
class Plan:
    """An evaluation checked and ready to load models."""

    request: EvalRequest
    tuned: ModelRef
    base: ModelRef | None
    context: RunContext
    data: EvalData | None
    forgetting: EvalData | None
    metrics: list[UserMetric]
    shots: list[dict[str, str]]
    tasks: dict[str, EvalData] = field(default_factory=dict)  # a mixture run's held-out data per task

    @property
    def sets(self) -> list[tuple[str, EvalData]]:
        """What the models are evaluated on: ("", the data) or each task's held-out data."""
        if self.tasks:
            return list(self.tasks.items())
        return [("", self.data)] if self.data is not None else []


def _resolve(ref: str, ws: Workspace, field_name: str) -> ModelRef:
    """A model reference resolved, and a hub id found in the local cache when the hub is offline."""
    import os

    try:
        resolved = resolve_model(ref, ws, field=field_name)
    except NotFoundError:
        raise
    except UserError as exc:
        exc.field = exc.field or field_name
        raise
    offline = os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on")
    if resolved.kind == "hub" and offline:
        from huggingface_hub import try_to_load_from_cache

        if not isinstance(try_to_load_from_cache(resolved.path, "config.json"), str):
            raise NotFoundError(
                f"no model {ref!r} here, and the hub is offline (HF_HUB_OFFLINE) with no copy of it cached",
                field=field_name,
                hint="give a workspace model, a directory or a run id",
            )
    return resolved


def plan(request: EvalRequest, ws: Workspace) -> Plan:
    """Check everything that needs no model: UserError (exit 2) naming the setting otherwise."""
    from tui_ft.reward_checks import is_sequence_classifier

    tuned = _resolve(request.model, ws, request.field_name("model"))
    if is_sequence_classifier(tuned):
        raise UserError(
            f"{request.model} is a sequence-classification model; this evaluation scores generations",
            field=request.field_name("model"),
        )
    ctx = run_context(tuned, ws)
    base_ref = request.base if request.base is not None else ctx.base
    base = _resolve(base_ref, ws, request.field_name("base")) if base_ref else None
    if base is not None and base.path == tuned.path and not tuned.adapter:
        base = None  # the model is its own base: nothing to compare
    base_dir = request.base_dir
    data = None
    if request.data:
        data = read_eval_data(
            request.data, base_dir=base_dir or ws.data, limit=request.limit, field=request.field_name("data")
        )
    tasks: dict[str, EvalData] = {}
    if data is None and request.forgetting is None:
        held = held_out_sets(ctx, ws, request.limit)
        if list(held) == [""]:
            data = held[""]
        else:
            tasks = held
    metrics = [load_metric(m, base_dir, field=request.field_name("metrics")) for m in request.metrics]
    if metrics:
        examples = [e for d in ([data] if data else list(tasks.values())) for e in d.examples]
        first = next((e for e in examples if e.reference is not None), None)
        if first is None or first.reference is None:
            what = f"{data.format} data" if data else ("the held-out data" if tasks else "no --data")
            raise UserError(
                f"{what} has no reference answers for the metric functions to compare with",
                field=request.field_name("data"),
                hint="evaluate chat (messages) or prompt/completion data",
            )
        for metric in metrics:
            check_metric(metric, first.reference, first.prompt_text)
    forgetting = None
    if request.forgetting is not None:
        if base is None:
            raise UserError(
                "the forgetting check compares the model with its base, and there is none to compare with",
                field=request.field_name("forgetting"),
                hint="name one with --base MODEL",
            )
        source = request.forgetting or str(general_text_path(ws))
        forgetting = read_eval_data(
            source, base_dir=base_dir or ws.data, limit=request.limit, field=request.field_name("forgetting")
        )
    shots: list[dict[str, str]] = []
    if request.shots:
        shots = _few_shot(request, ctx, base, data or next(iter(tasks.values()), None), ws)
    if data is None and forgetting is None and not tasks:
        raise UserError(
            "nothing to evaluate on" + (": the run held no data out" if ctx.run_id else ""),
            field=request.field_name("data"),
            hint="give --data FILE or --forgetting",
        )
    return Plan(request, tuned, base, ctx, data, forgetting, metrics, shots, tasks)


def _few_shot(
    request: EvalRequest, ctx: RunContext, base: ModelRef | None, data: EvalData | None, ws: Workspace
) -> list[dict[str, str]]:
    from tui_ft.inference.chats import few_shot_turns

    name = request.field_name("shots")
    if request.shots < 0:
        raise UserError("the number of examples must be at least 1", field=name)
    if base is None:
        raise UserError(
            "the few-shot baseline prompts the base model, and there is none",
            field=name,
            hint="name one with --base MODEL",
        )
    if data is None or not data.has_references:
        raise UserError(
            "the few-shot baseline needs data with reference answers", field=request.field_name("data")
        )
    source = request.shots_data or ctx.train_data
    if not source:
        raise UserError(
            "the few-shot examples come from the training data, and this model is not a run of one training file",
            field=name,
            hint="name a file to draw them from with --shots-data FILE",
        )
    try:
        return few_shot_turns(source, request.shots, ws, seed=request.seed)
    except UserError as exc:
        exc.field = exc.field or request.field_name("shots_data")
        raise


def with_shots(prompt: list[dict[str, Any]] | str, shots: list[dict[str, str]]) -> list[dict[str, Any]] | str:
    """A prompt preceded by the few-shot examples: turns after any system turn, or plain text."""
    if isinstance(prompt, list):
        lead = 0
        while lead < len(prompt) and prompt[lead].get("role") == "system":
            lead += 1
        return [*prompt[:lead], *shots, *prompt[lead:]]
    pairs = [shots[i]["content"] + shots[i + 1]["content"] for i in range(0, len(shots) - 1, 2)]
    return "".join(p + "\n\n" for p in pairs) + prompt


# ------------------------------------------------------------------------------------------------
# running it


def _row(label: str, model: str, task: str) -> dict[str, Any]:
    """A row of the table: a model (tuned, base, few-shot base), on one task of a mixture or on all."""
    return {"label": label, "model": model, **({"task": task} if task else {})}


def _free(loaded) -> None:
    import gc

    device = loaded.device
    del loaded
    gc.collect()
    if device == "cuda":
        import torch

        torch.cuda.empty_cache()


def evaluate(
    request: EvalRequest, ws: Workspace, *, report: Callable[[str], None] | None = None
) -> dict[str, Any]:
    """Run the evaluation; the result document (see docs/eval.md). A classifier (a `classify` run) is
    evaluated by its predictions (`evaluation.classifier`), a generating model by `plan` and `run_plan`."""
    tuned = _resolve(request.model, ws, request.field_name("model"))
    if is_classifier(tuned, ws):
        from tui_ft.evaluation.classifier import evaluate_classifier

        say = report or (lambda text: None)
        return evaluate_classifier(request, tuned, run_context(tuned, ws), ws, say)
    checked = plan(request, ws)
    return run_plan(checked, ws, report=report)


def is_classifier(resolved: ModelRef, ws: Workspace) -> bool:
    """A sequence classifier with classes (a `classify` run's model), not a reward model's one score."""
    from tui_ft.reward_checks import is_sequence_classifier

    if not is_sequence_classifier(resolved):
        return False
    if resolved.run_id:
        return run_context(resolved, ws).method == "classify"
    try:
        config = json.loads((Path(resolved.path) / "config.json").read_text())
    except (OSError, ValueError):
        return False
    return int(config.get("num_labels") or len(config.get("id2label") or {})) > 1


def run_plan(checked: Plan, ws: Workspace, *, report: Callable[[str], None] | None = None) -> dict[str, Any]:
    from tui_ft.inference.generate import load_for_generation

    say = report or (lambda text: None)
    request, ctx = checked.request, checked.context
    started = time.time()
    data, forgetting = checked.data, checked.forgetting
    sets = [(task, d, [e for e in d.examples if e.reference is not None]) for task, d in checked.sets]
    generating = [e for _, _, g in sets for e in g]
    rows: list[dict[str, Any]] = []
    samples: list[dict[str, Any]] = [
        {"prompt": e.prompt_text, "reference": e.reference} for e in generating[:SAMPLES_KEPT]
    ]
    forgetting_rows: dict[str, dict[str, Any]] = {}
    scopes: list[str] = []  # which tokens each set's loss counts (a mixture's tasks may differ)
    device = None
    models = [("tuned", checked.tuned)] + ([("base", checked.base)] if checked.base is not None else [])
    for label, ref in models:
        say(f"loading {ref.ref} ({label})")
        t0 = time.perf_counter()
        loaded = load_for_generation(ref.ref, ws, device=request.device)
        device = loaded.device
        kept = 0  # samples are the first examples over all sets, each reply kept beside its prompt
        for task, evaluated, gen in sets:
            name = f"{label} · {task}" if task else label
            row = _row(label, ref.ref, task)
            loss, scope_label = _loss(loaded, evaluated, ctx, request, say, name)
            if scope_label not in scopes:
                scopes.append(scope_label)
            row.update(loss)
            if gen:
                row.update(
                    _generation(loaded, gen, checked.metrics, request, say, name, samples[kept:], label)
                )
            kept += len(gen)
            row["seconds"] = round(time.perf_counter() - t0, 3)
            rows.append(row)
            t0 = time.perf_counter()
        if forgetting is not None:
            result, _ = _loss(loaded, forgetting, ctx, request, say, f"{label}, general text")
            forgetting_rows[label] = result
            if not sets:
                row = _row(label, ref.ref, "")
                row["seconds"] = round(time.perf_counter() - t0, 3)
                rows.append(row)
        if label == "base" and checked.shots:
            kept = 0
            for task, _, gen in sets:
                if not gen:
                    continue
                t0 = time.perf_counter()
                shot = _row(f"base {request.shots}-shot", ref.ref, task)
                shot.update({"loss": None, "perplexity": None, "tokens": None})
                shot.update(
                    _generation(
                        loaded,
                        gen,
                        checked.metrics,
                        request,
                        say,
                        shot["label"] + (f" · {task}" if task else ""),
                        samples[kept:],
                        "few_shot",
                        shots=checked.shots,
                    )
                )
                kept += len(gen)
                shot["seconds"] = round(time.perf_counter() - t0, 3)
                rows.append(shot)
        _free(loaded)
        del loaded
    doc: dict[str, Any] = {
        "version": RESULT_VERSION,
        "created": started,
        "model": checked.tuned.ref,
        "resolved": checked.tuned.path,
        "run": ctx.run_id,
        "base": checked.base.ref if checked.base else None,
        "data": data.path if data else None,
        "format": data.format if data else None,
        "tasks": {
            task: {"data": d.path, "format": d.format, "examples": len(d.examples)}
            for task, d in checked.tasks.items()
        },
        "examples": sum(len(d.examples) for _, d in checked.sets),
        "generated": len(generating),
        "loss_on": " / ".join(scopes) or None,
        "limit": request.limit,
        "max_new_tokens": request.max_new_tokens,
        "shots": request.shots,
        "metrics": [*BUILTIN_METRICS, *(m.name for m in checked.metrics)] if generating else [],
        "metric_refs": {m.name: m.resolved for m in checked.metrics},
        "device": device,
        "rows": rows,
        "forgetting": _forgetting_doc(forgetting, forgetting_rows),
        "samples": samples if generating else [],
        "seconds": round(time.time() - started, 3),
    }
    return doc


def _loss(loaded, data: EvalData, ctx: RunContext, request: EvalRequest, say, label: str):
    from tui_ft.evaluation.scoring import loss_pass, loss_scope, tokenize_row

    scope = loss_scope(ctx.loss, data.format, loaded.tokenizer)
    say(f"{label}: loss over {len(data.examples)} rows ({scope.label})")
    encoded = [tokenize_row(loaded.tokenizer, e.row, scope, ctx.max_length) for e in data.examples]
    result = loss_pass(loaded, encoded, batch_size=max(1, request.batch_size // 2))
    return {"loss": result.loss, "perplexity": result.perplexity, "tokens": result.tokens}, scope.label


def _generation(
    loaded,
    examples: list[Example],
    metrics: list[UserMetric],
    request: EvalRequest,
    say,
    label: str,
    samples: list[dict[str, Any]],
    sample_key: str,
    *,
    shots: list[dict[str, str]] | None = None,
) -> dict[str, Any]:
    from tui_ft.evaluation.scoring import encode_prompt, generate_batched

    say(f"{label}: generating {len(examples)} replies")
    prompts = []
    for e in examples:
        assert e.prompt is not None
        prompts.append(encode_prompt(loaded.tokenizer, with_shots(e.prompt, shots) if shots else e.prompt))
    t0 = time.perf_counter()
    replies = generate_batched(
        loaded, prompts, max_new_tokens=request.max_new_tokens, batch_size=request.batch_size
    )
    seconds = time.perf_counter() - t0
    sums = dict.fromkeys(BUILTIN_METRICS, 0.0)
    custom = {m.name: 0.0 for m in metrics}
    for e, reply in zip(examples, replies, strict=True):
        assert e.reference is not None
        for key, value in builtin_scores(reply.text, e.reference).items():
            sums[key] += value
        for m in metrics:
            custom[m.name] += m.score(reply.text, e.reference, e.prompt_text)
    for sample, reply in zip(samples, replies, strict=False):
        sample[sample_key] = reply.text
    n = len(examples)
    new_tokens = sum(r.new_tokens for r in replies)
    return {
        **{k: v / n for k, v in sums.items()},
        "custom": {k: v / n for k, v in custom.items()},
        "new_tokens": new_tokens,
        "generation_s": round(seconds, 3),
    }


def _forgetting_doc(data: EvalData | None, rows: dict[str, dict[str, Any]]) -> dict[str, Any] | None:
    if data is None:
        return None
    base, tuned = rows.get("base", {}), rows.get("tuned", {})
    change = None
    if isinstance(base.get("loss"), float) and isinstance(tuned.get("loss"), float) and base["loss"]:
        change = (tuned["loss"] - base["loss"]) / base["loss"]
    ppl_change = None
    if isinstance(base.get("perplexity"), float) and isinstance(tuned.get("perplexity"), float):
        ppl_change = (tuned["perplexity"] - base["perplexity"]) / base["perplexity"]
    return {
        "data": data.path,
        "rows": len(data.examples),
        "base": base,
        "tuned": tuned,
        "loss_change": change,
        "perplexity_change": ppl_change,
    }
