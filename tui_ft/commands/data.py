"""`tui-ft data check`: detect a dataset's format, validate every row, measure token lengths."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from tui_ft.commands import CommandParser, print_json
from tui_ft.workspace import Workspace


def register(sub: argparse._SubParsersAction) -> None:
    data = sub.add_parser("data", help="inspect datasets")
    data_sub = data.add_subparsers(
        dest="data_command", metavar="ACTION", parser_class=CommandParser, required=True
    )
    check = data_sub.add_parser("check", help="detect the format, validate every row, measure token lengths")
    check.add_argument("path")
    check.add_argument(
        "--tokenizer", metavar="MODEL", help="a model reference whose tokenizer to measure with"
    )
    check.add_argument("--max-length", type=int, default=None, help="count examples longer than this")
    check.add_argument("--json", action="store_true")
    check.set_defaults(func=cmd_data_check)


def _data_path(ref: str, ws: Workspace) -> str:
    path = Path(ref).expanduser()
    if not path.exists() and not path.is_absolute() and (ws.data / ref).exists():
        return str(ws.data / ref)
    return ref


def cmd_data_check(args, ws: Workspace) -> int:
    from tui_ft.data.checks import check_dataset

    tokenizer = None
    if args.tokenizer:
        from tui_ft.modelref import resolve_model

        resolved = resolve_model(args.tokenizer, ws, field="--tokenizer", reachable=True)
        from tui_ft.engine.models import load_tokenizer
        from tui_ft.library_noise import quiet_library_noise

        quiet_library_noise()
        tokenizer = load_tokenizer(resolved)
    report = check_dataset(_data_path(args.path, ws), tokenizer=tokenizer, max_length=args.max_length)
    doc = report.to_json()
    if args.json:
        print_json(doc)
    else:
        _print_check(doc)
    return 2 if doc["errors"] else 0


def _print_check(doc: dict) -> None:
    from tui_ft.commands import output_console
    from tui_ft.display import format_count

    out = output_console()
    err = output_console(stderr=True)
    out.print(f"[bold]{doc.get('path')}[/]")
    out.print(f"  format   {doc.get('format') or 'unknown'}")
    out.print(f"  rows     {doc.get('rows')}")
    out.print(f"  columns  {', '.join(doc.get('columns') or [])}")
    stats = doc.get("token_stats")
    if stats:
        out.print(
            f"  tokens   min {stats['min']}  p50 {stats['p50']}  p95 {stats['p95']}  max {stats['max']}  "
            f"mean {stats['mean']:.1f}"
        )
        if stats.get("max_length"):
            out.print(f"  over max_length {stats['max_length']}: {stats['over_max_length']}")
    errors = doc.get("errors") or []
    for e in errors:
        where = f"{doc.get('path')}:{e['line']}" if e.get("line") else str(doc.get("path"))
        field = f" {e['field']}:" if e.get("field") else ""
        print(f"{where}:{field} {e['message']}", file=sys.stderr)  # one line each, never wrapped
    if errors:
        err.print(format_count(len(errors), "error"), style="red")
    else:
        out.print("  [green]no errors[/]")
