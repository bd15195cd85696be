"""Preference and RL methods on the demo model: DPO, ORPO, KTO, reward modelling, GRPO and RLOO train
through TRL; their metrics reach the events; bad input stops before a model loads."""

from __future__ import annotations

import json
import textwrap

import pytest

from tests.conftest import run_tui_ft, train_recipe, wait_for_status
from tui_ft.engine.runner import build_trainer
from tui_ft.errors import RecipeError
from tui_ft.recipe import load_recipe
from tui_ft.runs.prepare import create_run
from tui_ft.runs.registry import find_run, refresh
from tui_ft.runs.rundir import Status, read_events

pytestmark = pytest.mark.slow


def events_of(run, kind):
    events, _ = read_events(run.events_file)
    return [e for e in events if e["type"] == kind]


_TRAINED: dict[str, tuple] = {}


def reward_run(ws):
    """The shipped reward recipe as shipped (40 steps, 20% of the pairs held out); trained once."""
    if "reward" not in _TRAINED:
        _TRAINED["reward"] = train_recipe(ws, "reward-lora")
    return _TRAINED["reward"]


# --- DPO --------------------------------------------------------------------------------------------


def test_dpo_reward_margin_grows_on_its_training_pairs(demo_ws):
    run, status = train_recipe(
        demo_ws,
        "dpo-lora",
        "training.max_steps=12",
        "training.eval_strategy=no",
        "training.learning_rate=2e-3",
    )
    train = events_of(run, "train")
    margins = [e["rewards/margins"] for e in train if "rewards/margins" in e]
    assert len(margins) == 12
    # step 1 starts at the reference (margin 0); the policy then separates chosen from rejected
    assert margins[0] == pytest.approx(0.0, abs=1e-3)
    assert sum(margins[-3:]) / 3 > 1.0, margins
    assert all(k in train[-1] for k in ("rewards/chosen", "rewards/rejected", "rewards/accuracies"))
    assert (run.final / "adapter_config.json").exists()
    meta = json.loads((run.final / "tui-ft.json").read_text())
    assert meta["method"] == "dpo"


def _trainer_for(ws, name, *overrides):
    loaded = load_recipe(name, list(overrides), cache_dir=ws.cache)
    run = create_run(loaded, ws)
    trainer, _, _ = build_trainer(
        run, ws, Status(id=run.id, name=run.id, method=loaded.recipe.method), None, None
    )
    return trainer


def test_dpo_with_an_adapter_keeps_one_base_copy_and_full_dpo_a_frozen_reference(demo_ws):
    lora = _trainer_for(demo_ws, "dpo-lora")
    assert lora.ref_model is None  # the reference is the base with the adapter switched off
    with lora.model.disable_adapter():
        pass  # the PeftModel TRL will use for reference log-probs

    full = _trainer_for(demo_ws, "dpo-lora", "adapter.type=full", "training.learning_rate=1e-5")
    ref = full.ref_model
    assert ref is not None and ref is not full.model
    assert not any(p.requires_grad for p in ref.parameters())
    policy = dict(full.model.named_parameters())
    for name, p in ref.named_parameters():
        assert p.data_ptr() != policy[name].data_ptr()  # a real second copy, not shared storage
        assert p.detach().equal(policy[name].detach())  # of the same starting weights


@pytest.mark.parametrize("loss_type", ["ipo", "hinge"])
def test_dpo_other_loss_types_train(demo_ws, loss_type):
    run, _ = train_recipe(
        demo_ws,
        "dpo-lora",
        "training.max_steps=3",
        "training.eval_strategy=no",
        f"training.loss_type={loss_type}",
    )
    config = events_of(run, "config")[0]
    assert config["loss_type"] == [loss_type]
    losses = [e["loss"] for e in events_of(run, "train") if "loss" in e]
    assert len(losses) == 3 and all(abs(v) < 1e6 for v in losses)


# --- ORPO, KTO ---------------------------------------------------------------------------------------


def test_orpo_trains_and_logs_its_odds_ratio(demo_ws):
    run, _ = train_recipe(demo_ws, "orpo-lora", "training.max_steps=6", "training.eval_strategy=no")
    train = events_of(run, "train")
    assert len([e for e in train if "loss" in e]) == 6
    assert any("log_odds_ratio" in e for e in train), train[-1]
    assert any("rewards/margins" in e for e in train)


@pytest.mark.parametrize("data", ["kto.jsonl", "preferences.jsonl"])
def test_kto_trains_on_unpaired_data_and_on_pairs_made_unpaired(demo_ws, data):
    run, _ = train_recipe(
        demo_ws,
        "kto-lora",
        "training.max_steps=4",
        "training.eval_strategy=no",
        "data.eval_split=0",
        f"data.train={data}",
    )
    train = events_of(run, "train")
    assert len([e for e in train if "loss" in e]) == 4
    assert all("kl" in e for e in train if "loss" in e)
    # each pair becomes one desirable and one undesirable row
    assert events_of(run, "config")[0]["train_rows"] == (400 if data == "kto.jsonl" else 800)


