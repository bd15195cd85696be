"""What the first screen costs, held structurally (no timings): when the app's first frame is drawn, the
process has imported only what the Datasets screen shows. The other places' screens are imported when
the user first goes there, the command palette's commands when it opens, the Datasets screen's hidden
views just after the first frame, and the libraries of later actions where those actions run
(`bench/ui_startup.py` measures the time itself)."""

from __future__ import annotations

import json
import pkgutil
import subprocess
import sys

import pytest

from tui_ft.ui.app import TuiFtApp

# Started as `tui-ft` starts it, headless; prints the modules imported once the first frame is drawn.
CHILD = """
import json, sys
from pathlib import Path
from tui_ft.ui.app import TuiFtApp
from tui_ft.workspace import Workspace

class FirstFrame(TuiFtApp):
    def on_ready(self):
        print(json.dumps(sorted(sys.modules)), flush=True)
        self.exit()

FirstFrame(Workspace(Path(sys.argv[1]))).run(headless=True, size=(100, 30))
"""

# Modules of later actions: the training stack, the recipe schema, charts, templates, the hub, data
# files other than JSON Lines, tokenizers, and Textual's TextArea (with its syntax highlighting).
LATER_LIBRARIES = [
    "torch",
    "transformers",
    "trl",
    "peft",
    "datasets",
    "accelerate",
    "tokenizers",
    "huggingface_hub",
    "pyarrow",
    "numpy",
    "yaml",
    "jinja2",
    "pydantic",
    "plotext",
    "textual_plotext",
    "optuna",
    "textual.widgets._text_area",
    "tree_sitter",
]
# tui-ft's own modules that the first screen does not need
LATER_MODULES = [
    "tui_ft.ui.commands",  # the command palette's provider, imported when the palette opens
    "tui_ft.ui.widgets.row_view",  # the Datasets screen's Row and Tokens tabs, mounted after the frame
    "tui_ft.ui.widgets.token_view",
    "tui_ft.data.checks",  # checking and searching a dataset, imported by their workers
    "tui_ft.data.search",
    "tui_ft.recipe",
    "tui_ft.inference.client",
]


def other_places() -> list[str]:
    """Every screen module but the first screen's (found by walking the package: a new one is covered)."""
    import tui_ft.ui.screens

    return sorted(
        m.name
        for m in pkgutil.iter_modules(tui_ft.ui.screens.__path__, "tui_ft.ui.screens.")
        if m.name != "tui_ft.ui.screens.datasets"
    )


def test_the_first_frame_imports_only_the_first_screen(demo_ws):
    out = subprocess.run(
        [sys.executable, "-c", CHILD, str(demo_ws.root)],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    ).stdout
    loaded = set(json.loads(next(line for line in out.splitlines() if line.startswith("["))))
    assert "tui_ft.ui.screens.datasets" in loaded  # the probe saw the first screen
    assert other_places(), "no other places found: the walk is broken"
    early = sorted(m for m in [*other_places(), *LATER_MODULES, *LATER_LIBRARIES] if m in loaded)
    assert early == [], f"imported before the first frame was drawn: {', '.join(early)}"


@pytest.mark.anyio
async def test_the_hidden_views_are_there_once_the_first_frame_is_drawn(demo_ws):
    from tui_ft.ui.widgets.row_view import RowView
    from tui_ft.ui.widgets.token_view import TokenPanel

    app = TuiFtApp(demo_ws)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        screen = app.screen
        assert isinstance(screen.query_one("#tab-row").query_one("#ds-row"), RowView)
        assert isinstance(screen.query_one("#tab-tokens").query_one("#ds-tokens"), TokenPanel)
