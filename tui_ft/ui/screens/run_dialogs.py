"""The Runs screen's dialogs: where to export a run's model, and which runs' losses to overlay."""

from __future__ import annotations

from pathlib import Path

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Checkbox, Input, Label, SelectionList, Static
from textual.widgets.selection_list import Selection

from tui_ft.display import format_value
from tui_ft.runs.listing import RunRow


class ExportDialog(ModalScreen[tuple[str, bool] | None]):
    """Where to export a run's model, and whether to merge it into its base; dismisses with
    (folder, merge) or None."""

    BINDINGS = [Binding("escape", "cancel", "Cancel", id="runs.export.cancel")]

    def __init__(self, run_ref: str, default_dir: Path) -> None:
        super().__init__(classes="runs-dialog")
        self.run_ref = run_ref
        self.default_dir = default_dir

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label(f"Export [b]{self.run_ref}[/b] to")
            yield Input(str(self.default_dir), id="export-dir")
            yield Checkbox("merge the adapter into the base model (a full model)", id="export-merge")
            yield Static("", id="export-error")
            with Horizontal(classes="dialog-buttons"):
                yield Button("Cancel", id="export-cancel")
                yield Button("Export", variant="primary", id="export-ok")

    @on(Input.Submitted, "#export-dir")
    @on(Button.Pressed, "#export-ok")
    def _export(self) -> None:
        folder = self.query_one("#export-dir", Input).value.strip()
        if not folder:
            self.query_one("#export-error", Static).update("give a folder")
            return
        self.dismiss((folder, self.query_one("#export-merge", Checkbox).value))

    @on(Button.Pressed, "#export-cancel")
    def action_cancel(self) -> None:
        self.dismiss(None)


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
