"""Token lengths of a dataset's first rows, as the trainer would see them: one function for the Datasets
token view's histogram and Configure's padding share (and whatever else measures a sample of lengths).

No libraries: the tokenizer is given (loading one imports transformers; callers do that on a worker).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from itertools import islice
from typing import Any

from tui_ft.data.checks import token_length
from tui_ft.data.formats import Format, detect_format, normalise
from tui_ft.data.sources import Row
from tui_ft.errors import DataError

SAMPLE_ROWS = 2000  # rows measured (the first ones of the file): enough for a histogram and a share
DETECT_ROWS = 20  # rows looked at for the format when it is not given


@dataclass(frozen=True)
class Lengths:
    """The token lengths of the rows measured (broken rows have none), and the format they were read as."""

    format: Format
    lengths: list[int]
    sample_limit: int = SAMPLE_ROWS

    @property
    def sampled(self) -> bool:
        """Only the first rows were measured (the file may have more)."""
        return len(self.lengths) >= self.sample_limit


def detect(rows: list[Row | DataError]) -> Format | None:
    """The format of the first rows that say which (`None`: none does)."""
    return next(
        (f for row in rows[:DETECT_ROWS] if isinstance(row, Row) and (f := detect_format(row.data))), None
    )


def token_lengths(
    rows: Iterable[Row | DataError],
    tokenizer: Any,
    fmt: Format | None = None,
    *,
    limit: int = SAMPLE_ROWS,
    cancelled: Callable[[], bool] | None = None,
) -> Lengths | None:
    """The token lengths of the first `limit` of `rows` read as `fmt` (detected from the first rows when
    not given) and tokenized by `tokenizer` as `data.checks.token_length` does (chat template, EOS).
    Rows that cannot be read or rendered are skipped (the data check lists them). None when `cancelled()`
    says stop. Raises DataError when no row says which format the data is in."""
    head = list(islice(rows, limit))
    if fmt is None:
        fmt = detect(head)
        if fmt is None:
            raise DataError("cannot tell the data's format from its first rows (set data.format)")
    lengths: list[int] = []
    for row in head:
        if cancelled is not None and cancelled():
            return None
        if isinstance(row, DataError):
            continue
        try:
            lengths.append(token_length(normalise(row.data, fmt), fmt, tokenizer))
        except (DataError, KeyError, TypeError, ValueError):
            continue  # a broken row is listed among the errors; it has no length
    return Lengths(fmt, lengths, limit)
