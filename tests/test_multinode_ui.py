"""The Runs screen shows the nodes of a multi-node run (System tab): host, rank, state, GPU memory when
the node reports it; nothing for a run on one machine."""

from __future__ import annotations

import pytest
from textual.widgets import TabbedContent

from tests.conftest import until
from tests.test_ui_runs import RecordingApp, record_run
from tui_ft.runs.nodes import Node, write_nodes
from tui_ft.ui.widgets.run_nodes import RunNodes, nodes_table
from tui_ft.workspace import Workspace

pytestmark = pytest.mark.anyio


@pytest.fixture
def ws(tmp_path) -> Workspace:
    return Workspace(tmp_path / "home").ensure()


def _text(widget: RunNodes) -> str:
    from rich.console import Console

    console = Console(width=120, record=True)
    console.print(nodes_table(widget.data))  # what the widget shows
    return console.export_text()


async def test_the_nodes_of_a_multi_node_run_show_on_the_system_tab(ws):
    run = record_run(ws, "20261130-090000-sft-lora", state="failed", steps=12)
    nodes = [
        Node("gpu-a", 0, 8, "10.0.0.1", "exited", 1, 111, [[40960.0, 81920.0]] * 2),
        Node("gpu-b", 1, 8, "10.0.0.2", "lost", 255, 222, None),
    ]
    write_nodes(run, nodes, kind="ssh", main="10.0.0.1:29500", world_size=16)
    app = RecordingApp(ws, start_mode="runs", start_run=run.id)
    async with app.run_test(size=(160, 48)) as pilot:
        widget = app.screen.query_one("#dash-nodes", RunNodes)
        await until(pilot, lambda: widget.data is not None)
        app.screen.query_one("#dash-tabs", TabbedContent).active = "tab-system"
        await pilot.pause(0.1)
        assert widget.display
        text = _text(widget)
        assert "2 nodes, world size 16, rendezvous 10.0.0.1:29500" in text
        assert "gpu-a" in text and "40.0/80G 40.0/80G" in text
        row = next(line for line in text.splitlines() if "gpu-b" in line)
        assert "lost" in row and "not reported" in row and "255" in row


async def test_a_run_on_one_machine_shows_no_nodes(ws):
    run = record_run(ws, "20261130-091000-sft-lora")
    app = RecordingApp(ws, start_mode="runs", start_run=run.id)
    async with app.run_test(size=(160, 48)) as pilot:
        screen = app.screen
        await until(pilot, lambda: screen.refreshes >= 1)
        await pilot.pause(0.3)
        assert not screen.query_one("#dash-nodes", RunNodes).display
