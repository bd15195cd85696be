"""The row table reads costly rows on a worker thread: a placeholder first, the rows when they arrive."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from textual.app import App, ComposeResult

from tui_ft.data.sources import ParquetSource
from tui_ft.ui.widgets.row_table import RowTable

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend():
    return "asyncio"


def write_parquet(path: Path, rows: int, group_rows: int) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.table(
        {"prompt": [f"question {i}" for i in range(rows)], "completion": [f"answer {i}" for i in range(rows)]}
    )
    pq.write_table(table, path, row_group_size=group_rows)
    return path


class TableApp(App):
    def __init__(self) -> None:
        super().__init__()
        self.highlighted: list[int] = []

    def compose(self) -> ComposeResult:
        yield RowTable()

    def on_row_table_row_highlighted(self, message: RowTable.RowHighlighted) -> None:
        self.highlighted.append(message.index)


class WatchedSource(ParquetSource):
    """A Parquet source that records which thread decodes each row group, and can hold a decode back."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.decoded: list[tuple[int, str]] = []
        self.release = threading.Event()
        self.release.set()

    def _read_group(self, g: int):
        self.decoded.append((g, threading.current_thread().name))
        self.release.wait(10)
        return super()._read_group(g)


def screen_text(app: App) -> str:
    return "\n".join(strip.text for strip in app.screen._compositor.render_strips())


async def wait_for(pilot, condition, timeout: float = 10.0) -> None:
    for _ in range(int(timeout / 0.02)):
        if condition():
            return
        await pilot.pause(0.02)
    raise AssertionError("timed out waiting for the table")


async def test_parquet_rows_show_a_placeholder_then_arrive_from_a_thread(tmp_path: Path) -> None:
    source = WatchedSource(write_parquet(tmp_path / "rows.parquet", 3000, 3000))
    source.release.clear()  # the decode waits until the placeholder has been seen
    app = TableApp()
    try:
        async with app.run_test(size=(80, 20)) as pilot:
            table = app.query_one(RowTable)
            table.set_source(source, len(source), source.columns)
            await wait_for(pilot, lambda: "reading…" in screen_text(app))
            assert "question 0" not in screen_text(app)
            assert app.highlighted == []  # the cursor's row is not read yet
            table.action_cursor(1)  # a repaint while the read is in flight asks for nothing more
            assert table.get_row(1) is None  # the row is not decoded on this thread: not read yet
            await pilot.pause(0.1)
            assert len(source.decoded) == 1
            source.release.set()
            await wait_for(pilot, lambda: "question 0" in screen_text(app))
            assert "reading…" not in screen_text(app)
            assert "answer 5" in screen_text(app)
            assert app.highlighted and app.highlighted[-1] == 1
            assert source.decoded == [(0, source.decoded[0][1])]
            assert source.decoded[0][1] != threading.main_thread().name
    finally:
        source.release.set()


async def test_jumping_far_in_a_file_of_many_row_groups(tmp_path: Path) -> None:
    source = WatchedSource(write_parquet(tmp_path / "rows.parquet", 20_000, 1000))
    app = TableApp()
    async with app.run_test(size=(80, 20)) as pilot:
        table = app.query_one(RowTable)
        table.set_source(source, len(source), source.columns)
        await wait_for(pilot, lambda: "question 0" in screen_text(app))
        table.jump_to(17_345)
        await wait_for(pilot, lambda: "question 17345" in screen_text(app))
        assert table.cursor == 17_345
        await wait_for(pilot, lambda: app.highlighted and app.highlighted[-1] == 17_345)
        assert table.get_row(17_345).data["completion"] == "answer 17345"
        table.jump_to(9_000)
        await wait_for(pilot, lambda: "question 9000" in screen_text(app))
        assert {g for g, _ in source.decoded} >= {0, 17, 9}
        assert all(thread != threading.main_thread().name for _, thread in source.decoded)
        assert set(source.cache.groups) >= {0, 17, 9}  # several groups cached: going back decodes nothing
        # the rows around 9000 may need a neighbouring group too (8): counted once its decoding is done
        await wait_for(pilot, lambda: not any(w.is_running for w in app.workers))
        decoded = len(source.decoded)
        table.jump_to(17_350)
        await wait_for(pilot, lambda: "question 17350" in screen_text(app))
        assert len(source.decoded) == decoded
