"""Method `classify`: a sequence-classification head on text/label data through transformers' Trainer,
with the backbone frozen, partly frozen, fully trained or adapted with LoRA; accuracy, precision,
recall, F1 and a confusion matrix at every evaluation; labels the classifier never saw refused."""

from __future__ import annotations

import json

import pytest

from tests.conftest import run_tui_ft, train_recipe
from tui_ft.data.formats import class_names
from tui_ft.data.training import load_for_training
from tui_ft.errors import DataError
from tui_ft.estimate import estimate_memory
from tui_ft.recipe import load_recipe
from tui_ft.runs.metrics import last_confusion_matrix, last_method_metrics
from tui_ft.runs.prepare import create_run
from tui_ft.runs.rundir import Status, read_events

# The sample data (tui_ft/samples/classification.jsonl): 300 rows, 100 each of three classes.
SAMPLE_CLASSES = ("negative", "neutral", "positive")
CHANCE = 1 / 3  # three balanced classes: always guessing one class is right a third of the time
MARGIN = 0.4  # the frozen-backbone classifier must beat chance by 40 points: accuracy >= 0.733


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def events_of(run, kind):
    events, _ = read_events(run.events_file)
    return [e for e in events if e["type"] == kind]


# --- labels -------------------------------------------------------------------------------------------


def test_class_names_order_integers_by_value_and_names_alphabetically():
    assert class_names(["b", "a", "c", "a"]) == ("a", "b", "c")
    assert class_names([2, 0, 10, 1]) == ("0", "1", "2", "10")  # integer k keeps id k for 0..n-1
    assert class_names([1, "1", 0]) == ("0", "1")  # a JSON 1 and a "1" are one class


def test_training_data_gets_label_ids_and_the_class_names(demo_ws):
    loaded = load_for_training(demo_ws.data / "classification.jsonl", method="classify")
    assert loaded.labels == SAMPLE_CLASSES
    assert sorted(set(loaded.dataset["label"])) == [0, 1, 2]
    first = json.loads((demo_ws.data / "classification.jsonl").read_text().splitlines()[0])
    assert loaded.dataset[0]["label"] == SAMPLE_CLASSES.index(first["label"])


def test_csv_with_integer_labels(tmp_path):
    path = tmp_path / "tickets.csv"
    path.write_text('text,label\n"refund, please",1\nwhere is my parcel,0\n"great, thanks",2\nbroken,1\n')
    loaded = load_for_training(path, method="classify")
    assert loaded.labels == ("0", "1", "2")
    assert loaded.dataset["label"] == [1, 0, 2, 1]


def test_an_eval_label_the_training_data_lacks_names_file_line_and_label(tmp_path):
    train = write_jsonl(tmp_path / "train.jsonl", [{"text": "a", "label": "x"}, {"text": "b", "label": "y"}])
    evald = write_jsonl(
        tmp_path / "eval.jsonl",
        [{"text": "c", "label": "x"}, {"text": "d", "label": "y"}, {"text": "e", "label": "zebra"}],
    )
    labels = load_for_training(train, method="classify").labels
    with pytest.raises(DataError) as caught:
        load_for_training(evald, method="classify", labels=labels)
    err = caught.value
    assert (err.line, err.field) == (3, "label")
    assert str(evald) in str(err) and "'zebra'" in err.message and "x, y" in err.message


def test_one_class_is_not_a_classifier(tmp_path):
    train = write_jsonl(tmp_path / "train.jsonl", [{"text": "a", "label": "x"}, {"text": "b", "label": "x"}])
    with pytest.raises(DataError, match="at least two labels"):
        load_for_training(train, method="classify")


# --- metrics --------------------------------------------------------------------------------------------


