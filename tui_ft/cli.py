"""The `tui-ft` command: parses arguments, calls the domain, opens the UI lazily.

Exit status: 0 success, 1 the work failed, 2 bad usage or bad input. No traceback reaches the screen:
errors are sentences naming the file, line and field; unexpected ones are logged to the workspace.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from tui_ft import __version__
from tui_ft.errors import UserError, WorkFailed
from tui_ft.workspace import Workspace


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # usage errors: exit 2 with one line and the usage
        self.print_usage(sys.stderr)
        raise UserError(message)


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="tui-ft", description="A terminal workbench for fine-tuning language models.")
    p.add_argument("--version", action="version", version=f"tui-ft {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    demo = sub.add_parser("demo", help="build the demo model and sample data (once), then open the UI")
    demo.add_argument("--prepare-only", action="store_true", help="build and exit")
    demo.add_argument("--force", action="store_true", help="rebuild even if present")

    data = sub.add_parser("data", help="inspect datasets")
    data_sub = data.add_subparsers(dest="data_command", metavar="ACTION", parser_class=_Parser, required=True)
    check = data_sub.add_parser("check", help="detect the format, validate every row, measure token lengths")
    check.add_argument("path")
    check.add_argument(
        "--tokenizer", metavar="MODEL", help="a model reference whose tokenizer to measure with"
    )
    check.add_argument("--max-length", type=int, default=None, help="count examples longer than this")
    check.add_argument("--json", action="store_true")

    train = sub.add_parser("train", help="train a recipe (a file or a shipped recipe's name)")
    train.add_argument("recipe")
    train.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    train.add_argument("--detach", action="store_true", help="run in the background and return at once")
    train.add_argument("--json", action="store_true")

    runs = sub.add_parser("runs", help="list runs, or show one with its checkpoints")
    runs.add_argument("run", nargs="?", help="a run id (or a unique part of one, or `last`)")
    runs.add_argument("--json", action="store_true")

    logs = sub.add_parser("logs", help="print a run's output log")
    logs.add_argument("run")
    logs.add_argument("--follow", "-f", action="store_true", help="keep printing until the run ends")

    stop = sub.add_parser("stop", help="stop a run: checkpoint after the current step, then end")
    stop.add_argument("run")
    stop.add_argument("--now", action="store_true", help="end at once, without a checkpoint")
    stop.add_argument("--no-wait", action="store_true", help="return without waiting for the run to end")
    stop.add_argument("--json", action="store_true")

    resume = sub.add_parser(
        "resume", help="continue a stopped, failed or crashed run from its last checkpoint"
    )
    resume.add_argument("run")
    resume.add_argument("--detach", action="store_true")
    resume.add_argument("--json", action="store_true")

    watch = sub.add_parser("watch", help="open the UI on a run's live dashboard")
    watch.add_argument("run", help="a run id (or a unique part of one, or `last`)")

    export = sub.add_parser(
        "export", help="copy a run's adapter (or checkpoint) to a folder, or merge it into a full model"
    )
    export.add_argument("run", help="a run id, or RUN:checkpoint-N")
    export.add_argument("--out", required=True, type=Path, metavar="DIR", help="a new (or empty) folder")
    export.add_argument(
        "--merge", action="store_true", help="merge the adapter into its base and save a full model"
    )
    export.add_argument("--json", action="store_true")

    gen = sub.add_parser("generate", help="generate a reply from a model, run or checkpoint")
    gen.add_argument("model")
    gen.add_argument("--prompt", required=True)
    gen.add_argument("--system", default=None)
    gen.add_argument("--max-new-tokens", type=int, default=64)
    gen.add_argument("--temperature", type=float, default=0.0)
    gen.add_argument("--json", action="store_true")

    sysinfo = sub.add_parser("sysinfo", help="versions, CUDA, GPUs, CPU and memory")
    sysinfo.add_argument("--json", action="store_true")

    recipes = sub.add_parser("recipes", help="list the shipped recipes")
    recipes.add_argument("--json", action="store_true")

    estimate = sub.add_parser("estimate", help="estimate a recipe's GPU memory from the model's config.json")
    estimate.add_argument("recipe")
    estimate.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    estimate.add_argument("--json", action="store_true")
    return p


# ------------------------------------------------------------------------------------------------


def _print_json(doc: Any) -> None:
    print(json.dumps(doc, indent=2, default=str))


def cmd_demo(args, ws: Workspace) -> int:
    from tui_ft.demo import build_demo

    t0 = time.perf_counter()
    built = build_demo(ws.ensure(), force=args.force)
    took = time.perf_counter() - t0
    verb = "built" if built.built else "already present"
    print(f"demo model {verb}: {built.model_dir}" + (f" ({took:.1f} s)" if built.built else ""))
    for name, path in built.datasets.items():
        print(f"  sample data {name:<18} {path}")
    print(f"workspace: {ws.root}")
    if args.prepare_only:
        return 0
    from tui_ft.ui.app import run_app

    return run_app(ws, start_mode="datasets")


def _data_path(ref: str, ws: Workspace) -> str:
    path = Path(ref).expanduser()
    if not path.exists() and not path.is_absolute() and (ws.data / ref).exists():
        return str(ws.data / ref)
    return ref


def cmd_data_check(args, ws: Workspace) -> int:
    from tui_ft.data.checks import check_dataset

    tokenizer = None
    if args.tokenizer:
        from tui_ft.engine.models import load_tokenizer
        from tui_ft.engine.stack import quiet_library_noise
        from tui_ft.modelref import resolve_model

        quiet_library_noise()
        tokenizer = load_tokenizer(resolve_model(args.tokenizer, ws, field="--tokenizer"))
    report = check_dataset(_data_path(args.path, ws), tokenizer=tokenizer, max_length=args.max_length)
    doc = report.to_json()
    if args.json:
        _print_json(doc)
    else:
        _print_check(doc)
    return 2 if doc["errors"] else 0


def _print_check(doc: dict) -> None:
    from rich.console import Console

    out = Console()
    err = Console(stderr=True)
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
        err.print(f"{len(errors)} error(s)", style="red")
    else:
        out.print("  [green]no errors[/]")


def cmd_train(args, ws: Workspace) -> int:
    from tui_ft.recipe import load_recipe
    from tui_ft.runs.launcher import spawn_runner
    from tui_ft.runs.prepare import create_run

    loaded = load_recipe(args.recipe, args.overrides, cache_dir=ws.ensure().cache)
    run = create_run(loaded, ws)
    if args.detach:
        proc = spawn_runner(run, detach=True)
        if args.json:
            _print_json({"id": run.id, "pid": proc.pid, "path": str(run.path)})
        else:
            print(run.id)
        return 0
    if not args.json:
        print(f"run {run.id}  (log: {run.log_file})", file=sys.stderr)
    proc = spawn_runner(run, detach=False)
    code = _follow_foreground(run, proc, quiet=args.json)
    status = run.read_status()
    if args.json:
        _print_json(
            {
                "id": run.id,
                "state": status.state if status else None,
                "step": status.step if status else None,
                "loss": status.loss if status else None,
                "eval_loss": status.eval_loss if status else None,
                "final": str(run.final) if run.final.exists() else None,
                "error": status.error if status else None,
            }
        )
    elif status is not None:
        _print_outcome(run, status)
    return code


def _follow_foreground(run, proc, *, quiet: bool, start_offset: int = 0) -> int:
    """Show progress from the run's events until the runner exits; Ctrl-C asks for a graceful stop."""
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    from tui_ft.runs.rundir import read_events

    console = Console(stderr=True)
    offset = start_offset
    interrupts = 0
    columns = [
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[metrics]}"),
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
    ]
    with Progress(*columns, console=console, transient=False, disable=quiet) as progress:
        task = progress.add_task("starting", total=None, metrics="")
        metrics: dict[str, str] = {}
        while True:
            try:
                code = proc.poll()
                events, offset = read_events(run.events_file, offset)
                for ev in events:
                    kind = ev.get("type")
                    if kind == "start":
                        progress.update(task, description="training", total=ev.get("max_steps") or None)
                    elif kind == "message" and not quiet:
                        progress.console.print(f"[dim]{ev.get('text')}[/]", highlight=False)
                    elif kind == "train":
                        if ev.get("loss") is not None:
                            metrics["loss"] = f"loss {ev['loss']:.4f}"
                        if ev.get("tokens_per_s"):
                            metrics["tps"] = f"{ev['tokens_per_s']:.0f} tok/s"
                    elif kind == "eval" and ev.get("eval_loss") is not None:
                        metrics["eval"] = f"eval {ev['eval_loss']:.4f}"
                    elif kind == "checkpoint" and not quiet:
                        progress.console.print(f"[dim]checkpoint at step {ev.get('step')}[/]")
                    if "step" in ev:
                        progress.update(task, completed=ev["step"])
                progress.update(task, metrics="  ".join(metrics.values()))
                if code is not None:
                    return code
                time.sleep(0.2)
            except KeyboardInterrupt:
                # The runner shares our process group and got the same SIGINT: it stops gracefully
                # on the first, at once on the second. We keep following it until it exits.
                interrupts += 1
                msg = (
                    "stopping after this step (Ctrl-C again to stop at once)"
                    if interrupts == 1
                    else "stopping now"
                )
                progress.console.print(f"[yellow]{msg}[/]")
                progress.update(task, description="stopping")