def test_kto_refuses_a_batch_of_one(demo_ws):
    run, status = train_recipe(
        demo_ws, "kto-lora", "training.max_steps=2", "training.per_device_train_batch_size=1", expect=2
    )
    assert status.state == "failed"
    assert "per_device_train_batch_size" in status.error["message"] + (status.error.get("hint") or "")


# --- reward model -----------------------------------------------------------------------------------


def test_reward_model_separates_the_sample_pairs(demo_ws, cli_env):
    from tui_ft.engine.rewards import load_reward_model
    from tui_ft.reward_checks import check_reward_model

    run, status = reward_run(demo_ws)
    evals = events_of(run, "eval")
    assert evals and evals[-1]["eval_accuracy"] > 0.9, evals[-1]
    shown = json.loads(
        run_tui_ft(cli_env, "runs", "reward-lora", "--json").stdout
    )  # a recipe name: its newest run
    assert shown["id"] == run.id and shown["metrics"]["eval_accuracy"] == evals[-1]["eval_accuracy"]
    assert evals[-1]["eval_margin"] > 0
    assert "eval_perplexity" not in evals[-1]  # a reward loss is not a language-model loss
    # final/ is a reward model: it loads as one and scores a held-out style pair the right way round
    model, tokenizer = load_reward_model(check_reward_model(run.id, demo_ws), None)
    import torch

    texts = [
        "What is the capital of Korvath? The capital of Korvath is Drummond.",
        "What is the capital of Korvath? whatever... the capital of korvath is nim, i guess. go away!",
    ]
    with torch.no_grad():
        scores = model(**tokenizer(texts, return_tensors="pt", padding=True)).logits[:, 0]
    assert scores[0] > scores[1]


def test_reward_model_trains_on_ranked_responses(demo_ws):
    run, _ = train_recipe(
        demo_ws,
        "reward-lora",
        "data.train=ranking.jsonl",
        "data.ranking_pairs=adjacent",
        "training.max_steps=3",
        "training.eval_strategy=no",
        "data.eval_split=0",
    )
    from tui_ft.data.sources import open_dataset

    with open_dataset(demo_ws.data / "ranking.jsonl") as source:
        adjacent = sum(len(r.data["responses"]) - 1 for r in source)
    assert events_of(run, "config")[0]["train_rows"] == adjacent


def test_ranking_expands_to_the_right_number_of_pairs(demo_ws):
    from tui_ft.data.sources import open_dataset
    from tui_ft.data.training import load_for_training

    with open_dataset(demo_ws.data / "ranking.jsonl") as source:
        sizes = [len(r.data["responses"]) for r in source]
    expected = {"all": sum(n * (n - 1) // 2 for n in sizes), "adjacent": sum(n - 1 for n in sizes)}
    assert expected["all"] > expected["adjacent"] > len(sizes)
    for mode, count in expected.items():
        loaded = load_for_training(demo_ws.data / "ranking.jsonl", method="dpo", ranking_mode=mode)
        assert len(loaded.dataset) == count
        first = loaded.dataset[0]
        assert set(first) >= {"prompt", "chosen", "rejected"}


# --- GRPO, RLOO -------------------------------------------------------------------------------------


def test_grpo_with_the_reward_model_from_a_reward_run(demo_ws):
    reward, _ = reward_run(demo_ws)
    run, status = train_recipe(
        demo_ws,
        "grpo-lora",
        "training.max_steps=3",
        f"rewards.models=[{reward.id}]",
        "rewards.functions=[]",
    )
    train = [e for e in events_of(run, "train") if "reward" in e]
    assert len(train) == 3
    for e in train:
        assert {"reward", "reward_std", "kl", "completions/mean_length"} <= set(e)
        assert f"rewards/{reward.id}/mean" in e
    assert status.step == 3 and (run.final / "adapter_config.json").exists()


def test_rloo_with_python_reward_functions(demo_ws):
    run, _ = train_recipe(demo_ws, "rloo-lora", "training.max_steps=2")
    train = [e for e in events_of(run, "train") if "reward" in e]
    assert len(train) == 2
    assert {"rewards/polite/mean", "rewards/one_sentence/mean", "kl"} <= set(train[-1])


def test_a_reward_function_that_raises_fails_the_run_with_its_error(demo_ws, tmp_path):
    (tmp_path / "bad_rewards.py").write_text(
        textwrap.dedent(
            """
            def grumpy(completions, **kwargs):
                raise ValueError("cannot score " + str(len(completions)) + " completions today")
            """
        )
    )
    run, status = train_recipe(
        demo_ws,
        "grpo-lora",
        "training.max_steps=2",
        f"rewards.functions=[{tmp_path / 'bad_rewards.py'}:grumpy]",
        expect=1,
    )
    assert status.state == "failed"
    assert status.error["kind"] == "reward_function"
    assert "grumpy" in status.error["message"]
    assert "ValueError: cannot score 4 completions today" in status.error["message"]


# --- bad input: exit 2 before any model loads ----------------------------------------------------


def test_chat_data_given_to_dpo_names_both_formats(cli_env):
    proc = run_tui_ft(cli_env, "train", "dpo-lora", "--set", "data.train=chat.jsonl")
    assert proc.returncode == 2, proc.stderr
    assert "chat.jsonl" in proc.stderr
    assert "format messages" in proc.stderr and "method dpo needs one of preference" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_preference_data_given_to_sft_names_both_formats(cli_env):
    proc = run_tui_ft(cli_env, "train", "sft-lora", "--set", "data.train=preferences.jsonl")
    assert proc.returncode == 2, proc.stderr
    assert "format preference" in proc.stderr and "method sft needs one of" in proc.stderr


def test_a_generation_model_as_reward_model_is_refused(cli_env):
    proc = run_tui_ft(cli_env, "train", "grpo-lora", "--set", "rewards.models=[demo-tiny]")
    assert proc.returncode == 2, proc.stderr
    assert "rewards.models" in proc.stderr and "not a reward model" in proc.stderr
    assert "LlamaForCausalLM" in proc.stderr


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("rewards.functions=[rewards.py:no_such_function]", "has no function no_such_function"),
        ("rewards.functions=[missing.py:polite]", "no such file: missing.py"),
        ("rewards.functions=[polite]", "not a reward function reference"),
    ],
)
def test_bad_reward_function_references_exit_2(cli_env, override, message):
    proc = run_tui_ft(cli_env, "train", "grpo-lora", "--set", override)
    assert proc.returncode == 2, proc.stderr
    assert "rewards.functions" in proc.stderr and message in proc.stderr


