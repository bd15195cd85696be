"""The list of runs in the workspace: a filter line, a table, newest first, re-read every few seconds.

The list is re-read every `LIST_POLL_S` on a worker (`RunsIndex` re-reads a run only when its files
changed; `LIST_POLL_BEHIND_S` while the list is hidden behind a dashboard) and filtered in place. The
next read is scheduled when the last one ended, whether it succeeded or failed, so one bad read
neither piles up nor stops the list. Each read is posted as `RunList.Listed`; a run that ended since
the previous read as `RunList.Ended`; Enter on a row as `RunList.Chosen`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.widgets import DataTable, Input, Label, Static
from textual.worker import Worker, WorkerState

from tui_ft.display import format_count, format_duration, format_started, format_value
from tui_ft.runs.listing import RunRow, RunsIndex
from tui_ft.runs.registry import ACTIVE_STATES
from tui_ft.ui.widgets.run_format import progress_bar, state_text

LIST_POLL_S = 2.0
LIST_POLL_BEHIND_S = 5.0  # while a dashboard hides the list: only for other runs' alerts
RUN_COLUMNS = ("run", "state", "method", "progress", "loss", "started", "duration")
DROP_ORDER = ("started", "duration")  # least important first: the run id starts with its start time
CELL_PADDING = 2  # a DataTable cell's padding, both sides together
SCROLLBAR = 2


def _cell_len(cell: Any) -> int:
    """How many terminal cells a table cell takes (plain strings as they are: the table shows them so)."""
    return cell.cell_len if isinstance(cell, Text) else Text(str(cell)).cell_len


class RunList(Vertical):
    """The workspace's runs, filterable; Enter chooses one."""

    # --- messages ------------------------------------------------------------------------------------

    @dataclass
    class Listed(Message):
        """The runs as one read found them, newest first."""

        rows: list[RunRow]

    @dataclass
    class Ended(Message):
        """A run that was active at the previous read has ended (completed, stopped, failed, crashed)."""

        row: RunRow

    @dataclass
    class Chosen(Message):
        """Enter on a run of the list."""

        run_id: str

    # --- layout --------------------------------------------------------------------------------------

    def __init__(self, clock: Callable[[], float], *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.clock = clock  # the wall clock (tests give a fixed one)
        self.rows: list[RunRow] = []
        self._states: dict[str, str] = {}  # run id -> state at the previous read
        self._index: RunsIndex | None = None
        self._poll_worker: Worker | None = None  # the read in flight
        self._table_columns: tuple[str, ...] | None = None
        self._table_signature: list[tuple] | None = None

    def compose(self) -> ComposeResult:
        with Horizontal(id="runs-filter-row"):
            yield Label("filter")
            yield Input(
                placeholder="words of the id, method, model or state (running, dpo, failed…)",
                compact=True,
                id="runs-filter",
            )
            yield Static("", id="runs-count")
        yield DataTable(cursor_type="row", zebra_stripes=True, id="runs-table")
        yield Static(
            "No runs yet. Launch one from Configure (2), or: [b]tui-ft train sft-lora[/b]",
            id="runs-empty",
        )

    def on_mount(self) -> None:
        self.query_one("#runs-empty", Static).display = False
        self._poll()

    # --- reading -------------------------------------------------------------------------------------

    def _poll(self) -> None:
        self._poll_worker = self._read_runs()

    @work(
        thread=True,
        exclusive=True,
        group="runs-list",
        exit_on_error=False,
        description="reading the run list",
    )
    def _read_runs(self) -> None:
        if self._index is None:
            self._index = RunsIndex(self.app.workspace)  # type: ignore[attr-defined]
        self.post_message(self.Listed(self._index.rows(now=self.clock())))

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        """The next read is scheduled when the last one ended, whether it was handled or it failed."""
        ended = event.state in (WorkerState.SUCCESS, WorkerState.ERROR)  # cancelled: closed or superseded
        if event.worker is self._poll_worker and ended:
            self._poll_worker = None
            self.set_timer(LIST_POLL_S if self.display else LIST_POLL_BEHIND_S, self._poll)

    @on(Listed)
    def _on_listed(self, message: Listed) -> None:
        self.rows = message.rows
        before = self._states
        self._states = {row.id: row.state for row in message.rows}
        for row in message.rows:
            if before.get(row.id) in ACTIVE_STATES and row.state not in ACTIVE_STATES:
                self.post_message(self.Ended(row))
        if self.display:  # a hidden table is filled when it is shown again
            self.fill()

    # --- the table -----------------------------------------------------------------------------------

    def _columns(self, cells: list[dict[str, Any]]) -> tuple[str, ...]:
        """The columns that fit the width, from every column down: the least important go first
        (`DROP_ORDER`); the key ones (id, state, method, progress, loss) stay whatever the width."""
        width = self.screen.size.width  # the screen's: a hidden list has no width of its own
        if not width:
            return RUN_COLUMNS
        needed = {
            column: max([len(column), *(_cell_len(row[column]) for row in cells)]) + CELL_PADDING
            for column in RUN_COLUMNS
        }
        columns = list(RUN_COLUMNS)
        for column in DROP_ORDER:
            if sum(needed[c] for c in columns) + SCROLLBAR <= width:
                break
            columns.remove(column)
        return tuple(columns)

    def on_resize(self) -> None:
        if self.rows and self._columns(self._all_cells()) != self._table_columns:
            self.fill()

    def _all_cells(self) -> list[dict[str, Any]]:
        text = self.query_one("#runs-filter", Input).value
        return [self._cells(row) for row in self.rows if not text or row.matches(text)]

    def fill(self) -> None:
        """Show the rows that match the filter (the table changes only where they changed)."""
        table = self.query_one("#runs-table", DataTable)
        text = self.query_one("#runs-filter", Input).value
        rows = [row for row in self.rows if not text or row.matches(text)]
        all_cells = [self._cells(row) for row in rows]
        columns = self._columns(all_cells)
        cells = [tuple(row_cells[c] for c in columns) for row_cells in all_cells]
        signature = [(row.id, *map(str, c)) for row, c in zip(rows, cells, strict=True)]
        if columns != self._table_columns:
            self._table_columns = columns
            self._table_signature = None
            current = self.highlighted_id()
            table.clear(columns=True)
            for column in columns:
                table.add_column(column, key=column)
        if signature != self._table_signature:
            self._table_signature = signature
            current = self.highlighted_id()
            table.clear()
            for row, row_cells in zip(rows, cells, strict=True):
                table.add_row(*row_cells, key=row.id)
            if current is not None and current in {r.id for r in rows}:
                table.move_cursor(row=table.get_row_index(current), animate=False)
        shown = (
            f"{len(rows)} of {format_count(len(self.rows), 'run')}"
            if text
            else format_count(len(self.rows), "run")
        )
        self.query_one("#runs-count", Static).update(shown)
        self.query_one("#runs-empty", Static).display = not self.rows
        table.display = bool(self.rows)
        self.refresh_bindings()  # the screen's keys depend on the run the cursor is on (and on there being one)

    @staticmethod
    def _cells(row: RunRow) -> dict[str, Any]:
        steps = f"{row.step}/{row.max_steps}" if row.max_steps else str(row.step)
        progress = progress_bar(row.progress, 5) if row.max_steps else Text("")
        progress.append(f" {steps}")
        return {
            "run": row.id,
            "state": state_text(row.state_label, row.state),
            "method": row.method,
            "progress": progress,
            "loss": format_value(row.last_loss),
            "started": format_started(row.started or row.created),
            "duration": format_duration(row.duration_s),
        }

    def highlighted_id(self) -> str | None:
        """The run under the table's cursor."""
        table = self.query_one("#runs-table", DataTable)
        if not table.row_count:
            return None
        try:
            return str(table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value)
        except Exception:  # noqa: BLE001 - an empty or changing table has no cursor row
            return None

    # --- focus and filter ----------------------------------------------------------------------------

    @property
    def filtering(self) -> bool:
        """The filter line has the keyboard."""
        return self.screen.focused is self.query_one("#runs-filter", Input)

    def focus_filter(self) -> None:
        self.screen.set_focus(self.query_one("#runs-filter", Input))  # now: keys typed next land here

    def focus_table(self) -> None:
        self.query_one("#runs-table", DataTable).focus()

    @on(Input.Changed, "#runs-filter")
    def _on_filter(self) -> None:
        self.fill()

    @on(Input.Submitted, "#runs-filter")
    def _on_filter_submitted(self) -> None:
        self.focus_table()

    @on(DataTable.RowHighlighted, "#runs-table")
    def _on_row_highlighted(self) -> None:
        # The Runs screen's keys (stop, resume, chat, export, sweep...) depend on the highlighted run:
        # the footer asks again (as the table fills, and as the cursor moves from a run to a trial).
        self.refresh_bindings()

    @on(DataTable.RowSelected, "#runs-table")
    def _on_row_selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        self.post_message(self.Chosen(str(event.row_key.value)))
