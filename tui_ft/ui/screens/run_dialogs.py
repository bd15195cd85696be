"""The Runs screen's dialogs: where and how to export a run's model (`widgets/export_dialog.py`, shared
with Chat), and which runs' losses to overlay."""

from __future__ import annotations

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, DataTable, Label, SelectionList
from textual.widgets.selection_list import Selection

from tui_ft.display import format_column, format_value
from tui_ft.runs.listing import RunRow
from tui_ft.runs.sweep import Sweep
from tui_ft.ui.widgets.export_dialog import ExportDialog, ExportRequest, result_sentence, run_export

__all__ = ["ExportDialog", "ExportRequest", "OverlayDialog", "SweepDialog", "result_sentence", "run_export"]


class OverlayDialog(ModalScreen[list[str] | None]):
    """Pick the runs whose loss curves to draw in one chart; dismisses with their ids or None."""

    BINDINGS = [
        Binding("escape", "cancel", "Cancel", id="runs.overlay.cancel"),
        Binding("enter", "done", "Overlay", priority=True, id="runs.overlay.done"),
    ]

    def __init__(self, rows: list[RunRow], selected: list[str]) -> None:
        super().__init__(classes="runs-dialog")
        self.rows = rows
        self.selected = selected

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label("Overlay the loss of  [dim](space: pick · enter: draw)[/dim]")
            yield SelectionList[str](
                *(
                    Selection(
                        f"{row.id}  {row.state_label}  loss {format_value(row.last_loss)}",
                        row.id,
                        row.id in self.selected,
                    )
                    for row in self.rows
                ),
                id="overlay-runs",
            )
            with Horizontal(classes="dialog-buttons"):
                yield Button("Cancel", id="overlay-cancel")
                yield Button("Overlay", variant="primary", id="overlay-ok")

    def on_mount(self) -> None:
        self.query_one("#overlay-runs", SelectionList).focus()

    @on(Button.Pressed, "#overlay-ok")
    def action_done(self) -> None:
        if self.focused is not None and self.focused.id == "overlay-cancel":
            self.dismiss(None)
            return
        chosen = list(self.query_one("#overlay-runs", SelectionList).selected)
        self.dismiss(chosen or None)

    @on(Button.Pressed, "#overlay-cancel")
    def action_cancel(self) -> None:
        self.dismiss(None)


class SweepDialog(ModalScreen[tuple[str, list[str]] | None]):
    """A sweep's trials ranked by its metric. Enter opens a trial's run; `o` overlays the loss curves of
    every trial that ran. Dismisses with ("open", [id]), ("overlay", ids) or None."""

    BINDINGS = [
        Binding("escape", "cancel", "Close", id="runs.sweep.cancel"),
        Binding("o", "overlay", "Overlay all", id="runs.sweep.overlay"),
    ]

    def __init__(self, sweep: Sweep) -> None:
        super().__init__(classes="runs-dialog sweep-dialog")
        self.sweep = sweep

    def compose(self) -> ComposeResult:
        sweep = self.sweep
        best = sweep.best
        with Vertical():
            yield Label(
                f"[b]{sweep.id}[/b]  {sweep.state} · {sweep.search} · {sweep.direction} {sweep.metric}"
                + (f" · best {format_value(best.value)} ({best.run_id})" if best else "")
            )
            yield DataTable(cursor_type="row", id="sweep-trials")
            yield Label("[dim]enter: open the run · o: overlay their losses · esc: close[/dim]")

    def on_mount(self) -> None:
        table = self.query_one("#sweep-trials", DataTable)
        keys = list(self.sweep.grid) + [k for k in self.sweep.ranges if k not in self.sweep.grid]
        table.add_columns("rank", "trial", *keys, self.sweep.metric, "state", "run")
        trials = self.sweep.ranked()
        # each column written alike (learning rates 1.000e-03 and 3.162e-03, not 0.001 and 0.0031622776...)
        columns = [format_column([t.params.get(k) for t in trials]) for k in keys]
        values = format_column([t.value for t in trials])
        for rank, t in enumerate(trials, start=1):
            ranked = t.value is not None and t.state == "completed"
            table.add_row(
                str(rank) if ranked else "-",
                str(t.number),
                *(Text(column[rank - 1], justify="right") for column in columns),
                Text(values[rank - 1], justify="right"),
                t.state,
                t.run_id or "-",
                key=t.run_id or f"trial-{t.number}",
            )
        table.focus()

    @on(DataTable.RowSelected, "#sweep-trials")
    def _open(self, event: DataTable.RowSelected) -> None:
        run_id = str(event.row_key.value)
        if not run_id.startswith("trial-"):
            self.dismiss(("open", [run_id]))

    def action_overlay(self) -> None:
        ids = [t.run_id for t in self.sweep.ranked() if t.run_id]
        self.dismiss(("overlay", ids) if ids else None)

    def action_cancel(self) -> None:
        self.dismiss(None)
