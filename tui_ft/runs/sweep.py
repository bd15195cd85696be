"""Hyperparameter sweeps: a grid, or an Optuna search over ranges, each trial an ordinary run.

A sweep lives in `<workspace>/sweeps/<id>/`: `sweep.json` (what was asked, each trial with its run,
parameters, state and value, the best so far), `study.db` (Optuna's own SQLite storage, for searches)
and `stop-request`. Each trial is a run created from the recipe with the trial's `--set` overrides,
tagged with the sweep (`status.sweep`), started through the runner and its device queue like any run.
The sweep's driver (the `tui-ft sweep` process, in the foreground or detached) follows each child's
events; a search reports the child's intermediate evaluations to Optuna and stops a trial its pruner
gives up on, through the run's ordinary graceful stop. Stopping the sweep stops its running child;
resuming continues it: the interrupted child from its checkpoint, then the trials not yet run.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import math
import os
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from tui_ft.errors import UserError
from tui_ft.runs.rundir import RunDir, parse_event_lines, write_json_atomic
from tui_ft.workspace import Workspace

POLL_S = 0.5
MAXIMIZE_HINTS = ("accuracy", "f1", "precision", "recall", "reward", "margin", "rouge", "exact", "contains")


@dataclass(frozen=True)
class Range:
    """`lo:hi[:log]` for one key; ints when both ends are whole numbers written without a point."""

    lo: float
    hi: float
    log: bool = False
    integer: bool = False

    @classmethod
    def parse(cls, key: str, text: str) -> Range:
        parts = text.split(":")
        if len(parts) not in (2, 3) or (len(parts) == 3 and parts[2] != "log"):
            raise UserError(f"{key}={text}: expected lo:hi or lo:hi:log", field="--range")
        try:
            lo, hi = float(parts[0]), float(parts[1])
        except ValueError:
            raise UserError(f"{key}={text}: the ends must be numbers", field="--range") from None
        log = len(parts) == 3
        if not lo < hi:
            raise UserError(f"{key}={text}: lo must be below hi", field="--range")
        if log and lo <= 0:
            raise UserError(f"{key}={text}: a log range needs lo > 0", field="--range")
        integer = all(p.lstrip("-").isdigit() for p in parts[:2])
        return cls(lo, hi, log, integer)


@dataclass
class Trial:
    number: int
    params: dict[str, str]  # key -> the value as a `--set` takes it
    run_id: str | None = None
    state: str = "pending"  # pending | running | completed | pruned | failed | stopped
    value: float | None = None
    error: str | None = None


@dataclass
class Sweep:
    id: str
    recipe: str
    overrides: list[str]
    search: str  # "grid" | "optuna"
    grid: dict[str, list[str]] = field(default_factory=dict)
    ranges: dict[str, Range] = field(default_factory=dict)
    trials_wanted: int = 0
    metric: str = "eval_loss"
    direction: str = "minimize"
    state: str = "running"  # running | completed | stopped | failed
    trials: list[Trial] = field(default_factory=list)
    created: float = field(default_factory=time.time)
    best_recipe: str | None = None
    pid: int | None = None

    def to_json(self) -> dict[str, Any]:
        doc = asdict(self)
        doc["ranges"] = {k: asdict(r) for k, r in self.ranges.items()}
        return doc

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> Sweep:
        doc = dict(doc)
        doc["ranges"] = {k: Range(**r) for k, r in doc.get("ranges", {}).items()}
        doc["trials"] = [Trial(**t) for t in doc.get("trials", [])]
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in doc.items() if k in known})

    def ranked(self) -> list[Trial]:
        """Trials with a value, best first (then the rest in order)."""
        scored = [t for t in self.trials if t.value is not None and t.state == "completed"]
        sign = 1.0 if self.direction == "minimize" else -1.0
        scored.sort(key=lambda t: sign * (t.value or 0.0))
        return scored + [t for t in self.trials if t not in scored]

    @property
    def best(self) -> Trial | None:
        ranked = self.ranked()
        return (
            ranked[0] if ranked and ranked[0].value is not None and ranked[0].state == "completed" else None
        )


def sweeps_dir(ws: Workspace) -> Path:
    return ws.root / "sweeps"


class SweepDir:
    def __init__(self, path: Path) -> None:
        self.path = path

    file = property(lambda self: self.path / "sweep.json")
    study_db = property(lambda self: self.path / "study.db")
    stop_file = property(lambda self: self.path / "stop-request")
    log_file = property(lambda self: self.path / "output.log")

    def load(self) -> Sweep:
        """The sweep as its file says; `interrupted` when it says running but its driver is gone."""
        from tui_ft.runs.registry import pid_alive

        try:
            sweep = Sweep.from_json(json.loads(self.file.read_text()))
        except (OSError, ValueError, TypeError) as exc:
            raise UserError(f"cannot read the sweep ({exc})", path=self.file) from None
        if sweep.state == "running" and sweep.pid is not None and not pid_alive(sweep.pid):
            sweep.state = "interrupted"  # `tui-ft resume SWEEP` continues it
        return sweep

    def save(self, sweep: Sweep) -> None:
        write_json_atomic(self.file, sweep.to_json())


def find_sweep(ws: Workspace, ref: str) -> SweepDir | None:
    """A sweep by id or unique prefix (None when `ref` names no sweep)."""
    root = sweeps_dir(ws)
    if not root.is_dir() or not ref or "/" in ref:
        return None
    if (root / ref / "sweep.json").is_file():
        return SweepDir(root / ref)
    found = sorted(p for p in root.iterdir() if p.name.startswith(ref) and (p / "sweep.json").is_file())
    if ref == "last" and not found:
        found = sorted(p for p in root.iterdir() if (p / "sweep.json").is_file())[-1:]
    return SweepDir(found[-1]) if len(found) == 1 or (ref == "last" and found) else None


# --- planning ----------------------------------------------------------------------------------------


def parse_grid(items: list[str]) -> dict[str, list[str]]:
    grid: dict[str, list[str]] = {}
    for item in items:
        key, sep, values = item.partition("=")
        if not sep or not key.strip() or not values.strip():
            raise UserError(f"{item!r}: expected key=v1,v2,...", field="--grid")
        grid[key.strip()] = [v.strip() for v in values.split(",") if v.strip()]
    return grid


def parse_ranges(items: list[str]) -> dict[str, Range]:
    ranges: dict[str, Range] = {}
    for item in items:
        key, sep, text = item.partition("=")
        if not sep:
            raise UserError(f"{item!r}: expected key=lo:hi[:log]", field="--range")
        ranges[key.strip()] = Range.parse(key.strip(), text.strip())
    return ranges


def default_direction(metric: str) -> str:
    return "maximize" if any(h in metric for h in MAXIMIZE_HINTS) and "loss" not in metric else "minimize"


def check_trial(recipe: str, overrides: list[str], params: dict[str, str], ws: Workspace, flag: str) -> None:
    """The recipe with `params` loads: every key is a recipe key and every value fits it (exit 2
    naming the sweep's flag and the key otherwise)."""
    from tui_ft.recipe import load_recipe

    try:
        load_recipe(recipe, [*overrides, *(f"{k}={v}" for k, v in params.items())], cache_dir=ws.cache)
    except UserError as exc:
        keys = ", ".join(params)
        raise UserError(f"{keys}: {exc.message}", field=flag, hint=exc.hint) from None


def plan_grid(recipe: str, overrides: list[str], grid: dict[str, list[str]], ws: Workspace) -> list[Trial]:
    keys = list(grid)
    for key in keys:  # each value on its own: the message names the one that is wrong
        for value in grid[key]:
            check_trial(recipe, overrides, {key: value}, ws, f"--grid {key}")
    combos = list(itertools.product(*(grid[k] for k in keys)))
    return [Trial(i, dict(zip(keys, combo, strict=True))) for i, combo in enumerate(combos)]


def new_sweep_id(name: str, ws: Workspace) -> str:
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    candidate, n = f"{stamp}-sweep-{name}", 2
    while (sweeps_dir(ws) / candidate).exists():
        candidate, n = f"{stamp}-sweep-{name}-{n}", n + 1
    return candidate


def create_sweep(
    ws: Workspace,
    recipe: str,
    overrides: list[str],
    *,
    grid: dict[str, list[str]],
    ranges: dict[str, Range],
    trials: int,
    metric: str,
    direction: str | None,
) -> SweepDir:
    """Check everything a sweep needs before any run starts, and write its folder."""
    from tui_ft.recipe import load_recipe

    loaded = load_recipe(recipe, overrides, cache_dir=ws.ensure().cache)
    if not grid and not ranges:
        raise UserError(
            "nothing to sweep over", field="--grid/--range", hint="--grid key=v1,v2 or --range key=lo:hi"
        )
    search = "optuna" if ranges else "grid"
    if search == "optuna":
        if trials < 1:
            raise UserError("a search needs --trials N (at least 1)", field="--trials")
        for key, rng in ranges.items():
            for end in (rng.lo, rng.hi):
                value = str(int(end)) if rng.integer else repr(end)
                check_trial(recipe, overrides, {key: value}, ws, f"--range {key}")
        for key, values in grid.items():
            for value in values:
                check_trial(recipe, overrides, {key: value}, ws, f"--grid {key}")
        planned: list[Trial] = []
    else:
        planned = plan_grid(recipe, overrides, grid, ws)
    name = loaded.recipe.name or loaded.recipe.method
    sweep = Sweep(
        id=new_sweep_id(name, ws),
        recipe=recipe,
        overrides=list(overrides),
        search=search,
        grid=grid,
        ranges=ranges,
        trials_wanted=trials if search == "optuna" else len(planned),
        metric=metric,
        direction=direction or default_direction(metric),
        trials=planned,
    )
    folder = SweepDir(sweeps_dir(ws) / sweep.id)
    folder.path.mkdir(parents=True)
    folder.save(sweep)
    return folder


# --- running -----------------------------------------------------------------------------------------


Report = Callable[[Sweep, Trial | None, str], None]


def metric_values(run: RunDir, metric: str, offset: int = 0) -> tuple[list[tuple[int, float]], int]:
    """(step, value) of `metric` in the run's events from byte `offset`, and the new offset."""
    try:
        with open(run.events_file, "rb") as fh:
            fh.seek(offset)
            data = fh.read()
    except OSError:
        return [], offset
    end = data.rfind(b"\n") + 1  # a torn last line waits for the next read
    events = parse_event_lines(data[:end])
    found = [
        (int(e.get("step") or 0), float(e[metric]))
        for e in events
        if isinstance(e.get(metric), (int, float)) and math.isfinite(float(e[metric]))
    ]
    return found, offset + end


def _run_child(
    ws: Workspace,
    folder: SweepDir,
    sweep: Sweep,
    trial: Trial,
    report: Report,
    on_value: Callable[[int, float], bool] | None = None,
    *,
    resume: bool = False,
) -> None:
    """Run (or resume) one trial's run to its end; `on_value(step, value)` returning True prunes it."""
    from tui_ft.recipe import load_recipe
    from tui_ft.runs.launcher import resume_run, spawn_runner
    from tui_ft.runs.prepare import create_run
    from tui_ft.runs.registry import wait_until_final

    if resume and trial.run_id:
        run = RunDir(ws.runs / trial.run_id)
        resume_run(run, detach=True)
    else:
        params = [f"{k}={v}" for k, v in trial.params.items()]
        loaded = load_recipe(sweep.recipe, [*sweep.overrides, *params], cache_dir=ws.cache)
        run = create_run(loaded, ws, state="queued", sweep=sweep.id)
        trial.run_id = run.id
        spawn_runner(run, detach=True)
    trial.state = "running"
    folder.save(sweep)
    report(sweep, trial, "started")
    offset, pruned, stopped = 0, False, False
    while True:
        status = run.read_status()
        values, offset = metric_values(run, sweep.metric, offset)
        for step, value in values:
            trial.value = value
            if on_value is not None and not pruned and on_value(step, value):
                pruned = True
                _stop_quietly(run)
                report(sweep, trial, f"pruned at step {step}")
        if folder.stop_file.exists() and not stopped:
            stopped = True
            _stop_quietly(run)  # (`tui-ft stop SWEEP` may have stopped it already)
        if status is not None and status.is_final:
            break
        time.sleep(POLL_S)
    status = wait_until_final(run, timeout=5) or run.read_status()
    state = status.state if status else "crashed"
    if pruned:
        trial.state = "pruned"
    elif stopped and state == "stopped":
        trial.state = "stopped"
    elif state == "completed":
        trial.state = "completed"
        if trial.value is None and status is not None:
            fallback = {"eval_loss": status.eval_loss, "loss": status.loss}.get(sweep.metric)
            trial.value = fallback
        if trial.value is None:
            trial.state, trial.error = "failed", f"the run logged no {sweep.metric}"
    else:
        trial.state = "failed"
        trial.error = (status.error or {}).get("message") if status else "the run left no status"
    folder.save(sweep)
    report(sweep, trial, trial.state)


def run_sweep(ws: Workspace, folder: SweepDir, report: Report, *, resume: bool = False) -> Sweep:
    """Drive the sweep to its end (or until stopped); returns it as it ended."""
    sweep = folder.load()
    folder.stop_file.unlink(missing_ok=True)
    sweep.state, sweep.pid = "running", os.getpid()
    folder.save(sweep)
    if sweep.search == "grid":
        _run_grid(ws, folder, sweep, report, resume)
    else:
        _run_search(ws, folder, sweep, report, resume)
    if sweep.state == "running":
        sweep.state = "completed" if sweep.best is not None else "failed"
    if sweep.best is not None:
        sweep.best_recipe = str(save_best_recipe(ws, sweep))
    sweep.pid = None
    folder.save(sweep)
    report(sweep, None, sweep.state)
    return sweep


def _run_grid(ws: Workspace, folder: SweepDir, sweep: Sweep, report: Report, resume: bool) -> None:
    for trial in sweep.trials:
        if folder.stop_file.exists():
            sweep.state = "stopped"
            return
        if trial.state in ("completed", "failed", "pruned"):
            continue
        again = resume and trial.state in ("running", "stopped") and trial.run_id is not None
        _run_child(ws, folder, sweep, trial, report, resume=again)
        if trial.state == "stopped":
            sweep.state = "stopped"
            return


def _suggest(trial_obj: Any, key: str, rng: Range) -> str:
    if rng.integer:
        return str(trial_obj.suggest_int(key, int(rng.lo), int(rng.hi), log=rng.log))
    return repr(trial_obj.suggest_float(key, rng.lo, rng.hi, log=rng.log))


def _run_search(ws: Workspace, folder: SweepDir, sweep: Sweep, report: Report, resume: bool) -> None:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(
        study_name=sweep.id,
        storage=f"sqlite:///{folder.study_db}",
        load_if_exists=True,
        direction="maximize" if sweep.direction == "maximize" else "minimize",
        sampler=optuna.samplers.TPESampler(seed=0),
        pruner=optuna.pruners.MedianPruner(n_startup_trials=1, n_warmup_steps=0),
    )
    # an interrupted trial: its run resumes from its checkpoint, and its value is told by number
    for trial in sweep.trials:
        if resume and trial.state in ("running", "stopped") and trial.run_id:
            _run_child(ws, folder, sweep, trial, report, resume=True)
            _tell(study, trial)
            if trial.state == "stopped":
                sweep.state = "stopped"
                return
    while len(sweep.trials) < sweep.trials_wanted:
        if folder.stop_file.exists():
            sweep.state = "stopped"
            return
        asked = study.ask()
        params = {k: _suggest(asked, k, r) for k, r in sweep.ranges.items()}
        for key, values in sweep.grid.items():
            params[key] = str(asked.suggest_categorical(key, values))
        trial = Trial(asked.number, params)
        sweep.trials.append(trial)
        folder.save(sweep)

        def judge(step: int, value: float, asked: Any = asked) -> bool:
            asked.report(value, step)
            return bool(asked.should_prune())

        _run_child(ws, folder, sweep, trial, report, judge)
        _tell(study, trial)
        if trial.state == "stopped":
            sweep.state = "stopped"
            return


def _tell(study: Any, trial: Trial) -> None:
    import optuna

    if trial.state == "completed" and trial.value is not None:
        study.tell(trial.number, trial.value)
    elif trial.state == "pruned":
        study.tell(trial.number, state=optuna.trial.TrialState.PRUNED)
    elif trial.state == "failed":
        study.tell(trial.number, state=optuna.trial.TrialState.FAIL)
    # stopped: left running in the study; told when the sweep resumes it


def save_best_recipe(ws: Workspace, sweep: Sweep) -> Path:
    """The best trial's recipe as `<workspace>/recipes/<name>-best.yaml` (`tui-ft train NAME-best`)."""
    import yaml

    from tui_ft.recipe import saved_recipes_dir

    best = sweep.best
    assert best is not None and best.run_id is not None
    resolved = yaml.safe_load((ws.runs / best.run_id / "recipe.yaml").read_text())
    base = str(resolved.get("name") or sweep.id)
    resolved["name"] = f"{base}-best"
    params = ", ".join(f"{k}={v}" for k, v in best.params.items())
    resolved["description"] = f"best of sweep {sweep.id} ({sweep.metric} {best.value:.4g}): {params}"
    folder = saved_recipes_dir(ws)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{resolved['name']}.yaml"
    header = f"# Saved by `tui-ft sweep` from run {best.run_id}: {params}\n"
    path.write_text(header + yaml.safe_dump(resolved, sort_keys=False))
    return path


def _stop_quietly(run: RunDir) -> None:
    """Ask a trial's run to stop gracefully; one that has already ended needs nothing."""
    from tui_ft.runs.registry import request_stop

    with contextlib.suppress(UserError):  # already stopped, completed or failed
        request_stop(run)


def stop_sweep(folder: SweepDir) -> Sweep:
    """Ask the sweep to stop: its driver stops the running child and ends."""
    sweep = folder.load()
    folder.stop_file.write_text("graceful\n")
    for trial in sweep.trials:
        if trial.state == "running" and trial.run_id:
            run = RunDir(folder.path.parent.parent / "runs" / trial.run_id)
            if run.status_file.exists():
                _stop_quietly(run)
    return sweep


def spawn_driver(folder: SweepDir, ws: Workspace, *, resume: bool = False) -> int:
    """Run the sweep's driver detached (its own session, output to the sweep's log); its pid."""
    import subprocess

    command = [sys.executable, "-m", "tui_ft", "sweep", "--drive", folder.path.name]
    if resume:
        command.append("--resume")
    env = dict(os.environ, TUI_FT_HOME=str(ws.root), PYTHONUNBUFFERED="1")
    with open(folder.log_file, "ab") as log:
        proc = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env=env,
            close_fds=True,
        )
    return proc.pid
