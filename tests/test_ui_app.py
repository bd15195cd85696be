"""The app shell: modes by key and by command, the header, open_run, start-up without the training stack."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest
from textual.widgets import Static

from tui_ft.ui.app import TuiFtApp
from tui_ft.ui.screens.datasets import DatasetsScreen
from tui_ft.ui.widgets.shell import ShellHeader

pytestmark = pytest.mark.anyio


async def test_number_keys_switch_modes(demo_ws):
    app = TuiFtApp(demo_ws)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        assert app.current_mode == "datasets"
        assert isinstance(app.screen, DatasetsScreen)
        for key, mode in (
            ("3", "runs"),
            ("4", "annotate"),
            ("5", "chat"),
            ("2", "configure"),
            ("1", "datasets"),
        ):
            if app.current_mode == "chat":
                await pilot.press("escape")  # the chat prompt has the focus: Escape leaves it first
            await pilot.press(key)
            await pilot.pause()
            assert app.current_mode == mode
            assert app.screen.query(ShellHeader), f"{mode} has no header"
        await pilot.press("4")
        await pilot.pause()
        assert app.screen.query_one("#annotate-sessions").has_focus  # start or continue a session


async def test_header_shows_workspace_gpu_and_current_mode(demo_ws):
    app = TuiFtApp(demo_ws, start_mode="runs")
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause(0.3)
        header = app.screen.query_one(ShellHeader)
        modes, status = str(header.render()).split("\n")
        assert "3 Runs" in modes
        assert demo_ws.root.name in status
        gpu = status.split("   ")[-1].strip()
        assert gpu and "checking" not in gpu  # sampled: a GPU or "no GPU (why)"
        assert len(status) == 80 and status.endswith(" ")  # on the right, one column in


async def test_clicking_a_mode_in_the_header_switches_to_it(demo_ws):
    app = TuiFtApp(demo_ws)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        text = str(app.screen.query_one(ShellHeader).render())
        column = text.index("5 Chat")
        await pilot.click(ShellHeader, offset=(column + 1, 0))
        await pilot.pause()
        assert app.current_mode == "chat"


async def test_open_run_shows_the_run_in_runs_mode(demo_ws):
    from tui_ft.runs.rundir import RunDir, Status

    run = RunDir(demo_ws.runs / "20261122-014512-sft-lora")
    run.path.mkdir(parents=True, exist_ok=True)
    run.write_status(Status(id=run.id, name="sft-lora", method="sft", state="completed"))
    app = TuiFtApp(demo_ws)
    async with app.run_test(size=(80, 24)) as pilot:
        app.open_run(run.id)
        for _ in range(100):
            await pilot.pause(0.05)
            if getattr(app.screen, "refreshes", 0):
                break
        assert app.current_mode == "runs"
        assert app.screen.run_id == run.id
        assert run.id in str(app.screen.query_one("#dash-title", Static).render())


async def test_open_chat_loads_the_model_in_the_chat_screen(demo_ws):
    app = TuiFtApp(demo_ws)
    async with app.run_test(size=(80, 24)) as pilot:
        app.open_chat("demo-tiny")
        await pilot.pause()
        assert app.current_mode == "chat"
        screen = app.screen
        assert screen.models[0] == "demo-tiny"
        deadline = time.monotonic() + 120
        while screen.info[0] is None and time.monotonic() < deadline:
            await pilot.pause(0.1)
        assert screen.info[0]["path"] == str(demo_ws.models / "demo-tiny")
        assert "demo-tiny" in str(screen.query_one("#chat-model-a", Static).render())


async def test_command_palette_goes_to_a_mode(demo_ws):
    app = TuiFtApp(demo_ws)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("ctrl+p")
        await pilot.pause()
        await pilot.press(*"go to annotate")
        await pilot.pause(0.5)
        await pilot.press("enter")
        await pilot.pause()
        assert app.current_mode == "annotate"


def test_start_up_imports_no_training_stack(demo_ws):
    code = (
        "import sys\n"
        "from tui_ft.ui.app import TuiFtApp\n"
        "from pathlib import Path\nfrom tui_ft.workspace import Workspace\n"
        f"app = TuiFtApp(Workspace(Path({str(demo_ws.root)!r})))\n"
        "async def main():\n"
        "    async with app.run_test(size=(80, 24)) as pilot:\n"
        "        await pilot.pause(0.2)\n"
        "import asyncio; asyncio.run(main())\n"
        "heavy = ['torch', 'transformers', 'trl', 'peft', 'datasets', 'bitsandbytes']\n"
        "print(','.join(m for m in heavy if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert out.stdout.strip() == ""


async def test_configure_mode_gets_the_shell(demo_ws):
    app = TuiFtApp(demo_ws)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("2")
        await pilot.pause()
        assert app.current_mode == "configure"
        assert len(app.screen.query(ShellHeader)) == 1


# ------------------------------------------------------------------------------------------------
# failed workers are told, never silent


async def test_a_failed_worker_is_told_by_name_and_its_traceback_logged(tmp_path):
    from tui_ft.errorlog import error_log
    from tui_ft.workspace import Workspace

    ws = Workspace(tmp_path / "home").ensure()
    app = TuiFtApp(ws)
    async with app.run_test(size=(80, 24)) as pilot:

        def boom() -> None:
            raise RuntimeError("the disk caught fire\nsecond line of the message")

        def failed() -> list:
            return [n for n in app._notifications if "failed" in str(n.title)]

        # a worker deep in a screen: its end reaches the app all the same
        header = app.screen.query_one(ShellHeader)
        header.run_worker(boom, thread=True, description="testing a failure", exit_on_error=False)
        for _ in range(100):
            await pilot.pause(0.05)
            if failed():
                break
        told = failed()
        assert len(told) == 1 and told[0].title == "Testing a failure failed"
        assert told[0].severity == "error"
        assert told[0].message.startswith("RuntimeError: the disk caught fire\ndetails: ")
        assert "Traceback" not in told[0].message and "second line" not in told[0].message
        log = error_log(ws).read_text()
        assert "testing a failure failed" in log and "Traceback (most recent call last)" in log
        assert "RuntimeError: the disk caught fire" in log and "in boom" in log
        # the same job failing the same way again (a poller) is not told twice
        header.run_worker(boom, thread=True, description="testing a failure", exit_on_error=False)
        await pilot.pause(0.3)
        assert len(failed()) == 1


async def test_gpu_poll_goes_on_after_a_sample_raised(tmp_path, monkeypatch):
    from tui_ft.monitor.system import GpuSampler
    from tui_ft.ui import app as app_module
    from tui_ft.workspace import Workspace

    sample = GpuSampler.sample
    calls = []

    def sample_failing_once(self):
        calls.append(1)
        if len(calls) == 1:
            raise OSError("NVML went away")
        return sample(self)

    monkeypatch.setattr(GpuSampler, "sample", sample_failing_once)
    monkeypatch.setattr(app_module, "GPU_POLL_S", 0.05)
    app = TuiFtApp(Workspace(tmp_path / "home").ensure())
    async with app.run_test(size=(80, 24)) as pilot:
        for _ in range(100):
            await pilot.pause(0.05)
            if "checking" not in app.gpu_summary:
                break
        assert "checking" not in app.gpu_summary and len(calls) >= 2
        assert any(n.title == "Sampling the GPUs failed" for n in app._notifications)