def test_rl_recipe_without_rewards_and_sft_recipe_with_them_are_refused(demo_ws):
    with pytest.raises(RecipeError, match="needs at least one reward"):
        load_recipe("grpo-lora", ["rewards.functions=[]"], cache_dir=demo_ws.cache)
    with pytest.raises(RecipeError, match="only grpo and rloo use rewards"):
        load_recipe("sft-lora", ["rewards.functions=[rewards.py:polite]"], cache_dir=demo_ws.cache)


# --- background: stop and resume work for these methods as for SFT -----------------------------------


@pytest.mark.parametrize("recipe", ["dpo-lora", "grpo-lora"])
def test_detach_stop_and_resume(cli_env, demo_ws, recipe):
    steps = 12
    sets = [
        f"training.max_steps={steps}",
        "training.save_steps=2",
        "training.logging_steps=1",
        "training.eval_strategy=no",
        "data.eval_split=0",
    ]
    proc = run_tui_ft(
        cli_env, "train", recipe, *[a for s in sets for a in ("--set", s)], "--detach", "--json"
    )
    assert proc.returncode == 0, proc.stderr
    run = find_run(demo_ws, json.loads(proc.stdout)["id"])
    wait_for_status(run, lambda s: s.last_checkpoint is not None and s.state == "running")
    stop = run_tui_ft(cli_env, "stop", run.id, "--json")
    assert stop.returncode == 0, stop.stderr
    stopped = wait_for_status(run, lambda s: s.state in ("stopped", "completed", "failed"))
    assert stopped.state == "stopped", stopped.error
    at = stopped.step
    assert at < steps
    resumed = run_tui_ft(cli_env, "resume", run.id)
    assert resumed.returncode == 0, resumed.stderr
    final = refresh(run)
    assert final.state == "completed" and final.step == steps
    train_steps = [e["step"] for e in events_of(run, "train") if "loss" in e]
    assert train_steps[-1] == steps
    resume_events = events_of(run, "resume")
    assert resume_events and resume_events[0]["step"] <= at


# --- the loss watchdog ---------------------------------------------------------------------------------


def test_a_nan_loss_stops_the_run_as_failed_nan_and_keeps_earlier_checkpoints(demo_ws):
    run, status = train_recipe(
        demo_ws,
        "sft-lora",
        "training.max_steps=20",
        "training.learning_rate=1e30",  # one step of this overflows the adapter: the next loss is NaN
        "training.warmup_steps=0",
        "training.save_steps=1",
        "training.eval_strategy=no",
        "data.eval_split=0",
        expect=1,
    )
    assert status.state == "failed" and status.error["kind"] == "nan"
    assert "loss is nan" in status.error["message"]
    (alarm,) = events_of(run, "watchdog")
    assert alarm["problem"] == "nan" and alarm["action"] == "stop"
    assert status.step == alarm["step"] < 20
    saved = sorted(int(p.name.split("-")[1]) for p in run.checkpoints.glob("checkpoint-*"))
    assert saved and max(saved) < alarm["step"]  # no checkpoint of the NaN weights
    assert not run.final.exists()


def test_the_watchdog_can_be_told_only_to_warn(demo_ws):
    run, status = train_recipe(
        demo_ws,
        "sft-lora",
        "training.max_steps=4",
        "training.learning_rate=1e30",
        "training.warmup_steps=0",
        "training.eval_strategy=no",
        "data.eval_split=0",
        "watchdog.on_nan=warn",
    )
    assert status.state == "completed"
    alarms = events_of(run, "watchdog")
    assert alarms and all(a["action"] == "warn" for a in alarms)
