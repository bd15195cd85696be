"""`tui-ft train`, `stop` and `resume`: start a run, follow it in the foreground, stop or continue it."""

from __future__ import annotations

import argparse
import sys
import time

from tui_ft.commands import output_console, print_command, print_json
from tui_ft.errors import UserError
from tui_ft.workspace import Workspace


def register(sub: argparse._SubParsersAction) -> None:
    train = sub.add_parser("train", help="train a recipe (a file or a shipped recipe's name)")
    train.add_argument("recipe")
    train.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    train.add_argument("--detach", action="store_true", help="run in the background and return at once")
    train.add_argument("--json", action="store_true")
    train.set_defaults(func=cmd_train)

    stop = sub.add_parser("stop", help="stop a run: checkpoint after the current step, then end")
    stop.add_argument("run")
    stop.add_argument("--now", action="store_true", help="end at once, without a checkpoint")
    stop.add_argument("--no-wait", action="store_true", help="return without waiting for the run to end")
    stop.add_argument("--json", action="store_true")
    stop.set_defaults(func=cmd_stop)

    resume = sub.add_parser(
        "resume", help="continue a stopped, failed or crashed run from its last checkpoint"
    )
    resume.add_argument("run")
    resume.add_argument("--detach", action="store_true")
    resume.add_argument("--json", action="store_true")
    resume.set_defaults(func=cmd_resume)


def cmd_train(args, ws: Workspace) -> int:
    from tui_ft.recipe import load_recipe
    from tui_ft.runs.launcher import spawn_runner
    from tui_ft.runs.prepare import create_run

    loaded = load_recipe(args.recipe, args.overrides, cache_dir=ws.ensure().cache)
    require_models_reachable(loaded, ws)
    run = create_run(loaded, ws)
    if args.detach:
        proc = spawn_runner(run, detach=True)
        if args.json:
            print_json({"id": run.id, "pid": proc.pid, "path": str(run.path)})
        else:
            print(run.id, flush=True)  # stdout holds the id alone: RUN=$(tui-ft train X --detach) works
            print_follow_hints(run.id)
        return 0
    if not args.json:
        print(f"run {run.id}  (log: {run.log_file})", file=sys.stderr)
    proc = spawn_runner(run, detach=False)
    code = _follow_foreground(run, proc, quiet=args.json)
    status = run.read_status()
    if args.json:
        print_json(outcome_json(run, status))
    elif status is not None:
        _print_outcome(run, status)
    return code


def print_follow_hints(run_id: str) -> None:
    """How to follow a run started in the background, one command a line (never wrapped), on stderr
    so that stdout keeps only the run id."""
    console = output_console(stderr=True)
    console.print("running in the background; follow it with:", highlight=False)
    for command, what in (
        (f"tui-ft watch {run_id}", "its live dashboard"),
        (f"tui-ft logs {run_id} --follow", "its output as it comes"),
        (f"tui-ft runs {run_id}", "where it is"),
        (f"tui-ft stop {run_id}", "stop it (checkpoint first)"),
        ("tui-ft", "or the UI, then 3 (Runs)"),
    ):
        print_command(console, f"  {command:<{len(run_id) + 24}}  # {what}")


def require_models_reachable(loaded, ws: Workspace) -> None:
    """The recipe's hub models (model.name, rewards.models) are cached or reachable now: offline or with
    the hub out of reach, exit 2 at once naming the recipe field, not after the loader's retries."""
    from tui_ft.errors import NotFoundError
    from tui_ft.modelref import resolve_model

    recipe = loaded.recipe
    refs = [(("model", "name"), recipe.model.name)]
    if recipe.rewards is not None:
        refs += [(("rewards", "models"), ref) for ref in recipe.rewards.models]
    for path, ref in refs:
        try:
            resolve_model(ref, ws, field=".".join(path), reachable=True)
        except NotFoundError as exc:
            raise loaded.error(path, exc.message, exc.hint) from None


def outcome_json(run, status) -> dict:
    """How a run trained in the foreground ended, for `--json` (train and resume alike)."""
    return {
        "id": run.id,
        "state": status.state if status else None,
        "step": status.step if status else None,
        "loss": status.loss if status else None,
        "eval_loss": status.eval_loss if status else None,
        "final": str(run.final) if run.final.exists() else None,
        "error": status.error if status else None,
    }