def _print_outcome(run, status) -> None:
    from rich.console import Console

    console = Console(stderr=True)
    if status.state == "completed":
        loss = f", loss {status.loss:.4f}" if status.loss is not None else ""
        ev = f", eval loss {status.eval_loss:.4f}" if status.eval_loss is not None else ""
        console.print(f"[green]completed[/] {run.id}: {status.step} steps{loss}{ev}")
        console.print(f"  model: {run.final}")
        if status.method == "reward":
            from tui_ft.runs.metrics import last_method_metrics

            last = last_method_metrics(run)
            scores = {k: last[k] for k in ("eval_accuracy", "eval_margin") if k in last}
            if scores:
                console.print(
                    "  eval:  " + ", ".join(f"{k.removeprefix('eval_')} {v:.3f}" for k, v in scores.items())
                )
            console.print(f"  try:   tui-ft train grpo-lora --set 'rewards.models=[{run.id}]'")
        else:
            console.print(f"  try:   tui-ft generate {run.id} --prompt '...'")
    elif status.state == "stopped":
        console.print(
            f"[yellow]stopped[/] {run.id} at step {status.step}; checkpoint: {status.last_checkpoint}"
        )
    else:
        err = status.error or {}
        console.print(f"[red]{status.state}[/] {run.id}: ", end="")
        # the message and hint are the user's and the libraries' words: no markup, no wrapping
        console.print(err.get("message", ""), markup=False, highlight=False, soft_wrap=True)
        if err.get("hint"):
            console.print(f"  hint: {err['hint']}", markup=False, highlight=False, soft_wrap=True)
        console.print(f"  log:  {run.log_file}", markup=False, highlight=False, soft_wrap=True)


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
            _print_json(doc)
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
        _print_json([i.to_json() for i in infos])
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


