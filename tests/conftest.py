"""Shared fixtures: one demo workspace per test session (the demo model is built once, in seconds)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from tui_ft.workspace import Workspace

# Tests never reach a hub: a hub lookup would wait for network time-outs instead of failing fast.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")


@pytest.fixture(scope="session")
def demo_ws(tmp_path_factory) -> Workspace:
    """A workspace with the demo model and sample data built."""
    from tui_ft.demo import build_demo

    ws = Workspace(tmp_path_factory.mktemp("home")).ensure()
    build_demo(ws)
    return ws


@pytest.fixture()
def cli_env(demo_ws) -> dict[str, str]:
    """Environment for running the real `tui-ft` command against the demo workspace."""
    env = dict(os.environ)
    env["TUI_FT_HOME"] = str(demo_ws.root)
    env["PYTHONUNBUFFERED"] = "1"
    return env


def tui_ft_command() -> list[str]:
    """The installed console script when present, else the module (same code)."""
    script = Path(sys.executable).parent / "tui-ft"
    return [str(script)] if script.exists() else [sys.executable, "-m", "tui_ft"]
