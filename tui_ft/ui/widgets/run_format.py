"""How the Runs screen writes a run's figures: durations, start times, metric values, states, bars.

Kept apart from the widgets that use them (the run list, the dashboard, the overlay dialog) so that
one set of formatters serves them all.
"""

from __future__ import annotations

import math
from datetime import datetime

from rich.text import Text

STATE_STYLE = {
    "completed": "green",
    "running": "cyan",
    "starting": "cyan",
    "stopping": "yellow",
    "queued": "yellow",
    "stopped": "yellow",
    "failed": "red",
    "crashed": "red",
}
ALERT_SEVERITY = {"completed": "information", "stopped": "warning", "failed": "error", "crashed": "error"}


def format_duration(seconds: float | None) -> str:
    if seconds is None or not math.isfinite(seconds):
        return "-"
    seconds = int(seconds)
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def format_started(ts: float | None) -> str:
    return datetime.fromtimestamp(ts).strftime("%m-%d %H:%M") if ts else "-"


def format_value(value: float | None) -> str:
    if value is None:
        return "-"
    if not math.isfinite(value):
        return str(value)
    if abs(value) >= 1e7:
        return f"{value:.3g}"
    return f"{value:.4g}" if abs(value) < 1e5 else f"{value:,.0f}"


def state_text(label: str, state: str) -> Text:
    return Text(label, style=STATE_STYLE.get(state, ""))


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
