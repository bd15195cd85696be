"""`tui-ft eval` and the recipe's `eval:` section on the demo model: the metrics on known strings and on
the real model's outputs, the before/after table with a few-shot row, the forgetting check on the
shipped general text, the loss on exactly the tokens TRL trains on, and every kind of bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import run_tui_ft, train_recipe
from tui_ft.evaluation.metrics import builtin_scores, contains, exact_match, load_metric, rouge_l

METRIC_SOURCE = '''
def first_word(prediction, reference):
    """1 when the reply starts with the reference's first word."""
    p, r = prediction.split(), reference.split()
    return bool(p and r and p[0].lower() == r[0].lower())


def boom(prediction, reference, **kwargs):
    raise ValueError("this metric always fails")


def words(prediction, reference, prompt):
    return float(len(prediction.split()))
'''
LIMIT = 8  # rows evaluated after training: every generation is kept in the result's samples


@pytest.fixture(scope="module")
def metric_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("metrics") / "my_metrics.py"
    path.write_text(METRIC_SOURCE)
    return path


@pytest.fixture(scope="module")
def trained(demo_ws, metric_file):
    """sft-lora trained briefly with an `eval:` section: the runner evaluates it after the final save."""
    run, status = train_recipe(
        demo_ws,
        "sft-lora",
        "training.max_steps=30",
        "training.save_steps=30",
        "training.eval_strategy=no",
        "data.eval_split=0",
        "eval.data=chat.jsonl",
        f"eval.limit={LIMIT}",
        "eval.shots=1",
        "eval.forgetting=demo",
        f"eval.metrics=[{metric_file}:first_word]",
    )
    return run


# ------------------------------------------------------------------------------------------------
# metrics on strings whose answer is known


def test_builtin_metrics_on_fixed_strings():
    assert exact_match("The capital of Varnia is Lumen.", "  the capital of  varnia is LUMEN. ") == 1.0
    assert exact_match("The capital of Varnia is Lumen", "The capital of Varnia is Lumen.") == 0.0
    assert contains("Well: the capital of Varnia is Lumen. Bye", "The capital of Varnia is Lumen.") == 1.0
    assert contains("Lumen", "The capital of Varnia is Lumen.") == 0.0
    assert rouge_l("a b c d", "a b c d") == pytest.approx(1.0)
    assert rouge_l("w x", "y z") == 0.0
    # LCS 3 words: precision 3/3, recall 3/4, F = 2 * 1 * 0.75 / 1.75
    assert rouge_l("the cat sat", "the cat sat down") == pytest.approx(6 / 7)


def test_user_metric_is_imported_called_and_checked(metric_file):
    metric = load_metric(f"{metric_file}:first_word", None)
    assert metric.score("Lumen is it", "lumen is the answer", "q") == 1.0
    assert metric.score("No", "Yes", "q") == 0.0
    words = load_metric(f"{metric_file}:words", None)
    assert words.score("one two three", "x", "the prompt") == 3.0  # prompt= passed when taken
    with pytest.raises(Exception, match="boom raised ValueError: this metric always fails") as err:
        load_metric(f"{metric_file}:boom", None).score("a", "a", "q")
    assert err.value.field == "--metric"


# ------------------------------------------------------------------------------------------------
# the runner's evaluation after training (recipe `eval:`)


def test_recipe_eval_runs_after_training_and_is_recorded(trained, metric_file):
    from tui_ft.runs.rundir import read_events

    events, _ = read_events(trained.events_file)
    evals = [e for e in events if e.get("type") == "eval" and e.get("source") == "tui-ft eval"]
    assert len(evals) == 1, trained.log_file.read_text()[-3000:]
    event = evals[0]
    assert event["exit_status"] == 0 and event["step"] == 30
    assert [r["label"] for r in event["rows"]] == ["tuned", "base", "base 1-shot"]
    assert isinstance(event["forgetting"]["loss_change"], float)
    assert events[-1]["state"] == "completed"  # the evaluation happens before the run says it ended

    doc = json.loads((trained.path / "eval" / "latest.json").read_text())
    assert (trained.path / event["file"]).read_text() == (trained.path / "eval" / "latest.json").read_text()
    assert doc["format"] == "messages" and doc["loss_on"] == "assistant turns"
    assert doc["examples"] == doc["generated"] == LIMIT
    assert doc["metrics"] == ["exact", "contains", "rouge_l", "first_word"]
    tuned, base, few_shot = doc["rows"]
    assert tuned["model"] == trained.id and base["model"] == "demo-tiny"
    # fine-tuning on the chats lowered the loss on them
    assert tuned["loss"] < base["loss"]
    assert tuned["perplexity"] == pytest.approx(2.718281828459045 ** tuned["loss"])
    assert few_shot["loss"] is None and few_shot["exact"] is not None

    # the stored scores are those of the stored generations (all LIMIT of them are kept)
    metric = load_metric(f"{metric_file}:first_word", None)
    assert len(doc["samples"]) == LIMIT
    for row, key in ((tuned, "tuned"), (base, "base"), (few_shot, "few_shot")):
        for name in ("exact", "contains", "rouge_l"):
            mean = sum(builtin_scores(s[key], s["reference"])[name] for s in doc["samples"]) / LIMIT
            assert row[name] == pytest.approx(mean), (key, name)
        mean = sum(metric.score(s[key], s["reference"], s["prompt"]) for s in doc["samples"]) / LIMIT
        assert row["custom"]["first_word"] == pytest.approx(mean)
    # the tuned model answers in the training data's phrasing better than its base
    assert tuned["rouge_l"] > base["rouge_l"]

    forgetting = doc["forgetting"]
    assert Path(forgetting["data"]).name == "general.jsonl" and forgetting["rows"] == LIMIT
    b, t = forgetting["base"]["loss"], forgetting["tuned"]["loss"]
    assert forgetting["loss_change"] == pytest.approx((t - b) / b)


def test_cli_eval_stores_a_result_and_runs_shows_it(trained, cli_env, metric_file):
    before = set((trained.path / "eval").glob("2*.json"))
    proc = run_tui_ft(
        cli_env,
        "eval",
        trained.id,
        "--data",
        "prompt_completion.jsonl",
        "--limit",
        "6",
        "--metric",
        f"{metric_file}:words",
        "--forgetting",
        "--json",
    )
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["format"] == "prompt_completion" and doc["loss_on"] == "completions"
    assert [r["label"] for r in doc["rows"]] == ["tuned", "base"]
    assert all(r["custom"]["words"] > 0 for r in doc["rows"])
    assert doc["forgetting"]["rows"] == 6
    after = set((trained.path / "eval").glob("2*.json"))
    assert len(after - before) == 1
    assert (
        json.loads((trained.path / "eval" / "latest.json").read_text())["file"] == (after - before).pop().name
    )

    shown = run_tui_ft(cli_env, "runs", trained.id)
    assert shown.returncode == 0, shown.stderr
    assert "rouge-L" in shown.stdout and "words" in shown.stdout and "forgetting" in shown.stdout
    assert "tuned" in shown.stdout and "base (demo-tiny)" in shown.stdout
    listed = json.loads(run_tui_ft(cli_env, "runs", trained.id, "--json").stdout)
    assert listed["eval"]["rows"][0]["custom"]["words"] == doc["rows"][0]["custom"]["words"]


# ------------------------------------------------------------------------------------------------
# the loss counts exactly the tokens training counts


def test_loss_tokens_are_the_ones_trl_trains_on(demo_ws, tmp_path):
    import datasets
    from transformers import AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    from tui_ft.evaluation.examples import read_eval_data
    from tui_ft.evaluation.scoring import loss_scope, tokenize_row

    model_dir = str(demo_ws.models / "demo-tiny")
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    for name, loss_key in (
        ("chat.jsonl", "assistant_only_loss"),
        ("prompt_completion.jsonl", "completion_only_loss"),
    ):
        data = read_eval_data(name, base_dir=demo_ws.data, limit=6)
        rows = [e.row for e in data.examples]
        args = SFTConfig(
            output_dir=str(tmp_path / name),
            report_to="none",
            use_cpu=True,
            bf16=False,
            max_length=64,
            **{loss_key: True},
        )
        trainer = SFTTrainer(
            model=model_dir,
            args=args,
            train_dataset=datasets.Dataset.from_list(rows),
            processing_class=tokenizer,
        )
        scope = loss_scope("auto", data.format, tokenizer)
        assert scope.assistant_only == (loss_key == "assistant_only_loss")
        for i, row in enumerate(rows):
            ids, labels = tokenize_row(tokenizer, row, scope, 64)
            trained_row = trainer.train_dataset[i]
            assert ids == trained_row["input_ids"], name
            assert labels == trained_row["labels"], name
            assert any(label == -100 for label in labels) and any(label != -100 for label in labels)


# ------------------------------------------------------------------------------------------------
# bad input: exit 2, the setting named, no traceback


@pytest.fixture()
def main_in(demo_ws, monkeypatch, capsys):
    from tui_ft.cli import main

    monkeypatch.setenv("TUI_FT_HOME", str(demo_ws.root))

    def call(*args: str) -> tuple[int, str]:
        code = main(list(args))
        return code, capsys.readouterr().err

    return call


def test_bad_input_exits_2_naming_the_setting(main_in, metric_file, tmp_path):
    broken = tmp_path / "broken_metric.py"
    broken.write_text("def f(:\n")
    code, err = main_in("eval", "demo-tiny", "--data", "chat.jsonl", "--metric", f"{broken}:f")
    assert code == 2 and "--metric" in err and "broken_metric.py" in err and "SyntaxError" in err
    code, err = main_in("eval", "demo-tiny", "--data", "chat.jsonl", "--metric", f"{metric_file}:nope")
    assert code == 2 and "--metric" in err and "no function nope" in err and "first_word" in err
    code, err = main_in("eval", "demo-tiny", "--data", "chat.jsonl", "--metric", f"{metric_file}:boom")
    assert code == 2 and "--metric" in err and "boom raised ValueError" in err
    code, err = main_in("eval", "demo-tiny", "--data", "preferences.jsonl")
    assert code == 2 and "--data" in err and "no reference answers" in err
    code, err = main_in("eval", "demo-tiny", "--data", "text.jsonl", "--metric", f"{metric_file}:first_word")
    assert code == 2 and "--data" in err and "no reference answers" in err
    code, err = main_in("eval", "no-such-model", "--data", "chat.jsonl")  # a hub id, and the hub is offline
    assert code == 2 and "MODEL" in err and "offline" in err
    code, err = main_in("eval", "./models/nowhere", "--data", "chat.jsonl")
    assert code == 2 and "MODEL" in err
    code, err = main_in("eval", "demo-tiny", "--data", "chat.jsonl", "--base", "demo-tiny-x")
    assert code == 2 and "--base" in err
    code, err = main_in("eval", "demo-tiny", "--data", "chat.jsonl", "--forgetting")
    assert code == 2 and "--forgetting" in err and "--base" in err
    code, err = main_in("eval", "demo-tiny", "--data", "chat.jsonl", "--base", "demo-tiny", "--shots", "2")
    assert code == 2 and "--shots" in err
    code, err = main_in("eval", "demo-tiny", "--data", "missing.jsonl")
    assert code == 2 and "missing.jsonl" in err
    assert "Traceback" not in err


def test_recipe_eval_section_is_checked_before_training(demo_ws, metric_file):
    from tui_ft.errors import RecipeError
    from tui_ft.recipe import load_recipe
    from tui_ft.runs.prepare import resolve_recipe

    def prepare(*overrides: str):
        return resolve_recipe(load_recipe("sft-lora", list(overrides), cache_dir=demo_ws.cache), demo_ws)

    with pytest.raises(RecipeError, match="needs held-out data") as err:
        prepare("eval.shots=1", "data.eval_split=0")
    assert err.value.field == "eval.data"
    with pytest.raises(RecipeError) as err:
        prepare("eval.data=chat.jsonl", f"eval.metrics=[{metric_file}:nope]")
    assert err.value.field == "eval.metrics" and "no function nope" in str(err.value)
    with pytest.raises(RecipeError) as err:
        prepare("eval.data=nowhere.jsonl")
    assert err.value.field == "eval.data"
    recipe = prepare(
        "eval.data=chat.jsonl", f"eval.metrics=[{metric_file}:first_word]", "eval.forgetting=demo"
    )
    assert recipe.eval is not None and Path(recipe.eval.data or "").is_absolute()
    assert recipe.eval.forgetting == "demo"


def test_demo_ships_general_text_held_out_of_the_model(demo_ws):
    from tui_ft.demo import GENERAL_TEXT_FILE, SAMPLE_FILES, SAMPLES_DIR, pretraining_documents

    copy = demo_ws.data / GENERAL_TEXT_FILE
    assert copy.read_bytes() == (SAMPLES_DIR / GENERAL_TEXT_FILE).read_bytes()
    rows = [json.loads(line) for line in copy.read_text().splitlines()]
    assert len(rows) >= 200 and all(set(r) == {"text"} for r in rows)
    assert not any("Orbis" in r["text"] for r in rows)  # nothing about the fine-tuning facts
    assert GENERAL_TEXT_FILE not in SAMPLE_FILES.values()
    documents = set(pretraining_documents())
    assert not any(r["text"] in documents for r in rows)
