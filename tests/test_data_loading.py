"""Opening datasets, lazy JSONL paging, training loads and every kind of bad input."""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

import pytest

from tests.conftest import DATA_FIXTURES
from tui_ft.data.formats import Format
from tui_ft.data.sources import JsonlSource, Row, load_records, open_dataset
from tui_ft.data.training import load_for_training
from tui_ft.errors import DataError

BAD = DATA_FIXTURES / "bad"


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


# --- good inputs -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fixture", "method", "fmt", "columns"),
    [
        ("text.jsonl", "sft", Format.text, ["text"]),
        ("prompt_completion.jsonl", "sft", Format.prompt_completion, ["prompt", "completion"]),
        ("messages.jsonl", "sft", Format.messages, ["messages"]),
        ("sharegpt.jsonl", "sft", Format.sharegpt, ["messages"]),
        ("alpaca.json", "sft", Format.alpaca, ["prompt", "completion"]),
        ("preference.jsonl", "dpo", Format.preference, ["prompt", "chosen", "rejected"]),
        ("preference_conversational.jsonl", "orpo", Format.preference, ["prompt", "chosen", "rejected"]),
        ("preference_implicit.jsonl", "reward", Format.preference_implicit, ["chosen", "rejected"]),
        ("unpaired.jsonl", "kto", Format.unpaired, ["prompt", "completion", "label"]),
        ("preference.jsonl", "kto", Format.preference, ["prompt", "completion", "label"]),
        ("prompt_only.jsonl", "grpo", Format.prompt_only, ["prompt", "answer"]),
        ("prompt_completion.jsonl", "rloo", Format.prompt_completion, ["prompt"]),
        ("ranking.jsonl", "dpo", Format.ranking, ["prompt", "chosen", "rejected"]),
    ],
)
def test_load_for_training(fixture: str, method: str, fmt: Format, columns: list[str]) -> None:
    loaded = load_for_training(fixture, method=method, base_dir=DATA_FIXTURES)
    assert loaded.format is fmt
    assert loaded.source == DATA_FIXTURES / fixture
    assert loaded.dataset.column_names == columns
    assert loaded.rows >= 1


def test_loaded_rows_are_trl_shapes() -> None:
    kto = load_for_training(DATA_FIXTURES / "preference.jsonl", method="kto").dataset
    assert kto.to_list() == [
        {"prompt": "The sky is", "completion": " blue.", "label": True},
        {"prompt": "The sky is", "completion": " green.", "label": False},
    ]
    ranked = load_for_training(DATA_FIXTURES / "ranking.jsonl", method="dpo", ranking_mode="adjacent")
    assert ranked.rows == 1 and len(ranked.dataset) == 3
    share = load_for_training(DATA_FIXTURES / "sharegpt.jsonl", method="sft").dataset
    assert share[0]["messages"][1] == {"role": "user", "content": "What colour is the sky?"}


def test_wrong_method_for_format() -> None:
    with pytest.raises(DataError) as info:
        load_for_training(DATA_FIXTURES / "text.jsonl", method="dpo")
    assert info.value.path == str(DATA_FIXTURES / "text.jsonl")
    assert "this file is in format text; method dpo needs one of preference" in str(info.value)


def test_csv_with_multiline_field(tmp_path: Path) -> None:
    src = open_dataset(DATA_FIXTURES / "classification.csv")
    assert src.kind == "csv"
    assert src.columns == ["text", "label"]
    assert len(src) == 3
    assert src.row(0) == Row(0, 2, {"text": "I loved it, truly", "label": 1})
    third = src.row(2)
    assert third.line == 4 and third.data == {"text": "A line\nthat spans two", "label": 1}
    assert [r.line for r in src] == [2, 3, 4]


def test_json_array_and_wrapped_object() -> None:
    src = open_dataset(DATA_FIXTURES / "alpaca.json")
    assert src.kind == "json" and len(src) == 2
    assert src.row(1).line == 2 and src.row(1).data["input"] == "cat"
    wrapped = open_dataset(DATA_FIXTURES / "wrapped.json")
    assert [r.data["text"] for r in wrapped] == ["one", "two"]


def test_json_file_holding_json_lines_reads_as_jsonl(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "rows.json", [{"text": "a"}, {"text": "b"}])
    src = open_dataset(path)
    assert src.kind == "jsonl" and len(src) == 2


