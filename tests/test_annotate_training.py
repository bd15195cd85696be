"""Annotations into training, for real: a store made through a session (an annotator who prefers the
sample's polite answers, with some ties, both-bad and skips), exported with `tui-ft prefs export`, trains
TRL's DPO (margins grow, loss goes down) and reward trainer (held-out pairs ranked right); the store
given directly as `data.train: annotations/NAME.jsonl` trains DPO too."""

from __future__ import annotations

import json

import pytest

from tests.conftest import run_tui_ft, train_recipe
from tests.test_prefs_session import chosen_side, review_session
from tui_ft.runs.rundir import read_events

pytestmark = pytest.mark.slow


def train_events(run) -> list[dict]:
    events, _ = read_events(run.events_file)
    return [e for e in events if e["type"] == "train"]


@pytest.fixture(scope="module")
def store_name(demo_ws) -> str:
    """300 pairs judged the sample's way round, plus 20 ties, 10 both bad and 10 skips."""
    session = review_session(demo_ws, name="for-training")
    for i in range(340):
        label = chosen_side(session)
        if i % 17 == 16:
            label = ("tie", "both_bad", "skip", "tie")[i // 17 % 4]
        session.decide(label)
    return "for-training"


def test_the_dpo_export_trains_in_trls_dpo_trainer(demo_ws, cli_env, store_name, tmp_path):
    out = tmp_path / "dpo.jsonl"
    done = run_tui_ft(cli_env, "prefs", "export", store_name, "--to", "dpo", "--out", str(out), "--json")
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert summary["rows"] == 320 and summary["dropped"] == {"tie": 10, "both_bad": 5, "skip": 5}
    run, _ = train_recipe(
        demo_ws,
        "dpo-lora",
        f"data.train={out}",
        "training.max_steps=12",
        "training.eval_strategy=no",
        "training.learning_rate=2e-3",  # a fast margin in 12 steps (the recipe keeps 5e-4 for fluency)
    )
    train = train_events(run)
    margins = [e["rewards/margins"] for e in train if "rewards/margins" in e]
    losses = [e["loss"] for e in train if "loss" in e]
    assert margins[0] == pytest.approx(0.0, abs=1e-3) and sum(margins[-3:]) / 3 > 1.0, margins
    assert sum(losses[-3:]) / 3 < losses[0], losses


def test_the_reward_export_trains_a_reward_model(demo_ws, cli_env, store_name, tmp_path):
    out = tmp_path / "reward.jsonl"
    assert (
        run_tui_ft(cli_env, "prefs", "export", store_name, "--to", "reward", "--out", str(out)).returncode
        == 0
    )
    run, _ = train_recipe(demo_ws, "reward-lora", f"data.train={out}")
    events, _ = read_events(run.events_file)
    evals = [e for e in events if e["type"] == "eval"]
    assert evals[-1]["eval_accuracy"] > 0.9 and evals[-1]["eval_margin"] > 0, evals
    losses = [e["loss"] for e in train_events(run) if "loss" in e]
    assert sum(losses[-3:]) / 3 < losses[0], losses


def test_the_store_given_directly_trains_dpo(demo_ws, store_name):
    run, _ = train_recipe(
        demo_ws,
        "dpo-lora",
        f"data.train=annotations/{store_name}.jsonl",
        "training.max_steps=12",
        "training.eval_strategy=no",
        "training.learning_rate=2e-3",  # a fast margin in 12 steps (the recipe keeps 5e-4 for fluency)
    )
    events, _ = read_events(run.events_file)
    assert any("320 rows of annotations" in str(e.get("text", "")) for e in events if e["type"] == "message")
    margins = [e["rewards/margins"] for e in train_events(run) if "rewards/margins" in e]
    assert sum(margins[-3:]) / 3 > 1.0, margins