def test_metrics_from_predictions():
    import numpy as np
    from transformers import EvalPrediction

    from tui_ft.engine.classification import classification_metrics

    # true: a a b b c c; predicted: a b b b c a
    logits = np.array([[1, 0, 0], [0, 1, 0], [0, 1, 0], [0, 1, 0], [0, 0, 1], [1, 0, 0]], dtype=np.float32)
    compute = classification_metrics(["a", "b", "c"])
    m = compute(EvalPrediction(predictions=logits, label_ids=np.array([0, 0, 1, 1, 2, 2])))
    assert m["accuracy"] == pytest.approx(4 / 6)
    assert m["confusion_matrix"] == [[1, 1, 0], [0, 2, 0], [1, 0, 1]]
    assert m["confusion_labels"] == ["a", "b", "c"]
    assert m["precision/b"] == pytest.approx(2 / 3) and m["recall/b"] == 1.0
    assert m["recall/c"] == pytest.approx(0.5) and m["precision/c"] == 1.0
    assert m["f1/a"] == pytest.approx(0.5)
    f1s = [m["f1/a"], m["f1/b"], m["f1/c"]]
    assert m["f1_macro"] == pytest.approx(sum(f1s) / 3)


def test_the_estimate_takes_classify(demo_ws):
    for name in ("classify-frozen", "classify-partial", "classify-full", "classify-lora"):
        recipe = load_recipe(name, cache_dir=demo_ws.cache).recipe
        estimate = estimate_memory(recipe, demo_ws)
        assert estimate.total_bytes > 0
    frozen = estimate_memory(load_recipe("classify-frozen", cache_dir=demo_ws.cache).recipe, demo_ws)
    full = estimate_memory(load_recipe("classify-full", cache_dir=demo_ws.cache).recipe, demo_ws)
    assert frozen.trainable_params < full.trainable_params


def test_training_keys_are_checked_against_training_arguments(demo_ws):
    from tui_ft.errors import RecipeError

    load_recipe("classify-frozen", ["training.label_smoothing_factor=0.1"], cache_dir=demo_ws.cache)
    with pytest.raises(RecipeError, match="unknown key for method classify") as caught:
        load_recipe("classify-frozen", ["training.beta=0.1"], cache_dir=demo_ws.cache)  # a TRL key
    assert caught.value.field == "training.beta"


# --- what trains ------------------------------------------------------------------------------------------


def changed_parameters(ws, recipe, *overrides):
    """Train the recipe's trainer in this process (as the runner builds it) for a few steps; the
    parameters whose values changed, and the model's parameter names."""
    import torch

    from tui_ft.engine.callbacks import StopRequest
    from tui_ft.engine.runner import build_trainer

    loaded = load_recipe(
        recipe,
        ["training.max_steps=6", "training.eval_strategy=no", "data.eval_split=0", *overrides],
        cache_dir=ws.cache,
    )
    run = create_run(loaded, ws)
    status = Status(id=run.id, name=run.id, method="classify")
    trainer, _, _ = build_trainer(run, ws, status, None, StopRequest(run))
    before = {n: p.detach().clone() for n, p in trainer.model.named_parameters()}
    trainer.train()
    after = dict(trainer.model.named_parameters())
    return {n for n in before if not torch.equal(before[n], after[n].detach())}, set(before)


@pytest.mark.slow
def test_frozen_backbone_changes_only_the_head(demo_ws):
    changed, names = changed_parameters(demo_ws, "classify-frozen")
    assert "score.weight" in names
    assert changed == {"score.weight"}


@pytest.mark.slow
def test_partly_frozen_changes_only_the_last_block_and_the_head(demo_ws):
    changed, names = changed_parameters(demo_ws, "classify-partial")  # demo-tiny: 3 blocks, the last trains
    last = max(int(n.split(".")[2]) for n in names if n.startswith("model.layers."))
    assert last >= 1
    last_block = {n for n in names if n.startswith(f"model.layers.{last}.")}
    # the final norm sits after the last block and trains with it (as in freeze tuning of SFT)
    allowed = last_block | {"model.norm.weight", "score.weight"}
    assert "score.weight" in changed
    assert changed & last_block
    assert changed <= allowed, changed - allowed
    assert not any(n.startswith(("model.layers.0.", "model.embed_tokens")) for n in changed)


