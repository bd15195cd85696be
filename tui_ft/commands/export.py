"""`tui-ft export`: copy a run's adapter or checkpoint to a folder, or merge it into a full model."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from tui_ft.commands import print_json
from tui_ft.workspace import Workspace


def register(sub: argparse._SubParsersAction) -> None:
    export = sub.add_parser(
        "export", help="copy a run's adapter (or checkpoint) to a folder, or merge it into a full model"
    )
    export.add_argument("run", help="a run id, or RUN:checkpoint-N")
    export.add_argument("--out", required=True, type=Path, metavar="DIR", help="a new (or empty) folder")
    export.add_argument(
        "--merge", action="store_true", help="merge the adapter into its base and save a full model"
    )
    export.add_argument("--json", action="store_true")
    export.set_defaults(func=cmd_export)


def cmd_export(args, ws: Workspace) -> int:
    from tui_ft.display import format_count
    from tui_ft.inference.export import check_out_dir, export_run, resolve_export_source
    from tui_ft.runs.registry import find_run, require_status

    require_status(find_run(ws, args.run.strip().partition(":")[0]))  # a readable status.json, or exit 2
    resolve_export_source(ws, args.run)  # bad references and a non-empty folder: exit 2 at once
    check_out_dir(args.out)
    if not args.json and args.merge:
        print(f"merging {args.run} into its base model…", file=sys.stderr)
    result = export_run(ws, args.run, args.out, merge=args.merge)
    if args.json:
        print_json(result.to_json())
        return 0
    what = "full model (merged)" if result.merged else ("adapter" if result.adapter else "model")
    print(
        f"exported the {what} of {result.source} to {result.out_dir} ({format_count(result.files, 'file')}, "
        f"{result.bytes / 1e6:.1f} MB)"
    )
    if result.note:
        print(f"  note: {result.note}")
    return 0
