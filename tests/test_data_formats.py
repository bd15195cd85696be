"""Format detection, validation, normalisation and method fit (pure Python, no heavy imports)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.conftest import DATA_FIXTURES
from tui_ft.data.formats import (
    METHOD_FORMATS,
    Format,
    check_method_format,
    detect_format,
    expand_ranking,
    normalise,
    rows_for_method,
    validate_record,
)
from tui_ft.errors import DataError


def first_record(name: str) -> dict:
    path = DATA_FIXTURES / name
    if path.suffix == ".json":
        return json.loads(path.read_text())[0]
    return json.loads(path.read_text().splitlines()[0])


@pytest.mark.parametrize(
    ("fixture", "expected"),
    [
        ("text.jsonl", Format.text),
        ("prompt_completion.jsonl", Format.prompt_completion),
        ("messages.jsonl", Format.messages),
        ("sharegpt.jsonl", Format.sharegpt),
        ("alpaca.json", Format.alpaca),
        ("preference.jsonl", Format.preference),
        ("preference_conversational.jsonl", Format.preference),
        ("preference_implicit.jsonl", Format.preference_implicit),
        ("unpaired.jsonl", Format.unpaired),
        ("prompt_only.jsonl", Format.prompt_only),
        ("ranking.jsonl", Format.ranking),
    ],
)
def test_detects_each_fixture_and_it_validates(fixture: str, expected: Format) -> None:
    record = first_record(fixture)
    assert detect_format(record) is expected
    assert validate_record(record, expected) == []


def test_detect_classification_and_unknown() -> None:
    assert detect_format({"text": "x", "label": 1}) is Format.classification
    assert detect_format({"foo": 1}) is None
    assert detect_format(["not", "a", "dict"]) is None  # type: ignore[arg-type]


def test_detection_uses_marking_keys_so_missing_fields_are_reported() -> None:
    # A preference row missing `rejected` is still a preference row, with an error.
    record = {"prompt": "a", "chosen": "b"}
    assert detect_format(record) is Format.preference
    assert validate_record(record, Format.preference) == [("rejected", "missing required field")]


def test_format_values_are_exact() -> None:
    assert {f.value for f in Format} == {
        "text",
        "prompt_completion",
        "messages",
        "sharegpt",
        "alpaca",
        "preference",
        "preference_implicit",
        "unpaired",
        "classification",
        "prompt_only",
        "ranking",
        "annotations",
    }


@pytest.mark.parametrize(
    ("record", "fmt", "field", "words"),
    [
        ({"text": 3}, Format.text, "text", "expected a string, got a number"),
        ({"prompt": "a", "completion": 42}, Format.prompt_completion, "completion", "got a number"),
        (
            {"messages": [{"role": "user", "content": "a"}, {"role": "robot", "content": "b"}]},
            Format.messages,
            "messages[1].role",
            "unknown role 'robot'",
        ),
        (
            {"messages": [{"role": "user", "content": "a"}, {"role": "assistant"}]},
            Format.messages,
            "messages[1].content",
            "no content",
        ),
        ({"messages": []}, Format.messages, "messages", "empty conversation"),
        ({"messages": [{"role": "user", "content": "a"}]}, Format.messages, "messages", "no assistant"),
        ({"conversations": []}, Format.sharegpt, "conversations", "empty conversation"),
        (
            {"conversations": [{"from": "alien", "value": "x"}, {"from": "gpt", "value": "y"}]},
            Format.sharegpt,
            "conversations[0].from",
            "unknown speaker 'alien'",
        ),
        ({"instruction": "a"}, Format.alpaca, "output", "missing required field"),
        (
            {"prompt": "a", "completion": "b", "label": "yes"},
            Format.unpaired,
            "label",
            "expected true or false",
        ),
        ({"text": "a", "label": 1.5}, Format.classification, "label", "expected a class name or an integer"),
        ({"prompt": "a", "responses": ["only one"]}, Format.ranking, "responses", "at least 2"),
        ({"prompt": "a", "responses": ["x", 2]}, Format.ranking, "responses[1]", "expected a string"),
        (
            {"prompt": "a", "chosen": [{"role": "assistant", "content": "b"}], "rejected": "c"},
            Format.preference,
            "chosen",
            "mixes text and message lists",
        ),
        ({"prompt": 5}, Format.prompt_only, "prompt", "expected a string or a message list"),
    ],
)
def test_validation_names_the_field(record: dict, fmt: Format, field: str, words: str) -> None:
    problems = validate_record(record, fmt)
    assert any(f == field and words in m for f, m in problems), problems


def test_assistant_tool_call_without_content_is_valid() -> None:
    record = first_record("messages.jsonl")
    second = json.loads((DATA_FIXTURES / "messages.jsonl").read_text().splitlines()[1])
    assert validate_record(record, Format.messages) == []
    assert validate_record(second, Format.messages) == []
    out = normalise(second, Format.messages)
    assert out["messages"][1]["tool_calls"][0]["function"]["name"] == "calc"
    assert out["messages"][2] == {"role": "tool", "content": "4", "tool_call_id": "call_1"}


def test_normalise_shapes() -> None:
    assert normalise({"text": "a", "id": 1}, Format.text) == {"text": "a"}
    assert normalise({"text": "a", "id": 1}, Format.text, keep_extra=True) == {"text": "a", "id": 1}
    assert normalise({"prompt": "a", "completion": "b"}, Format.prompt_completion) == {
        "prompt": "a",
        "completion": "b",
    }
    assert normalise(first_record("sharegpt.jsonl"), Format.sharegpt) == {
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "What colour is the sky?"},
            {"role": "assistant", "content": "Blue."},
        ]
    }
    assert normalise({"instruction": "Translate.", "input": "cat", "output": "chat"}, Format.alpaca) == {
        "prompt": [{"role": "user", "content": "Translate.\n\ncat"}],
        "completion": [{"role": "assistant", "content": "chat"}],
    }
    assert normalise({"instruction": "Say hi.", "input": "", "output": "hi"}, Format.alpaca)["prompt"] == [
        {"role": "user", "content": "Say hi."}
    ]
    assert (
        normalise({"instruction": "Say hi.", "output": "hi"}, Format.alpaca)["prompt"][0]["content"]
        == "Say hi."
    )
    assert normalise({"prompt": "p", "chosen": "c", "rejected": "r", "x": 1}, Format.preference) == {
        "prompt": "p",
        "chosen": "c",
        "rejected": "r",
    }
    assert normalise({"chosen": "c", "rejected": "r"}, Format.preference_implicit) == {
        "chosen": "c",
        "rejected": "r",
    }
    assert normalise({"prompt": "p", "completion": "c", "label": False}, Format.unpaired) == {
        "prompt": "p",
        "completion": "c",
        "label": False,
    }
    assert normalise({"text": "t", "label": 2}, Format.classification) == {"text": "t", "label": 2}
    assert normalise({"prompt": "p", "answer": "4"}, Format.prompt_only) == {"prompt": "p"}
    ranked = normalise(first_record("ranking.jsonl"), Format.ranking)
    assert ranked["responses"][0] == " blue."


def test_preference_with_text_prompt_and_whole_conversations_is_implicit() -> None:
    # The UltraFeedback layout: a text prompt beside conversations that repeat it.
    conv = [{"role": "user", "content": "Sky?"}, {"role": "assistant", "content": "Blue."}]
    bad = [{"role": "user", "content": "Sky?"}, {"role": "assistant", "content": "Green."}]
    record = {"prompt": "Sky?", "chosen": conv, "rejected": bad}
    assert validate_record(record, Format.preference) == []
    out = normalise(record, Format.preference)
    assert out == {"chosen": conv, "rejected": bad}
    kto = rows_for_method(out, Format.preference, "kto")
    assert kto[0] == {"prompt": conv[:1], "completion": conv[1:], "label": True}


@pytest.mark.parametrize("n", [2, 3, 4, 6])
def test_expand_ranking_counts(n: int) -> None:
    record = {"prompt": "p", "responses": [f"r{i}" for i in range(n)]}
    every = expand_ranking(record, "all")
    adjacent = expand_ranking(record, "adjacent")
    assert len(every) == n * (n - 1) // 2
    assert len(adjacent) == n - 1
    # The better response (earlier in the list) is always chosen.
    assert all(int(r["chosen"][1:]) < int(r["rejected"][1:]) for r in every)
    assert [(r["chosen"], r["rejected"]) for r in adjacent[:1]] == [("r0", "r1")]
    with pytest.raises(DataError):
        expand_ranking(record, "sideways")


def test_method_formats_table() -> None:
    assert set(METHOD_FORMATS["sft"]) == {
        Format.text,
        Format.prompt_completion,
        Format.messages,
        Format.sharegpt,
        Format.alpaca,
    }
    for method in ("dpo", "orpo", "reward"):
        assert set(METHOD_FORMATS[method]) == {
            Format.preference,
            Format.preference_implicit,
            Format.ranking,
            Format.annotations,  # an annotation store (docs/annotations.md)
        }
    assert set(METHOD_FORMATS["kto"]) == {Format.unpaired, Format.preference, Format.annotations}
    for method in ("grpo", "rloo"):
        assert Format.prompt_only in METHOD_FORMATS[method]
        assert Format.preference in METHOD_FORMATS[method]


def test_check_method_format_message() -> None:
    check_method_format("sft", Format.messages, "a.jsonl")
    with pytest.raises(DataError) as info:
        check_method_format("dpo", Format.text, "data/a.jsonl")
    err = info.value
    assert err.path == "data/a.jsonl"
    assert str(err).startswith(
        "data/a.jsonl: this file is in format text; method dpo needs one of preference, preference_implicit, ranking"
    )
    assert err.exit_status == 2
    with pytest.raises(DataError, match="unknown training method"):
        check_method_format("ppo", Format.text)


def test_rows_for_method_conversions() -> None:
    pref = {"prompt": "p", "chosen": "good", "rejected": "bad"}
    assert rows_for_method(pref, Format.preference, "kto") == [
        {"prompt": "p", "completion": "good", "label": True},
        {"prompt": "p", "completion": "bad", "label": False},
    ]
    assert rows_for_method(pref, Format.preference, "grpo") == [{"prompt": "p"}]
    ranked = {"prompt": "p", "responses": ["a", "b", "c"]}
    assert len(rows_for_method(ranked, Format.ranking, "dpo")) == 3
    assert len(rows_for_method(ranked, Format.ranking, "reward", ranking_mode="adjacent")) == 2
    chat = normalise(first_record("messages.jsonl"), Format.messages)
    assert rows_for_method(chat, Format.messages, "grpo") == [{"prompt": chat["messages"][:2]}]
    extra = normalise({"prompt": "2+2?", "answer": "4"}, Format.prompt_only, keep_extra=True)
    assert rows_for_method(extra, Format.prompt_only, "rloo") == [{"prompt": "2+2?", "answer": "4"}]


def test_importing_the_data_package_stays_light() -> None:
    code = (
        "import sys, tui_ft.data.formats, tui_ft.data.sources, tui_ft.data.validation, tui_ft.data.training\n"
        "import tui_ft.data.checks\n"
        "heavy = [m for m in ('torch', 'transformers', 'datasets', 'pyarrow', 'pandas', 'textual') "
        "if m in sys.modules]\n"
        "print(','.join(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