@pytest.mark.slow
def test_full_training_changes_the_backbone(demo_ws):
    changed, _ = changed_parameters(demo_ws, "classify-full")
    assert {"model.embed_tokens.weight", "model.layers.0.self_attn.q_proj.weight", "score.weight"} <= changed


# --- the shipped recipes, the events and the outcome ----------------------------------------------------


_TRAINED: dict[str, tuple] = {}


def frozen_run(ws):
    """The shipped frozen recipe as shipped: 60 steps, a fifth of the sample held out (60 rows); once."""
    if "frozen" not in _TRAINED:
        _TRAINED["frozen"] = train_recipe(ws, "classify-frozen")
    return _TRAINED["frozen"]


@pytest.mark.slow
def test_frozen_classifier_beats_chance_and_reports_every_metric(demo_ws, cli_env):
    run, _ = frozen_run(demo_ws)
    evals = events_of(run, "eval")
    assert evals, "no eval event"
    last = evals[-1]
    assert last["eval_accuracy"] >= CHANCE + MARGIN, last
    for key in ("eval_loss", "eval_precision_macro", "eval_recall_macro", "eval_f1_macro"):
        assert 0.0 <= last[key] <= (1.0 if key != "eval_loss" else 10.0), key
    for name in SAMPLE_CLASSES:
        for metric in ("precision", "recall", "f1"):
            assert 0.0 <= last[f"eval_{metric}/{name}"] <= 1.0
    assert last["eval_confusion_labels"] == list(SAMPLE_CLASSES)
    matrix = last["eval_confusion_matrix"]
    assert len(matrix) == 3 and all(len(row) == 3 for row in matrix)
    assert sum(map(sum, matrix)) == 60  # every held-out row counted once
    correct = sum(matrix[i][i] for i in range(3))
    assert correct / 60 == pytest.approx(last["eval_accuracy"])

    # the saved classifier names its classes
    config = json.loads((run.final / "config.json").read_text())
    assert config["id2label"] == {"0": "negative", "1": "neutral", "2": "positive"}
    assert config["architectures"] == ["LlamaForSequenceClassification"]

    # the run's outcome: `tui-ft runs RUN` shows the figures and the matrix
    metrics = last_method_metrics(run)
    assert metrics["eval_accuracy"] == last["eval_accuracy"]
    assert metrics["eval_f1/neutral"] == last["eval_f1/neutral"]
    assert last_confusion_matrix(run) == {
        "step": last["step"],
        "labels": list(SAMPLE_CLASSES),
        "matrix": matrix,
    }
    proc = run_tui_ft(cli_env, "runs", run.id, "--json")
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["metrics"]["eval_f1_macro"] == last["eval_f1_macro"]
    assert doc["confusion_matrix"]["matrix"] == matrix
    shown = run_tui_ft(cli_env, "runs", run.id)
    assert "confusion matrix" in shown.stdout and "eval_f1_macro" in shown.stdout


@pytest.mark.slow
@pytest.mark.parametrize("recipe", ["classify-frozen", "classify-partial", "classify-full", "classify-lora"])
def test_each_shipped_recipe_trains(demo_ws, recipe):
    run, status = train_recipe(demo_ws, recipe, "training.max_steps=4")
    assert status.step == 4
    (last,) = events_of(run, "eval")[-1:]  # the evaluation at the end
    assert "eval_accuracy" in last and "eval_confusion_matrix" in last
    config = [e for e in events_of(run, "config")][0]
    assert config["method"] == "classify"
    meta = json.loads((run.final / "tui-ft.json").read_text())
    assert meta["method"] == "classify"


@pytest.fixture
def anyio_backend():
    return "asyncio"


