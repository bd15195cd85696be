"""How tui-ft writes values for people, the same on the command line and in the UI: metric values,
parameter counts, durations, start times, counts of things, and the colour of each run state. No
textual, no rich.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import datetime

SIGNIFICANT = 4  # digits of every metric value, so a column never mixes precisions
MAX_DECIMALS = 5  # a column that needs more is written in scientific notation
# The colour of each run state (a Rich style name); states not listed are written plain.
STATE_STYLE = {
    "completed": "green",
    "running": "cyan",
    "starting": "cyan",
    "stopping": "yellow",
    "queued": "yellow",
    "stopped": "yellow",
    "failed": "red",
    "crashed": "red",
    "unreadable": "red",
}


def format_value(value: float | None) -> str:
    """A metric value with 4 significant digits: `1.183`, `0.7053`, `2.000`, `4.422e-4`, `12,346`.

    Below 1e-3 (and from 1e7) in scientific notation, from 1e4 as a whole number with thousands
    separators; `-` for None, `nan`/`inf` as Python writes them.
    """
    if value is None or isinstance(value, bool) or not isinstance(value, (int, float)):
        return "-"
    if not math.isfinite(value):
        return str(float(value))
    if value == 0:
        return "0"
    mantissa, exponent = f"{value:.{SIGNIFICANT - 1}e}".split("e")  # rounds first: 9.99996 -> 1.000e+01
    power = int(exponent)
    if power < -3 or power >= 7:
        return f"{mantissa}e{power}"
    if power >= 4:
        return f"{value:,.0f}"
    return f"{value:.{SIGNIFICANT - 1 - power}f}"


def format_column(values: Sequence[object]) -> list[str]:
    """The values of one column (losses of several checkpoints, the learning rates of a sweep's trials)
    written alike, so they line up when right-justified: the same number of decimals for all, enough for
    4 significant digits of each (`1.1830`, `0.7053`); when that would take more than `MAX_DECIMALS` (a
    value under 1e-3 beside larger ones, learning rates), or a value reaches 1e7, all in scientific
    notation with 4 significant digits (`4.422e-04`, `1.000e-03`). Values may be numbers or the text of
    numbers as a recipe takes them (`3e-3`); a column of whole numbers (`8`, `16`) stays whole, other
    text stays as it is. `-` for None, `nan`/`inf` as Python writes them."""
    numbers: list[float | None] = [_as_number(v) for v in values]
    whole = all(
        isinstance(v, int) or (isinstance(v, str) and v.strip().lstrip("+-").isdigit())
        for v, n in zip(values, numbers, strict=True)
        if n is not None
    )
    finite = [v for v in numbers if v is not None and math.isfinite(v)]
    nonzero = [abs(v) for v in finite if v != 0]
    decimals = max((SIGNIFICANT - 1 - math.floor(math.log10(v)) for v in nonzero), default=0)
    scientific = decimals > MAX_DECIMALS or any(v >= 1e7 for v in nonzero)
    decimals = max(0, decimals)
    out = []
    for value, number in zip(values, numbers, strict=True):
        if value is None:
            out.append("-")
        elif number is None:
            out.append(str(value))
        elif not math.isfinite(number):
            out.append(str(number))
        elif whole:
            out.append(f"{int(number):,}")
        elif scientific:
            out.append(f"{number:.{SIGNIFICANT - 1}e}")
        else:
            out.append(f"{number:,.{decimals}f}")
    return out


def _as_number(value: object) -> float | None:
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value.strip())
        except ValueError:
            return None
    return None


def format_params(n: int | float | None) -> str:
    """A parameter count as `349.8K`, `40.0M`, `6.74B` (one decimal for K and M, two for B), `812` below
    a thousand; `-` when unknown. The model's size, its trainable part, the same everywhere."""
    if n is None or isinstance(n, bool) or not isinstance(n, (int, float)) or not math.isfinite(n):
        return "-"
    for unit, size, decimals in (("B", 1e9, 2), ("M", 1e6, 1), ("K", 1e3, 1)):
        shown = f"{n / size:.{decimals}f}"
        if abs(float(shown)) >= 1:  # rounded first: 999,960 is 1.0M, not 1000.0K
            return f"{shown}{unit}"
    return str(int(n))


def format_duration(seconds: float | None) -> str:
    """`m:ss`, or `h:mm:ss` from an hour; `-` when unknown."""
    if seconds is None or not math.isfinite(seconds):
        return "-"
    whole = int(seconds)
    h, rem = divmod(whole, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def format_started(ts: float | None) -> str:
    """A start time as `MM-DD HH:MM` in local time; `-` when unknown."""
    return datetime.fromtimestamp(ts).strftime("%m-%d %H:%M") if ts else "-"


def format_count(n: int, noun: str, plural: str | None = None) -> str:
    """`1 run`, `2 runs`, `0 errors`: the number and the noun in the form it takes."""
    return f"{n} {noun if n == 1 else (plural or noun + 's')}"


def state_style(state: str) -> str:
    """The Rich style a state is written in (empty: plain)."""
    return STATE_STYLE.get(state, "")
