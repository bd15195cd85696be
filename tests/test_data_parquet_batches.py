"""A Parquet row group decoded batch by batch, only as far as the rows asked for, going on where it
stopped; the first rows an opener read painted at once, with no decode; after a jump, the cursor's row
read before the rows above it."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from textual.app import App, ComposeResult

from tests.conftest import until
from tui_ft.data.sources import ParquetSource, RowGroupCache
from tui_ft.ui.widgets.row_table import RowTable

pytestmark = pytest.mark.anyio


def write_parquet(path: Path, rows: int, group_rows: int) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.table({"prompt": [f"q{i}" for i in range(rows)], "completion": [f"a{i}" for i in range(rows)]})
    pq.write_table(table, path, row_group_size=group_rows)
    return path


class CountedSource(ParquetSource):
    """Records each start of a row group's decoding, and can hold one back."""

    def __init__(self, path: Path, cache: RowGroupCache | None = None) -> None:
        super().__init__(path, cache)
        self.started: list[int] = []
        self.release = threading.Event()
        self.release.set()
        self.hold: set[int] | None = None  # the groups held back (None: all)

    def _read_group(self, g: int):
        self.started.append(g)
        if self.hold is None or g in self.hold:
            self.release.wait(10)
        return super()._read_group(g)


def test_a_group_is_decoded_only_as_far_as_the_rows_asked_for(tmp_path: Path) -> None:
    src = CountedSource(write_parquet(tmp_path / "one.parquet", 10_000, 10_000))  # one row group
    batch = ParquetSource.BATCH_ROWS
    assert [row.data["prompt"] for row in src.rows(0, 3)] == ["q0", "q1", "q2"]
    assert src.cache.get(0).num_rows == batch  # the first batch only
    assert src.row_at_hand(batch - 1).data == {"prompt": f"q{batch - 1}", "completion": f"a{batch - 1}"}
    assert src.row_at_hand(batch) is None  # not decoded yet: a UI reads it on a thread
    rows = src.rows(5000, 5004)  # goes on from where the group's reader stopped
    assert [row.index for row in rows] == [5000, 5001, 5002, 5003]
    assert [row.data["completion"] for row in rows] == ["a5000", "a5001", "a5002", "a5003"]
    assert src.started == [0]
    assert batch * 4 < src.cache.get(0).num_rows < 10_000
    straddling = src.rows(batch - 2, batch + 2)  # rows across two decoded batches
    assert [row.data["prompt"] for row in straddling] == [f"q{i}" for i in range(batch - 2, batch + 2)]
    assert src.row(-1).data["prompt"] == "q9999" and src.cache.get(0).num_rows == 10_000
    assert src.started == [0]


def test_a_read_far_ahead_starts_afresh_in_one_batch(tmp_path: Path) -> None:
    src = CountedSource(write_parquet(tmp_path / "one.parquet", 20_000, 20_000))
    batch = ParquetSource.BATCH_ROWS
    src.row(0)
    assert src.cache.get(0).num_rows == batch
    assert src.row(15_000).data["prompt"] == "q15000"  # far past the reader: decoded from the start at once
    assert src.started == [0, 0]
    assert src.cache.get(0).num_rows == -(-15_001 // batch) * batch
    assert src.row(15_100).data["prompt"] == "q15100" and src.started == [0, 0]  # goes on from there


def test_an_evicted_group_starts_afresh(tmp_path: Path) -> None:
    src = CountedSource(write_parquet(tmp_path / "two.parquet", 6000, 3000), RowGroupCache(max_groups=1))
    assert src.row(10).data["prompt"] == "q10"
    assert src.row(3010).data["prompt"] == "q3010"  # group 1 evicts group 0 (one group kept)
    assert src.cache.groups == [1]
    assert src.row(2500).data["prompt"] == "q2500"  # group 0 again, from its start
    assert src.started == [0, 1, 0]


class TableApp(App):
    def compose(self) -> ComposeResult:
        yield RowTable()


async def test_rows_handed_over_with_the_source_paint_without_a_decode(tmp_path: Path) -> None:
    src = CountedSource(write_parquet(tmp_path / "rows.parquet", 3000, 3000))
    src.release.clear()  # a decode would wait: the rows below must not need one
    first = list(src.head(40))
    app = TableApp()
    try:
        async with app.run_test(size=(80, 20)) as pilot:
            table = app.query_one(RowTable)
            table.set_source(src, len(src), src.columns, first)
            await pilot.pause()

            def text() -> str:
                return "\n".join(strip.text for strip in app.screen._compositor.render_strips())

            await until(pilot, lambda: "q0" in text() and "q17" in text())
            assert "reading…" not in text()
            assert src.started == []
            table.jump_to(2000)  # past the rows handed over: read on a thread
            await until(pilot, lambda: src.started == [0])
            src.release.set()
            await until(pilot, lambda: "q2000" in text())
    finally:
        src.release.set()


async def test_after_a_jump_the_cursors_row_does_not_wait_for_the_rows_above_it(tmp_path: Path) -> None:
    src = CountedSource(write_parquet(tmp_path / "two.parquet", 6000, 3000))
    first = list(src.head(40))
    src.hold = {0}  # the end of group 0 (the rows above row 3000) is slow to come
    src.release.clear()
    app = TableApp()
    try:
        async with app.run_test(size=(80, 20)) as pilot:
            table = app.query_one(RowTable)
            table.set_source(src, len(src), src.columns, first)
            await pilot.pause()

            def text() -> str:
                return "\n".join(strip.text for strip in app.screen._compositor.render_strips())

            table.jump_to(3000)  # the first row of group 1, in the middle of the page
            await until(pilot, lambda: "q3000" in text() and "q3005" in text())
            assert src.started == [1, 0]  # group 1 first; group 0 is being read, held back
            assert "q2995" not in text() and "reading…" in text()
            src.release.set()
            await until(pilot, lambda: "q2995" in text() and "reading…" not in text())
    finally:
        src.release.set()
