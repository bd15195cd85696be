"""The Runs screen's dialogs: where and how to export a run's model (`widgets/export_dialog.py`, shared
with Chat), and which runs' losses to overlay."""

from __future__ import annotations

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Label, SelectionList
from textual.widgets.selection_list import Selection

from tui_ft.display import format_value
from tui_ft.runs.listing import RunRow
from tui_ft.ui.widgets.export_dialog import ExportDialog, ExportRequest, result_sentence, run_export

__all__ = ["ExportDialog", "ExportRequest", "OverlayDialog", "result_sentence", "run_export"]


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
