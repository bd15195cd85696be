"""The Runs screen's Rich pieces: a state in its colour, a progress bar, the alert severities, and a
column of metric values written alike. Values, durations and start times are written by
`tui_ft.display`, the same as on the command line."""

from __future__ import annotations

import math
from collections.abc import Sequence

from rich.text import Text

from tui_ft.display import format_value, state_style

SIGNIFICANT = 4  # digits of a metric value, as on the command line
MAX_DECIMALS = 5  # a column that needs more is written in scientific notation

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
    """The values of one column (losses of several checkpoints) written alike, so they line up when
    right-justified: the same number of decimals for all, enough for 4 significant digits of each
    (`1.1830`, `0.7053`); when that would take more than `MAX_DECIMALS` (a value under 1e-3 beside
    larger ones), or a value reaches 1e7, all in scientific notation with 4 significant digits
    (`4.422e-04`, `1.183e+00`). `-` for None, `nan`/`inf` as Python writes them."""
    finite = [float(v) for v in values if isinstance(v, (int, float)) and math.isfinite(v)]
    nonzero = [abs(v) for v in finite if v != 0]
    decimals = max((SIGNIFICANT - 1 - math.floor(math.log10(v)) for v in nonzero), default=0)
    scientific = decimals > MAX_DECIMALS or any(v >= 1e7 for v in nonzero)
    decimals = max(0, decimals)
    out = []
    for value in values:
        if value is None or isinstance(value, bool) or not isinstance(value, (int, float)):
            out.append("-")
        elif not math.isfinite(value):
            out.append(str(float(value)))
        elif scientific:
            out.append(f"{value:.{SIGNIFICANT - 1}e}")
        else:
            out.append(f"{value:,.{decimals}f}")
    return out
