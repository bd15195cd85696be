"""Shared fixtures: one demo workspace per test session (the demo model is built once, in seconds), a home
folder per test for screens that show paths, and the environment for running the real `tui-ft` command."""

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
def home(tmp_path, monkeypatch) -> Path:
    """A home folder of this test's own, with $HOME pointing at it.

    The UI writes paths under the home folder as `~/...`, so a workspace placed in it (see
    `workspace_in`) reads the same on every machine, whatever TMPDIR is and however many test runs go
    at once: what snapshot tests need."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    return home


def workspace_in(home: Path) -> Path:
    """Where a workspace goes in `home`: the default place on Linux, so screens read as a user's do."""
    return home / ".local" / "share" / "tui-ft"


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