@pytest.mark.slow
@pytest.mark.anyio
async def test_the_dashboard_charts_accuracy_and_f1_and_shows_the_confusion_matrix(demo_ws, tmp_path):
    from tests.test_ui_runs import RecordingApp, chart, until
    from tui_ft.ui.widgets.confusion import ConfusionMatrix

    run, _ = frozen_run(demo_ws)
    last = events_of(run, "eval")[-1]
    app = RecordingApp(demo_ws, start_mode="runs", start_run=run.id)
    async with app.run_test(size=(120, 40)) as pilot:
        await until(pilot, lambda: app.screen.refreshes >= 1)
        await pilot.pause(0.2)
        assert chart(app, "chart-rm-accuracy").last_value("eval_accuracy") == last["eval_accuracy"]
        assert chart(app, "chart-f1").last_value("eval_f1_macro") == last["eval_f1_macro"]
        matrix = app.screen.query_one("#dash-confusion", ConfusionMatrix)
        assert matrix.display
        assert matrix.confusion == {
            "step": last["step"],
            "labels": list(SAMPLE_CLASSES),
            "matrix": last["eval_confusion_matrix"],
        }
        app.save_screenshot(str(tmp_path / "classify-dashboard.svg"))
        shown = (tmp_path / "classify-dashboard.svg").read_text().replace("&#160;", " ")
        assert "confusion matrix" in shown and "neutral" in shown


# --- bad input ------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_unseen_eval_label_exits_2_before_a_model_loads(cli_env, demo_ws, tmp_path):
    evald = write_jsonl(
        tmp_path / "held-out.jsonl",
        [
            {"text": "What a lovely flindle.", "label": "positive"},
            {"text": "Meh.", "label": "sarcastic"},
        ],
    )
    proc = run_tui_ft(cli_env, "train", "classify-frozen", "--set", f"data.eval={evald}")
    assert proc.returncode == 2, proc.stderr
    assert f"{evald}:2" in proc.stderr
    assert "label" in proc.stderr and "'sarcastic'" in proc.stderr
    assert "Traceback" not in proc.stderr


# --- `tui-ft eval` on a classifier ----------------------------------------------------------------------


@pytest.mark.slow
def test_eval_of_a_classifier_agrees_with_its_last_evaluation(demo_ws, cli_env):
    """`tui-ft eval RUN` without data predicts the rows the run held out (the same split, from the run's
    seed) with the saved model: the same accuracy, macro figures and confusion matrix as the trainer's
    evaluation at the end, and a table with a row per class and the matrix."""
    run, _ = frozen_run(demo_ws)
    last = events_of(run, "eval")[-1]
    proc = run_tui_ft(cli_env, "eval", run.id, "--json")
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["kind"] == "classification" and doc["examples"] == 60
    (row,) = doc["rows"]
    assert row["accuracy"] == pytest.approx(last["eval_accuracy"])
    assert row["f1_macro"] == pytest.approx(last["eval_f1_macro"])
    assert row["loss"] == pytest.approx(last["eval_loss"], rel=1e-3)
    assert doc["confusion"] == {"labels": list(SAMPLE_CLASSES), "matrix": last["eval_confusion_matrix"]}
    assert row["per_class"]["neutral"]["f1"] == pytest.approx(last["eval_f1/neutral"])
    assert sum(c["support"] for c in row["per_class"].values()) == 60

    shown = run_tui_ft(cli_env, "runs", run.id)  # the stored result, as `tui-ft runs RUN` shows it
    assert shown.returncode == 0, shown.stderr
    for text in ("model / class", "  neutral", "confusion matrix (rows: true class"):
        assert text in shown.stdout, shown.stdout


@pytest.mark.slow
def test_eval_of_a_classifier_rejects_unseen_labels_and_generation_options(demo_ws, cli_env, tmp_path):
    run, _ = frozen_run(demo_ws)
    data = tmp_path / "eval.jsonl"
    data.write_text('{"text": "fine", "label": "positive"}\n{"text": "meh", "label": "sarcastic"}\n')
    proc = run_tui_ft(cli_env, "eval", run.id, "--data", str(data))
    assert proc.returncode == 2, proc.stderr
    assert "eval.jsonl:2" in proc.stderr and "sarcastic" in proc.stderr
    assert "Traceback" not in proc.stderr
    proc = run_tui_ft(cli_env, "eval", run.id, "--shots", "2")
    assert proc.returncode == 2 and "--shots" in proc.stderr and "classifier" in proc.stderr
