"""`tui-ft export`: a run's adapter (or checkpoint) copied to a folder, merged into a full model, or
written as a GGUF for llama.cpp and Ollama; then loaded back for a smoke prompt."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from tui_ft.commands import print_json
from tui_ft.workspace import Workspace


def register(sub: argparse._SubParsersAction) -> None:
    export = sub.add_parser(
        "export",
        help="copy a run's adapter (or checkpoint), merge it into a full model, or write a GGUF",
        description=(
            "Export a run's model. Without options the adapter is copied; --merge saves the base with the "
            "adapter merged in (in the base's dtype); --format gguf writes a GGUF for llama.cpp/Ollama with "
            "a Modelfile. The export is then loaded back and answers a smoke prompt."
        ),
    )
    export.add_argument("run", help="a run id, or RUN:checkpoint-N")
    export.add_argument("--out", required=True, type=Path, metavar="DIR", help="a new (or empty) folder")
    export.add_argument(
        "--merge", action="store_true", help="merge the adapter into its base and save a full model"
    )
    export.add_argument(
        "--format",
        choices=("safetensors", "gguf"),
        default="safetensors",
        help="safetensors (default) or gguf (merged, one file for llama.cpp and Ollama)",
    )
    export.add_argument(
        "--quant",
        choices=("f16", "q8_0", "bf16", "f32"),
        default=None,
        help="the GGUF's weight type (default f16)",
    )
    export.add_argument(
        "--device",
        choices=("auto", "cpu", "cuda"),
        default="auto",
        help="where to merge (auto: the GPU when the base fits there, else the CPU)",
    )
    export.add_argument("--force", action="store_true", help="replace a previous export in --out")
    export.add_argument(
        "--no-smoke", action="store_true", help="do not load the export back for a smoke prompt"
    )
    export.add_argument("--json", action="store_true", help="print one JSON document (no progress)")
    # for the UI, which runs the export as a child process: progress as JSON lines on stderr
    export.add_argument("--progress-jsonl", action="store_true", help=argparse.SUPPRESS)
    export.set_defaults(func=cmd_export)


def cmd_export(args, ws: Workspace) -> int:
    from tui_ft.inference.export import (
        check_export_options,
        check_out_dir,
        export_run,
        refuse_prompt_learning_merge,
        resolve_export_source,
    )
    from tui_ft.runs.registry import find_run, require_status

    require_status(find_run(ws, args.run.strip().partition(":")[0]))  # a readable status.json, or exit 2
    check_export_options(args.format, args.quant, args.device)
    source = resolve_export_source(ws, args.run)  # bad references and a non-empty folder: exit 2 at once
    refuse_prompt_learning_merge(source, merge=args.merge, fmt=args.format)
    check_out_dir(args.out, force=args.force)
    options: dict[str, Any] = {
        "merge": args.merge,
        "fmt": args.format,
        "quant": args.quant,
        "force": args.force,
        "smoke": not args.no_smoke,
        "device": args.device,
    }
    if args.progress_jsonl:
        result = export_run(ws, args.run, args.out, progress=_jsonl_progress, **options)
    elif args.json or not sys.stderr.isatty():
        if not args.json:
            print(f"exporting {args.run}…", file=sys.stderr)
        result = export_run(ws, args.run, args.out, **options)
    else:
        result = _with_progress_bar(ws, args, options)
    if args.json:
        print_json(result.to_json())
        return 0
    print_result(result)
    return 0


def _jsonl_progress(stage: str, fraction: float) -> None:
    print(json.dumps({"stage": stage, "fraction": round(fraction, 3)}), file=sys.stderr, flush=True)


def _with_progress_bar(ws: Workspace, args, options: dict[str, Any]):
    """export_run with a rich progress bar on the terminal: one line per stage."""
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn

    from tui_ft.inference.export import export_run

    tasks: dict[str, Any] = {}
    with Progress(
        TextColumn("{task.description:<18}"),
        BarColumn(),
        TaskProgressColumn(),
        TimeElapsedColumn(),
        console=Console(stderr=True),
        transient=False,
    ) as bar:

        def report(stage: str, fraction: float) -> None:
            if stage == "done":
                return
            if stage not in tasks:
                for task in tasks.values():
                    bar.update(task, completed=100)
                tasks[stage] = bar.add_task(stage, total=100)
            bar.update(tasks[stage], completed=round(fraction * 100))

        result = export_run(ws, args.run, args.out, progress=report, **options)
        for task in tasks.values():
            bar.update(task, completed=100)
    return result


def print_result(result) -> None:
    """The human output: what was written, where, its size and dtype, the smoke reply, the notes."""
    print(result.summary())
    if result.device:
        print(f"  merged on: {result.device} ({result.device_reason})")
    if result.modelfile:
        print(f"  Ollama:    ollama create {result.run_id.lower()} -f {result.modelfile}")
    if result.verify:
        v = result.verify
        same = sum(p["same"] for p in v["prompts"])
        print(
            f"  verified:  loaded back with transformers; greedy tokens same as the merged model on "
            f"{same}/{len(v['prompts'])} prompts ({v['agreement']:.0%} of tokens agree)"
        )
    if result.smoke:
        reply = " ".join(result.smoke["reply"].split()) or "(empty reply)"
        print(f"  smoke:     {result.smoke['prompt']!r} -> {reply[:200]!r}")
    if result.replaced:
        print("  replaced the previous export in that folder")
    for note in result.notes:
        print(f"  note: {note}")
