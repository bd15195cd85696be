"""check_dataset reports and render_tokens masks, with a tiny tokenizer built here."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import DATA_FIXTURES
from tui_ft.data.checks import ChatTemplateMissing, check_dataset, render_tokens, token_length
from tui_ft.data.formats import Format, normalise
from tui_ft.errors import DataError

BAD = DATA_FIXTURES / "bad"

CHATML = (
    "{% for message in messages %}"
    "{% if message['role'] == 'assistant' %}"
    "{{ '<|im_start|>assistant\n' }}{% generation %}{{ message['content'] + '<|im_end|>' }}{% endgeneration %}"
    "{{ '\n' }}"
    "{% else %}{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>\n' }}{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
PLAIN_CHATML = CHATML.replace("{% generation %}", "").replace("{% endgeneration %}", "")


def build_tokenizer(template: str | None = CHATML):
    """A byte-level BPE tokenizer trained on a few sentences, with a ChatML template."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=300,
        special_tokens=["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(
        ["The sky is blue.", "What colour is the sky?", "Grass is green.", "Be brief.", "a quick brown fox"],
        trainer,
    )
    hf = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|endoftext|>")
    hf.chat_template = template
    return hf


@pytest.fixture(scope="module")
def tokenizer():
    return build_tokenizer()


def trained_text(view) -> str:
    return "".join(t for t, m in zip(view.tokens, view.train_mask, strict=True) if m)


# --- render_tokens ---------------------------------------------------------------------------------


def test_text_trains_everything_and_ends_with_eos(tokenizer) -> None:
    view = render_tokens({"text": "The sky is blue."}, Format.text, tokenizer)
    assert all(view.train_mask) and view.mask_kind == "text"
    assert view.ids[-1] == view.eos_id == tokenizer.eos_token_id
    assert "".join(view.tokens) == "The sky is blue.<|im_end|>"
    assert len(view.tokens) == len(view.ids) == len(view.train_mask)
    assert view.truncated_at is None


def test_prompt_completion_trains_the_completion(tokenizer) -> None:
    view = render_tokens(
        {"prompt": "The sky is", "completion": " blue."}, Format.prompt_completion, tokenizer
    )
    assert view.mask_kind == "completion"
    assert not view.train_mask[0]
    assert trained_text(view) == " blue.<|im_end|>"


def test_conversation_trains_assistant_tokens(tokenizer) -> None:
    record = normalise(
        json.loads((DATA_FIXTURES / "messages.jsonl").read_text().splitlines()[0]), Format.messages
    )
    view = render_tokens(record, Format.messages, tokenizer)
    assert view.mask_kind == "assistant"
    assert trained_text(view) == "Blue.<|im_end|>"
    assert "".join(view.tokens).startswith("<|im_start|>system\nBe brief.<|im_end|>")


def test_sharegpt_and_alpaca_render_through_the_template(tokenizer) -> None:
    share = normalise(json.loads((DATA_FIXTURES / "sharegpt.jsonl").read_text()), Format.sharegpt)
    assert trained_text(render_tokens(share, Format.sharegpt, tokenizer)) == "Blue.<|im_end|>"
    alpaca = normalise(json.loads((DATA_FIXTURES / "alpaca.json").read_text())[1], Format.alpaca)
    view = render_tokens(alpaca, Format.alpaca, tokenizer)
    assert view.mask_kind == "completion"
    assert trained_text(view) == "chat<|im_end|>\n"
    assert "".join(view.tokens).startswith("<|im_start|>user\nTranslate to French.\n\ncat<|im_end|>")


def test_preference_parts(tokenizer) -> None:
    record = {"prompt": "The sky is", "chosen": " blue.", "rejected": " green."}
    assert trained_text(render_tokens(record, Format.preference, tokenizer)) == " blue.<|im_end|>"
    assert (
        trained_text(render_tokens(record, Format.preference, tokenizer, part="rejected"))
        == " green.<|im_end|>"
    )
    implicit = normalise(
        json.loads((DATA_FIXTURES / "preference_implicit.jsonl").read_text()), Format.preference_implicit
    )
    view = render_tokens(implicit, Format.preference_implicit, tokenizer, part="rejected")
    assert trained_text(view) == "Green.<|im_end|>\n"
    ranked = {"prompt": "The sky is", "responses": [" blue.", " green and very long indeed."]}
    assert trained_text(render_tokens(ranked, Format.ranking, tokenizer, part=1)).startswith(" green")
    assert token_length(ranked, Format.ranking, tokenizer) == len(
        render_tokens(ranked, Format.ranking, tokenizer, part=1)
    )


def test_prompt_only_trains_nothing(tokenizer) -> None:
    view = render_tokens({"prompt": [{"role": "user", "content": "Sky?"}]}, Format.prompt_only, tokenizer)
    assert view.mask_kind == "none" and not any(view.train_mask)
    assert "".join(view.tokens).endswith("<|im_start|>assistant\n")


def test_truncated_at(tokenizer) -> None:
    view = render_tokens({"text": "The sky is blue. Grass is green."}, Format.text, tokenizer, max_length=4)
    assert view.truncated_at == 4 and len(view.ids) > 4


def test_template_without_generation_blocks_trains_everything() -> None:
    tok = build_tokenizer(PLAIN_CHATML)
    record = {"messages": [{"role": "user", "content": "Sky?"}, {"role": "assistant", "content": "Blue."}]}
    view = render_tokens(record, Format.messages, tok)
    assert view.mask_kind == "all" and all(view.train_mask)