def cmd_stop(args, ws: Workspace) -> int:
    from tui_ft.runs.registry import find_run, kill_now, request_stop, wait_until_final

    run = find_run(ws, args.run)
    t0 = time.monotonic()
    request_stop(run, now=args.now)
    status = None
    if not args.no_wait:
        status = wait_until_final(run, timeout=20 if args.now else 600)
        if args.now and (status is None or not status.is_final):
            kill_now(run)
            status = wait_until_final(run, timeout=10)
    took = time.monotonic() - t0
    if args.json:
        _print_json(
            {
                "id": run.id,
                "state": status.state if status else "stopping",
                "step": status.step if status else None,
                "checkpoint": status.last_checkpoint if status else None,
                "seconds": round(took, 3),
            }
        )
    elif status is None:
        print(f"stop requested for {run.id}")
    else:
        where = f" at step {status.step}" + (
            f"; checkpoint {status.last_checkpoint}" if status.last_checkpoint else ""
        )
        print(f"{run.id} {status.state}{where} ({took:.1f} s)")
    return 0


def cmd_resume(args, ws: Workspace) -> int:
    from tui_ft.runs.launcher import resume_run
    from tui_ft.runs.registry import find_run

    run = find_run(ws, args.run)
    proc, last = resume_run(run, detach=args.detach)
    if args.detach:
        if args.json:
            _print_json({"id": run.id, "pid": proc.pid, "from_step": last.step})
        else:
            print(f"{run.id} resuming from step {last.step}")
        return 0
    if not args.json:
        print(f"resuming {run.id} from step {last.step}", file=sys.stderr)
    code = _follow_foreground(run, proc, quiet=args.json, start_offset=_events_size(run))
    final = run.read_status()
    if args.json:
        _print_json(
            {"id": run.id, "state": final.state, "step": final.step, "loss": final.loss, "error": final.error}
        )
    else:
        _print_outcome(run, final)
    return code


