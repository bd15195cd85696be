"""Datasets: open a file, a folder or a hub id; page through its rows; read one; see its tokens; fix errors.

Every slow step runs on a thread worker and reports with a message: opening and indexing (the table
shows rows as soon as the first part of a JSON Lines file is indexed), checking every row, searching,
and in the token view loading the tokenizer and measuring lengths. Messages carry the source they are
about, so the answer to an old request is dropped when another dataset has been opened since.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import TYPE_CHECKING

from rich.markup import escape
from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.reactive import reactive
from textual.screen import Screen
from textual.widget import MountError
from textual.widgets import (
    ContentSwitcher,
    DirectoryTree,
    Input,
    OptionList,
    Static,
)
from textual.widgets.option_list import Option
from textual.worker import Worker, WorkerState, get_current_worker

from tui_ft.display import format_count
from tui_ft.errorlog import describe
from tui_ft.errors import DataError
from tui_ft.ui.widgets.data_browser import DataTree, FolderLabel, PathSuggester
from tui_ft.ui.widgets.fields import in_field, leave_field
from tui_ft.ui.widgets.pane_tabs import PaneTabs
from tui_ft.ui.widgets.row_table import RowTable
from tui_ft.ui.widgets.shell import KeysFooter, ShellHeader, StyledOnMount, short_path

if TYPE_CHECKING:
    from tui_ft.data.checks import CheckReport
    from tui_ft.data.formats import Format
    from tui_ft.data.sources import DatasetSource, Row

# The data layer (sources, formats: json, csv and friends) is imported when a dataset is first opened,
# by the worker opening it: not on the way to the first frame.

_PROGRESS_EVERY_S = 0.1
_FIRST_ROWS = 100  # read by the open worker and painted at once: more than the tallest screen shows
SPLIT_STEP = 5  # percent of the width moved by one press of [ or ]
SPLIT_RANGE = (15, 70)  # the file tree's share of the width, in percent


def _name(source: DatasetSource) -> str:
    path = source.path
    return Path(path).name if isinstance(path, Path) else str(path)


class DatasetsScreen(StyledOnMount, Screen):
    """Browse, check and inspect one dataset at a time."""

    BINDINGS = [
        Binding("o", "open", "Open", id="datasets.open"),
        Binding("slash", "search", "Find", id="datasets.search"),
        Binding("n", "find(False)", "Next", id="datasets.find_next"),
        Binding("N", "find(True)", "Previous", show=False, id="datasets.find_previous"),
        Binding("r", "tab('tab-rows')", "Rows", show=False, id="datasets.rows"),
        Binding("v", "tab('tab-row')", "Row", show=False, id="datasets.row"),
        Binding("t", "tab('tab-tokens')", "Tokens", id="datasets.tokens"),
        Binding("e", "tab('tab-errors')", "Errors", id="datasets.errors"),
        Binding("p", "toggle_part", "Chosen/rejected", show=False, id="datasets.part"),
        Binding("ctrl+b", "toggle_sidebar", "Files", show=False, id="datasets.sidebar"),
        # typed into a field while one has the keyboard; after Escape they move the divider
        Binding(
            "left_square_bracket",
            f"split(-{SPLIT_STEP})",
            "Narrower files",
            group=Binding.Group("Divider"),
            id="datasets.split_left",
        ),
        Binding(
            "right_square_bracket",
            f"split({SPLIT_STEP})",
            "Wider files",
            group=Binding.Group("Divider"),
            id="datasets.split_right",
        ),
        # Escape leaves a field first (taken only while one has the keyboard), then goes back
        Binding("escape", "leave_field", "Leave field", id="datasets.leave_field"),
        Binding("escape", "back", "Back", show=False, id="datasets.back"),
    ]

    # The file tree has the keyboard from the first frame (Textual's default, the first focusable
    # widget, is the path field, and moving the focus after it rebuilt the footer's keys twice).
    AUTO_FOCUS = "#ds-tree"

    split: reactive[int] = reactive(33, init=False)  # the file tree's share of the width, in percent

    # --- messages from the workers -------------------------------------------------------------------
    # (plain classes: a dataclass costs a millisecond to create, at import, on the way to the first frame)

    class Opened(Message):
        def __init__(
            self,
            source: DatasetSource,
            browsable: bool,  # rows can be read while the index grows (JSON Lines)
            columns: list[str],
            format: Format | None,
            first_rows: list[Row],  # the rows the worker read already: painted without reading them again
        ) -> None:
            super().__init__()
            self.source = source
            self.browsable = browsable
            self.columns = columns
            self.format = format
            self.first_rows = first_rows

    class IndexProgress(Message):
        def __init__(self, source: DatasetSource, rows: int) -> None:
            super().__init__()
            self.source = source
            self.rows = rows

        def can_replace(self, message: Message) -> bool:
            return isinstance(message, type(self)) and message.source is self.source

    class Indexed(Message):
        def __init__(self, source: DatasetSource, rows: int) -> None:
            super().__init__()
            self.source = source
            self.rows = rows

    class OpenFailed(Message):
        def __init__(self, ref: str, error: DataError) -> None:
            super().__init__()
            self.ref = ref
            self.error = error

    class CheckProgress(Message):
        def __init__(self, source: DatasetSource, rows: int) -> None:
            super().__init__()
            self.source = source
            self.rows = rows

        def can_replace(self, message: Message) -> bool:
            return isinstance(message, type(self)) and message.source is self.source

    class Checked(Message):
        def __init__(self, source: DatasetSource, report: CheckReport) -> None:
            super().__init__()
            self.source = source
            self.report = report

    class Found(Message):
        def __init__(self, source: DatasetSource, needle: str, index: int | None, backwards: bool) -> None:
            super().__init__()
            self.source = source
            self.needle = needle
            self.index = index
            self.backwards = backwards

    # --- layout --------------------------------------------------------------------------------------

    def __init__(self) -> None:
        super().__init__(id="datasets-screen")
        self.source: DatasetSource | None = None
        self.format: Format | None = None
        self.report: CheckReport | None = None
        self.ref: str | None = None
        self.needle = ""
        self._error_lines: list[int | None] = []
        self._status = ""
        self._opening: Worker | None = None  # the worker opening `ref`
        self._checking: Worker | None = None  # the worker checking `source`
        self._finding: Worker | None = None
        self._hidden_views = asyncio.Event()  # set once `_mount_hidden_views` has mounted them

    @property
    def workspace(self):
        return self.app.workspace

    def compose(self) -> ComposeResult:
        data_dir = self.workspace.data
        tree_root = data_dir if data_dir.is_dir() else Path.cwd()
        yield ShellHeader()
        with Horizontal(id="ds-main"):
            with Vertical(id="ds-sidebar"):
                yield Input(
                    placeholder="path or hub id (owner/name)",
                    suggester=PathSuggester([data_dir, Path.cwd()]),
                    compact=True,
                    id="ds-path",
                )
                yield FolderLabel(short_path(tree_root), id="ds-tree-label")
                yield DataTree(tree_root, id="ds-tree")
            with Vertical(id="ds-body"):
                yield Static(
                    "Open a dataset: pick a file on the left, or type a path and press Enter.", id="ds-info"
                )
                yield PaneTabs(
                    [
                        ("tab-rows", "Rows"),
                        ("tab-row", "Row"),
                        ("tab-tokens", "Tokens"),
                        ("tab-errors", "Errors"),
                    ],
                    switcher="ds-panes",
                    id="ds-tabs",
                )
                with ContentSwitcher(id="ds-panes", initial="tab-rows"):
                    with Vertical(id="tab-rows"):
                        yield RowTable(id="ds-table")
                    # The hidden tabs' views, and the find bar, are imported and mounted just after
                    # the first paint (`_mount_hidden_views`): a faster first screen.
                    yield Vertical(id="tab-row")
                    yield Vertical(id="tab-tokens")
                    yield Vertical(id="tab-errors")
        yield KeysFooter()

    def on_mount(self) -> None:
        start = getattr(self.app, "open_path", None)
        if start:
            self.open(start)
        self.app.after_first_frame(self._mount_hidden_views)  # type: ignore[attr-defined]

    async def _mount_hidden_views(self) -> None:
        """The Row, Tokens and Errors tabs' views (and the modules they need: rich's pretty-printer,
        the token checks) and the find bar, which no first frame shows. An action that needs one of
        them waits for `_hidden_views` (a key pressed in the instant before they are there)."""
        from textual.widgets import Label

        from tui_ft.ui.widgets.row_view import RowView
        from tui_ft.ui.widgets.token_view import TokenPanel

        try:
            await self.query_one("#tab-row").mount(RowView(id="ds-row"))
            await self.query_one("#tab-tokens").mount(TokenPanel(self.workspace, id="ds-tokens"))
            await self.query_one("#tab-errors").mount(OptionList(id="ds-errors"))
            find_bar = Horizontal(
                Label("find"),
                Input(placeholder="text in a row; Enter: next, N: previous", compact=True, id="ds-find"),
                Static("", id="ds-find-status"),
                id="ds-search",
            )
            await self.query_one("#ds-body").mount(find_bar, after="#ds-panes")
        except MountError:  # the app is closing (quit at its first frame): nothing left to mount into
            return
        self._hidden_views.set()
        self._show_current()  # a tab shown before its view was there
        self._show_errors()  # a check that ended before the list was there

    # --- opening -------------------------------------------------------------------------------------

    def open(self, ref: str) -> None:
        """Open a dataset: a path (relative ones resolve in the workspace's data folder first) or a hub id."""
        ref = ref.strip()
        if not ref:
            return
        self.ref = ref
        path_input = self.query_one("#ds-path", Input)
        if path_input.value != ref:
            path_input.value = ref
        for group in ("check", "find"):
            self.workers.cancel_group(self, group)
        self._set_info(f"opening {ref}…")
        self._opening = self._open_worker(ref)

    @work(thread=True, exclusive=True, group="open", exit_on_error=False, description="opening the dataset")
    def _open_worker(self, ref: str) -> None:
        from tui_ft.data.formats import detect_format
        from tui_ft.data.sources import JsonlSource, Row, open_dataset

        worker = get_current_worker()
        try:
            source = open_dataset(ref, base_dir=self.workspace.data)
            browsable = isinstance(source, JsonlSource)
            columns = list(source.columns)
            first_rows = [item for item in source.head(_FIRST_ROWS) if isinstance(item, Row)]
            fmt = next((f for row in first_rows[:20] if (f := detect_format(row.data))), None)
        except DataError as err:
            self.post_message(self.OpenFailed(ref, err))
            return
        self.post_message(self.Opened(source, browsable, columns, fmt, first_rows))
        last = 0.0

        def progress(rows: int) -> None:
            nonlocal last
            now = time.monotonic()
            if now - last >= _PROGRESS_EVERY_S:
                last = now
                self.post_message(self.IndexProgress(source, rows))

        try:
            if not source.build_index(progress, lambda: worker.is_cancelled):
                return
            rows = len(source)
        except DataError as err:
            self.post_message(self.OpenFailed(ref, err))
            return
        self.post_message(self.Indexed(source, rows))

    @on(Opened)
    def _on_opened(self, message: Opened) -> None:
        if self.source is not None and self.source is not message.source:
            self.source.close()
        self.source, self.format, self.report = message.source, message.format, None
        self._show_errors()
        table = self.query_one("#ds-table", RowTable)
        table.set_source(message.source, 0, message.columns, message.first_rows)
        self._status = "indexing…"
        self._show_info()
        table.focus()

    @on(IndexProgress)
    def _on_index_progress(self, message: IndexProgress) -> None:
        if message.source is not self.source:
            return
        from tui_ft.data.sources import JsonlSource

        if isinstance(message.source, JsonlSource):
            self.query_one("#ds-table", RowTable).set_row_count(message.rows)
        self._status = f"indexing… {message.rows:,} rows"
        self._show_info()

    @on(Indexed)
    def _on_indexed(self, message: Indexed) -> None:
        if message.source is not self.source:
            return
        self.query_one("#ds-table", RowTable).set_row_count(message.rows)
        self._status = "checking…"
        self._show_info()
        self._checking = self._check_worker(message.source)

    @on(OpenFailed)
    def _on_open_failed(self, message: OpenFailed) -> None:
        if message.ref != self.ref:
            return
        self._status = ""
        self._set_info(Text(f"cannot open {message.ref}: ", style="red") + Text(str(message.error)))
        self.notify(str(message.error), title="Cannot open", severity="error", markup=False)

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        """A worker of this screen that failed unexpectedly: the screen says so where it said it was
        busy (the app tells the user and logs the traceback), and the next request starts afresh."""
        worker, error = event.worker, event.worker.error
        if event.state != WorkerState.ERROR or error is None:
            return
        if worker is self._opening:
            self._status = ""
            self._set_info(Text(f"cannot open {self.ref}: ", style="red") + Text(describe(error)))
        elif worker is self._checking:
            self._status = f"[red]✗ check failed: {escape(describe(error))}[/red]"
            self._show_info()
        elif worker is self._finding:
            self._find_status("search failed")

    # --- checking ------------------------------------------------------------------------------------

    @work(thread=True, exclusive=True, group="check", exit_on_error=False, description="checking the dataset")
    def _check_worker(self, source: DatasetSource) -> None:
        from tui_ft.data.checks import check_dataset_isolated
        from tui_ft.data.validation import CheckCancelled

        worker = get_current_worker()
        last = 0.0

        def progress(rows: int) -> None:
            nonlocal last
            now = time.monotonic()
            if now - last >= _PROGRESS_EVERY_S:
                last = now
                self.post_message(self.CheckProgress(source, rows))

        try:
            # large files are checked in a child process: a scan in this thread would hold the GIL
            report = check_dataset_isolated(source, progress=progress, cancelled=lambda: worker.is_cancelled)
        except CheckCancelled:
            return
        self.post_message(self.Checked(source, report))

    @on(CheckProgress)
    def _on_check_progress(self, message: CheckProgress) -> None:
        if message.source is self.source:
            self._status = f"checking… {message.rows:,} rows"
            self._show_info()

    @on(Checked)
    def _on_checked(self, message: Checked) -> None:
        if message.source is not self.source:
            return
        report = message.report
        self.report = report
        if report.format and self.format is None:
            from tui_ft.data.formats import Format

            self.format = Format(report.format)
        self._show_errors()
        if report.error_count:
            self._status = (
                f"[red]✗ {report.error_count} error{'s' if report.error_count > 1 else ''}[/red] (e)"
            )
        else:
            self._status = "[green]✓ no errors[/green]"
        self._show_info()

    def _show_errors(self) -> None:
        """The Errors tab: the check's errors (none yet while it checks), its label counting them."""
        report = self.report
        label = f"Errors ({report.error_count})" if report and report.error_count else "Errors"
        self.query_one("#ds-tabs", PaneTabs).relabel("tab-errors", label)
        self._error_lines = [e.get("line") for e in report.errors] if report else []
        for errors in self.query("#ds-errors").results(OptionList):  # none in the instant before it mounts
            errors.clear_options()
            if report is not None:
                self._fill_errors(errors, report)

    def _fill_errors(self, errors: OptionList, report: CheckReport) -> None:
        options = []
        for k, e in enumerate(report.errors):
            where = f"line {e['line']}" if e.get("line") else "file"
            field = f" {e['field']}:" if e.get("field") else ""
            options.append(Option(f"{where}:{field} {e['message']}", id=str(k)))
        errors.add_options(options)
        if options:
            errors.highlighted = 0
        elif not report.error_count:  # a clean file says so rather than leaving the tab blank
            checked = format_count(report.rows, "row")
            errors.add_option(
                Option(f"no errors in {Path(report.path).name} ({checked} checked)", disabled=True)
            )
        if report.error_count > len(report.errors):
            errors.add_option(Option(f"… and {report.error_count - len(report.errors)} more", disabled=True))

    @on(OptionList.OptionSelected, "#ds-errors")
    def _jump_to_error(self, event: OptionList.OptionSelected) -> None:
        if event.option.id is None or self.source is None:
            return
        line = self._error_lines[int(event.option.id)]
        index = self.source.index_of_line(line) if line else None
        if index is None:
            self.notify(f"line {line} is not the start of a row", severity="warning")
            return
        self.action_tab("tab-rows")
        table = self.query_one("#ds-table", RowTable)
        table.jump_to(index)
        table.focus()

    # --- info line -----------------------------------------------------------------------------------

    def _set_info(self, text: str | Text) -> None:
        self.query_one("#ds-info", Static).update(text)

    def _show_info(self) -> None:
        if self.source is None:
            return
        table = self.query_one("#ds-table", RowTable)
        parts = [f"[b]{_name(self.source)}[/b]"]
        parts.append(f"format [b]{self.format.value}[/b]" if self.format else "format [red]unknown[/red]")
        if self.source.indexed or table.row_count:
            parts.append(f"{table.row_count:,} rows")
        if self._status:
            parts.append(self._status)
        self._set_info(" · ".join(parts))

    # --- the row under the cursor --------------------------------------------------------------------

    @on(RowTable.RowHighlighted, "#ds-table")
    def _on_row_highlighted(self, _: RowTable.RowHighlighted) -> None:
        self._show_current()

    @on(RowTable.RowSelected, "#ds-table")
    def _on_row_selected(self, _: RowTable.RowSelected) -> None:
        self.action_tab("tab-row")

    @on(PaneTabs.Activated, "#ds-tabs")
    def _on_tab(self, _: PaneTabs.Activated) -> None:
        self._show_current()

    def current_row(self) -> Row | DataError | None:
        table = self.query_one("#ds-table", RowTable)
        if self.source is None or not table.row_count:
            return None
        return table.get_row(table.cursor)

    def _show_current(self) -> None:
        item = self.current_row()
        if item is None:
            return
        active = self.query_one("#ds-tabs", PaneTabs).active
        # (the query finds nothing in the instant before the lazy tabs mount; a tab shown later asks again)
        if active == "tab-row":
            from tui_ft.ui.widgets.row_view import RowView

            for view in self.query("#ds-row").results(RowView):
                view.show(item, self.format)
        elif active == "tab-tokens" and self.source is not None:
            from tui_ft.data.sources import Row
            from tui_ft.ui.widgets.token_view import TokenPanel

            for tokens in self.query("#ds-tokens").results(TokenPanel):
                tokens.show_row(self.source, item if isinstance(item, Row) else None, self.format)

    # --- search --------------------------------------------------------------------------------------

    @on(Input.Submitted, "#ds-find")
    def _on_find_submitted(self, event: Input.Submitted) -> None:
        again = event.value == self.needle  # Enter again on the same text: the next match
        self.needle = event.value
        self._find(backwards=False, from_cursor=not again)

    def _find(self, *, backwards: bool, from_cursor: bool = False) -> None:
        if self.source is None or not self.needle:
            return
        cursor = self.query_one("#ds-table", RowTable).cursor
        start = cursor - 1 if backwards else cursor + (0 if from_cursor else 1)
        if start < 0:
            self._find_status("no match above")
            return
        self._find_status("searching…")
        self._finding = self._find_worker(self.source, self.needle, start, backwards)

    @work(thread=True, exclusive=True, group="find", exit_on_error=False, description="searching the dataset")
    def _find_worker(self, source: DatasetSource, needle: str, start: int, backwards: bool) -> None:
        from tui_ft.data.search import find_row

        worker = get_current_worker()
        index = find_row(source, needle, start, backwards=backwards, cancelled=lambda: worker.is_cancelled)
        if not worker.is_cancelled:
            self.post_message(self.Found(source, needle, index, backwards))

    @on(Found)
    def _on_found(self, message: Found) -> None:
        if message.source is not self.source:
            return
        if message.index is None:
            self._find_status(f"no match {'above' if message.backwards else 'below'}")
            return
        self._find_status(f"row {message.index:,}")
        self.query_one("#ds-table", RowTable).jump_to(message.index)

    def _find_status(self, text: str) -> None:
        for status in self.query("#ds-find-status").results(Static):
            status.update(text)

    # --- picking a file ------------------------------------------------------------------------------

    @on(Input.Submitted, "#ds-path")
    def _on_path_submitted(self, event: Input.Submitted) -> None:
        self.open(event.value)

    @on(DirectoryTree.FileSelected, "#ds-tree")
    def _on_file_selected(self, event: DirectoryTree.FileSelected) -> None:
        self.open(str(event.path))

    # --- actions -------------------------------------------------------------------------------------

    def action_open(self) -> None:
        self.remove_class("-no-sidebar")
        self.set_focus(self.query_one("#ds-path", Input))  # now: keys typed right after `o` land here

    async def action_search(self) -> None:
        await self._hidden_views.wait()
        self.add_class("-searching")
        self.set_focus(self.query_one("#ds-find", Input))

    async def action_find(self, backwards: bool) -> None:
        if not self.needle:
            await self.action_search()
            return
        self._find(backwards=backwards)

    def action_tab(self, tab: str) -> None:
        self.query_one("#ds-tabs", PaneTabs).active = tab
        focus = {"tab-rows": "#ds-table", "tab-errors": "#ds-errors"}.get(tab)
        if focus is not None:
            self.run_worker(self._focus_when_mounted(focus), group="focus", exclusive=True)

    async def _focus_when_mounted(self, selector: str) -> None:
        """Focus `selector`, once it is there (the Errors list mounts just after the first frame)."""
        if not self.query(selector):
            await self._hidden_views.wait()
        self.query_one(selector).focus()

    def action_toggle_part(self) -> None:
        from tui_ft.ui.widgets.token_view import TokenPanel

        for tokens in self.query("#ds-tokens").results(TokenPanel):
            tokens.toggle_part()

    def action_toggle_sidebar(self) -> None:
        self.toggle_class("-no-sidebar")

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "split":  # typed into a field that has the keyboard: not offered there
            return not in_field(self)
        if action == "leave_field":
            return in_field(self)
        return True

    def action_leave_field(self) -> None:
        """Escape in a field: the find bar closes onto the table; the path box hands over to the tree."""
        focused = self.focused
        if focused is not None and focused.id == "ds-find":
            self.action_back()
        elif focused is not None and focused.id == "ds-path":
            leave_field(self, self.query_one("#ds-tree"))
        else:
            leave_field(self)

    def action_split(self, step: int) -> None:
        """Move the divider between the file tree and the dataset by `step` percent of the width."""
        low, high = SPLIT_RANGE
        self.remove_class("-no-sidebar")
        self.split = max(low, min(high, self.split + step))

    def watch_split(self, split: int) -> None:
        self.query_one("#ds-sidebar").styles.width = f"{split}%"

    def action_back(self) -> None:
        if self.has_class("-searching"):
            self.remove_class("-searching")
        self.action_tab("tab-rows")

    def on_unmount(self) -> None:
        if self.source is not None:
            self.source.close()
