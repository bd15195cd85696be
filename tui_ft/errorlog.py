"""The error log: the tracebacks of unexpected errors, kept in the workspace rather than on the screen.

People are told what failed in one sentence (`describe`); the traceback is appended to
`$TUI_FT_HOME/cache/errors.log` under a line saying when and what failed (`log_exception`).
"""

from __future__ import annotations

import traceback
from datetime import datetime
from pathlib import Path

from tui_ft.workspace import Workspace

ERROR_LOG = "errors.log"
MAX_LOG_BYTES = 1_000_000  # past this the log starts afresh (the previous one kept as errors.log.1)


def error_log(workspace: Workspace) -> Path:
    """Where the tracebacks of unexpected errors go."""
    return workspace.cache / ERROR_LOG


def describe(exc: BaseException) -> str:
    """An exception in one line: its type and the first line of its message."""
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__


def log_exception(workspace: Workspace, exc: BaseException, what: str) -> Path | None:
    """Append `exc`'s traceback to the workspace's error log, headed by the time and `what` failed.

    Returns the log's path, or None when it could not be written (reporting an error never raises).
    """
    path = error_log(workspace)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.exists() and path.stat().st_size > MAX_LOG_BYTES:
            path.replace(path.with_name(ERROR_LOG + ".1"))
        with path.open("a", encoding="utf-8") as log:
            log.write(f"--- {datetime.now().isoformat(timespec='seconds')} {what}\n")
            log.write("".join(traceback.format_exception(exc)))
    except OSError:
        return None
    return path
