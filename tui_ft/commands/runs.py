"""`tui-ft runs`, `logs` and `watch`: list runs, show one, print its log, open its dashboard."""

from __future__ import annotations

import argparse
import sys
import time

from tui_ft.commands import output_console, print_json
from tui_ft.workspace import Workspace


def register(sub: argparse._SubParsersAction) -> None:
    runs = sub.add_parser("runs", help="list runs, or show one with its checkpoints")
    runs.add_argument("run", nargs="?", help="a run id (or a unique part of one, or `last`)")
    runs.add_argument(
        "--steps",
        action="store_true",
        help="with RUN: a table of every logged step's metrics (loss, lr, grad_norm, the method's own)",
    )
    runs.add_argument("--json", action="store_true")
    runs.set_defaults(func=cmd_runs)

    logs = sub.add_parser("logs", help="print a run's output log")
    logs.add_argument("run")
    logs.add_argument("--follow", "-f", action="store_true", help="keep printing until the run ends")
    logs.set_defaults(func=cmd_logs)

    watch = sub.add_parser("watch", help="open the UI on a run's live dashboard")
    watch.add_argument("run", help="a run id (or a unique part of one, or `last`)")
    watch.set_defaults(func=cmd_watch)


def cmd_runs(args, ws: Workspace) -> int:
    from rich.table import Table
    from rich.text import Text

    from tui_ft.display import format_duration, format_started, format_value, state_style
    from tui_ft.runs.listing import UNREADABLE, RunsIndex

    if args.run:
        return _show_steps(args, ws) if args.steps else _show_run(args, ws)
    if args.steps:
        from tui_ft.errors import UserError

        raise UserError(
            "--steps shows one run's steps: give the run", field="RUN", hint="tui-ft runs last --steps"
        )
    rows = RunsIndex(ws).rows()  # newest first, as the UI lists them
    if args.json:
        print_json([row.to_json() for row in rows])
        return 0
    if not rows:
        print("no runs yet; start one with `tui-ft train sft-lora`")
        return 0
    table = Table(
        "run", "method", "state", "step", "loss", "started", "duration", box=None, header_style="bold"
    )
    for row in rows:
        steps = f"{row.step}/{row.max_steps}" if row.max_steps else str(row.step)
        table.add_row(
            row.id,
            row.method or "-",
            Text(row.state_label, style=state_style(row.state)),
            steps if row.state != UNREADABLE else "-",
            format_value(row.last_loss),
            format_started(row.started or row.created),
            format_duration(row.duration_s),
        )
    console = output_console()  # piped: never truncate run ids
    console.print(table)
    for row in rows:
        if row.state == UNREADABLE:  # the reason, on a line of its own: never cut
            console.print(f"{row.id}: {row.error_message}", markup=False, highlight=False, soft_wrap=True)
    return 0


def _show_run(args, ws: Workspace) -> int:
    """`tui-ft runs RUN`: the run's row, its method metrics and its checkpoints."""
    from rich.table import Table

    from tui_ft.display import format_value
    from tui_ft.evaluation.store import load_latest
    from tui_ft.runs.listing import RunsIndex
    from tui_ft.runs.metrics import last_confusion_matrix, last_method_metrics
    from tui_ft.runs.registry import find_run, list_checkpoints, require_status

    run = find_run(ws, args.run)
    require_status(run)  # exit 2 naming status.json when it cannot be read
    row = RunsIndex(ws).row(run)
    checkpoints = list_checkpoints(run)
    doc = row.to_json() | {
        "checkpoints": [c.to_json() for c in checkpoints],
        "metrics": last_method_metrics(run),
        "eval": load_latest(run.path),
    }
    confusion = last_confusion_matrix(run)  # a classifier's last evaluation
    if confusion is not None:
        doc["confusion_matrix"] = confusion
    if args.json:
        print_json(doc)
        return 0
    console = output_console()
    shown = dict(doc, state=row.state_label)
    for key in (
        "id",
        "state",
        "method",
        "model",
        "adapter",
        "step",
        "max_steps",
        "loss",
        "eval_loss",
        "path",
    ):
        value = shown[key]
        text = format_value(value) if isinstance(value, float) else ("-" if value is None else str(value))
        console.print(f"{key:>10}  {text}", highlight=False, markup=False)
    if doc["metrics"]:
        metrics = ", ".join(f"{k} {format_value(v)}" for k, v in doc["metrics"].items())
        console.print(f"{'metrics':>10}  {metrics}", highlight=False, markup=False)
    if confusion is not None:
        console.print(_confusion_table(confusion))
    if row.error_message:
        console.print(f"{'error':>10}  {row.error_message}", highlight=False, markup=False)
        if row.error_hint:
            console.print(f"{'hint':>10}  {row.error_hint}", highlight=False, markup=False)
    table = Table("checkpoint", "step", "complete", "loss", "eval_loss", box=None, header_style="bold")
    for c in checkpoints:
        table.add_row(
            c.path.name,
            str(c.step),
            "yes" if c.complete else "no (cut short)",
            format_value(c.metrics.get("loss")),
            format_value(c.metrics.get("eval_loss")),
        )
    if checkpoints:
        console.print(table)
    _print_eval(console, doc["eval"], run.id)
    return 0