def cmd_watch(args, ws: Workspace) -> int:
    from tui_ft.runs.registry import find_run

    run = find_run(ws, args.run)  # exit 2 with the closest ids before any UI appears
    from tui_ft.ui.app import run_app

    return run_app(ws, start_mode="runs", start_run=run.id)


def cmd_export(args, ws: Workspace) -> int:
    from tui_ft.inference.export import check_out_dir, export_run, resolve_export_source

    resolve_export_source(ws, args.run)  # bad references and a non-empty folder: exit 2 at once
    check_out_dir(args.out)
    if not args.json and args.merge:
        print(f"merging {args.run} into its base model…", file=sys.stderr)
    result = export_run(ws, args.run, args.out, merge=args.merge)
    if args.json:
        _print_json(result.to_json())
        return 0
    what = "full model (merged)" if result.merged else ("adapter" if result.adapter else "model")
    print(
        f"exported the {what} of {result.source} to {result.out_dir} ({result.files} files, "
        f"{result.bytes / 1e6:.1f} MB)"
    )
    if result.note:
        print(f"  note: {result.note}")
    return 0


def _events_size(run) -> int:
    try:
        return run.events_file.stat().st_size
    except OSError:
        return 0


def cmd_generate(args, ws: Workspace) -> int:
    from tui_ft.inference.generate import load_for_generation, stream

    loaded = load_for_generation(args.model, ws)
    options = {
        "system": args.system,
        "max_new_tokens": args.max_new_tokens,
        "temperature": args.temperature,
    }
    start = time.perf_counter()
    pieces = []
    for piece in stream(loaded, args.prompt, **options):
        pieces.append(piece)
        if not args.json:
            print(piece, end="", flush=True)
    text = "".join(pieces)
    seconds = time.perf_counter() - start
    if args.json:
        new_tokens = len(loaded.tokenizer(text, add_special_tokens=False)["input_ids"]) if text else 0
        _print_json(
            {
                "model": args.model,
                "resolved": loaded.ref.path,
                "adapter": loaded.ref.adapter,
                "prompt": args.prompt,
                "text": text,
                "new_tokens": new_tokens,
                "seconds": round(seconds, 3),
            }
        )
    else:
        print()
    return 0


def cmd_sysinfo(args, ws: Workspace) -> int:  # noqa: ARG001
    from tui_ft.monitor.system import format_sysinfo, sysinfo

    info = sysinfo()
    if args.json:
        _print_json(info)
    else:
        from rich.console import Console

        Console().print(format_sysinfo(info))
    return 0


