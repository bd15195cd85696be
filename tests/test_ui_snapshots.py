"""Snapshots of every place at 80x24 and at 160x48 (Textual is pinned; cursor blink off): Datasets,
Configure, Runs (the list and a dashboard), Annotate and Chat.

The workspace sits in the test's own home folder ($HOME points there; the header writes it as
`~/.local/share/tui-ft`), and the GPU summary is fixed to the no-GPU answer, so the header reads the
same on every machine, with any TMPDIR, and in parallel runs. Regenerate after a deliberate change:
`pytest tests/test_ui_snapshots.py --snapshot-update`, then look at the SVGs before committing them.
"""

from __future__ import annotations

import pytest
from textual.widgets import Input

from tests.conftest import NO_GPU, workspace_in
from tui_ft.ui.app import TuiFtApp
from tui_ft.workspace import Workspace

SIZE = (80, 24)
SIZES = pytest.mark.parametrize("size", [(80, 24), (160, 48)], ids=lambda s: f"{s[0]}x{s[1]}")


class SnapshotApp(TuiFtApp):
    """The app with the machine-dependent GPU line fixed to what a machine without a GPU shows."""

    def _sample_gpu(self) -> None:
        self.post_message(self.GpuSampled(NO_GPU))


@pytest.fixture
def snapshot_ws(demo_ws, home) -> Workspace:
    """A workspace in the test's home folder with the session demo's models and data (links: the demo is
    built once; the sample files copied) and nothing else: the annotation sessions, chats and runs other tests leave in the demo
    workspace never reach a snapshot."""
    import shutil

    from tui_ft.demo import GENERAL_TEXT_FILE, SAMPLE_FILES

    root = workspace_in(home)
    (root / "data").mkdir(parents=True)
    (root / "models").symlink_to(demo_ws.models)
    for name in [*SAMPLE_FILES.values(), GENERAL_TEXT_FILE]:  # the samples alone: other tests add files
        shutil.copyfile(demo_ws.data / name, root / "data" / name)
    return Workspace(root).ensure()


async def _settle(pilot) -> None:
    """Wait until the dataset is checked and the GPU line is drawn; stop the cursors blinking."""
    app = pilot.app
    for _ in range(400):
        screen = app.screen
        checked = not hasattr(screen, "report") or screen.source is None or screen.report is not None
        ready = checked and "checking" not in app.gpu_summary
        if ready:
            break
        await pilot.pause(0.05)
    for widget in app.screen.query(Input):
        widget.cursor_blink = False
    await pilot.pause()


@SIZES
def test_datasets_rows(snap_compare, snapshot_ws, size):
    app = SnapshotApp(snapshot_ws, open_path="chat.jsonl")
    assert snap_compare(app, terminal_size=size, run_before=_settle, press=["down", "down"])


def test_datasets_preference_row(snap_compare, snapshot_ws):
    app = SnapshotApp(snapshot_ws, open_path="preferences.jsonl")
    assert snap_compare(app, terminal_size=SIZE, run_before=_settle, press=["enter"])


def test_datasets_no_dataset_yet(snap_compare, snapshot_ws):
    app = SnapshotApp(snapshot_ws)
    assert snap_compare(app, terminal_size=SIZE, run_before=_settle)


def test_shell_annotate_placeholder(snap_compare, snapshot_ws):
    app = SnapshotApp(snapshot_ws, start_mode="annotate")
    assert snap_compare(app, terminal_size=SIZE, run_before=_settle)


# --- Configure ------------------------------------------------------------------------------------


@SIZES
def test_configure(snap_compare, snapshot_ws, size):
    from tests.conftest import until
    from tui_ft.training_fields import training_fields

    training_fields("sft", cache_dir=snapshot_ws.cache)  # the form's TRL field table, read beforehand
    app = SnapshotApp(snapshot_ws, start_mode="configure")

    async def run_before(pilot) -> None:
        await until(pilot, lambda: getattr(pilot.app.screen, "last_estimate", None) is not None, timeout=60)
        # the padding line measured (not "measuring…"): the same picture every time
        await until(
            pilot, lambda: "measuring" not in (pilot.app.screen.padding_text or "measuring"), timeout=60
        )
        await _settle(pilot)

    assert snap_compare(app, terminal_size=size, run_before=run_before)


# --- Runs -----------------------------------------------------------------------------------------


@pytest.fixture
def utc(monkeypatch):
    """Start times are written in local time: the snapshots' is UTC on every machine."""
    import time

    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def _recorded_runs(ws: Workspace) -> None:
    from tests.test_ui_runs import OOM_ERROR, record_run

    record_run(ws, "20261122-080000-sft-lora", checkpoints=(20, 40))
    record_run(ws, "20261122-082000-sft-lora", state="failed", steps=12, max_steps=40, error=OOM_ERROR)
    record_run(ws, "20261122-084000-dpo", method="dpo", steps=30, max_steps=30)


