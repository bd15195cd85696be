"""`tui-ft eval MODEL --data FILE`: loss, perplexity and generation metrics of a model against its base
and a few-shot prompted base, and the forgetting check; stored with the run (`runs/<id>/eval/`)."""

from __future__ import annotations

import argparse
import sys

from tui_ft.commands import output_console, print_json, require_run_status
from tui_ft.errors import UserError
from tui_ft.workspace import Workspace


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("eval", help="evaluate a model or run: loss, generation metrics, base vs tuned")
    p.add_argument("model", help="a run, RUN:checkpoint-N, workspace model, directory, recipe name, last")
    p.add_argument(
        "--data", default=None, help="held-out chat or prompt/completion data (or text: loss only)"
    )
    p.add_argument("--base", default=None, help="the model to compare with (default: the run's base model)")
    p.add_argument(
        "--shots", type=int, default=0, metavar="K", help="few-shot baseline: the base with K examples"
    )
    p.add_argument(
        "--shots-data",
        default=None,
        metavar="FILE",
        help="draw them from FILE (default: the run's training data)",
    )
    p.add_argument(
        "--forgetting",
        nargs="?",
        const="",
        default=None,
        metavar="FILE",
        help="base vs tuned loss on general text (default: the demo's general-text sample)",
    )
    p.add_argument(
        "--metric", action="append", default=[], metavar="FILE.py:NAME", help="a metric function (repeatable)"
    )
    p.add_argument("--max-new-tokens", type=int, default=64)
    p.add_argument("--limit", type=int, default=None, metavar="N", help="the first N rows only")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    p.add_argument("--no-save", action="store_true", help="do not store the result with the run")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_eval)


def cmd_eval(args, ws: Workspace) -> int:
    from tui_ft.evaluation.store import save_result
    from tui_ft.evaluation.suite import EvalRequest, evaluate

    for name in ("max_new_tokens", "limit", "batch_size"):
        value = getattr(args, name)
        if value is not None and value < 1:
            raise UserError("must be at least 1", field=f"--{name.replace('_', '-')}")
    if args.shots < 0:
        raise UserError("must be 0 (no few-shot row) or more", field="--shots")
    require_run_status(ws, args.model)
    from tui_ft.modelref import resolve_model

    for ref, field in ((args.model, "MODEL"), (args.base, "--base")):
        if ref:  # a hub id that is neither cached nor reachable: exit 2 at once, before any loading
            resolve_model(ref, ws, field=field, reachable=True)
    request = EvalRequest(
        model=args.model,
        data=args.data,
        base=args.base,
        shots=args.shots,
        shots_data=args.shots_data,
        forgetting=args.forgetting,
        metrics=list(args.metric),
        max_new_tokens=args.max_new_tokens,
        limit=args.limit,
        batch_size=args.batch_size,
        device=args.device,
        fields={"metrics": "--metric"},
    )

    def report(text: str) -> None:
        print(f"tui-ft: {text}", file=sys.stderr, flush=True)

    doc = evaluate(request, ws, report=report)
    stored = None
    if doc.get("run") and not args.no_save:
        stored = save_result(ws.runs / doc["run"], doc)
        doc["file"] = str(stored)
    if args.json:
        print_json(doc)
        return 0
    print_eval(doc)
    if stored is not None:
        print(f"saved: {stored}")
    return 0


def print_eval(doc: dict, *, title: str | None = None) -> None:
    """The result table (and the forgetting line) as the terminal shows it."""
    from rich.table import Table

    from tui_ft.evaluation.store import eval_table

    table_doc = eval_table(doc)
    console = output_console()
    table = Table(*table_doc.columns, box=None, header_style="bold", title=title, title_justify="left")
    for row in table_doc.rows:
        table.add_row(*row)
    console.print(table_doc.caption, highlight=False, markup=False)
    console.print(table)
    if table_doc.footer:
        console.print(table_doc.footer, highlight=False, markup=False)
