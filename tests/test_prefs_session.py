"""Annotation sessions, exports and agreement, without the UI: the pairs of a file, sides randomised per
pair and recorded, the position read back from the store (a restart continues at the right pair), undo
as a retraction, the export rules for DPO, KTO and reward, Cohen's kappa, the store as a training
format, and the commands (`tui-ft prefs stats|export`, `tui-ft annotate`'s bad input)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import run_tui_ft
from tui_ft.data.formats import Format, detect_format, validate_record
from tui_ft.data.prompts import read_prompts
from tui_ft.prefs.export import agreements, outcomes, training_rows
from tui_ft.prefs.session import (
    AnnotationSession,
    SessionSpec,
    a_shows_first,
    prompt_pairs,
    save_spec,
)
from tui_ft.prefs.store import PreferenceStore, Response, new_decision
from tui_ft.workspace import Workspace

SAMPLES = Path(__file__).parents[1] / "tui_ft" / "samples"
PROMPT = [{"role": "user", "content": "Spell tiger backwards."}]


def review_session(ws: Workspace, who: str = "ana", name: str = "rev", file: str = "preferences.jsonl"):
    spec = SessionSpec(name=name, prompts=str(SAMPLES / file), kind="review")
    save_spec(ws, spec)
    return AnnotationSession(ws, spec, prompt_pairs(read_prompts(spec.prompts).items, spec), who)


def chosen_side(session: AnnotationSession) -> str:
    """The side the file's `chosen` response shows on, for the current pair."""
    pair = session.current
    assert pair is not None and pair.responses is not None
    return next(r.side for r in pair.responses if r.source.endswith("#chosen"))


def test_review_pairs_randomise_sides_per_pair_and_record_them(tmp_path):
    session = review_session(Workspace(tmp_path).ensure())
    assert session.total == 400
    firsts = [p.responses[0].source.endswith("#chosen") for p in session.pairs]
    assert 150 < sum(firsts) < 250  # about half each way
    assert all(p.responses[0].side == "A" and p.responses[1].side == "B" for p in session.pairs)
    assert all(firsts[i] == a_shows_first(p.id) for i, p in enumerate(session.pairs))
    again = review_session(Workspace(tmp_path / "other").ensure(), who="ben")
    assert [p.id for p in again.pairs] == [p.id for p in session.pairs]  # the same pairs for everyone


def test_decisions_position_and_undo_survive_a_restart(tmp_path):
    ws = Workspace(tmp_path).ensure()
    session = review_session(ws)
    for label in ("A", "B", "tie", "both_bad", "skip"):
        session.decide(label)
    assert session.position == 5
    session.move(-2)  # back to pair 4, relabel it: the old decision is retracted
    session.decide("A", rationale="clearer")
    assert session.position == 5
    restarted = review_session(ws)  # as after kill -9: only the store is read
    assert restarted.position == 5
    assert [restarted.decision_on(p).label for p in restarted.pairs[:5]] == ["A", "B", "tie", "A", "skip"]
    assert restarted.decision_on(restarted.pairs[3]).rationale == "clearer"
    undone = restarted.undo()  # the last decision made, though made before the restart
    assert undone.label == "A" and undone.rationale == "clearer" and restarted.position == 3
    contents = PreferenceStore(ws.annotations / "rev.jsonl").read()
    assert len(contents.decisions) == 4 and contents.retracted == 2
    assert review_session(ws).position == 3


def test_a_prompts_file_with_bad_lines_names_them_and_keeps_the_good_ones(tmp_path):
    path = tmp_path / "prompts.jsonl"
    path.write_text(
        '{"prompt": "one"}\n{"prompt": 3}\nnot json\n{"prompt": [{"role": "user", "content": "two"}]}\n'
        '{"prompt": "three"}\n'
    )
    prompts = read_prompts(path)
    assert [p.line for p in prompts.problems] == [2, 3, 4]
    assert prompts.problems[0].field == "prompt"
    assert [item.prompt[0]["content"] for item in prompts.items] == ["one", "three"]
    assert [item.line for item in prompts.items] == [1, 5]


