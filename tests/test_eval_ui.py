"""The Runs dashboard's Eval tab: how to make an evaluation when there is none, then the newest one's
table (one row per model, custom metric columns) and its forgetting line, picked up while the run is
shown, as `tui-ft eval` writes it with `save_result`."""

from __future__ import annotations

import pytest
from textual.widgets import DataTable, TabbedContent

from tests.test_ui_runs import RecordingApp, record_run, text_of, until
from tui_ft.evaluation.store import save_result
from tui_ft.workspace import Workspace

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend():
    return "asyncio"


def result_doc(run_id: str) -> dict:
    """A result document with the fields `tui-ft eval` writes (docs/eval.md)."""
    return {
        "version": 1,
        "created": 1795300100.0,
        "model": run_id,
        "run": run_id,
        "base": "demo-tiny",
        "data": "/data/chat.jsonl",
        "format": "messages",
        "examples": 40,
        "generated": 40,
        "loss_on": "assistant turns",
        "metrics": ["exact", "contains", "rouge_l", "first_word"],
        "rows": [
            {
                "label": "tuned",
                "model": run_id,
                "loss": 1.21,
                "perplexity": 3.35,
                "exact": 0.25,
                "contains": 0.3,
                "rouge_l": 0.48,
                "custom": {"first_word": 0.9},
            },
            {
                "label": "base",
                "model": "demo-tiny",
                "loss": 3.83,
                "perplexity": 45.8,
                "exact": 0.0,
                "contains": 0.0,
                "rouge_l": 0.08,
                "custom": {"first_word": 0.1},
            },
            {
                "label": "base 2-shot",
                "model": "demo-tiny",
                "loss": None,
                "perplexity": None,
                "exact": 0.0,
                "contains": 0.025,
                "rouge_l": 0.09,
                "custom": {"first_word": 0.2},
            },
        ],
        "forgetting": {
            "data": "/data/general.jsonl",
            "rows": 40,
            "base": {"loss": 6.55, "perplexity": 701.8},
            "tuned": {"loss": 6.66, "perplexity": 784.0},
            "loss_change": 0.0169,
            "perplexity_change": 0.117,
        },
    }


async def test_eval_tab_says_how_then_shows_the_newest_evaluation(tmp_path):
    ws = Workspace(tmp_path / "home").ensure()
    run = record_run(ws, "20261122-080000-sft-lora")
    app = RecordingApp(ws, start_mode="runs", start_run=run.id)
    async with app.run_test(size=(120, 36)) as pilot:
        screen = app.screen
        await until(pilot, lambda: screen.refreshes >= 1)
        screen.query_one("#dash-tabs", TabbedContent).active = "tab-eval"
        await pilot.pause(0.1)
        assert text_of(app, "#dash-eval-note") == f"no evaluation yet: tui-ft eval {run.id} --data FILE"
        table = screen.query_one("#dash-eval", DataTable)
        assert not table.display

        save_result(run.path, result_doc(run.id))  # written while the dashboard follows the run
        await until(pilot, lambda: table.row_count == 3)
        assert table.display
        columns = [str(c.label) for c in table.columns.values()]
        assert columns == ["model", "loss", "ppl", "exact", "contains", "rouge-L", "first_word"]
        rows = [[str(cell) for cell in table.get_row_at(i)] for i in range(3)]
        assert rows[0][:6] == [f"tuned ({run.id})", "1.210", "3.350", "25%", "30%", "0.4800"]
        assert rows[1][0] == "base (demo-tiny)" and rows[1][6] == "0.1000"
        assert rows[2][0] == "base 2-shot (demo-tiny)" and rows[2][1:3] == ["-", "-"]
        forgetting = text_of(app, "#dash-eval-forgetting")
        assert "general.jsonl" in forgetting and "+1.7%" in forgetting and "6.550 -> 6.660" in forgetting
        assert "chat.jsonl: 40 rows, 40 generated, loss on assistant turns" in text_of(app, "#dash-eval-note")
        app.save_screenshot(str(tmp_path / "eval-tab.svg"))