# Shorter headers for the per-step table (the JSON keeps the names the trainer logged); a reward
# function's mean `rewards/NAME/mean` is headed `NAME`, and the eval table drops the `eval_` prefix.
STEP_HEADERS = {
    "learning_rate": "lr",
    "completions/mean_length": "mean_len",
    "completions/min_length": "min_len",
    "completions/max_length": "max_len",
    "completions/clipped_ratio": "clipped",
}


def step_header(column: str) -> str:
    """The per-step table's header for a logged metric name."""
    name = column.removeprefix("eval_")
    if name.startswith("rewards/") and name.endswith("/mean") and name.count("/") == 2:
        return name.split("/")[1]
    return STEP_HEADERS.get(name, name)


def _show_steps(args, ws: Workspace) -> int:
    """`tui-ft runs RUN --steps`: every logged training step's metrics, then every evaluation's."""
    from rich.table import Table

    from tui_ft.display import format_count, format_value
    from tui_ft.runs.metrics import step_table
    from tui_ft.runs.registry import find_run, require_status

    run = find_run(ws, args.run)
    status = require_status(run)
    train_columns, train_rows = step_table(run, "train")
    eval_columns, eval_rows = step_table(run, "eval")
    if args.json:
        print_json({"id": run.id, "method": status.method, "train": train_rows, "eval": eval_rows})
        return 0
    console = output_console()
    console.print(
        f"{run.id} ({status.method}, {status.state}): {format_count(len(train_rows), 'logged step')}"
        + (f", {format_count(len(eval_rows), 'evaluation')}" if eval_rows else ""),
        highlight=False,
        markup=False,
    )
    for title, columns, rows in (("train", train_columns, train_rows), ("eval", eval_columns, eval_rows)):
        if not rows:
            continue
        table = Table(title=title, title_justify="left", box=None, header_style="bold")
        table.add_column("step", justify="right")
        for column in columns:
            table.add_column(step_header(column), justify="right")
        for row in rows:
            table.add_row(str(row["step"]), *(format_value(row.get(c)) for c in columns))
        console.print(table)
    if not train_rows and not eval_rows:
        console.print("no step logged yet", highlight=False)
    return 0


def _confusion_table(confusion: dict):
    """A classifier's confusion matrix: a row per true class, a column per predicted one."""
    from rich.table import Table
    from rich.text import Text

    labels = confusion["labels"]
    table = Table(
        "true ↓ predicted →",
        title=f"confusion matrix (evaluation at step {confusion.get('step')})",
        box=None,
        header_style="bold",
    )
    for label in labels:
        table.add_column(Text(label), justify="right")
    for label, row in zip(labels, confusion["matrix"], strict=True):
        table.add_row(Text(label), *(str(v) for v in row))
    return table


def _print_eval(console, doc: dict | None, run_id: str) -> None:
    """The run's newest evaluation as a short table, or how to make one."""
    from rich.table import Table

    from tui_ft.evaluation.store import NO_EVAL_TEXT, eval_table

    if doc is None:
        console.print(
            f"{'eval':>10}  {NO_EVAL_TEXT.format(run=run_id)}", highlight=False, markup=False, soft_wrap=True
        )
        return
    shown = eval_table(doc)
    console.print(f"{'eval':>10}  {shown.caption}", highlight=False, markup=False, soft_wrap=True)
    table = Table(*shown.columns, box=None, header_style="bold")
    for row in shown.rows:
        table.add_row(*row)
    console.print(table)
    if shown.footer:
        console.print(shown.footer, highlight=False, markup=False, soft_wrap=True)


def cmd_logs(args, ws: Workspace) -> int:
    from tui_ft.runs.registry import find_run, refresh, require_status

    run = find_run(ws, args.run)
    require_status(run)  # exit 2 naming status.json when it cannot be read
    offset = 0
    while True:
        try:
            with open(run.log_file, "rb") as fh:
                fh.seek(offset)
                chunk = fh.read()
        except FileNotFoundError:
            chunk = b""
        if chunk:
            sys.stdout.write(chunk.decode("utf-8", "replace"))
            sys.stdout.flush()
            offset += len(chunk)
        if not args.follow:
            return 0
        status = refresh(run)
        if status is None or status.is_final:
            return 0
        time.sleep(0.3)


def cmd_watch(args, ws: Workspace) -> int:
    from tui_ft.runs.registry import find_run, require_status

    run = find_run(ws, args.run)  # exit 2 with the closest ids before any UI appears
    require_status(run)  # ... or naming its status.json when it cannot be read
    from tui_ft.ui.app import run_app

    return run_app(ws, start_mode="runs", start_run=run.id)
