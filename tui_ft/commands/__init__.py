"""The `tui-ft` commands, one module per group; each module's `register` adds its subcommands to the
parser and points them (`func`) at its `cmd_` functions, which take `(args, workspace)` and return the
exit status. `tui_ft.cli` assembles the parser and dispatches."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from tui_ft.errors import UserError


class CommandParser(argparse.ArgumentParser):
    """Usage errors exit 2 with one line and the usage, through UserError like every bad input."""

    def error(self, message: str):  # type: ignore[override]
        self.print_usage(sys.stderr)
        raise UserError(message)


def print_json(doc: Any) -> None:
    """`--json`: one JSON document on stdout."""
    print(json.dumps(doc, indent=2, default=str))
