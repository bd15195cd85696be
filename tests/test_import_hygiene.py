"""Two worlds, one direction: domain modules import neither textual nor the training stack on load,
so the UI starts fast and the command line answers at once."""

from __future__ import annotations

import subprocess
import sys

import pytest

LIGHT_MODULES = [
    "tui_ft.cli",
    "tui_ft.recipe",
    "tui_ft.modelref",
    "tui_ft.workspace",
    "tui_ft.training_fields",
    "tui_ft.data.formats",
    "tui_ft.data.sources",
    "tui_ft.data.validation",
    "tui_ft.data.training",
    "tui_ft.data.checks",
    "tui_ft.data.search",
    "tui_ft.runs.rundir",
    "tui_ft.runs.prepare",
    "tui_ft.runs.launcher",
    "tui_ft.runs.history",
    "tui_ft.monitor.system",
    "tui_ft.monitor.recorder",
    "tui_ft.engine.errors",
    "tui_ft.engine.stack",
    "tui_ft.engine.hardware",
    "tui_ft.engine.watchdog",
    "tui_ft.engine.rewards",
    "tui_ft.estimate",
    "tui_ft.engine.methods",
    "tui_ft.engine.models",
    "tui_ft.inference.generate",
    "tui_ft.inference.export",
    "tui_ft.demo",
]
HEAVY = ["torch", "transformers", "trl", "peft", "bitsandbytes", "datasets", "accelerate", "textual"]


@pytest.mark.parametrize("module", LIGHT_MODULES)
def test_module_imports_nothing_heavy(module):
    code = (
        f"import sys, {module}\nheavy = [m for m in {HEAVY!r} if m in sys.modules]\nprint(','.join(heavy))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert out == "", f"{module} imports {out} at load time"


def test_domain_never_imports_textual():
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent / "tui_ft"
    offenders = [
        str(p.relative_to(root))
        for p in root.rglob("*.py")
        if "ui" not in p.relative_to(root).parts[:1]
        and "textual" in p.read_text()
        and ("import textual" in p.read_text() or "from textual" in p.read_text())
    ]
    assert offenders == []


def test_ui_app_imports_no_training_stack():
    """The UI imports textual, of course, but none of the training stack: start-up stays fast."""
    stack = ["torch", "transformers", "trl", "peft", "datasets", "bitsandbytes", "accelerate"]
    code = f"import sys, tui_ft.ui.app\nprint(','.join(m for m in {stack!r} if m in sys.modules))\n"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert out == "", f"tui_ft.ui.app imports {out} at load time"
