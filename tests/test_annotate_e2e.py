"""`tui-ft annotate` end to end in a real terminal (tmux): keys in, store lines counted; and the crash
test: kill -9 of the UI while deciding loses no decision, and the command run again continues at the
right pair."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
import uuid

import pytest

from tests.conftest import tui_ft_command
from tests.test_e2e_tmux import TMUX, _alive, _tmux, _wait_for
from tui_ft.prefs.store import PreferenceStore

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed"),
]


def _start(cli_env, demo_ws, name: str) -> str:
    session = f"tui-ft-annotate-{uuid.uuid4().hex[:8]}"
    prompts = demo_ws.data / "preferences.jsonl"
    command = " ".join(
        ["exec", *tui_ft_command(), "annotate", str(prompts), "--out", name, "--annotator", "ana"]
    )
    env_args = [
        arg for key in ("TUI_FT_HOME", "HF_HUB_OFFLINE", "PATH") for arg in ("-e", f"{key}={cli_env[key]}")
    ]
    _tmux("new-session", "-d", "-s", session, "-x", "120", "-y", "36", *env_args, command)
    return session


def _lines(path) -> int:
    return len(path.read_text().splitlines()) if path.exists() else 0


def _wait_lines(path, n: int, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and _lines(path) < n:
        time.sleep(0.1)
    assert _lines(path) == n, path.read_text() if path.exists() else "no store"


def _press(session: str, key: str, store, expect_lines: int) -> None:
    _tmux("send-keys", "-t", session, key)
    _wait_lines(store, expect_lines)


def test_annotate_in_a_terminal_writes_one_line_per_key(cli_env, demo_ws):
    name = f"e2e-{uuid.uuid4().hex[:6]}"
    store = demo_ws.annotations / f"{name}.jsonl"
    session = _start(cli_env, demo_ws, name)
    try:
        _wait_for(session, "0/400 done")
        _wait_for(session, "pair 1 of 400")
        for n, key in enumerate(("1", "2", "t", "x", "s"), start=1):
            _press(session, key, store, n)
        screen = _wait_for(session, "pair 6 of 400")
        assert "5/400 done" in screen and "A 20% B 20% tie 20%" in screen
        _press(session, "u", store, 6)  # undo: a retraction appended
        _wait_for(session, "pair 5 of 400")
        _tmux("send-keys", "-t", session, "q")
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and _alive(session):
            time.sleep(0.2)
        assert not _alive(session), "tui-ft did not exit on q"
    finally:
        subprocess.run([*TMUX, "kill-session", "-t", session], capture_output=True)
    contents = PreferenceStore(store).read()
    assert [d.label for d in contents.decisions] == ["A", "B", "tie", "both_bad"] and contents.retracted == 1


def test_kill_9_while_deciding_loses_nothing_and_the_restart_continues(cli_env, demo_ws):
    name = f"crash-{uuid.uuid4().hex[:6]}"
    store = demo_ws.annotations / f"{name}.jsonl"
    session = _start(cli_env, demo_ws, name)
    try:
        _wait_for(session, "pair 1 of 400")
        for n in range(1, 8):
            _press(session, "1" if n % 2 else "2", store, n)
        pid = int(_tmux("display-message", "-p", "-t", session, "#{pane_pid}").strip())
        _tmux("send-keys", "-t", session, "1")  # one more key, and the kill right behind it
        os.kill(pid, signal.SIGKILL)
    finally:
        subprocess.run([*TMUX, "kill-session", "-t", session], capture_output=True)
    made = PreferenceStore(store).read()  # 7 or 8: every decision shown as made is on disk
    assert len(made.decisions) in (7, 8) and made.torn_lines in ([], [len(made.decisions) + 1])
    session = _start(cli_env, demo_ws, name)
    try:
        screen = _wait_for(session, f"pair {len(made.decisions) + 1} of 400")
        assert f"{len(made.decisions)}/400 done" in screen
        _press(session, "t", store, _lines(store) + 1)
        _wait_for(session, f"pair {len(made.decisions) + 2} of 400")
    finally:
        subprocess.run([*TMUX, "kill-session", "-t", session], capture_output=True)
    after = PreferenceStore(store).read()
    assert [d.id for d in after.decisions[:-1]] == [d.id for d in made.decisions]
    assert after.decisions[-1].label == "tie"
