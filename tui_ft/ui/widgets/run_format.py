"""The Runs screen's Rich pieces: a state in its colour, a progress bar, the alert severities, and a
column of metric values written alike. Values, durations and start times are written by
`tui_ft.display`, the same as on the command line."""

from __future__ import annotations

from collections.abc import Sequence

from rich.text import Text

from tui_ft.display import format_column, format_value, state_style

ALERT_SEVERITY = {"completed": "information", "stopped": "warning", "failed": "error", "crashed": "error"}


def state_text(label: str, state: str) -> Text:
    return Text(label, style=state_style(state))


def progress_bar(fraction: float | None, width: int) -> Text:
    """A one-line bar: `━━━━━━━╸───────` (empty when the length of the run is unknown)."""
    if fraction is None:
        return Text("─" * width, style="dim")
    filled = fraction * width
    full = int(filled)
    bar = Text("━" * full, style="cyan")
    if full < width:
        bar.append("╸" if filled - full >= 0.5 else "─", style="cyan" if filled - full >= 0.5 else "dim")
        bar.append("─" * (width - full - 1), style="dim")
    return bar


def format_metric(value: float | None) -> str:
    """One metric value, 4 significant digits (`1.183`, `0.7053`, `4.422e-4`), as the command line
    writes it."""
    return format_value(value)


def format_metric_column(values: Sequence[float | None]) -> list[str]:
    """The values of one column (losses of several checkpoints) written alike: `display.format_column`."""
    return format_column(values)
