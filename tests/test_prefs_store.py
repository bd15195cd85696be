"""The annotation store: appended and fsynced per decision, undo as a retraction, a torn line from a
crash skipped and reported, unknown keys from a newer version ignored, bad lines named."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tui_ft.errors import DataError
from tui_ft.prefs.store import PreferenceStore, Response, new_decision, store_path

PROMPT = [{"role": "user", "content": "What is the capital of Korvath?"}]


def decide(store: PreferenceStore, label: str, who: str = "ana", pair: str | None = None):
    a = Response("Vell.", "sft-lora", "A")
    b = Response("Ashby.", "demo-tiny", "B")
    return store.add(new_decision(PROMPT, a, b, label, annotator=who, pair=pair))


def test_decisions_round_trip_with_chosen_and_rejected(tmp_path):
    store = PreferenceStore(tmp_path / "annotations" / "s.jsonl")
    first = decide(store, "A")
    second = decide(store, "B")
    tie = decide(store, "tie")
    got = store.read()
    assert [d.id for d in got.decisions] == [first.id, second.id, tie.id]
    assert got.decisions[0].chosen.text == "Vell." and got.decisions[0].rejected.text == "Ashby."
    assert got.decisions[1].chosen.source == "demo-tiny"
    assert got.decisions[2].chosen is None and got.decisions[2].rejected is None
    assert [d.line for d in got.decisions] == [1, 2, 3]
    lines = store.path.read_text().splitlines()
    assert len(lines) == 3 and json.loads(lines[0])["annotator"] == "ana"


def test_undo_appends_a_retraction(tmp_path):
    store = PreferenceStore(tmp_path / "s.jsonl")
    kept = decide(store, "A")
    gone = decide(store, "B")
    store.retract(gone.id, annotator="ana")
    got = store.read()
    assert [d.id for d in got.decisions] == [kept.id] and got.retracted == 1
    assert len(store.path.read_text().splitlines()) == 3  # nothing rewritten


def test_torn_line_is_skipped_reported_and_later_appends_start_clean(tmp_path):
    store = PreferenceStore(tmp_path / "s.jsonl")
    decide(store, "A")
    with open(store.path, "a") as fh:
        fh.write('{"type": "decision", "id": "cut", "prompt": [{"role"')  # a crash mid-write
    assert store.read().torn_lines == [2]
    after = decide(store, "B")
    got = store.read()
    assert got.torn_lines == [2] and [d.label for d in got.decisions] == ["A", "B"]
    assert got.decisions[-1].id == after.id


def test_newer_versions_keys_and_line_types_are_ignored(tmp_path):
    store = PreferenceStore(tmp_path / "s.jsonl")
    doc = new_decision(
        PROMPT, Response("x", "m1", "A"), Response("y", "m2", "B"), "A", annotator="b"
    ).to_json()
    doc["confidence"] = 0.9
    doc["responses"][0]["logprob"] = -3.2
    store.path.write_text(json.dumps(doc) + "\n" + json.dumps({"type": "comment", "text": "hi"}) + "\n")
    got = store.read()
    assert len(got.decisions) == 1 and got.unknown_lines == [2]


def test_a_bad_line_in_the_middle_names_file_and_line(tmp_path):
    store = PreferenceStore(tmp_path / "s.jsonl")
    decide(store, "A")
    with open(store.path, "a") as fh:
        fh.write(
            '{"type": "decision", "label": "maybe", "responses": [{"text": "a"}, {"text": "b"}], '
            '"prompt": "q"}\n'
        )
    with pytest.raises(DataError) as err:
        store.read()
    assert err.value.line == 2 and "label" in str(err.value) and str(store.path) in str(err.value)


def test_kill_9_after_a_decision_loses_nothing(tmp_path):
    """A process that decided and was then killed at once: the line is on disk (fsync per line)."""
    path = tmp_path / "s.jsonl"
    code = (
        "import os, signal\n"
        "from tui_ft.prefs.store import PreferenceStore, Response, new_decision\n"
        f"s = PreferenceStore({str(path)!r})\n"
        "for label in ('A', 'B', 'tie'):\n"
        "    s.add(new_decision([{'role': 'user', 'content': 'q'}], Response('a', 'm', 'A'),"
        " Response('b', 'n', 'B'), label, annotator='k'))\n"
        "os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True)
    assert proc.returncode == -9
    assert [d.label for d in PreferenceStore(path).read().decisions] == ["A", "B", "tie"]


def test_store_names_resolve_under_annotations(tmp_path):
    assert store_path(tmp_path, "chat-compare") == tmp_path / "chat-compare.jsonl"
    assert store_path(tmp_path, "x.jsonl") == tmp_path / "x.jsonl"
    assert str(store_path(tmp_path, "/abs/y.jsonl")) == "/abs/y.jsonl"
