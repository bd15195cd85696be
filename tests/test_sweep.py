"""Sweeps: a grid and an Optuna search over recipe keys, each trial an ordinary run through the runner;
ranking, the best recipe saved, pruning, a failing trial, stop and resume, and bad input."""

from __future__ import annotations

import json
import time

import pytest

from tests.conftest import run_tui_ft
from tui_ft.errors import UserError
from tui_ft.runs.sweep import Range, default_direction, parse_grid

FAST = [
    "--set",
    "training.max_steps=8",
    "--set",
    "training.eval_steps=4",
    "--set",
    "training.save_steps=4",
    "--set",
    "training.logging_steps=2",
]


def test_ranges_and_grids_parse_or_say_what_is_wrong():
    assert Range.parse("k", "1e-5:1e-3:log") == Range(1e-5, 1e-3, True, False)
    assert Range.parse("k", "4:64") == Range(4, 64, False, True)
    for bad in ("1:2:lin", "3:1", "0:1:log", "a:b", "5"):
        with pytest.raises(UserError) as err:
            Range.parse("k", bad)
        assert err.value.field == "--range"
    assert parse_grid(["training.learning_rate=1e-3, 3e-3", "adapter.r=4,8"]) == {
        "training.learning_rate": ["1e-3", "3e-3"],
        "adapter.r": ["4", "8"],
    }
    with pytest.raises(UserError):
        parse_grid(["adapter.r"])
    assert default_direction("eval_loss") == "minimize"
    assert default_direction("eval_accuracy") == "maximize"


@pytest.mark.parametrize(
    ("args", "field", "text"),
    [
        (["--grid", "training.learning_rat=1e-3,2e-3"], "--grid training.learning_rat", "learning_rate"),
        (["--grid", "adapter.r=4,many"], "--grid adapter.r", "many"),
        (["--range", "training.learning_rate=1e-3"], "--range", "lo:hi"),
        (["--range", "training.learning_rate=1e-5:1e-3:log"], "--trials", "--trials"),
        ([], "--grid/--range", "nothing to sweep"),
    ],
)
def test_bad_sweeps_exit_2_naming_the_flag_before_any_run(cli_env, demo_ws, args, field, text):
    before = sorted(p.name for p in demo_ws.runs.iterdir()) if demo_ws.runs.is_dir() else []
    proc = run_tui_ft(cli_env, "sweep", "sft-lora", *args)
    assert proc.returncode == 2, proc.stderr
    assert field in proc.stderr and text in proc.stderr and "Traceback" not in proc.stderr
    assert sorted(p.name for p in demo_ws.runs.iterdir()) == before


@pytest.mark.slow
def test_grid_of_four_ranks_runs_keeps_going_past_a_failing_one_and_saves_the_best(cli_env, demo_ws):
    proc = run_tui_ft(
        cli_env,
        "sweep",
        "sft-lora",
        "--grid",
        "adapter.target_modules=all-linear,no_such_proj",
        "--grid",
        "adapter.r=4,8",
        *FAST,
        "--json",
        timeout=900,
    )
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["state"] == "completed" and len(doc["runs"]) == 4
    states = {tuple(sorted(r["params"].items())): r["state"] for r in doc["runs"]}
    assert states[(("adapter.r", "4"), ("adapter.target_modules", "all-linear"))] == "completed"
    assert states[(("adapter.r", "8"), ("adapter.target_modules", "all-linear"))] == "completed"
    # no layer of the model is called no_such_proj: those runs fail, and the sweep goes on
    failed = [r for r in doc["runs"] if r["params"]["adapter.target_modules"] == "no_such_proj"]
    assert [r["state"] for r in failed] == ["failed"] * 2 and all(
        "target modules" in r["error"] for r in failed
    )
    ranked = [r for r in doc["runs"] if r["state"] == "completed"]
    assert ranked[0]["value"] <= ranked[1]["value"] and doc["best"]["run_id"] == ranked[0]["run_id"]
    for r in doc["runs"]:  # every trial is an ordinary run, tagged with its sweep
        status = json.loads((demo_ws.runs / r["run_id"] / "status.json").read_text())
        assert status["sweep"] == doc["id"]
    listed = json.loads(run_tui_ft(cli_env, "runs", "--json").stdout)
    assert {row["id"] for row in listed if row.get("sweep") == doc["id"]} == {
        r["run_id"] for r in doc["runs"]
    }
    best = demo_ws.root / "recipes" / "sft-lora-best.yaml"
    assert str(best) == doc["best_recipe"] and best.is_file()
    from tui_ft.recipe import load_recipe

    loaded = load_recipe(best, [], cache_dir=demo_ws.cache)  # (the CLI finds it by name: sft-lora-best)
    assert loaded.recipe.adapter.r == int(doc["best"]["params"]["adapter.r"])
    shown = run_tui_ft(cli_env, "sweeps", doc["id"])
    assert shown.returncode == 0 and "rank" in shown.stdout and doc["best"]["run_id"] in shown.stdout


