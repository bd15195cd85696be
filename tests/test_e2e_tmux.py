"""End to end in a real terminal: `tui-ft demo` under tmux, driven by keys, read from the screen."""

from __future__ import annotations

import shutil
import subprocess
import time
import uuid

import pytest

from tests.conftest import tui_ft_command

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed"),
]


def _tmux(*args: str) -> str:
    return subprocess.run(["tmux", *args], capture_output=True, text=True, check=True).stdout


def _screen(session: str) -> str:
    return _tmux("capture-pane", "-p", "-t", session)


def _alive(session: str) -> bool:
    return subprocess.run(["tmux", "has-session", "-t", session], capture_output=True).returncode == 0


def _wait_for(session: str, text: str, timeout: float = 60.0) -> str:
    deadline = time.monotonic() + timeout
    screen = ""
    while time.monotonic() < deadline:
        screen = _screen(session)
        if text in screen:
            return screen
        time.sleep(0.2)
    raise AssertionError(f"{text!r} did not appear within {timeout:.0f} s; the screen shows:\n{screen}")


def _type_path(session: str, path: str, attempts: int = 3) -> None:
    """`o` (open) then the path, as a person would: look that it landed in the path box, else again.
    (Keys sent while a mode switch is still settling can reach the screen before its focus does.)"""
    for _ in range(attempts):
        _tmux("send-keys", "-t", session, "o")
        time.sleep(0.3)
        _tmux("send-keys", "-t", session, "-l", path)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if any(line.startswith(path) for line in _screen(session).splitlines()):
                return
            time.sleep(0.2)
        _tmux("send-keys", "-t", session, "Escape")
    raise AssertionError(f"{path!r} never reached the path box; the screen shows:\n{_screen(session)}")


def test_demo_opens_the_ui_and_browses_the_sample_chat(cli_env, demo_ws):
    session = f"tui-ft-e2e-{uuid.uuid4().hex[:8]}"
    command = " ".join([*tui_ft_command(), "demo"])
    env_args = [
        arg for key in ("TUI_FT_HOME", "HF_HUB_OFFLINE", "PATH") for arg in ("-e", f"{key}={cli_env[key]}")
    ]
    _tmux("new-session", "-d", "-s", session, "-x", "100", "-y", "30", *env_args, command)
    try:
        _wait_for(session, "1 Datasets")
        _tmux("send-keys", "-t", session, "3")  # another place first, then back by key
        _wait_for(session, "words of the id, method, model or state")  # the Runs list
        _tmux("send-keys", "-t", session, "1")
        _wait_for(session, "files in")
        _type_path(session, "chat.jsonl")
        _tmux("send-keys", "-t", session, "Enter")
        screen = _wait_for(session, "no errors")
        assert "format messages" in screen
        assert "400 rows" in screen
        first = (demo_ws.data / "chat.jsonl").read_text().splitlines()[0]
        assert "What is 2 times 6?" in first
        assert "user: What is 2 times 6?" in screen
        _tmux("send-keys", "-t", session, "Enter")  # the first row, turn by turn
        screen = _wait_for(session, "row 0 · line 1")
        assert "assistant" in screen and "2 times 6 is 12." in screen
        _tmux("send-keys", "-t", session, "q")  # quits: the command ends and so does the session
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and _alive(session):
            time.sleep(0.2)
        assert not _alive(session), "tui-ft did not exit on q"
    finally:
        subprocess.run(["tmux", "kill-session", "-t", session], capture_output=True)
