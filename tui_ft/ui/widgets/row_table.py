"""A virtual table of dataset rows: only the rows on screen are read and rendered (Line API).

The table holds no rows. It knows how many rows are addressable (`row_count`, which grows while a
file is being indexed) and asks its `DatasetSource` for a row when a line is painted; parsed rows
and painted lines are kept in small LRU caches. A million-row file costs the index, not the rows.

Reading a row never blocks the event loop for long: a line whose row the source cannot hand over
at once (`row_at_hand` says None: a Parquet row group not decoded yet) is painted as a placeholder
while one thread worker reads the rows on screen, and repainted when they arrive. One read is in
flight at a time; when it lands, the repaint asks for whatever is still missing then.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from rich.segment import Segment
from rich.style import Style
from rich.text import Text
from textual import events, work
from textual.binding import Binding
from textual.cache import LRUCache
from textual.geometry import Size
from textual.message import Message
from textual.reactive import reactive
from textual.scroll_view import ScrollView
from textual.strip import Strip

from tui_ft.errors import DataError

if TYPE_CHECKING:
    from tui_ft.data.sources import DatasetSource, Row

_CELL_CHARS = 400  # a cell never needs more text than the widest screen shows


def summarize(value: Any) -> str:
    """One line of text for a cell: chat turns as `role: content`, other values as compact JSON."""
    import json  # (imported when the first row is drawn, not on the way to the first frame)

    if isinstance(value, str):
        text = value
    elif isinstance(value, list) and value and all(isinstance(t, dict) for t in value):
        turns = []
        for turn in value:
            role = turn.get("role", turn.get("from", "?"))
            content = turn.get("content", turn.get("value", ""))
            turns.append(f"{role}: {content if isinstance(content, str) else json.dumps(content)}")
        text = " │ ".join(turns)
    elif isinstance(value, (dict, list)):
        text = json.dumps(value, ensure_ascii=False, default=str)
    else:
        text = str(value)
    text = text[:_CELL_CHARS]
    return text.replace("\r", "").replace("\n", "⏎").replace("\t", " ")


class RowTable(ScrollView, can_focus=True):
    """Rows of a dataset, one per line, with a cursor. Reads rows only when they are painted."""

    BINDINGS = [
        Binding("up,k", "cursor(-1)", "Up", show=False, id="rows.up"),
        Binding("down,j", "cursor(1)", "Down", show=False, id="rows.down"),
        Binding("pageup", "page(-1)", "Page up", show=False, id="rows.page_up"),
        Binding("pagedown", "page(1)", "Page down", show=False, id="rows.page_down"),
        Binding("home", "first", "First row", show=False, id="rows.first"),
        Binding("end", "last", "Last row", show=False, id="rows.last"),
        Binding("enter", "select", "Open row", id="rows.open"),
    ]

    COMPONENT_CLASSES = {
        "row-table--header",
        "row-table--cursor",
        "row-table--number",
        "row-table--error",
        "row-table--placeholder",
    }

    DEFAULT_CSS = """
    RowTable { background: $surface; }
    RowTable > .row-table--header { background: $panel; color: $foreground; text-style: bold; }
    RowTable > .row-table--cursor { background: $block-cursor-blurred-background; }
    RowTable:focus > .row-table--cursor { background: $block-cursor-background; color: $block-cursor-foreground; }
    RowTable > .row-table--number { color: $text-muted; }
    RowTable > .row-table--error { color: $text-error; }
    RowTable > .row-table--placeholder { color: $text-muted; text-style: italic; }
    """

    cursor: reactive[int] = reactive(0, repaint=False)

    @dataclass
    class RowHighlighted(Message):
        """The cursor moved to a row."""

        table: RowTable
        index: int

        @property
        def control(self) -> RowTable:
            return self.table

    @dataclass
    class RowSelected(Message):
        """A row was chosen (Enter or a double click)."""

        table: RowTable
        index: int

        @property
        def control(self) -> RowTable:
            return self.table

    @dataclass
    class RowsRead(Message, bubble=False):
        """A worker read some rows of `source`: each a Row or the DataError it raised. `last`: the
        worker is done (a read comes in two parts: the wanted row and those below it, then those above)."""

        source: DatasetSource
        items: dict[int, Row | DataError]
        last: bool = True

    def __init__(self, *, name: str | None = None, id: str | None = None, classes: str | None = None):
        super().__init__(name=name, id=id, classes=classes)
        self.source: DatasetSource | None = None
        self.row_count = 0
        self.columns: list[str] = []
        self._rows: LRUCache[int, Row | DataError] = LRUCache(4096)
        self._lines: LRUCache[tuple[int, int, bool, bool], Strip] = LRUCache(512)
        self._reading: DatasetSource | None = None  # the source a worker is reading rows of, if any
        self._highlight_waiting = False  # RowHighlighted is posted once the cursor's row is read

    # --- data ---------------------------------------------------------------------------------------

    def set_source(
        self,
        source: DatasetSource | None,
        row_count: int = 0,
        columns: list[str] | None = None,
        rows: Iterable[Row] = (),
    ):
        """Show `source`, of which `row_count` rows can be read now; `rows` were read from it already
        (the first ones, by whoever opened it) and are painted without reading them again."""
        self.source = source
        self.columns = list(columns or [])
        self._rows.clear()
        for row in rows:
            self._rows[row.index] = row
        self._lines.clear()
        self._reading = None
        self._highlight_waiting = False
        self.row_count = 0
        self.set_reactive(RowTable.cursor, 0)
        self.scroll_to(0, 0, animate=False)
        self.set_row_count(row_count)

    def set_columns(self, columns: list[str]) -> None:
        self.columns = list(columns)
        self._lines.clear()
        self.refresh()

    def set_row_count(self, count: int) -> None:
        """More rows became readable (the index grew)."""
        if count == self.row_count:
            return
        grew_from_empty = self.row_count == 0
        self.row_count = count
        self.virtual_size = Size(self.scrollable_content_region.width, count + 1)
        self.refresh()
        if grew_from_empty and count:
            self._highlight()

    def get_row(self, index: int) -> Row | DataError | None:
        """The row at `index`, or the DataError that says why it cannot be read (cached).

        None while a worker reads it (the source must decode it first: a Parquet row group); for the
        cursor's row a `RowHighlighted` follows once it is read. Never decodes on the calling thread.
        """
        item = self._row_at_hand(index)
        if item is None:
            if index == self.cursor:
                self._highlight_waiting = True
            self._want(index)
        return item

    def _row_at_hand(self, index: int) -> Row | DataError | None:
        """The row at `index` if it is cached or cheap to read now; None if a worker must read it."""
        cached = self._rows.get(index)
        if cached is not None:
            return cached
        assert self.source is not None
        item: Row | DataError | None
        try:
            item = self.source.row_at_hand(index)
        except DataError as err:
            item = err
        if item is not None:
            self._rows[index] = item
        return item

    def _want(self, index: int) -> None:
        """Have a worker read row `index` and the rows on screen, unless a read is in flight."""
        if self.source is None or self._reading is not None:
            return
        top, page = round(self.scroll_y), self.page_height
        if top <= index <= top + page:
            start, stop = top, top + page + 1
        else:  # off screen, or a scroll not applied yet (a jump): the pages around it
            start, stop = index - page, index + page + 1
        start, stop = max(start, 0), min(stop, self.row_count)
        self._reading = self.source
        # `index` and the rows below it first: after a jump the cursor's row does not wait for the rows
        # above it, which may lie at the end of another Parquet row group (decoded from its start)
        split = min(max(index, start), stop)
        parts = [(a, b) for a, b in ((split, stop), (start, split)) if a < b]
        self._read_rows(self.source, parts or [(start, stop)])

    @work(thread=True, exclusive=True, group="row-table-read", exit_on_error=False)
    def _read_rows(self, source: DatasetSource, parts: list[tuple[int, int]]) -> None:
        """Read rows on this thread and post them, part by part; touches no widget state."""
        for k, (start, stop) in enumerate(parts):
            self.post_message(
                self.RowsRead(source, self._read_part(source, start, stop), k == len(parts) - 1)
            )

    @staticmethod
    def _read_part(source: DatasetSource, start: int, stop: int) -> dict[int, Row | DataError]:
        items: dict[int, Row | DataError] = {}
        try:
            try:
                items.update((row.index, row) for row in source.rows(start, stop))
            except DataError:  # one bad row (a JSONL line that is not JSON): read them one by one
                for index in range(start, stop):
                    try:
                        items[index] = source.row(index)
                    except DataError as err:
                        items[index] = err
        except Exception as err:  # noqa: BLE001 - the rows show what failed instead of "reading…" forever
            failed = DataError(f"cannot read this row: {err}", path=source.path)
            items.update((index, failed) for index in range(start, stop) if index not in items)
        return items

    def on_row_table_rows_read(self, message: RowsRead) -> None:
        message.stop()
        if message.source is not self.source:
            return
        if message.last:
            self._reading = None
        for index, item in message.items.items():
            self._rows[index] = item
        self.refresh()  # painting asks for whatever is still missing now
        if self._highlight_waiting:
            self._highlight()

    def _highlight(self) -> None:
        """Post RowHighlighted for the cursor once its row is at hand (asking a worker if need be)."""
        if not self.row_count or self.source is None:
            return
        if self._row_at_hand(self.cursor) is None:
            self._highlight_waiting = True
            self._want(self.cursor)
            return
        self._highlight_waiting = False
        self.post_message(self.RowHighlighted(self, self.cursor))

    # --- cursor -------------------------------------------------------------------------------------

    @property
    def page_height(self) -> int:
        return max(self.scrollable_content_region.height - 1, 1)

    def jump_to(self, index: int) -> None:
        """Put the cursor on row `index` and show it in the middle of the page."""
        if not self.row_count:
            return
        index = min(max(index, 0), self.row_count - 1)
        self.cursor = index
        self.scroll_to(y=max(index - self.page_height // 2, 0), animate=False)

    def validate_cursor(self, value: int) -> int:
        return min(max(value, 0), max(self.row_count - 1, 0))

    def watch_cursor(self, old: int, new: int) -> None:
        top = round(self.scroll_y)
        if new < top:
            self.scroll_to(y=new, animate=False)
        elif new >= top + self.page_height:
            self.scroll_to(y=new - self.page_height + 1, animate=False)
        self.refresh()
        self._highlight()

    def action_cursor(self, delta: int) -> None:
        self.cursor += delta

    def action_page(self, direction: int) -> None:
        self.cursor += direction * self.page_height

    def action_first(self) -> None:
        self.cursor = 0

    def action_last(self) -> None:
        self.cursor = self.row_count - 1

    def action_select(self) -> None:
        if self.row_count:
            self.post_message(self.RowSelected(self, self.cursor))

    def on_click(self, event: events.Click) -> None:
        offset = event.get_content_offset(self)
        if offset is None or offset.y < 1:
            return
        index = round(self.scroll_y) + offset.y - 1
        if index < self.row_count:
            self.cursor = index
            if event.chain >= 2:
                self.post_message(self.RowSelected(self, index))

    def on_focus(self) -> None:
        self._lines.clear()

    def on_blur(self) -> None:
        self._lines.clear()

    def on_resize(self) -> None:
        self._lines.clear()
        self.virtual_size = Size(self.scrollable_content_region.width, self.row_count + 1)

    # --- painting -----------------------------------------------------------------------------------

    def _widths(self, width: int) -> list[int]:
        number = max(len(f"{self.row_count:,}"), 3) + 1
        line = max(len(str(self.line_hint())), 4) + 1
        rest = max(width - number - line, 0)
        n = max(len(self.columns), 1)
        cells = [rest // n + (1 if k < rest % n else 0) for k in range(n)]
        return [number, line, *cells]

    def line_hint(self) -> int:
        """The largest line number worth reserving room for (the last row's line, if known cheaply)."""
        return self.row_count + 1

    def _cells(self, texts: list[str], widths: list[int], styles: list[Style]) -> list[Segment]:
        segments: list[Segment] = []
        for k, (text, width, style) in enumerate(zip(texts, widths, styles, strict=False)):
            if width <= 0:
                continue
            cell = Text(text, style=style, no_wrap=True, overflow="ellipsis", end="")
            cell.truncate(width - (1 if k < len(widths) - 1 else 0), overflow="ellipsis", pad=True)
            if k < len(widths) - 1:
                cell.append(" ", style=style)
            segments.extend(cell.render(self.app.console))
        return segments

    def render_line(self, y: int) -> Strip:
        width = self.scrollable_content_region.width
        widths = self._widths(width)
        if y == 0 and self.source is None:
            return Strip.blank(width, self.rich_style)
        if y == 0:
            style = self.get_component_rich_style("row-table--header")
            texts = ["row", "line", *(self.columns or ["(no columns)"])]
            return Strip(self._cells(texts, widths, [style] * len(texts)), width).extend_cell_length(
                width, style
            )
        index = round(self.scroll_y) + y - 1
        base = self.rich_style
        if index >= self.row_count or self.source is None:
            return Strip.blank(width, base)
        is_cursor = index == self.cursor
        key = (index, width, is_cursor, self.has_focus)
        cached = self._lines.get(key)
        if cached is not None:
            return cached
        item = self._row_at_hand(index)
        number_style = self.get_component_rich_style("row-table--number")
        if item is None:  # being read by a worker: a placeholder, not cached, repainted on arrival
            self._want(index)
            placeholder = self.get_component_rich_style("row-table--placeholder")
            texts = [f"{index:,}", "", "reading…"]
            segments = self._cells(
                texts, [widths[0], widths[1], sum(widths[2:])], [number_style] + [placeholder] * 2
            )
            strip = Strip(segments, width).extend_cell_length(width, base)
            if is_cursor:
                cursor_style = self.get_component_rich_style("row-table--cursor")
                strip = Strip(Segment.apply_style(strip, post_style=cursor_style), width)
            return strip
        if isinstance(item, DataError):
            error_style = self.get_component_rich_style("row-table--error")
            texts = [f"{index:,}", str(item.line or "?"), f"⚠ {item.message}"]
            styles = [number_style, number_style, error_style]
            segments = self._cells(texts, [widths[0], widths[1], sum(widths[2:])], styles)
        else:
            texts = [f"{index:,}", str(item.line)]
            texts += [summarize(item.data.get(column, "")) for column in self.columns]
            styles = [number_style, number_style] + [base] * len(self.columns)
            segments = self._cells(texts, widths, styles)
        strip = Strip(segments, width).extend_cell_length(width, base)
        if is_cursor:
            cursor_style = self.get_component_rich_style("row-table--cursor")
            strip = Strip(Segment.apply_style(strip, post_style=cursor_style), width)
        self._lines[key] = strip
        return strip
