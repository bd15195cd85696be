"""Errors meant for people: each one renders as one line naming where the problem is."""

from __future__ import annotations

from pathlib import Path


class UserError(Exception):
    """Bad usage or bad input: the command exits with status 2 and prints `str(error)`, no traceback.

    Renders as `path:line: field: message` with the parts that apply, followed by a hint line if given.
    """

    exit_status = 2

    def __init__(
        self,
        message: str,
        *,
        path: str | Path | None = None,
        line: int | None = None,
        field: str | None = None,
        hint: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.path = str(path) if path is not None else None
        self.line = line
        self.field = field
        self.hint = hint

    def location(self) -> str:
        """`path:line` (or the part that is known), empty when neither is."""
        if self.path and self.line is not None:
            return f"{self.path}:{self.line}"
        if self.path:
            return self.path
        if self.line is not None:
            return f"line {self.line}"
        return ""

    def __str__(self) -> str:
        parts = [p for p in (self.location(), self.field) if p]
        head = ": ".join([*parts, self.message])
        return f"{head}\n  hint: {self.hint}" if self.hint else head


class DataError(UserError):
    """A dataset that cannot be read or does not fit what was asked of it."""


class RecipeError(UserError):
    """A recipe that does not validate."""


class NotFoundError(UserError):
    """A model, run or file reference that does not resolve."""


class WorkFailed(Exception):
    """The work itself failed (training, generation): exit status 1 with a sentence and a hint."""

    exit_status = 1

    def __init__(self, message: str, *, kind: str = "error", hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.kind = kind
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message}\n  hint: {self.hint}" if self.hint else self.message
