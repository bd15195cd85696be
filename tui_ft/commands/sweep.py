"""`tui-ft sweep`: a grid or an Optuna search over a recipe's keys, each trial an ordinary run;
`tui-ft sweeps`: the sweeps, or one with its trials ranked."""

from __future__ import annotations

import argparse
import sys

from tui_ft.commands import output_console, print_command, print_json
from tui_ft.display import format_count, format_value
from tui_ft.errors import UserError
from tui_ft.workspace import Workspace


def register(sub: argparse._SubParsersAction) -> None:
    sweep = sub.add_parser(
        "sweep", help="hyperparameter search: a grid, or Optuna over ranges; each trial is a run"
    )
    sweep.add_argument("recipe", nargs="?", help="a recipe file or name")
    sweep.add_argument("--grid", action="append", default=[], metavar="KEY=V1,V2", help="values to try")
    sweep.add_argument(
        "--range",
        dest="ranges",
        action="append",
        default=[],
        metavar="KEY=LO:HI[:log]",
        help="a range for the Optuna search",
    )
    sweep.add_argument(
        "--search", choices=("grid", "optuna"), default=None, help="optuna when ranges are given"
    )
    sweep.add_argument("--trials", type=int, default=0, help="trials of an Optuna search")
    sweep.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    sweep.add_argument("--metric", default="eval_loss", help="what ranks the trials (an eval metric)")
    sweep.add_argument("--direction", choices=("minimize", "maximize"), default=None)
    sweep.add_argument("--detach", action="store_true", help="run the sweep in the background")
    sweep.add_argument("--json", action="store_true")
    sweep.add_argument("--drive", metavar="SWEEP", help=argparse.SUPPRESS)
    sweep.add_argument("--resume", action="store_true", help=argparse.SUPPRESS)
    sweep.set_defaults(func=cmd_sweep)

    sweeps = sub.add_parser("sweeps", help="list sweeps, or show one with its trials ranked")
    sweeps.add_argument("sweep", nargs="?")
    sweeps.add_argument("--json", action="store_true")
    sweeps.set_defaults(func=cmd_sweeps)


def _reporter(quiet: bool):
    def report(sweep, trial, what: str) -> None:
        if quiet:
            return
        if trial is None:
            print(f"sweep {sweep.id}: {what}", file=sys.stderr, flush=True)
            return
        params = " ".join(f"{k}={v}" for k, v in trial.params.items())
        value = f"  {sweep.metric} {format_value(trial.value)}" if trial.value is not None else ""
        print(
            f"trial {trial.number} {trial.run_id or ''} [{params}] {what}{value}", file=sys.stderr, flush=True
        )

    return report


def cmd_sweep(args, ws: Workspace) -> int:
    from tui_ft.runs.sweep import (
        SweepDir,
        create_sweep,
        parse_grid,
        parse_ranges,
        run_sweep,
        spawn_driver,
        sweeps_dir,
    )

    if args.drive:  # the detached driver (or a resume)
        folder = SweepDir(sweeps_dir(ws) / args.drive)
        sweep = run_sweep(ws, folder, _reporter(False), resume=args.resume)
        return 0 if sweep.state in ("completed", "stopped") else 1
    if not args.recipe:
        raise UserError("which recipe? tui-ft sweep RECIPE --grid key=v1,v2", field="RECIPE")
    grid, ranges = parse_grid(args.grid), parse_ranges(args.ranges)
    if args.search == "grid" and ranges:
        raise UserError("--range needs --search optuna (a grid takes --grid values)", field="--search")
    if args.search == "optuna" and not ranges and not grid:
        raise UserError("an Optuna search needs --range (or --grid) keys", field="--range")
    if (args.search == "optuna" or ranges) and args.trials < 1:
        raise UserError("an Optuna search needs --trials N (at least 1)", field="--trials")
    folder = create_sweep(
        ws,
        args.recipe,
        args.overrides,
        grid=grid,
        ranges=ranges,
        trials=args.trials,
        metric=args.metric,
        direction=args.direction,
    )
    if args.search == "optuna" and not ranges:  # a grid searched by Optuna's sampler
        sweep = folder.load()
        sweep.search, sweep.trials, sweep.trials_wanted = "optuna", [], args.trials
        folder.save(sweep)
    if args.detach:
        pid = spawn_driver(folder, ws)
        if args.json:
            print_json({"id": folder.path.name, "pid": pid, "path": str(folder.path)})
        else:
            print(folder.path.name)
            print(f"  follow:  tui-ft sweeps {folder.path.name}", file=sys.stderr)
            print(f"  stop:    tui-ft stop {folder.path.name}", file=sys.stderr)
        return 0
    sweep = run_sweep(ws, folder, _reporter(args.json))
    if args.json:
        print_json(sweep_json(ws, sweep))
    else:
        print_table(sweep)
    return 0 if sweep.state in ("completed", "stopped") else 1


