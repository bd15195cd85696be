"""`tui-ft runs`, `logs` and `watch`: list runs, show one, print its log, open its dashboard."""

from __future__ import annotations

import argparse
import sys
import time

from tui_ft.commands import print_json
from tui_ft.workspace import Workspace


def register(sub: argparse._SubParsersAction) -> None:
    runs = sub.add_parser("runs", help="list runs, or show one with its checkpoints")
    runs.add_argument("run", nargs="?", help="a run id (or a unique part of one, or `last`)")
    runs.add_argument("--json", action="store_true")
    runs.set_defaults(func=cmd_runs)

    logs = sub.add_parser("logs", help="print a run's output log")
    logs.add_argument("run")
    logs.add_argument("--follow", "-f", action="store_true", help="keep printing until the run ends")
    logs.set_defaults(func=cmd_logs)

    watch = sub.add_parser("watch", help="open the UI on a run's live dashboard")
    watch.add_argument("run", help="a run id (or a unique part of one, or `last`)")
    watch.set_defaults(func=cmd_watch)


def _ago(ts: float | None) -> str:
    if not ts:
        return "-"
    from datetime import datetime

    return datetime.fromtimestamp(ts).strftime("%m-%d %H:%M")


def _duration(start: float | None, end: float | None) -> str:
    if not start:
        return "-"
    seconds = int((end or time.time()) - start)
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def cmd_runs(args, ws: Workspace) -> int:
    from rich.console import Console
    from rich.table import Table

    from tui_ft.runs.metrics import last_method_metrics
    from tui_ft.runs.registry import find_run, list_checkpoints, list_runs, refresh

    if args.run:
        run = find_run(ws, args.run)
        status = refresh(run)
        checkpoints = list_checkpoints(run)
        from tui_ft.runs.registry import RunInfo

        doc = RunInfo(run, status).to_json() | {
            "checkpoints": [c.to_json() for c in checkpoints],
            "metrics": last_method_metrics(run),
        }
        if args.json:
            print_json(doc)
            return 0
        console = Console()
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
            console.print(f"{key:>10}  {doc[key]}", highlight=False, markup=False)
        if doc["metrics"]:
            shown = ", ".join(f"{k} {_fmt(v)}" for k, v in doc["metrics"].items())
            console.print(f"{'metrics':>10}  {shown}", highlight=False, markup=False)
        if status.error:
            console.print(f"{'error':>10}  {status.error.get('message')}", highlight=False, markup=False)
            if status.error.get("hint"):
                console.print(f"{'hint':>10}  {status.error['hint']}", highlight=False, markup=False)
        table = Table("checkpoint", "step", "complete", "loss", "eval_loss", box=None, header_style="bold")
        for c in checkpoints:
            table.add_row(
                c.path.name,
                str(c.step),
                "yes" if c.complete else "no (cut short)",
                _fmt(c.metrics.get("loss")),
                _fmt(c.metrics.get("eval_loss")),
            )
        if checkpoints:
            console.print(table)
        return 0
    infos = list_runs(ws)
    if args.json:
        print_json([i.to_json() for i in infos])
        return 0
    if not infos:
        print("no runs yet; start one with `tui-ft train sft-lora`")
        return 0
    table = Table(
        "run", "method", "state", "step", "loss", "started", "duration", box=None, header_style="bold"
    )
    colours = {"completed": "green", "running": "cyan", "failed": "red", "crashed": "red", "queued": "yellow"}
    for info in infos:
        s = info.status
        steps = f"{s.step}/{s.max_steps}" if s.max_steps else str(s.step)
        state = f"[{colours.get(s.state, 'white')}]{s.state}[/]"
        table.add_row(
            s.id,
            s.method,
            state,
            steps,
            _fmt(s.loss),
            _ago(s.started or s.created),
            _duration(s.started, s.ended),
        )
    console = Console()
    if not console.is_terminal:
        console = Console(width=200)  # piped: never truncate run ids
    console.print(table)
    return 0


def _fmt(value) -> str:
    return f"{value:.4f}" if isinstance(value, (int, float)) else "-"


def cmd_logs(args, ws: Workspace) -> int:
    from tui_ft.runs.registry import find_run, refresh

    run = find_run(ws, args.run)
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
    from tui_ft.runs.registry import find_run

    run = find_run(ws, args.run)  # exit 2 with the closest ids before any UI appears
    from tui_ft.ui.app import run_app

    return run_app(ws, start_mode="runs", start_run=run.id)