def test_chat_and_ranking_files_give_prompts_and_pairs():
    chat = read_prompts(SAMPLES / "chat.jsonl")
    assert chat.items[0].prompt[-1]["role"] == "user" and len(chat.items[0].prompt) == 3
    ranking = read_prompts(SAMPLES / "ranking.jsonl")
    first = ranking.items[0]
    assert ranking.has_pairs and [c.origin for c in first.candidates] == ["responses[0]", "responses[1]"]


# --- export rules ----------------------------------------------------------------------------------------


def _decide(store: PreferenceStore, label: str, who: str, pair: str, a: str = "good", b: str = "bad"):
    return store.add(
        new_decision(PROMPT, Response(a, "m1", "A"), Response(b, "m2", "B"), label, annotator=who, pair=pair)
    )


def test_export_rules_for_ties_both_bad_skips_retractions_and_disputes(tmp_path):
    store = PreferenceStore(tmp_path / "s.jsonl")
    _decide(store, "A", "ana", "p1")
    _decide(store, "B", "ana", "p2", a="worse", b="better")
    _decide(store, "tie", "ana", "p3")
    _decide(store, "both_bad", "ana", "p4")
    _decide(store, "skip", "ana", "p5")
    gone = _decide(store, "A", "ana", "p6")
    store.retract(gone.id, annotator="ana")
    _decide(store, "A", "ana", "p7")  # two annotators disagree: disputed
    _decide(store, "B", "ben", "p7")
    _decide(store, "A", "ana", "p8")  # two of three say A
    _decide(store, "A", "ben", "p8")
    _decide(store, "B", "cy", "p8")
    _decide(store, "skip", "ben", "p1")  # a skip is no vote
    decisions = store.read().decisions
    assert {o.pair: o.label for o in outcomes(decisions)} == {
        "p1": "A", "p2": "B", "p3": "tie", "p4": "both_bad", "p5": "skip", "p7": "disputed", "p8": "A",
    }  # fmt: skip
    dpo = training_rows(decisions, "dpo")
    assert dpo.kept == 3 and dict(dpo.dropped) == {"tie": 1, "both_bad": 1, "skip": 1, "disputed": 1}
    assert dpo.rows[0] == {
        "prompt": PROMPT,
        "chosen": [{"role": "assistant", "content": "good"}],
        "rejected": [{"role": "assistant", "content": "bad"}],
    }
    assert dpo.rows[1]["chosen"][0]["content"] == "better"
    assert training_rows(decisions, "reward").rows == dpo.rows
    kto = training_rows(decisions, "kto")
    assert kto.kept == 4 and dict(kto.dropped) == {"tie": 1, "skip": 1, "disputed": 1}
    labels = [(r["completion"][0]["content"], r["label"]) for r in kto.rows]
    assert labels[:4] == [("good", True), ("bad", False), ("better", True), ("worse", False)]
    assert labels[4:6] == [("good", False), ("bad", False)]  # both bad: both undesirable


def test_agreement_percent_and_cohens_kappa(tmp_path):
    store = PreferenceStore(tmp_path / "s.jsonl")
    ana = ["A", "A", "B", "B", "tie", "A"]
    ben = ["A", "A", "B", "A", "tie", "B"]
    for i, (x, y) in enumerate(zip(ana, ben, strict=True)):
        _decide(store, x, "ana", f"p{i}")
        _decide(store, y, "ben", f"p{i}")
    _decide(store, "A", "ana", "only-ana")
    (agree,) = agreements(store.read().decisions)
    assert (agree.first, agree.second, agree.shared) == ("ana", "ben", 6)
    assert agree.percent == pytest.approx(100 * 4 / 6)
    # by hand: p_o = 4/6; ana A3 B2 T1, ben A3 B2 T1 -> p_e = (9 + 4 + 1) / 36; kappa = (p_o - p_e) / (1 - p_e)
    p_o, p_e = 4 / 6, 14 / 36
    assert agree.kappa == pytest.approx((p_o - p_e) / (1 - p_e))


# --- the store as a training format ---------------------------------------------------------------------


