"""The `tui-ft` command: assembles the parser from `tui_ft.commands`, dispatches, reports errors.

Exit status: 0 success, 1 the work failed, 2 bad usage or bad input. No traceback reaches the screen:
errors are sentences naming the file, line and field; unexpected ones are logged to the workspace.
"""

from __future__ import annotations

import argparse
import sys

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


def build_parser() -> argparse.ArgumentParser:
    p = CommandParser(prog="tui-ft", description="A terminal workbench for fine-tuning language models.")
    p.add_argument("--version", action="version", version=f"tui-ft {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=CommandParser)
    for group in COMMAND_GROUPS:
        group.register(sub)
    return p


def run(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    ws = Workspace.default()
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
