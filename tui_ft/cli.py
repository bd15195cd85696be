"""The `tui-ft` command: assembles the parser from `tui_ft.commands`, dispatches, reports errors.

Exit status: 0 success, 1 the work failed, 2 bad usage or bad input. No traceback reaches the screen:
errors are sentences naming the file, line and field; unexpected ones are logged to the workspace.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from tui_ft import __version__
from tui_ft.commands import (
    CommandParser,
    cache,
    data,
    demo,
    eval,
    export,
    generate,
    info,
    prefs,
    runs,
    sweep,
    train,
)
from tui_ft.errors import UserError, WorkFailed
from tui_ft.workspace import Workspace

# In the order `tui-ft --help` lists them.
COMMAND_GROUPS = (demo, data, train, runs, sweep, eval, export, generate, prefs, info, cache)
# A lone argument with one of these endings names a data file to open (`tui-ft FILE`).
DATA_SUFFIXES = (".jsonl", ".json", ".csv", ".parquet", ".pq", ".jsonl.gz", ".json.gz", ".csv.gz")


def build_parser() -> argparse.ArgumentParser:
    p = CommandParser(
        prog="tui-ft",
        usage="tui-ft [-h] [--version] [COMMAND ... | FILE]",
        description="A terminal workbench for fine-tuning language models. Without a command it opens the "
        "UI; `tui-ft FILE` opens it on the Datasets screen with the data file FILE open.",
    )
    p.add_argument("--version", action="version", version=f"tui-ft {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=CommandParser)
    for group in COMMAND_GROUPS:
        group.register(sub)
    return p


def data_file_argument(argv: list[str], commands: set[str]) -> str | None:
    """`tui-ft FILE`: the one argument when it is a file (or looks like a data file) and no command;
    its absolute path, as the Datasets screen takes it. A data file name that is not there is a usage
    error (exit 2) naming it; anything else is left to the parser."""
    if len(argv) != 1 or argv[0].startswith("-") or argv[0] in commands:
        return None
    path = Path(argv[0]).expanduser()
    if path.is_file():
        return str(path.resolve())
    if argv[0].lower().endswith(DATA_SUFFIXES):
        raise UserError(
            "no such file", path=argv[0], field="FILE", hint="tui-ft FILE opens a data file in the UI"
        )
    return None


def run(argv: list[str] | None = None) -> int:
    parser = build_parser()
    given = sys.argv[1:] if argv is None else argv
    commands = {
        name
        for action in parser._actions
        if isinstance(action, argparse._SubParsersAction)
        for name in action.choices
    }
    data_file = data_file_argument(given, commands)
    ws = Workspace.default()
    if data_file is not None:
        from tui_ft.ui.app import run_app

        return run_app(ws, start_mode="datasets", open_path=data_file)
    args = parser.parse_args(argv)
    if args.command is None:
        from tui_ft.ui.app import run_app

        return run_app(ws)
    return args.func(args, ws)


def main(argv: list[str] | None = None) -> int:
    try:
        return run(argv)
    except UserError as exc:
        print(f"tui-ft: {exc}", file=sys.stderr)
        return exc.exit_status
    except WorkFailed as exc:
        print(f"tui-ft: {exc}", file=sys.stderr)
        return exc.exit_status
    except KeyboardInterrupt:
        print("tui-ft: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0
    except Exception as exc:  # noqa: BLE001 - translated here; the traceback goes to a log file
        return _report_unexpected(exc, sys.argv[1:] if argv is None else argv)


def _report_unexpected(exc: BaseException, argv: list[str]) -> int:
    """Say what failed in a sentence; append the traceback to the workspace's error log (`errorlog`)."""
    from tui_ft.engine.errors import translate_exception
    from tui_ft.errorlog import log_exception

    failure = translate_exception(exc)
    log = log_exception(Workspace.default(), exc, " ".join(["tui-ft", *argv]))
    print(f"tui-ft: {failure}", file=sys.stderr)
    if log:
        print(f"  details: {log}", file=sys.stderr)
    return 1