def test_a_store_is_detected_validated_and_loaded_for_training(tmp_path):
    from tui_ft.data.training import load_for_training

    store = PreferenceStore(tmp_path / "annotations" / "s.jsonl")
    _decide(store, "A", "ana", "p1")
    _decide(store, "B", "ana", "p2")
    gone = _decide(store, "A", "ana", "p3")
    store.retract(gone.id, annotator="ana")
    _decide(store, "tie", "ana", "p4")
    lines = [json.loads(line) for line in store.path.read_text().splitlines()]
    assert {detect_format(doc) for doc in lines} == {Format.annotations}
    assert all(validate_record(doc, Format.annotations) == [] for doc in lines)
    bad = dict(lines[0], label="maybe")
    assert validate_record(bad, Format.annotations)[0][0] == "label"
    dpo = load_for_training(store.path, method="dpo")
    assert dpo.format is Format.annotations and dpo.rows == 2 and len(dpo.dataset) == 2
    assert set(dpo.dataset.column_names) == {"prompt", "chosen", "rejected"}
    kto = load_for_training(store.path, method="kto")
    assert len(kto.dataset) == 4 and set(kto.dataset.column_names) == {"prompt", "completion", "label"}
    from tui_ft.errors import DataError

    with pytest.raises(DataError, match="needs one of"):
        load_for_training(store.path, method="sft")


# --- the commands ----------------------------------------------------------------------------------------


def test_prefs_stats_and_export_on_the_command_line(cli_env, demo_ws, tmp_path):
    store = PreferenceStore(demo_ws.annotations / "cli-stats.jsonl")
    for i, (x, y) in enumerate([("A", "A"), ("B", "B"), ("A", "B"), ("tie", "tie")]):
        _decide(store, x, "ana", f"p{i}")
        _decide(store, y, "ben", f"p{i}")
    shown = run_tui_ft(cli_env, "prefs", "stats", "cli-stats")
    assert shown.returncode == 0, shown.stderr
    assert "8 decisions on 4 pairs" in shown.stdout and "75% agree" in shown.stdout
    doc = json.loads(run_tui_ft(cli_env, "prefs", "stats", "cli-stats", "--json").stdout)
    assert doc["agreement"][0]["shared"] == 4 and doc["agreement"][0]["kappa"] > 0.5
    out = tmp_path / "dpo.jsonl"
    done = run_tui_ft(cli_env, "prefs", "export", "cli-stats", "--to", "dpo", "--out", str(out))
    assert done.returncode == 0, done.stderr
    assert "2 dpo rows from 2 pairs (dropped: 1 disputed, 1 tie)" in done.stdout
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert detect_format(rows[0]) is Format.preference and rows[0]["chosen"][0]["content"] == "good"
    missing = run_tui_ft(cli_env, "prefs", "stats", "no-such-store")
    assert missing.returncode == 2 and "no annotation store no-such-store" in missing.stderr
    assert "Traceback" not in missing.stderr


def test_annotate_bad_input_exits_2_with_a_sentence(cli_env, tmp_path):
    needs_model = run_tui_ft(cli_env, "annotate", str(SAMPLES / "prompts.jsonl"), timeout=60)
    assert needs_model.returncode == 2 and "--a: candidates need a model" in needs_model.stderr
    bad_model = run_tui_ft(cli_env, "annotate", str(SAMPLES / "prompts.jsonl"), "--a", "./no-such-model")
    assert bad_model.returncode == 2 and "--a: no model './no-such-model' here" in bad_model.stderr
    empty = tmp_path / "bad.jsonl"
    empty.write_text('{"prompt": 1}\n{"prompt": 2}\n')
    nothing = run_tui_ft(cli_env, "annotate", str(empty), "--a", "demo-tiny")
    assert nothing.returncode == 2 and f"{empty}:1: prompt: no usable prompts" in nothing.stderr
    badname = run_tui_ft(cli_env, "annotate", str(SAMPLES / "preferences.jsonl"), "--out", "a/b")
    assert badname.returncode == 2 and "cannot name a session" in badname.stderr
    for result in (needs_model, bad_model, nothing, badname):
        assert "Traceback" not in result.stderr
