"""A classifier's confusion matrix as a compact table: a row per true class, a column per predicted one,
the correct counts (the diagonal) in green and the mistakes in red."""

from __future__ import annotations

from typing import Any

from rich.table import Table
from rich.text import Text
from textual.widgets import Static

MAX_CLASSES = 10  # more would not fit beside the charts; `tui-ft runs RUN` prints them all
LABEL_WIDTH = 10


def _short(label: str) -> str:
    return label if len(label) <= LABEL_WIDTH else label[: LABEL_WIDTH - 1] + "…"


def confusion_table(confusion: dict[str, Any], max_classes: int = MAX_CLASSES) -> Table:
    """The table of `confusion` ({"step", "labels", "matrix"}, as `runs.metrics.confusion_of` gives it),
    its first `max_classes` classes."""
    labels = confusion["labels"][:max_classes]
    matrix = confusion["matrix"]
    hidden = len(confusion["labels"]) - len(labels)
    caption = f"+{hidden} more classes: tui-ft runs RUN shows all" if hidden else None
    table = Table(
        title=f"confusion matrix · eval at step {confusion.get('step')}",
        title_justify="left",
        caption=caption,
        box=None,
        padding=(0, 1),
        show_edge=False,
    )
    table.add_column(Text("true ↓ predicted →", style="dim"))
    for label in labels:
        table.add_column(Text(_short(label), style="bold"), justify="right")
    for i, label in enumerate(labels):
        cells = []
        for j in range(len(labels)):
            count = matrix[i][j]
            style = "green" if i == j else ("red" if count else "dim")
            cells.append(Text(str(count), style=style, justify="right"))
        table.add_row(Text(_short(label), style="bold"), *cells)
    return table


class ConfusionMatrix(Static):
    """The last evaluation's confusion matrix of a classifier run; hidden for other runs."""

    DEFAULT_CSS = """
    ConfusionMatrix { height: auto; max-height: 16; padding: 0 1; }
    """

    def __init__(self, *, id: str | None = None) -> None:  # noqa: A002 - Textual's name
        super().__init__("", id=id)
        self.confusion: dict[str, Any] | None = None
        self.display = False

    def show(self, confusion: dict[str, Any] | None) -> None:
        """Show `confusion` (None: hide); an unchanged matrix costs no repaint."""
        if confusion == self.confusion:
            return
        self.confusion = confusion
        self.display = confusion is not None
        if confusion is not None:
            self.update(confusion_table(confusion))
