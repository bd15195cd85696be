"""`tui-ft demo`: build the demo model and sample data, then open the UI."""

from __future__ import annotations

import argparse
import time

from tui_ft.workspace import Workspace


def register(sub: argparse._SubParsersAction) -> None:
    demo = sub.add_parser("demo", help="build the demo model and sample data (once), then open the UI")
    demo.add_argument("--prepare-only", action="store_true", help="build and exit")
    demo.add_argument("--force", action="store_true", help="rebuild even if present")
    demo.set_defaults(func=cmd_demo)


def cmd_demo(args, ws: Workspace) -> int:
    from tui_ft.demo import build_demo

    t0 = time.perf_counter()
    built = build_demo(ws.ensure(), force=args.force)
    took = time.perf_counter() - t0
    verb = "built" if built.built else "already present"
    print(f"demo model {verb}: {built.model_dir}" + (f" ({took:.1f} s)" if built.built else ""))
    for name, path in built.datasets.items():
        print(f"  sample data {name:<18} {path}")
    print(f"workspace: {ws.root}")
    if args.prepare_only:
        return 0
    from tui_ft.ui.app import run_app

    return run_app(ws, start_mode="datasets")
