"""The tokenization cache: a second run with the same data, tokenizer, template and token settings loads the
tokenized data instead of tokenizing; any change to those misses; the cache stays under its limit
(least recently used out first); `tui-ft cache` lists it and `tui-ft cache clear` empties it."""

from __future__ import annotations

import json
import os
import time

import pytest

from tests.conftest import run_tui_ft
from tests.test_packing import build
from tui_ft.data.token_cache import TokenCache, cache_limit, dataset_content_hash, parse_size
from tui_ft.workspace import Workspace


def small_dataset(n: int, tag: str = ""):
    import datasets

    return datasets.Dataset.from_dict({"text": [f"{tag}row {i}" for i in range(n)], "n": list(range(n))})


def store(cache: TokenCache, key: str, rows: int):
    ds = small_dataset(rows, key)
    return cache.store(
        key, lambda path: ds.save_to_disk(str(path / "data")), {"dataset": "train", "rows": rows}
    )


def test_sizes_and_the_limit_from_the_environment(monkeypatch):
    assert (
        parse_size("500MB") == 500 * 1024**2 and parse_size("4gb") == 4 * 1024**3 and parse_size("10") == 10
    )
    with pytest.raises(ValueError):
        parse_size("lots")
    monkeypatch.setenv("TUI_FT_TOKEN_CACHE_LIMIT", "2MB")
    assert cache_limit() == 2 * 1024**2
    monkeypatch.delenv("TUI_FT_TOKEN_CACHE_LIMIT")
    assert cache_limit() == 4 * 1024**3


def test_content_hash_follows_the_rows():
    a, b = small_dataset(50), small_dataset(50)
    assert dataset_content_hash(a) == dataset_content_hash(b)
    changed = small_dataset(50).map(lambda r: {"text": r["text"] + ("!" if r["n"] == 7 else "")})
    assert dataset_content_hash(changed) != dataset_content_hash(a)
    split = a.train_test_split(test_size=0.2, seed=1)
    assert dataset_content_hash(split["train"]) != dataset_content_hash(a)
    assert dataset_content_hash(split["train"]) != dataset_content_hash(split["test"])


def test_least_recently_used_entries_go_first(tmp_path):
    cache = TokenCache(tmp_path / "tokenized", limit=10**9)
    for key in ("a", "b", "c"):
        store(cache, key, 2000)
        time.sleep(0.02)
    one = cache.lookup("a").size  # type: ignore[union-attr]
    assert cache.lookup("a") is not None  # a read makes "a" the most recently used
    cache.limit = 2 * one + one // 2
    assert cache.trim() == ["b"]
    assert {e.key for e in cache.entries()} == {"a", "c"}
    store(cache, "d", 2000)  # a write trims too: "c" is now the oldest
    assert {e.key for e in cache.entries()} == {"a", "d"}
    assert TokenCache(tmp_path / "none", limit=0).lookup("x") is None
    assert store(TokenCache(tmp_path / "off", limit=0), "x", 10) is None  # limit 0: nothing kept


def test_cache_command_lists_and_clears(tmp_path):
    ws = Workspace(tmp_path / "home").ensure()
    cache = TokenCache.for_workspace(ws)
    store(cache, "k1", 100)
    store(cache, "k2", 100)
    env = {**os.environ, "TUI_FT_HOME": str(ws.root)}
    listed = json.loads(run_tui_ft(env, "cache", "--json").stdout)
    assert {e["key"] for e in listed["entries"]} == {"k1", "k2"} and listed["size_bytes"] > 0
    assert "2 entries" in run_tui_ft(env, "cache").stdout
    cleared = run_tui_ft(env, "cache", "clear")
    assert "removed 2 entries" in cleared.stdout
    assert cache.entries() == [] and (ws.cache / "tokenized").is_dir()


@pytest.mark.slow
def test_same_key_hits_and_any_change_misses(demo_ws, tmp_path, capsys):
    rows = (demo_ws.data / "chat.jsonl").read_text().splitlines()
    data = tmp_path / "chat.jsonl"  # rows of this test's own, so no other test's entry can answer
    marker = {
        "messages": [
            {"role": "user", "content": f"cache {time.time()}"},
            {"role": "assistant", "content": "ok"},
        ]
    }
    data.write_text("\n".join([*rows[:60], json.dumps(marker)]) + "\n")

    def tokenized(*overrides):
        build(demo_ws, "sft-lora", f"data.train={data}", *overrides)
        out = capsys.readouterr().out
        hit, miss = "train: tokenized data from the cache" in out, "train: tokenized 61 rows, cached" in out
        assert hit != miss, out
        return "hit" if hit else "miss"

    assert tokenized() == "miss"
    assert tokenized() == "hit"
    assert tokenized("training.max_steps=3", "training.learning_rate=1e-4") == "hit"  # not token settings
    assert tokenized("data.max_length=128") == "miss"
    assert tokenized("data.max_length=128") == "hit"
    assert tokenized("data.packing=false") == "miss"
    assert tokenized("data.loss=all") == "miss"
    template = tmp_path / "template.jinja"
    template.write_text(
        "{#- another template -#}\n" + (demo_ws.models / "demo-tiny" / "chat_template.jinja").read_text()
    )
    assert tokenized(f"model.chat_template={template}") == "miss"
    assert tokenized(f"model.chat_template={template}") == "hit"
    data.write_text(data.read_text().replace("ok", "okay"))  # one row changes
    assert tokenized() == "miss"