def _follow_foreground(run, proc, *, quiet: bool, start_offset: int = 0) -> int:
    """Show progress from the run's events until the runner exits; Ctrl-C asks for a graceful stop."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    from tui_ft.display import format_value
    from tui_ft.runs.rundir import read_events

    console = output_console(stderr=True)  # piped: the run's messages are never wrapped
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
                        total = ev.get("max_steps")
                        total = total if isinstance(total, int) and not isinstance(total, bool) else None
                        progress.update(task, description="training", total=total or None)
                    elif kind == "message" and not quiet:
                        text = str(ev.get("text"))  # the run's words (paths, reprs): no markup
                        progress.console.print(text, style="dim", markup=False, highlight=False)
                    elif kind == "train":
                        if _is_number(ev.get("loss")):
                            metrics["loss"] = f"loss {format_value(ev['loss'])}"
                        if _is_number(ev.get("tokens_per_s")) and ev["tokens_per_s"]:
                            metrics["tps"] = f"{ev['tokens_per_s']:.0f} tok/s"
                    elif kind == "eval" and _is_number(ev.get("eval_loss")):
                        metrics["eval"] = f"eval {format_value(ev['eval_loss'])}"
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


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _print_outcome(run, status) -> None:
    from tui_ft.display import format_count, format_value

    console = output_console(stderr=True)
    if status.state == "completed":
        loss = f", loss {format_value(status.loss)}" if status.loss is not None else ""
        ev = f", eval loss {format_value(status.eval_loss)}" if status.eval_loss is not None else ""
        console.print(f"[green]completed[/] {run.id}: {format_count(status.step, 'step')}{loss}{ev}")
        print_command(console, f"  model: {run.final}")
        if status.method == "reward":
            from tui_ft.runs.metrics import last_method_metrics

            last = last_method_metrics(run)
            scores = {k: last[k] for k in ("eval_accuracy", "eval_margin") if k in last}
            if scores:
                console.print(
                    "  eval:  "
                    + ", ".join(f"{k.removeprefix('eval_')} {format_value(v)}" for k, v in scores.items())
                )
            print_command(console, f"  try:   tui-ft train grpo-lora --set 'rewards.models=[{run.id}]'")
        elif status.method == "classify":
            from tui_ft.runs.metrics import last_method_metrics

            last = last_method_metrics(run)
            shown = [k for k in ("eval_accuracy", "eval_f1_macro") if k in last]
            if shown:
                console.print(
                    "  eval:  "
                    + ", ".join(f"{k.removeprefix('eval_')} {format_value(last[k])}" for k in shown)
                )
            print_command(console, f"  more:  tui-ft runs {run.id}   # per class and the confusion matrix")
        else:
            print_command(console, f"  try:   tui-ft generate {run.id} --prompt '...'")
    elif status.state == "stopped":
        console.print(
            f"[yellow]stopped[/] {run.id} at step {status.step}; checkpoint: {status.last_checkpoint}",
            soft_wrap=True,
        )
        print_command(console, f"  resume: tui-ft resume {run.id}")
    else:
        err = status.error or {}
        console.print(f"[red]{status.state}[/] {run.id}: ", end="")
        # the message and hint are the user's and the libraries' words: no markup, no wrapping
        console.print(err.get("message", ""), markup=False, highlight=False, soft_wrap=True)
        if err.get("hint"):
            console.print(f"  hint: {err['hint']}", markup=False, highlight=False, soft_wrap=True)
        console.print(f"  log:  {run.log_file}", markup=False, highlight=False, soft_wrap=True)


def cmd_stop(args, ws: Workspace) -> int:
    from tui_ft.runs.registry import find_run, kill_now, request_stop, wait_until_final
    from tui_ft.runs.sweep import find_sweep, stop_sweep

    folder = find_sweep(ws, args.run)
    if folder is not None:  # a sweep: its driver stops the running trial and ends
        sweep = stop_sweep(folder)
        if args.json:
            print_json({"id": sweep.id, "state": "stopping"})
        else:
            print(f"stop requested for sweep {sweep.id} (resume it with `tui-ft resume {sweep.id}`)")
        return 0
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
        print_json(
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
    from tui_ft.runs.sweep import find_sweep, spawn_driver

    folder = find_sweep(ws, args.run)
    if folder is not None:  # a sweep: the interrupted trial from its checkpoint, then the rest
        sweep = folder.load()
        if sweep.state == "completed":
            raise UserError(f"sweep {sweep.id} has completed; nothing to resume", field="RUN")
        if args.detach:
            pid = spawn_driver(folder, ws, resume=True)
            print_json({"id": sweep.id, "pid": pid}) if args.json else print(f"sweep {sweep.id} resuming")
            return 0
        from tui_ft.commands.sweep import _reporter, print_table, sweep_json
        from tui_ft.runs.sweep import run_sweep

        sweep = run_sweep(ws, folder, _reporter(args.json), resume=True)
        print_json(sweep_json(ws, sweep)) if args.json else print_table(sweep)
        return 0 if sweep.state in ("completed", "stopped") else 1
    run = find_run(ws, args.run)
    proc, last = resume_run(run, detach=args.detach)
    if args.detach:
        if args.json:
            print_json({"id": run.id, "pid": proc.pid, "from_step": last.step})
        else:
            print(f"{run.id} resuming from step {last.step}")
            print_follow_hints(run.id)
        return 0
    if not args.json:
        print(f"resuming {run.id} from step {last.step}", file=sys.stderr)
    code = _follow_foreground(run, proc, quiet=args.json, start_offset=_events_size(run))
    final = run.read_status()
    if args.json:
        print_json(outcome_json(run, final))
    elif final is not None:
        _print_outcome(run, final)
    return code


def _events_size(run) -> int:
    try:
        return run.events_file.stat().st_size
    except OSError:
        return 0
