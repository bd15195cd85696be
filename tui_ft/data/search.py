"""Find the rows of a dataset that contain a piece of text, forwards or backwards from a row.

A row matches when its text, as written in JSON (`{"messages": [...]}`), contains the needle, ignoring
case. JSON Lines files are searched in their raw bytes a block at a time (about a million rows a
second); other sources are searched row by row. Searches take `cancelled` so a UI thread can stop them.
"""

from __future__ import annotations

import json
from collections.abc import Callable

from tui_ft.data.sources import Cancelled, DatasetSource, JsonlSource
from tui_ft.errors import DataError

_BLOCK = 4096


def _row_text(source: DatasetSource, index: int) -> str:
    try:
        return json.dumps(source.row(index).data, ensure_ascii=False, default=str)
    except DataError as err:  # a broken row is still searchable by what it says is wrong
        return err.message


def _matcher(needle: str) -> Callable[[bytes], bool]:
    folded = needle.casefold()
    if needle.isascii():
        lowered = needle.lower().encode()
        return lambda raw: lowered in raw.lower()
    return lambda raw: folded in raw.decode("utf-8", "replace").casefold()


def find_row(
    source: DatasetSource,
    needle: str,
    start: int,
    *,
    backwards: bool = False,
    cancelled: Cancelled | None = None,
) -> int | None:
    """The first row from `start` (inclusive) on, or before it going backwards, that holds `needle`.

    Only rows already indexed are searched (`source.rows_indexed`). None when no row matches or
    when `cancelled()` said stop.
    """
    if not needle:
        return None
    total = source.rows_indexed
    if total == 0:
        return None
    start = min(max(start, 0), total - 1)
    step = -1 if backwards else 1
    if isinstance(source, JsonlSource):
        matches = _matcher(needle)
        if backwards:
            blocks = [(max(b - _BLOCK, 0), b) for b in range(start + 1, 0, -_BLOCK)]
        else:
            blocks = [(a, min(a + _BLOCK, total)) for a in range(start, total, _BLOCK)]
        for lo, hi in blocks:
            if cancelled is not None and cancelled():
                return None
            raw = source.raw_rows(lo, hi)
            order = range(len(raw) - 1, -1, -1) if backwards else range(len(raw))
            for k in order:
                if matches(raw[k]):
                    return lo + k
        return None
    folded = needle.casefold()
    stop = -1 if backwards else total
    for index in range(start, stop, step):
        if index % _BLOCK == 0 and cancelled is not None and cancelled():
            return None
        if folded in _row_text(source, index).casefold():
            return index
    return None
