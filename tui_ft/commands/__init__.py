"""The `tui-ft` commands, one module per group; each module's `register` adds its subcommands to the
parser and points them (`func`) at its `cmd_` functions, which take `(args, workspace)` and return the
exit status. `tui_ft.cli` assembles the parser and dispatches."""

from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING, Any, NoReturn

from tui_ft.errors import UserError

if TYPE_CHECKING:
    from rich.console import Console

    from tui_ft.workspace import Workspace

# Piped output is never wrapped: a table is as wide as its widest row and a line as long as it is, so
# a command printed in it pastes whole and a description reads in full (`grep`, `less -S`, files).
PIPED_WIDTH = 10_000


class CommandParser(argparse.ArgumentParser):
    """Usage errors exit 2 with one line and the usage, through UserError like every bad input."""

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        raise UserError(message)


def require_run_status(ws: Workspace, ref: str) -> None:
    """A command given a run as a model (`RUN` or `RUN:checkpoint-N`) exits 2 naming the run's
    status.json when it cannot be read, as every command that takes a run does."""
    run_part = ref.strip().partition(":")[0]
    if run_part and "/" not in run_part and "\\" not in run_part and (ws.runs / run_part).is_dir():
        from tui_ft.runs.registry import require_status
        from tui_ft.runs.rundir import RunDir

        require_status(RunDir(ws.runs / run_part))


def output_console(*, stderr: bool = False) -> Console:
    """The Rich console a command prints through. In a terminal, prose wraps at its width (lines that
    are commands are printed with `soft_wrap=True`: never broken); piped or redirected, nothing wraps
    (`PIPED_WIDTH`, soft wrap on), so every line comes out whole."""
    from rich.console import Console

    console = Console(stderr=stderr)
    if console.is_terminal:
        return console
    return Console(stderr=stderr, width=PIPED_WIDTH, soft_wrap=True)


def print_command(console: Console, text: str) -> None:
    """A line that holds a command (a hint to paste): no markup, no highlighting, never wrapped."""
    console.print(text, markup=False, highlight=False, soft_wrap=True)


def print_json(doc: Any) -> None:
    """`--json`: one JSON document on stdout."""
    print(json.dumps(doc, indent=2, default=str))
