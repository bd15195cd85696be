"""Validate rows: each row against the format the file's first readable row set, with problems per row.

`check_rows` walks a `DatasetSource` once and collects `RowProblem`s (line, field, message); it is the
row-level half of `tui-ft data check` and of the check before training.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from tui_ft.data.formats import EXAMPLES, Format, detect_format, missing_fields, validate_record
from tui_ft.data.sources import Cancelled, DatasetSource, Progress, Row
from tui_ft.errors import DataError


@dataclass(frozen=True, slots=True)
class RowProblem:
    """One thing wrong with one row."""

    line: int | None
    field: str | None
    message: str
    hint: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"line": self.line, "field": self.field, "message": self.message}


_STYLE_KEYS = ("prompt", "chosen", "completion")


class FormatTracker:
    """Checks rows one by one against the format the file's first readable row set."""

    def __init__(self) -> None:
        self.format: Format | None = None
        self.first_line: int | None = None
        self.conversational: bool | None = None

    def check(self, row: Row) -> list[RowProblem]:
        """Problems with `row`: an unknown shape, a format other than the file's, or invalid fields."""
        found = detect_format(row.data)
        if self.format is None:
            if found is None:
                keys = ", ".join(list(row.data)[:8]) or "none"
                return [
                    RowProblem(
                        row.line,
                        None,
                        f"cannot tell the format of this row from its keys ({keys}); "
                        f"expected e.g. {EXAMPLES[Format.messages]} or {EXAMPLES[Format.prompt_completion]}",
                    )
                ]
            self.format, self.first_line = found, row.line
        elif found is not self.format:
            missing = missing_fields(row.data, self.format)
            where = f"the file is in format {self.format.value} (set by line {self.first_line})"
            found_name = found.value if found is not None else "unknown"
            if missing and len(missing) < len(missing_fields({}, self.format)):
                also = f" (also {', '.join(missing[1:])})" if len(missing) > 1 else ""
                return [
                    RowProblem(
                        row.line,
                        missing[0],
                        f"required field missing{also}: the row reads as format {found_name}, but {where}",
                    )
                ]
            return [
                RowProblem(
                    row.line,
                    None,
                    f"this row is in format {found_name}, but {where}; one file holds one format",
                )
            ]
        problems = [
            RowProblem(row.line, field or None, message)
            for field, message in validate_record(row.data, self.format)
        ]
        if not problems:
            problems = self._check_style(row)
        return problems

    def _check_style(self, row: Row) -> list[RowProblem]:
        """Text and message lists do not mix in one file (an Arrow column holds one type)."""
        key = next((k for k in _STYLE_KEYS if isinstance(row.data.get(k), (str, list))), None)
        if key is None:
            return []
        conversational = isinstance(row.data[key], list)
        if self.conversational is None:
            self.conversational, self._style_line = conversational, row.line
            return []
        if conversational == self.conversational:
            return []
        this, other = ("a message list", "text") if conversational else ("text", "message lists")
        return [
            RowProblem(
                row.line,
                key,
                f"{this} here, but the rows from line {self._style_line} hold {other}; "
                "one file holds text or conversations, not both",
            )
        ]


class CheckCancelled(Exception):
    """A check stopped because its `cancelled()` callback said so."""


def check_rows(
    source: DatasetSource,
    *,
    on_valid: Callable[[Row, Format], Iterable[RowProblem] | None] | None = None,
    max_errors: int = 200,
    progress: Progress | None = None,
    cancelled: Cancelled | None = None,
) -> tuple[Format | None, int, list[RowProblem], int]:
    """Validate every row: (format, rows, the first `max_errors` problems, total problem count).

    `on_valid(row, format)` is called for each valid row and may return more problems with it.
    File-level problems raise DataError. Every 4096 rows, `progress(rows)` is called and
    `cancelled()` asked; when it says stop, CheckCancelled is raised.
    """
    tracker = FormatTracker()
    problems: list[RowProblem] = []
    total = rows = 0
    for item in source.scan():
        if rows & 4095 == 4095:
            if progress is not None:
                progress(rows + 1)
            if cancelled is not None and cancelled():
                raise CheckCancelled()
        if isinstance(item, DataError):
            rows += 1
            found = [RowProblem(item.line, item.field, item.message, item.hint)]
        else:
            rows += 1
            found = tracker.check(item)
            if not found and on_valid is not None and tracker.format is not None:
                found = list(on_valid(item, tracker.format) or ())
        total += len(found)
        if len(problems) < max_errors:
            problems.extend(found[: max_errors - len(problems)])
    return tracker.format, rows, problems, total
