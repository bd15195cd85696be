"""Parquet rows through a cache of decoded row groups: several kept, bounded by count and bytes, LRU."""

from __future__ import annotations

from pathlib import Path

import pytest

from tui_ft.data.sources import ParquetSource, RowGroupCache, open_dataset


def write_parquet(path: Path, rows: int, group_rows: int) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.table({"prompt": [f"q{i}" for i in range(rows)], "completion": [f"a{i}" for i in range(rows)]})
    pq.write_table(table, path, row_group_size=group_rows)
    return path


@pytest.fixture
def groups_file(tmp_path: Path) -> Path:
    return write_parquet(tmp_path / "train.parquet", 1000, 100)  # 10 row groups


def test_several_row_groups_stay_cached(groups_file: Path) -> None:
    src = ParquetSource(groups_file, RowGroupCache(max_groups=4))
    assert src.row_groups == 10
    for index in (5, 150, 250):
        src.row(index)
    assert src.cache.groups == [0, 1, 2]
    assert src.row_at_hand(199).data == {"prompt": "q199", "completion": "a199"}  # group 1, no decoding
    assert src.cache.groups == [0, 2, 1]  # a hit makes the group the most recently used


def test_the_cache_evicts_the_least_recently_used_group(groups_file: Path) -> None:
    src = ParquetSource(groups_file, RowGroupCache(max_groups=3))
    for index in (0, 100, 200):
        src.row(index)
    src.row(0)  # group 0 used again: group 1 is now the oldest
    src.row(300)
    assert src.cache.groups == [2, 0, 3]
    assert src.row_at_hand(150) is None  # evicted: it would need decoding
    assert src.row_at_hand(250).index == 250
    assert src.rows(95, 105)[-1].data["prompt"] == "q104"  # a range across groups decodes what it needs


def test_the_cache_is_bounded_by_bytes_but_keeps_the_newest_group(groups_file: Path) -> None:
    src = ParquetSource(groups_file, RowGroupCache(max_groups=8, max_bytes=1))
    src.row(0)
    src.row(500)
    assert src.cache.groups == [5]  # over the byte budget alone, still kept: the rows on screen need it
    group_bytes = src.cache.nbytes
    src.cache.max_bytes = 3 * group_bytes
    for index in (0, 100, 200, 300):
        src.row(index)
    assert len(src.cache.groups) == 3 and src.cache.nbytes <= 3 * group_bytes


def test_row_at_hand_decodes_nothing(groups_file: Path, monkeypatch) -> None:
    src = ParquetSource(groups_file)
    decoded: list[int] = []
    read = src._read_group
    monkeypatch.setattr(src, "_read_group", lambda g: decoded.append(g) or read(g))
    assert src.row_at_hand(420) is None and decoded == []
    assert src.rows(420, 430)[0].line == 421 and decoded == [4]
    assert src.row_at_hand(425).data["prompt"] == "q425" and decoded == [4]
    src.row(-1)
    assert decoded == [4, 9]


def test_a_scan_does_not_fill_the_cache(groups_file: Path) -> None:
    with open_dataset(groups_file) as src:
        assert isinstance(src, ParquetSource)
        assert sum(1 for _ in src.scan()) == 1000
        assert src.cache.groups == []