@pytest.mark.slow
def test_optuna_search_prunes_a_trial_on_a_rigged_range(cli_env, demo_ws):
    proc = run_tui_ft(
        cli_env,
        "sweep",
        "sft-lora",
        "--range",
        "training.learning_rate=1e-7:1e-1:log",
        "--trials",
        "4",
        *FAST,
        "--json",
        timeout=900,
    )
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["search"] == "optuna" and len(doc["runs"]) == 4
    assert any(r["state"] == "pruned" for r in doc["runs"]), doc["runs"]
    assert doc["best"] is not None
    import optuna

    study = optuna.load_study(
        study_name=doc["id"], storage=f"sqlite:///{demo_ws.root}/sweeps/{doc['id']}/study.db"
    )
    assert sum(t.state == optuna.trial.TrialState.PRUNED for t in study.trials) >= 1


@pytest.mark.slow
def test_stopping_a_sweep_stops_its_child_and_resume_finishes_it(cli_env, demo_ws):
    proc = run_tui_ft(
        cli_env,
        "sweep",
        "sft-lora",
        "--grid",
        "adapter.r=4,8",
        "--set",
        "training.max_steps=120",
        "--set",
        "training.eval_steps=60",
        "--set",
        "training.save_steps=5",
        "--set",
        "training.logging_steps=1",
        "--detach",
        "--json",
    )
    assert proc.returncode == 0, proc.stderr
    sweep_id = json.loads(proc.stdout)["id"]
    path = demo_ws.root / "sweeps" / sweep_id / "sweep.json"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:  # the first trial is training and has a checkpoint
        trials = json.loads(path.read_text())["trials"]
        run_id = trials[0]["run_id"]
        if run_id and list((demo_ws.runs / run_id / "checkpoints").glob("checkpoint-*")):
            break
        time.sleep(0.5)
    stopped = run_tui_ft(cli_env, "stop", sweep_id)
    assert stopped.returncode == 0 and "stop requested for sweep" in stopped.stdout
    deadline = time.monotonic() + 300
    while json.loads(path.read_text())["state"] == "running" and time.monotonic() < deadline:
        time.sleep(0.5)
    doc = json.loads(path.read_text())
    assert doc["state"] == "stopped" and doc["trials"][0]["state"] == "stopped"
    assert json.loads((demo_ws.runs / run_id / "status.json").read_text())["state"] == "stopped"
    resumed = run_tui_ft(cli_env, "resume", sweep_id, "--json", timeout=900)
    assert resumed.returncode == 0, resumed.stderr
    doc = json.loads(resumed.stdout)
    assert doc["state"] == "completed" and [t["state"] for t in doc["trials"]] == ["completed", "completed"]
    assert doc["trials"][0]["run_id"] == run_id  # the same run, continued from its checkpoint