@SIZES
def test_runs_list(snap_compare, home, utc, size):
    from tests.conftest import until
    from tests.test_ui_runs import SnapshotApp as RunsSnapshotApp

    ws = Workspace(workspace_in(home)).ensure()
    _recorded_runs(ws)
    app = RunsSnapshotApp(ws, start_mode="runs")

    async def run_before(pilot) -> None:
        await until(pilot, lambda: pilot.app.screen.query("#runs-table"))
        table = pilot.app.screen.query_one("#runs-table")
        await until(pilot, lambda: table.row_count == 3)
        await _settle(pilot)

    assert snap_compare(app, terminal_size=size, run_before=run_before)


@SIZES
def test_runs_dashboard(snap_compare, home, utc, size):
    from tests.test_ui_runs import SnapshotApp as RunsSnapshotApp
    from tests.test_ui_runs import _settle_on_dashboard

    ws = Workspace(workspace_in(home)).ensure()
    _recorded_runs(ws)
    app = RunsSnapshotApp(ws, start_mode="runs", start_run="20261122-080000-sft-lora")
    assert snap_compare(app, terminal_size=size, run_before=_settle_on_dashboard)


# --- Annotate -------------------------------------------------------------------------------------


@SIZES
def test_annotate_session(snap_compare, snapshot_ws, size):
    from tests.conftest import until
    from tui_ft.prefs.session import SessionSpec, remember_annotator, save_spec

    prompts = str(snapshot_ws.data / "preferences.jsonl")  # in the test's home: written as ~/...
    save_spec(snapshot_ws, SessionSpec(name="rev", prompts=prompts, kind="review"))
    remember_annotator(snapshot_ws, "ana")
    app = SnapshotApp(snapshot_ws, start_mode="annotate", annotate_session="rev")

    async def run_before(pilot) -> None:
        await until(pilot, lambda: getattr(pilot.app.screen, "session", None) is not None, timeout=30)
        await _settle(pilot)

    assert snap_compare(app, terminal_size=size, run_before=run_before)


# --- Chat -------------------------------------------------------------------------------------------

CHAT_PROMPT = "What is the capital of Korvath?"


async def chat_reply(pilot, compare: bool = False, tokens: int = 40) -> None:
    """A greedy reply of `tokens` tokens from demo-tiny (two, side by side, when comparing), loaded on
    the CPU whatever the machine; the speed in each reply's line is fixed to 100 tok/s (it is the
    machine's), so the picture is the same everywhere. Compare waits for the 1 / 2 / t / x decision."""
    from tests.conftest import until
    from tui_ft.ui.widgets.chat_log import ChatColumn, reply_stats

    app = pilot.app
    screen = app.screen
    screen.settings.update(device="cpu", temperature=0.0, max_new_tokens=tokens)
    if compare:
        screen._set_compare(True)
        screen.load(1, "demo-tiny")
    screen.load(0, "demo-tiny")
    await until(pilot, lambda: all(screen.info[s] is not None for s in screen.sides), timeout=180)
    prompt = screen.query_one("#chat-prompt", Input)
    prompt.value = CHAT_PROMPT
    await pilot.press("enter")
    await until(pilot, lambda: screen.conversation.turns and not screen.generating, timeout=120)
    turn = screen.conversation.turns[-1]
    for side in screen.sides:
        reply = turn.replies[side]
        assert reply.new_tokens == tokens and not reply.error
        reply.seconds = reply.new_tokens / 100
        screen.query_one(f"#chat-{'ab'[side]}", ChatColumn).replies()[-1].show(reply.text, reply_stats(reply))
    # One more layout pass: a scroll bar drawn in the frame before its column shrank (the verdict line
    # came) keeps its old thumb until the next arrange; a sub-cell difference, but the picture must not
    # depend on timing.
    screen.refresh(layout=True)
    await pilot.pause()
    for column in screen.query(ChatColumn):  # an anchored column's new scroll offset, in its bar too
        column.vertical_scrollbar.refresh()
    await pilot.pause()
    await _settle(pilot)


@pytest.mark.slow
@pytest.mark.parametrize("size", [(80, 24), (160, 48)], ids=lambda s: f"{s[0]}x{s[1]}")
@pytest.mark.parametrize("compare", [False, True], ids=["one-model", "compare"])
def test_chat(snap_compare, snapshot_ws, size, compare):
    app = SnapshotApp(snapshot_ws, start_mode="chat")

    async def run_before(pilot) -> None:
        await chat_reply(pilot, compare)

    assert snap_compare(app, terminal_size=size, run_before=run_before)