def test_no_chat_template_is_a_data_error_with_a_hint() -> None:
    tok = build_tokenizer(None)
    record = {"messages": [{"role": "user", "content": "Sky?"}, {"role": "assistant", "content": "Blue."}]}
    with pytest.raises(DataError) as info:
        render_tokens(record, Format.messages, tok)
    assert "no chat template" in info.value.message and info.value.hint
    # Text needs no template.
    assert render_tokens({"text": "sky"}, Format.text, tok).mask_kind == "text"
    with pytest.raises(ChatTemplateMissing):
        check_dataset(DATA_FIXTURES / "messages.jsonl", tokenizer=tok)


# --- check_dataset ---------------------------------------------------------------------------------


def test_report_without_tokenizer() -> None:
    report = check_dataset("messages.jsonl", base_dir=DATA_FIXTURES)
    data = report.to_json()
    assert {"format", "rows", "columns", "errors"} <= data.keys()
    assert "token_stats" not in data
    assert data["format"] == "messages" and data["rows"] == 2 and data["columns"] == ["messages"]
    assert data["errors"] == [] and report.ok
    json.dumps(data)


def test_report_with_tokenizer_has_token_stats(tokenizer) -> None:
    report = check_dataset(DATA_FIXTURES / "prompt_completion.jsonl", tokenizer=tokenizer, max_length=5)
    stats = report.to_json()["token_stats"]
    assert set(stats) == {"count", "min", "max", "mean", "p50", "p95", "max_length", "over_max_length"}
    lengths = sorted(
        len(render_tokens(r, Format.prompt_completion, tokenizer).ids)
        for r in (
            {"prompt": "The sky is", "completion": " blue."},
            {"prompt": "Grass is", "completion": " green."},
        )
    )
    assert stats["count"] == 2 and stats["min"] == lengths[0] and stats["max"] == lengths[1]
    assert stats["max_length"] == 5 and stats["over_max_length"] == sum(n > 5 for n in lengths)
    assert stats["p50"] == lengths[0] and stats["p95"] == lengths[1]


def test_report_lists_row_errors_with_lines() -> None:
    report = check_dataset(BAD / "unknown_role.jsonl")
    assert not report.ok and not report.fatal
    assert report.format == "messages" and report.rows == 2
    assert report.errors == [
        {
            "line": 2,
            "field": "messages[1].role",
            "message": "unknown role 'robot'; expected one of system, developer, user, assistant, tool",
        }
    ]
    assert report.lines() == [
        f"{BAD / 'unknown_role.jsonl'}:2: messages[1].role: unknown role 'robot'; "
        "expected one of system, developer, user, assistant, tool"
    ]


def test_report_keeps_going_after_bad_lines(tmp_path: Path) -> None:
    path = tmp_path / "rows.jsonl"
    path.write_text('{"text": "a"}\nnot json\n{"text": 5}\n{"text": "cut\n')
    report = check_dataset(path)
    assert [(e["line"], e["field"]) for e in report.errors] == [(2, None), (3, "text"), (4, None)]
    assert report.rows == 4 and report.error_count == 3


def test_report_caps_errors_but_counts_all(tmp_path: Path) -> None:
    path = tmp_path / "rows.jsonl"
    path.write_text("".join(json.dumps({"text": i}) + "\n" for i in range(50)))
    report = check_dataset(path, max_errors=10)
    assert len(report.errors) == 10 and report.error_count == 50


@pytest.mark.parametrize(
    ("path", "line", "words"),
    [
        (BAD / "empty.jsonl", None, "empty"),
        (BAD / "truncated_array.json", 4, "ends too early"),
        (BAD / "broken_quote.csv", 3, "quote"),
        (Path("does/not/exist.jsonl"), None, "no such file"),
    ],
)
def test_file_level_problems_become_one_fatal_error(path: Path, line: int | None, words: str) -> None:
    report = check_dataset(path)
    assert report.fatal and report.error_count == 1 and report.format is None
    (error,) = report.errors
    assert error["line"] == line and words in error["message"]
    assert report.lines()[0].startswith(f"{path}:{line}: " if line else f"{path}: ")


def test_template_failure_is_a_row_error(tmp_path: Path) -> None:
    tok = build_tokenizer(
        "{% for m in messages %}{% if m['role'] == 'system' %}"
        "{{ raise_exception('System messages are not supported') }}{% endif %}"
        "{{ m['content'] }}{% endfor %}"
    )
    report = check_dataset(DATA_FIXTURES / "messages.jsonl", tokenizer=tok)
    assert report.errors[0]["line"] == 1
    assert "System messages are not supported" in report.errors[0]["message"]
    assert report.token_stats is not None and report.token_stats["count"] == 1


def test_a_large_file_is_checked_in_a_child_process_with_the_same_report(tmp_path: Path, monkeypatch) -> None:
    import tui_ft.data.checks as checks

    path = tmp_path / "rows.jsonl"
    rows = [json.dumps({"text": f"row {i}"}) for i in range(10000)]
    rows[4321] = '{"text": 5}'
    rows[8000] = "not json"
    path.write_text("\n".join(rows) + "\n")
    monkeypatch.setattr(checks, "CHILD_CHECK_BYTES", 0)  # every file counts as large
    seen: list[int] = []
    isolated = checks.check_dataset_isolated(path, progress=seen.append)
    assert isolated == check_dataset(path)
    assert [e["line"] for e in isolated.errors] == [4322, 8001] and isolated.rows == 10000
    assert seen and seen == sorted(seen)  # progress came back from the child

    with pytest.raises(checks.CheckCancelled):
        checks.check_dataset_isolated(path, cancelled=lambda: True)

    broken = tmp_path / "empty.jsonl"
    broken.write_text("")
    assert checks.check_dataset_isolated(broken) == check_dataset(broken)  # a fatal report, as in-process
