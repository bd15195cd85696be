"""Two worlds, one direction: domain modules import neither textual nor the training stack on load,
so the UI starts fast and the command line answers at once."""

from __future__ import annotations

import pkgutil
import subprocess
import sys

import pytest

HEAVY = ["torch", "transformers", "trl", "peft", "bitsandbytes", "datasets", "accelerate", "textual"]
TRAINING_STACK = [m for m in HEAVY if m != "textual"]

# The only modules allowed a heavy import at load, and which: keep this list short and say why.
HEAVY_ALLOWED = {
    # The Textual app: every module under ui/ builds widgets, so it imports textual (never the training stack).
    "tui_ft.ui": {"textual"},
    # Subclasses transformers.TrainerCallback at class definition; only the training process imports it.
    "tui_ft.engine.callbacks": set(TRAINING_STACK),
}
# `python -m tui_ft`: importing it runs the command line (tui_ft.cli itself is checked).
NOT_IMPORTABLE = {"tui_ft.__main__"}


def package_modules() -> list[str]:
    """Every module of the package, found by walking it, so a new module is checked without a list."""
    import tui_ft

    return sorted(
        m.name for m in pkgutil.walk_packages(tui_ft.__path__, "tui_ft.") if m.name not in NOT_IMPORTABLE
    )


def allowed_heavy(module: str) -> set[str]:
    return next(
        (
            allowed
            for prefix, allowed in HEAVY_ALLOWED.items()
            if module == prefix or module.startswith(prefix + ".")
        ),
        set(),
    )


@pytest.mark.parametrize("module", package_modules())
def test_module_imports_nothing_heavy(module):
    code = (
        f"import sys, {module}\nheavy = [m for m in {HEAVY!r} if m in sys.modules]\nprint(','.join(heavy))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.strip()
    unexpected = sorted(set(out.split(",") if out else []) - allowed_heavy(module))
    assert unexpected == [], f"{module} imports {','.join(unexpected)} at load time"


def test_the_walk_finds_every_module():
    """The walk sees the whole package (subpackages included), and every exception names a real module."""
    modules = package_modules()
    assert {"tui_ft.cli", "tui_ft.estimate", "tui_ft.engine.runner", "tui_ft.ui.widgets.shell"} <= set(
        modules
    )
    for prefix in HEAVY_ALLOWED:
        assert any(m == prefix or m.startswith(prefix + ".") for m in modules), prefix


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
