"""Evaluation results kept with the run, and the one table the command line and the Runs dashboard
show of them. Light: reads and writes small JSON files.

runs/<id>/eval/<YYYYmmdd-HHMMSS>.json   one evaluation (its fields are in docs/eval.md)
runs/<id>/eval/latest.json              a copy of the newest one
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tui_ft.display import format_value

EVAL_DIR = "eval"
LATEST = "latest.json"
NO_EVAL_TEXT = "no evaluation yet: tui-ft eval {run} --data FILE"


def eval_dir(run_path: Path) -> Path:
    return Path(run_path) / EVAL_DIR


def save_result(run_path: Path, doc: dict[str, Any]) -> Path:
    """Write `eval/<timestamp>.json` and replace `eval/latest.json` (each atomically); the file's path."""
    folder = eval_dir(run_path)
    folder.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(doc.get("created") or time.time()))
    path = folder / f"{stamp}.json"
    n = 2
    while path.exists():
        path = folder / f"{stamp}-{n}.json"
        n += 1
    doc = {**doc, "file": path.name}
    text = json.dumps(doc, indent=1, ensure_ascii=False, default=str) + "\n"
    for target in (path, folder / LATEST):
        tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}")
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, target)
    return path


def load_latest(run_path: Path) -> dict[str, Any] | None:
    """The newest evaluation of a run, or None when there is none (or it cannot be read)."""
    try:
        doc = json.loads((eval_dir(run_path) / LATEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return doc if isinstance(doc, dict) and isinstance(doc.get("rows"), list) else None


def latest_signature(run_path: Path) -> tuple[int, int] | None:
    """(mtime_ns, size) of `eval/latest.json`, None when absent: whether it changed, without reading it."""
    try:
        st = (eval_dir(run_path) / LATEST).stat()
    except OSError:
        return None
    return st.st_mtime_ns, st.st_size


# ------------------------------------------------------------------------------------------------
# the table


COLUMNS = ("model", "loss", "ppl", "exact", "contains", "rouge-L")


@dataclass(frozen=True)
class EvalTable:
    """The rows of an evaluation as text: one per model (tuned, base, few-shot base)."""

    columns: tuple[str, ...]
    rows: list[tuple[str, ...]]
    footer: str | None  # lines under the table: the forgetting check, or a classifier's confusion matrix
    caption: str  # what was evaluated


def _number(value: Any) -> str:
    return format_value(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else "-"


def _share(value: Any) -> str:
    return f"{value:.0%}" if isinstance(value, (int, float)) and not isinstance(value, bool) else "-"


def _change(value: Any) -> str:
    return f"{value:+.1%}" if isinstance(value, (int, float)) and not isinstance(value, bool) else "-"


CLASSIFIER_COLUMNS = ("model / class", "loss", "accuracy", "precision", "recall", "F1", "rows")


def classifier_table(doc: dict[str, Any]) -> EvalTable:
    """A classifier's evaluation: the macro figures per model, a row per class, the confusion matrix."""
    rows: list[tuple[str, ...]] = []
    for row in doc.get("rows") or []:
        if not isinstance(row, dict):
            continue
        label, model = str(row.get("label") or "?"), str(row.get("model") or "")
        per_class: dict[str, Any] = row["per_class"] if isinstance(row.get("per_class"), dict) else {}
        support = sum(int(c.get("support") or 0) for c in per_class.values() if isinstance(c, dict))
        rows.append(
            (
                f"{label} ({model}), macro" if model else f"{label}, macro",
                _number(row.get("loss")),
                _share(row.get("accuracy")),
                _number(row.get("precision_macro")),
                _number(row.get("recall_macro")),
                _number(row.get("f1_macro")),
                str(support) if per_class else "-",
            )
        )
        for name, figures in per_class.items():
            if isinstance(figures, dict):
                rows.append(
                    (
                        f"  {name}",
                        "",
                        "",
                        _number(figures.get("precision")),
                        _number(figures.get("recall")),
                        _number(figures.get("f1")),
                        str(figures.get("support", "-")),
                    )
                )
    confusion: dict[str, Any] = doc["confusion"] if isinstance(doc.get("confusion"), dict) else {}
    matrix_text = confusion_text(confusion.get("labels") or [], confusion.get("matrix") or [])
    data = Path(str(doc.get("data"))).name if doc.get("data") else "-"
    when = time.strftime("%Y-%m-%d %H:%M", time.localtime(doc["created"])) if doc.get("created") else "?"
    caption = f"{data}: {doc.get('examples', 0)} rows classified · {when}"
    return EvalTable(CLASSIFIER_COLUMNS, rows, matrix_text, caption)


def confusion_text(labels: list[Any], matrix: list[Any]) -> str | None:
    """The confusion matrix as aligned text: a row per true class, a column per predicted one."""
    if not labels or len(matrix) != len(labels):
        return None
    names = [str(n) for n in labels]
    width = max(len(n) for n in names)
    cells = [max(len(n), *(len(str(row[i])) for row in matrix if i < len(row))) for i, n in enumerate(names)]
    lines = ["confusion matrix (rows: true class, columns: predicted)"]
    lines.append(" " * width + "  " + "  ".join(n.rjust(c) for n, c in zip(names, cells, strict=True)))
    for name, row in zip(names, matrix, strict=True):
        values = [str(v) for v in row] + [""] * (len(names) - len(row))
        lines.append(
            name.ljust(width) + "  " + "  ".join(v.rjust(c) for v, c in zip(values, cells, strict=True))
        )
    return "\n".join(lines)


def eval_table(doc: dict[str, Any]) -> EvalTable:
    """The table of one result document (unknown keys ignored, missing figures shown as -)."""
    if doc.get("kind") == "classification":
        return classifier_table(doc)
    custom = [m for m in doc.get("metrics") or [] if m not in ("exact", "contains", "rouge_l")]
    columns = (*COLUMNS, *custom)
    rows = []
    for row in doc.get("rows") or []:
        if not isinstance(row, dict):
            continue
        values: dict[str, Any] = row["custom"] if isinstance(row.get("custom"), dict) else {}
        label = str(row.get("label") or "?")
        model = str(row.get("model") or "")
        name = f"{label} ({model})" if model and label != model else label
        if row.get("task"):
            name += f" · {row['task']}"
        rows.append(
            (
                name,
                _number(row.get("loss")),
                _number(row.get("perplexity")),
                _share(row.get("exact")),
                _share(row.get("contains")),
                _number(row.get("rouge_l")),
                *(_number(values.get(name)) for name in custom),
            )
        )
    forgetting = None
    f = doc.get("forgetting")
    if isinstance(f, dict):
        base, tuned = f.get("base") or {}, f.get("tuned") or {}
        forgetting = (
            f"forgetting ({Path(str(f.get('data') or '?')).name}, {f.get('rows', '?')} rows): "
            f"loss {_number(base.get('loss'))} -> {_number(tuned.get('loss'))} ({_change(f.get('loss_change'))}), "
            f"ppl {_number(base.get('perplexity'))} -> {_number(tuned.get('perplexity'))} "
            f"({_change(f.get('perplexity_change'))})"
        )
    tasks = doc.get("tasks") if isinstance(doc.get("tasks"), dict) else {}
    data = Path(str(doc.get("data"))).name if doc.get("data") else "-"
    if tasks:
        data = "held-out data of " + ", ".join(str(t) for t in tasks)
    when = time.strftime("%Y-%m-%d %H:%M", time.localtime(doc["created"])) if doc.get("created") else "?"
    caption = (
        f"{data}: {doc.get('examples', 0)} rows, {doc.get('generated', 0)} generated"
        f"{', loss on ' + str(doc['loss_on']) if doc.get('loss_on') else ''} · {when}"
    )
    return EvalTable(columns, rows, forgetting, caption)


def summary(doc: dict[str, Any]) -> dict[str, Any]:
    """The few figures an `eval` event carries: each row's loss and scores, and the forgetting change."""
    keys = ("loss", "perplexity", "exact", "contains", "rouge_l", "custom")
    rows = [
        {
            "label": r.get("label"),
            "model": r.get("model"),
            **({"task": r["task"]} if r.get("task") else {}),
            **{k: r.get(k) for k in keys if k in r},
        }
        for r in doc.get("rows") or []
        if isinstance(r, dict)
    ]
    f = doc.get("forgetting")
    return {
        "rows": rows,
        "forgetting": (
            {"loss_change": f.get("loss_change"), "perplexity_change": f.get("perplexity_change")}
            if isinstance(f, dict)
            else None
        ),
    }
