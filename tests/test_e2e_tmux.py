"""End to end in a real terminal: `tui-ft demo` and `tui-ft chat` under tmux, driven by keys, read from
the screen.

tmux comes with the project's own set-up on a fresh machine (`scripts/setup` installs it when it runs as
root), so in CI these tests run rather than skip; on a machine without it they skip with the reason."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
import uuid

import pytest

from tests.conftest import tui_ft_command

pytestmark = pytest.mark.slow


@pytest.fixture(autouse=True)
def _tmux_installed() -> None:
    """Skip without tmux, except where it must be there (`scripts/test` as root, i.e. CI, installs
    it and sets TUI_FT_REQUIRE_TMUX=1): there a missing tmux fails rather than silently skipping."""
    if shutil.which("tmux") is None:
        if os.environ.get("TUI_FT_REQUIRE_TMUX") == "1":
            pytest.fail(
                "tmux is not installed, and TUI_FT_REQUIRE_TMUX=1 requires it (scripts/setup installs it as root)"
            )
        pytest.skip("tmux is not installed (scripts/setup installs it when run as root)")


# A tmux server of this test run's own: no ~/.tmux.conf, and no sessions or options of another test
# run's server on the same machine.
TMUX = ["tmux", "-L", f"tui-ft-e2e-{os.getpid()}", "-f", os.devnull]


def _tmux(*args: str) -> str:
    return subprocess.run([*TMUX, *args], capture_output=True, text=True, check=True).stdout


def _screen(session: str) -> str:
    return _tmux("capture-pane", "-p", "-t", session)


def _alive(session: str) -> bool:
    return subprocess.run([*TMUX, "has-session", "-t", session], capture_output=True).returncode == 0


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


def _start(cli_env: dict[str, str], *args: str) -> str:
    """`tui-ft ARGS` in a new detached 100x30 tmux session; the session's name."""
    session = f"tui-ft-e2e-{uuid.uuid4().hex[:8]}"
    # COLUMNS / LINES (this test process has them, 80 and 24, and tmux hands its environment on) would
    # override the terminal's real size for the app
    command = " ".join(["env", "-u", "COLUMNS", "-u", "LINES", *tui_ft_command(), *args])
    keys = ("TUI_FT_HOME", "HF_HUB_OFFLINE", "PATH", "PYTHONPATH")
    env_args = [arg for key in keys if key in cli_env for arg in ("-e", f"{key}={cli_env[key]}")]
    _tmux("new-session", "-d", "-s", session, "-x", "100", "-y", "30", *env_args, command)
    return session


def _wait_until(session: str, condition, what: str, timeout: float = 60.0) -> str:
    deadline = time.monotonic() + timeout
    screen = ""
    while time.monotonic() < deadline:
        screen = _screen(session)
        if condition(screen):
            return screen
        time.sleep(0.2)
    raise AssertionError(f"{what} did not happen within {timeout:.0f} s; the screen shows:\n{screen}")


def _quit(session: str) -> None:
    _tmux("send-keys", "-t", session, "q")  # quits: the command ends and so does the session
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and _alive(session):
        time.sleep(0.2)
    assert not _alive(session), f"tui-ft did not exit on q; the screen shows:\n{_screen(session)}"


def test_demo_opens_the_ui_and_browses_the_sample_chat(cli_env, demo_ws):
    session = _start(cli_env, "demo")
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
        _quit(session)
    finally:
        subprocess.run([*TMUX, "kill-session", "-t", session], capture_output=True)


def _set_max_new_tokens(session: str, value: str, attempts: int = 3) -> None:
    """ctrl+t, then Tab to max_new_tokens and type, as a person does: one key at a time, looking that
    the value landed in that field (keys sent in one batch with a focus move can reach the field before
    it), else Escape and again."""
    for _ in range(attempts):
        _tmux("send-keys", "-t", session, "C-t")  # the settings: system prompt, then the numbers
        _wait_for(session, "Chat settings")
        for _ in range(4):  # system prompt -> temperature -> top_p -> top_k -> max_new_tokens
            _tmux("send-keys", "-t", session, "Tab")
            time.sleep(0.3)
        for _ in range(6):  # clear the field
            _tmux("send-keys", "-t", session, "BSpace")
        time.sleep(0.3)
        _tmux("send-keys", "-t", session, "-l", value)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            line = next((x for x in _screen(session).splitlines() if "max_new_tokens" in x), "")
            if value in line:
                return
            time.sleep(0.2)
        _tmux("send-keys", "-t", session, "Escape")  # the dialog closes unchanged; try again
        _wait_until(session, lambda s: "Chat settings" not in s, "closing the settings")
    raise AssertionError(f"max_new_tokens never took {value}; the screen shows:\n{_screen(session)}")


def test_chat_replies_and_escape_stops_a_long_reply(cli_env, demo_ws):
    """`tui-ft chat demo-tiny`: the model line says it loaded; a prompt gets a streamed reply with its
    token count; with max_new_tokens raised to 2000 in the settings, Escape stops the next reply."""
    session = _start(cli_env, "chat", "demo-tiny")
    try:
        screen = _wait_for(session, "params", timeout=180)  # ` demo-tiny  cpu · float32 · 417.2K params`
        model_line = next(line for line in screen.splitlines() if "params" in line)
        assert "demo-tiny" in model_line and "loading" not in model_line
        _tmux("send-keys", "-t", session, "-l", "What is the capital of Korvath?")
        _wait_for(session, "What is the capital of Korvath?")
        _tmux("send-keys", "-t", session, "Enter")
        screen = _wait_for(session, "tok/s", timeout=120)  # the reply's line: `256 tokens · 80.1 tok/s`
        stats = next(line for line in screen.splitlines() if "tok/s" in line)
        assert " tokens · " in stats and "stopped" not in stats
        assert "╰" in stats  # on the reply box's lower edge

        _set_max_new_tokens(session, "2000")
        _tmux("send-keys", "-t", session, "Enter")  # applies
        _wait_until(session, lambda s: "Chat settings" not in s, "closing the settings")

        _tmux("send-keys", "-t", session, "-l", "Tell me a long story.")
        _wait_for(session, "Tell me a long story.")
        _tmux("send-keys", "-t", session, "Enter")
        _wait_for(session, "Enter sends")  # sent: the prompt is empty again, the new reply box is there
        # it shows `…` until its first piece comes
        # (below the header, whose workspace path may end in `…` too)
        _wait_until(session, lambda s: "…" not in s.split("\n", 2)[-1], "the reply streaming", timeout=120)
        _tmux("send-keys", "-t", session, "Escape")
        screen = _wait_for(session, "stopped", timeout=60)
        stopped = re.search(r"(\d+) tokens? · .*stopped", screen)
        assert stopped is not None, screen
        assert 0 < int(stopped.group(1)) < 2000
        _tmux("send-keys", "-t", session, "Escape")  # from the prompt to the conversation: q quits
        time.sleep(0.5)  # (Escape and q sent together read as alt+q)
        _quit(session)
    finally:
        subprocess.run([*TMUX, "kill-session", "-t", session], capture_output=True)