def test_parquet_by_row_groups(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.table({"prompt": [f"p{i}" for i in range(250)], "completion": [f"c{i}" for i in range(250)]})
    path = tmp_path / "train.parquet"
    pq.write_table(table, path, row_group_size=100)
    src = open_dataset(path)
    assert src.kind == "parquet" and len(src) == 250 and src.columns == ["prompt", "completion"]
    assert src.row(0) == Row(0, 1, {"prompt": "p0", "completion": "c0"})
    assert src.row(-1).data["prompt"] == "p249"
    assert [r.data["prompt"] for r in src.rows(95, 205)][::55] == ["p95", "p150"]
    assert len(src.rows(95, 205)) == 110
    assert sum(1 for _ in src) == 250
    assert load_for_training(path, method="sft").rows == 250


def test_not_a_parquet_file(tmp_path: Path) -> None:
    path = tmp_path / "x.parquet"
    path.write_bytes(b"PAR1 nothing useful here")
    with pytest.raises(DataError, match="not a readable Parquet file") as info:
        open_dataset(path)
    assert info.value.path == str(path)


def test_save_to_disk_directory_and_dataset_dict(tmp_path: Path) -> None:
    import datasets

    ds = datasets.Dataset.from_list([{"text": f"row {i}"} for i in range(5)])
    ds.save_to_disk(str(tmp_path / "saved"))
    src = open_dataset(tmp_path / "saved")
    assert src.kind == "arrow" and len(src) == 5 and src.columns == ["text"]
    assert src.row(3) == Row(3, 4, {"text": "row 3"})
    assert [r.index for r in src.rows(3, 10)] == [3, 4]
    datasets.DatasetDict({"train": ds, "test": ds.select(range(2))}).save_to_disk(str(tmp_path / "dict"))
    assert len(open_dataset(tmp_path / "dict")) == 5
    assert load_for_training(tmp_path / "dict", method="sft").format is Format.text


def test_directory_with_a_train_file(tmp_path: Path) -> None:
    (tmp_path / "ds").mkdir()
    shutil.copy(DATA_FIXTURES / "text.jsonl", tmp_path / "ds" / "train.jsonl")
    shutil.copy(DATA_FIXTURES / "text.jsonl", tmp_path / "ds" / "test.jsonl")
    src = open_dataset("ds", base_dir=tmp_path)
    assert src.path == tmp_path / "ds" / "train.jsonl"
    (tmp_path / "many").mkdir()
    for name in ("a.jsonl", "b.jsonl"):
        shutil.copy(DATA_FIXTURES / "text.jsonl", tmp_path / "many" / name)
    with pytest.raises(DataError, match="several data files"):
        open_dataset(tmp_path / "many")
    (tmp_path / "none").mkdir()
    with pytest.raises(DataError, match="holds no dataset"):
        open_dataset(tmp_path / "none")


def test_relative_paths_try_base_dir_then_cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(DATA_FIXTURES)
    assert open_dataset("text.jsonl", base_dir=tmp_path).path == DATA_FIXTURES / "text.jsonl"
    write_jsonl(tmp_path / "text.jsonl", [{"text": "mine"}])
    assert open_dataset("text.jsonl", base_dir=tmp_path).path == tmp_path / "text.jsonl"
    with pytest.raises(DataError, match="no such file") as info:
        open_dataset("missing.jsonl", base_dir=tmp_path)
    assert info.value.path == "missing.jsonl"


def test_hub_id_offline_says_local_files_work(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("tui_ft.data.sources._offline_flag", lambda: False)
    monkeypatch.setattr("tui_ft.data.sources._hub_reachable", lambda timeout=3.0: False)
    with pytest.raises(DataError) as info:
        open_dataset("someone/some-dataset")
    assert "could not reach" in info.value.message
    assert "local files work" in (info.value.hint or "")
    assert info.value.path == "someone/some-dataset"


def test_load_records_from_a_ref() -> None:
    rows = list(load_records("unpaired.jsonl", base_dir=DATA_FIXTURES))
    assert [r.data["label"] for r in rows] == [True, False]


# --- JSONL index -----------------------------------------------------------------------------------


def test_lazy_index_over_many_rows_with_blank_lines(tmp_path: Path) -> None:
    n = 200_000
    path = tmp_path / "big.jsonl"
    blank_every = 997
    lines_of: list[int] = []
    with path.open("w") as f:
        line = 0
        for i in range(n):
            if i % blank_every == 0:
                f.write("\n   \n")  # two blank lines: not rows
                line += 2
            f.write(f'{{"text": "row {i}", "i": {i}}}\n')
            line += 1
            lines_of.append(line)
    src = open_dataset(path)
    assert isinstance(src, JsonlSource) and not src.indexed
    seen: list[int] = []
    assert src.build_index(progress=seen.append)
    assert src.indexed and len(src) == n and seen[-1] == n
    assert src._offsets.itemsize == 8 and len(src._jump_rows) <= n // blank_every + 2
    rng = random.Random(7)
    for i in [0, 1, n - 1, *rng.sample(range(n), 200)]:
        row = src.row(i)
        assert row.data == {"text": f"row {i}", "i": i}
        assert row.line == lines_of[i], i
    assert [r.data["i"] for r in src.rows(n - 2, n + 5)] == [n - 2, n - 1]
    assert src.row(-1).data["i"] == n - 1
    with pytest.raises(IndexError):
        src.row(n)
    src.close()


def test_index_can_be_cancelled_and_resumed(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "rows.jsonl", [{"text": "x" * 1000, "i": i} for i in range(3000)])
    src = JsonlSource(path)
    calls = iter([False, True])
    assert src.build_index(cancelled=lambda: next(calls, False)) is False
    partial = src.rows_indexed
    assert 0 < partial < 3000 and not src.indexed
    assert src.rows(0, 2)[1].data["i"] == 1  # rows already indexed are served while the rest is not
    assert src.build_index() is True
    assert len(src) == 3000 and src.row(2999).line == 3000


def test_bom_and_crlf_are_valid(tmp_path: Path) -> None:
    path = tmp_path / "win.jsonl"
    path.write_bytes(b'\xef\xbb\xbf{"text": "one"}\r\n\r\n{"text": "two"}\r\n')
    src = open_dataset(path)
    assert [(r.line, r.data) for r in src] == [(1, {"text": "one"}), (3, {"text": "two"})]
    assert src.row(0).data == {"text": "one"} and src.row(1).line == 3
    assert load_for_training(path, method="sft").rows == 2
    csv_path = tmp_path / "win.csv"
    csv_path.write_bytes(b"\xef\xbb\xbfprompt,completion\r\nhi,there\r\n")
    assert open_dataset(csv_path).row(0).data == {"prompt": "hi", "completion": "there"}
    json_path = tmp_path / "win.json"
    json_path.write_bytes(b'\xef\xbb\xbf[\r\n{"text": "a"}\r\n]\r\n')
    assert open_dataset(json_path).row(0).data == {"text": "a"}


def test_five_megabyte_record(tmp_path: Path) -> None:
    big = "word " * (1024 * 1024)  # 5 MiB of text in one row
    path = write_jsonl(tmp_path / "big.jsonl", [{"text": "small"}, {"text": big}, {"text": "after"}])
    src = open_dataset(path)
    assert len(src) == 3
    assert src.row(1).data["text"] == big
    assert src.row(2).line == 3
    loaded = load_for_training(path, method="sft")
    assert len(loaded.dataset[1]["text"]) == len(big)


# --- bad inputs ------------------------------------------------------------------------------------


def load_error(path: Path, method: str = "sft") -> DataError:
    with pytest.raises(DataError) as info:
        load_for_training(path, method=method)
    return info.value


def test_truncated_json_line() -> None:
    err = load_error(BAD / "truncated.jsonl")
    assert (err.path, err.line) == (str(BAD / "truncated.jsonl"), 3)
    assert "cut off" in err.message
    assert str(err).startswith(f"{BAD / 'truncated.jsonl'}:3: ")


def test_empty_file() -> None:
    err = load_error(BAD / "empty.jsonl")
    assert err.path == str(BAD / "empty.jsonl") and "empty" in err.message


def test_only_blank_lines() -> None:
    err = load_error(BAD / "blank.jsonl")
    assert err.path == str(BAD / "blank.jsonl") and "only blank lines" in err.message
    with pytest.raises(DataError, match="only blank lines"):
        len(open_dataset(BAD / "blank.jsonl"))


def test_binary_file(tmp_path: Path) -> None:
    path = tmp_path / "model.jsonl"
    path.write_bytes(b'{"text": "ok"}\n' + bytes(range(256)) * 4)
    err = load_error(path)
    assert (err.path, err.line) == (str(path), 2)
    assert "binary" in err.message
    with pytest.raises(DataError, match="binary") as info:
        open_dataset(path).build_index()
    assert info.value.line == 2


def test_undecodable_text(tmp_path: Path) -> None:
    path = tmp_path / "latin1.jsonl"
    path.write_bytes(b'{"text": "ok"}\n{"text": "caf\xe9"}\n')
    err = load_error(path)
    assert (err.path, err.line) == (str(path), 2) and "UTF-8" in err.message
    with pytest.raises(DataError, match="UTF-8") as info:
        open_dataset(path).build_index()
    assert info.value.line == 2


def test_wrong_field_type_counts_the_rest(tmp_path: Path) -> None:
    err = load_error(BAD / "wrong_types.jsonl")
    assert (err.line, err.field) == (2, "completion")
    assert "expected a string or a message list, got a number" in err.message
    rows = [{"prompt": "p", "completion": i} for i in range(14)]
    path = write_jsonl(tmp_path / "many.jsonl", rows)
    err = load_error(path)
    assert err.line == 1 and f"(and 13 more errors; run `tui-ft data check {path}`)" in err.message


def test_preference_missing_rejected() -> None:
    err = load_error(BAD / "preference_missing_rejected.jsonl", method="dpo")
    assert (err.line, err.field) == (2, "rejected")
    assert "missing" in err.message


def test_unknown_chat_role() -> None:
    err = load_error(BAD / "unknown_role.jsonl")
    assert (err.line, err.field) == (2, "messages[1].role")
    assert "unknown role 'robot'" in err.message
    assert str(err).startswith(f"{BAD / 'unknown_role.jsonl'}:2: messages[1].role: unknown role")


def test_message_without_content() -> None:
    err = load_error(BAD / "no_content.jsonl")
    assert (err.line, err.field) == (1, "messages[1].content") and "no content" in err.message


def test_empty_conversation_and_bad_label() -> None:
    err = load_error(BAD / "empty_conversation.jsonl")
    assert (err.line, err.field) == (1, "messages") and "empty conversation" in err.message
    err = load_error(BAD / "unpaired_label.jsonl", method="kto")
    assert (err.line, err.field) == (1, "label") and "true or false" in err.message


def test_truncated_json_array() -> None:
    err = load_error(BAD / "truncated_array.json")
    assert err.path == str(BAD / "truncated_array.json")
    assert err.line == 4 and "ends too early" in err.message


def test_csv_with_broken_quote() -> None:
    err = load_error(BAD / "broken_quote.csv")
    assert (err.path, err.line) == (str(BAD / "broken_quote.csv"), 3)
    assert "quote" in err.message


def test_csv_with_wrong_field_count(tmp_path: Path) -> None:
    path = tmp_path / "short.csv"
    path.write_text("prompt,completion\na,b\nc\n")
    err = load_error(path)
    assert err.line == 3 and "1 fields but the header has 2" in err.message


def test_mixed_formats_in_one_file() -> None:
    err = load_error(BAD / "mixed.jsonl")
    assert err.line == 3
    assert "format text" in err.message and "format prompt_completion (set by line 1)" in err.message


def test_row_missing_a_field_of_the_files_format(tmp_path: Path) -> None:
    path = write_jsonl(
        tmp_path / "unpaired.jsonl",
        [{"prompt": "a", "completion": "b", "label": True}, {"prompt": "a", "completion": "b"}],
    )
    err = load_error(path, method="kto")
    assert (err.line, err.field) == (2, "label")
    assert "prompt_completion" in err.message and "unpaired" in err.message


def test_plain_text_in_jsonl() -> None:
    err = load_error(BAD / "plain_text.jsonl")
    assert (err.path, err.line) == (str(BAD / "plain_text.jsonl"), 1)
    assert "not a JSON object" in err.message and "one JSON object" in (err.hint or "")
    with pytest.raises(DataError) as info:
        open_dataset(BAD / "plain_text.jsonl").row(1)
    assert info.value.line == 2


def test_json_line_that_is_not_an_object(tmp_path: Path) -> None:
    path = tmp_path / "arrays.jsonl"
    path.write_text('{"text": "ok"}\n["a", "b"]\n')
    err = load_error(path)
    assert err.line == 2 and "is an array, expected a JSON object" in err.message


def test_unknown_columns(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "odd.jsonl", [{"question": "a", "answer": "b"}])
    err = load_error(path)
    assert err.line == 1 and "cannot tell the format" in err.message and "question" in err.message


def test_unknown_extension(tmp_path: Path) -> None:
    path = tmp_path / "data.txt"
    path.write_text("hello")
    with pytest.raises(DataError, match="unknown data file type"):
        open_dataset(path)


def test_text_and_conversations_do_not_mix(tmp_path: Path) -> None:
    path = write_jsonl(
        tmp_path / "prompts.jsonl",
        [{"prompt": "Write a haiku."}, {"prompt": [{"role": "user", "content": "Count to three."}]}],
    )
    err = load_error(path, method="grpo")
    assert (err.line, err.field) == (2, "prompt")
    assert "a message list here, but the rows from line 1 hold text" in err.message
