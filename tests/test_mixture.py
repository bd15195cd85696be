"""Multi-task mixtures: tasks of different formats interleaved by weight and temperature, one eval loss
per task during training, and bad mixtures refused naming the field."""

from __future__ import annotations

import json

import pytest
import yaml

from tests.conftest import run_tui_ft, train_recipe
from tui_ft.data.mixture import probabilities
from tui_ft.recipe import find_recipe


def test_shares_follow_weight_rows_and_temperature():
    assert probabilities([1, 1], [300, 100], 1.0) == pytest.approx([0.75, 0.25])
    assert probabilities([1, 3], [300, 100], 1.0) == pytest.approx([0.5, 0.5])
    flat = probabilities([1, 1], [300, 100], 1000.0)
    assert flat[0] == pytest.approx(0.5, abs=1e-3)


@pytest.mark.slow
def test_mixture_trains_and_logs_each_tasks_eval_loss(demo_ws):
    run, status = train_recipe(demo_ws, "sft-mixture", "training.max_steps=8", "training.eval_steps=4")
    events = [json.loads(line) for line in run.events_file.read_text().splitlines()]
    evals = [e for e in events if e["type"] == "eval"]
    chat = [(e["step"], e["eval_chat_loss"]) for e in evals if "eval_chat_loss" in e]
    qa = [(e["step"], e["eval_qa_loss"]) for e in evals if "eval_qa_loss" in e]
    assert [s for s, _ in chat] == [4, 8] and [s for s, _ in qa] == [4, 8]
    assert chat[-1][1] < chat[0][1] and qa[-1][1] < qa[0][1]
    note = next(e for e in events if e["type"] == "message" and e["text"].startswith("mixture:"))
    # qa has weight 2 and as many rows as chat: two thirds of the mix
    assert note["tasks"] == {"chat": pytest.approx(1 / 3, abs=1e-3), "qa": pytest.approx(2 / 3, abs=1e-3)}


def _recipe_with(tmp_path, data: dict) -> str:
    doc = yaml.safe_load(find_recipe("sft-mixture").read_text())
    doc["data"] = {**{k: v for k, v in doc["data"].items() if k != "mixture"}, **data}
    path = tmp_path / "mix.yaml"
    path.write_text(yaml.safe_dump(doc))
    return str(path)


@pytest.mark.parametrize(
    ("data", "text"),
    [
        ({"mixture": [{"name": "a", "train": "chat.jsonl", "weight": -1}]}, "data.mixture.0.weight"),
        ({"train": "chat.jsonl", "mixture": [{"name": "a", "train": "chat.jsonl"}]}, "one of the two"),
        (
            {"mixture": [{"name": "a", "train": "chat.jsonl"}, {"name": "a", "train": "chat.jsonl"}]},
            "must differ",
        ),
        (
            {"mixture": [{"name": "a", "train": "chat.jsonl"}, {"name": "b", "train": "preferences.jsonl"}]},
            "data.mixture[1].train",
        ),
        ({"mixture": [{"name": "a", "train": "nope.jsonl"}]}, "nope.jsonl"),
    ],
)
def test_bad_mixtures_exit_2_naming_the_field(cli_env, demo_ws, tmp_path, data, text):
    proc = run_tui_ft(cli_env, "train", _recipe_with(tmp_path, data), "--set", "training.max_steps=1")
    assert proc.returncode == 2, proc.stderr
    assert text in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.slow
def test_eval_of_a_mixture_run_has_a_row_per_model_and_task(demo_ws, cli_env):
    """`tui-ft eval RUN` without data evaluates each task's held-out rows (each task's own split, from the
    run's seed), for the tuned model and its base: a row per model and task."""
    run, _ = train_recipe(demo_ws, "sft-mixture", "training.max_steps=4", "training.eval_strategy=no")
    proc = run_tui_ft(cli_env, "eval", run.id, "--limit", "4", "--max-new-tokens", "4", "--json")
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert set(doc["tasks"]) == {"chat", "qa"}
    assert [(r["label"], r.get("task")) for r in doc["rows"]] == [
        ("tuned", "chat"),
        ("tuned", "qa"),
        ("base", "chat"),
        ("base", "qa"),
    ]
    assert all(r["loss"] > 0 and r["tokens"] > 0 for r in doc["rows"])
    assert doc["examples"] == 8 and doc["generated"] == 8
    shown = run_tui_ft(cli_env, "runs", run.id)
    assert "· chat" in shown.stdout and "base (demo-tiny) · qa" in shown.stdout