def sweep_json(ws: Workspace, sweep) -> dict:
    doc = sweep.to_json()
    doc["runs"] = [
        {
            "rank": rank,
            **{k: getattr(t, k) for k in ("number", "run_id", "params", "state", "value", "error")},
        }
        for rank, t in enumerate(sweep.ranked(), start=1)
    ]
    best = sweep.best
    doc["best"] = (
        None if best is None else {"run_id": best.run_id, "params": best.params, "value": best.value}
    )
    return doc


def print_table(sweep) -> None:
    from rich.table import Table

    from tui_ft.display import format_column, state_style

    console = output_console()
    keys = list(sweep.grid) + [k for k in sweep.ranges if k not in sweep.grid]
    table = Table("rank", "trial", "run", box=None, header_style="bold")
    for key in [*keys, sweep.metric]:
        table.add_column(key, justify="right")
    table.add_column("state")
    trials = sweep.ranked()
    # each column written alike (learning rates 1.000e-03 and 3.162e-03, not 0.001 and 0.0031622776...)
    columns = [format_column([t.params.get(k) for t in trials]) for k in keys]
    values = format_column([t.value for t in trials])
    for rank, t in enumerate(trials, start=1):
        table.add_row(
            str(rank) if t.value is not None and t.state == "completed" else "-",
            str(t.number),
            t.run_id or "-",
            *(column[rank - 1] for column in columns),
            values[rank - 1],
            f"[{state_style(t.state) or 'white'}]{t.state}[/]",
        )
    console.print(f"sweep {sweep.id}: {sweep.state}, {sweep.direction} {sweep.metric}", highlight=False)
    console.print(table)
    if sweep.best_recipe:
        console.print(f"best recipe saved: {sweep.best_recipe}", markup=False, highlight=False)
        from pathlib import Path

        print_command(console, f"  train it: tui-ft train {Path(sweep.best_recipe).stem}")


def cmd_sweeps(args, ws: Workspace) -> int:
    from tui_ft.runs.sweep import SweepDir, find_sweep, sweeps_dir

    if args.sweep:
        folder = find_sweep(ws, args.sweep)
        if folder is None:
            raise UserError(f"no sweep {args.sweep!r}", field="SWEEP", hint="tui-ft sweeps lists them")
        sweep = folder.load()
        if args.json:
            print_json(sweep_json(ws, sweep))
        else:
            print_table(sweep)
        return 0
    root = sweeps_dir(ws)
    folders = (
        sorted((p for p in root.iterdir() if (p / "sweep.json").is_file()), reverse=True)
        if root.is_dir()
        else []
    )
    sweeps = [SweepDir(p).load() for p in folders]
    if args.json:
        print_json([sweep_json(ws, s) for s in sweeps])
        return 0
    if not sweeps:
        print("no sweeps yet; start one with `tui-ft sweep sft-lora --grid training.learning_rate=1e-3,3e-3`")
        return 0
    for s in sweeps:
        best = s.best
        done = sum(t.state in ("completed", "pruned", "failed") for t in s.trials)
        best_text = (
            f"best {s.metric} {format_value(best.value)} ({best.run_id})"
            if best and best.value is not None
            else "no result yet"
        )
        print(f"{s.id}  {s.state}  {done}/{format_count(s.trials_wanted, 'trial')}  {best_text}")
    return 0
