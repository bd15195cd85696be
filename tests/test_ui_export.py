"""The export dialog (Runs and Chat): the format and GGUF type choice becomes the `tui-ft export` command
line; Chat's x opens it for side A's run or checkpoint and says so for any other model."""

from __future__ import annotations

from pathlib import Path

import pytest
from textual.app import App
from textual.widgets import Input, Select

from tests.conftest import until
from tui_ft.ui.app import TuiFtApp
from tui_ft.ui.screens.run_dialogs import ExportDialog, ExportRequest, result_sentence

SIZE = (100, 34)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class DialogApp(App):
    def __init__(self) -> None:
        super().__init__()
        self.answers: list[ExportRequest | None] = []

    def on_mount(self) -> None:
        self.push_screen(ExportDialog("RUN:checkpoint-2", Path("/tmp/x")), self.answers.append)


@pytest.mark.anyio
async def test_gguf_choice_enables_the_type_and_builds_the_command():
    app = DialogApp()
    async with app.run_test(size=SIZE) as pilot:
        dialog = app.screen
        quant = dialog.query_one("#export-quant", Select)
        assert quant.disabled
        dialog.query_one("#export-format", Select).value = "gguf"
        await pilot.pause()
        assert not quant.disabled and dialog.query_one("#export-merge").value
        quant.value = "q8_0"
        dialog.query_one("#export-dir", Input).value = "/tmp/out"
        dialog.query_one("#export-dir", Input).focus()
        await pilot.press("enter")
        await until(pilot, lambda: app.answers)
    request = app.answers[0]
    assert request is not None and request.fmt == "gguf" and request.merge
    command = request.command()
    assert command[command.index("--quant") + 1] == "q8_0" and "--json" in command
    assert command[command.index("--out") + 1] == "/tmp/out" and "--no-smoke" not in command


def test_result_sentence_names_size_and_smoke_reply():
    text = result_sentence(
        {
            "format": "safetensors",
            "run_id": "r1",
            "out_dir": "/tmp/o",
            "bytes": 2048,
            "dtype": "bfloat16",
            "smoke": {"reply": "Hello there."},
            "notes": [],
        }
    )
    assert "full model (merged)" in text and "2.0 KiB" in text and "bfloat16" in text
    assert "'Hello there.'" in text


@pytest.mark.anyio
async def test_chat_x_exports_a_run_and_says_so_for_other_models(demo_ws):
    run_dir = demo_ws.runs / "20260101-000000-sft-lora"
    (run_dir / "final").mkdir(parents=True)
    (run_dir / "final" / "adapter_config.json").write_text('{"base_model_name_or_path": "demo-tiny"}')
    app = TuiFtApp(demo_ws, start_mode="chat")
    async with app.run_test(size=SIZE) as pilot:
        screen = app.screen
        screen.query_one("#chat-body").focus()
        screen.models[0] = "demo-tiny"
        await pilot.press("x")
        await until(pilot, lambda: any("not a run" in n.message for n in app._notifications))
        screen.models[0] = run_dir.name
        await pilot.press("x")
        await until(pilot, lambda: isinstance(app.screen, ExportDialog))
        assert app.screen.run_ref == run_dir.name
        await pilot.press("escape")