def cmd_recipes(args, ws: Workspace) -> int:  # noqa: ARG001
    import yaml

    from tui_ft.recipe import shipped_recipes

    rows = []
    for path in shipped_recipes():
        data = yaml.safe_load(path.read_text()) or {}
        rows.append(
            {
                "name": path.stem,
                "method": data.get("method"),
                "adapter": (data.get("adapter") or {}).get("type", "lora"),
                "quantization": (data.get("model") or {}).get("quantization", "none"),
                "model": (data.get("model") or {}).get("name"),
                "data": (data.get("data") or {}).get("train"),
                "description": data.get("description", ""),
                "path": str(path),
            }
        )
    if args.json:
        _print_json(rows)
        return 0
    from rich.console import Console
    from rich.table import Table

    table = Table("recipe", "method", "adapter", "data", "description", box=None, header_style="bold")
    for r in rows:
        adapter = r["adapter"] + (f" ({r['quantization']})" if r["quantization"] != "none" else "")
        table.add_row(r["name"], r["method"], adapter, r["data"], r["description"])
    Console().print(table)
    print("\ntrain one:  tui-ft train sft-lora --set training.max_steps=50")
    if rows:
        print(f"edit one:   cp {Path(rows[0]['path']).parent}/sft-lora.yaml my-recipe.yaml")
    return 0


def cmd_estimate(args, ws: Workspace) -> int:
    from tui_ft.estimate import estimate_memory, format_bytes, format_count
    from tui_ft.recipe import load_recipe

    loaded = load_recipe(args.recipe, args.overrides, cache_dir=ws.ensure().cache)
    try:
        estimate = estimate_memory(loaded.recipe, ws)
    except UserError as exc:
        raise loaded.error(("model", "name"), exc.message, exc.hint) from None
    if args.json:
        _print_json(estimate.to_json())
        return 0
    from rich.console import Console
    from rich.table import Table

    console = Console()
    console.print(
        f"[bold]{estimate.model}[/] ({estimate.model_source}): {format_count(estimate.total_params)} "
        f"parameters, {format_count(estimate.trainable_params)} trainable; {estimate.dtype}, "
        f"batch {estimate.batch} x {estimate.seq_len} tokens",
        highlight=False,
    )
    table = Table("part", "memory", "why", box=None, header_style="bold")
    for part in estimate.parts:
        table.add_row(part.label, format_bytes(part.bytes), part.explanation)
    table.add_row("[bold]total[/]", f"[bold]{format_bytes(estimate.total_bytes)}[/]", "per device")
    console.print(table)
    for note in estimate.assumptions:
        console.print(f"  note: {note}", highlight=False, markup=False)
    colour = {True: "green", False: "red"}.get(estimate.fits, "yellow")  # type: ignore[arg-type]
    console.print(f"[{colour}]{estimate.verdict()}[/]", highlight=False)
    return 0


COMMANDS = {
    "demo": cmd_demo,
    "runs": cmd_runs,
    "logs": cmd_logs,
    "stop": cmd_stop,
    "resume": cmd_resume,
    "train": cmd_train,
    "watch": cmd_watch,
    "export": cmd_export,
    "generate": cmd_generate,
    "sysinfo": cmd_sysinfo,
    "recipes": cmd_recipes,
    "estimate": cmd_estimate,
}


def run(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    ws = Workspace.default()
    if args.command is None:
        from tui_ft.ui.app import run_app

        return run_app(ws)
    if args.command == "data":
        return cmd_data_check(args, ws)
    return COMMANDS[args.command](args, ws)


def main(argv: list[str] | None = None) -> int:
    try:
        return run(argv)
    except UserError as exc:
        print(f"tui-ft: {exc}", file=sys.stderr)
        return exc.exit_status
    except WorkFailed as exc:
        print(f"tui-ft: {exc}", file=sys.stderr)
        return exc.exit_status
    except KeyboardInterrupt:
        print("tui-ft: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0
    except Exception as exc:  # noqa: BLE001 - translated here; the traceback goes to a log file
        return _report_unexpected(exc)


def _report_unexpected(exc: BaseException) -> int:
    import traceback

    from tui_ft.engine.errors import translate_exception

    failure = translate_exception(exc)
    log = None
    try:
        ws = Workspace.default().ensure()
        log = ws.cache / "last-error.log"
        log.write_text("".join(traceback.format_exception(exc)))
    except OSError:
        pass
    print(f"tui-ft: {failure}", file=sys.stderr)
    if log:
        print(f"  details: {log}", file=sys.stderr)
    return 1
