"""The nodes of a multi-node run on the dashboard: host, rank, state, processes, GPU memory (when the
node reports it), exit status; for a Slurm run the job id and its state. Read from the run's nodes.json
(runs/nodes.py) on a thread, every few seconds; hidden for a run on one machine."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.table import Table
from rich.text import Text
from textual import on, work
from textual.message import Message
from textual.timer import Timer
from textual.widgets import Static

from tui_ft.runs.nodes import read_nodes
from tui_ft.runs.rundir import RunDir

POLL_S = 2.0
STATE_STYLE = {
    "running": "green",
    "exited": "dim",
    "starting": "yellow",
    "pending": "yellow",
    "failed": "bold red",
    "lost": "bold red",
    "stopped": "dim",
}


def _memory(gpus: list[list[float | None]] | None) -> str:
    if not gpus:
        return "not reported"
    parts = []
    for used, total in gpus:
        if used is None or total is None:
            parts.append("?")
        else:
            parts.append(f"{used / 1024:.1f}/{total / 1024:.0f}G")
    return " ".join(parts)


def nodes_table(data: dict[str, Any]) -> Table:
    """nodes.json as a table, one row per node."""
    if data.get("kind") == "slurm":
        title = f"slurm job {data.get('job_id', '?')}: {str(data.get('job_state', '?')).lower()}"
    else:
        title = f"{len(data['nodes'])} nodes, world size {data.get('world_size', '?')}, rendezvous {data.get('main', '?')}"
    table = Table(title=title, title_justify="left", expand=True, box=None, padding=(0, 1))
    for column in ("host", "rank", "state", "procs", "GPU memory", "exit"):
        table.add_column(column, no_wrap=True)
    for node in data["nodes"]:
        state = str(node.get("state", "?"))
        exit_status = node.get("exit_status")
        table.add_row(
            str(node.get("host", "?")),
            str(node.get("rank", "?")),
            Text(state, style=STATE_STYLE.get(state, "")),
            str(node.get("slots", "?")),
            _memory(node.get("gpu_memory")),
            "" if exit_status is None else str(exit_status),
        )
    return table


class RunNodes(Static):
    """Follows the nodes of the run the dashboard shows (an ancestor with `run_id`)."""

    DEFAULT_CSS = "RunNodes { height: auto; margin: 0 0 1 0; }"

    class Read(Message):
        def __init__(self, run_id: str | None, data: dict[str, Any] | None) -> None:
            super().__init__()
            self.run_id, self.data = run_id, data

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__("", id=id)
        self.data: dict[str, Any] | None = None
        self._timer: Timer | None = None

    def on_mount(self) -> None:
        self.display = False
        self._poll()

    def _run_id(self) -> str | None:
        for ancestor in self.ancestors:
            run_id = getattr(ancestor, "run_id", None)
            if isinstance(run_id, str):
                return run_id
        return None

    def _poll(self) -> None:
        self._timer = None
        run_id = self._run_id()
        runs: Path = self.app.workspace.runs  # type: ignore[attr-defined]
        self._read(run_id, runs / run_id if run_id else None)

    @work(thread=True, exclusive=True, group="run-nodes", exit_on_error=False, description="reading nodes")
    def _read(self, run_id: str | None, path: Path | None) -> None:
        self.post_message(self.Read(run_id, read_nodes(RunDir(path)) if path is not None else None))

    @on(Read)
    def _on_read(self, message: Read) -> None:
        self.data = message.data if message.run_id == self._run_id() else None
        self.display = self.data is not None
        if self.data is not None:
            self.update(nodes_table(self.data))
        self._timer = self.set_timer(POLL_S, self._poll)  # the next read once this one is handled
