"""Runs: the list of runs in the workspace, and the live dashboard of one run.

The screen holds the bindings and the actions, and switches between the list (`RunList`) and the
dashboard (`RunDashboard`), each of which reads on a worker of its own. Stop, resume and export call
the same domain functions as `tui-ft stop`, `tui-ft resume --detach` and `tui-ft export`, on workers.
A run that ends (completed, stopped, failed, crashed) and a watchdog alarm raise a notification and
ring the terminal bell, once each.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.message import Message
from textual.screen import Screen
from textual.widgets import ContentSwitcher

from tui_ft.errors import UserError
from tui_ft.runs.history import RunHistory
from tui_ft.runs.listing import RunRow
from tui_ft.ui.screens.run_dialogs import (
    ExportDialog,
    ExportRequest,
    OverlayDialog,
    SweepDialog,
    run_export,
)
from tui_ft.ui.widgets.run_dashboard import RunDashboard, Snapshot
from tui_ft.ui.widgets.run_format import ALERT_SEVERITY
from tui_ft.ui.widgets.run_list import RunList
from tui_ft.ui.widgets.shell import KeysFooter
from tui_ft.workspace import Workspace


class RunsScreen(Screen):
    """The Runs mode: a filterable list of runs; Enter opens a run's live dashboard."""

    BINDINGS = [
        Binding("f", "filter", "Filter", id="runs.filter"),
        Binding("escape", "back", "Back", id="runs.back"),
        Binding("s", "stop", "Stop", id="runs.stop"),
        Binding("r", "resume", "Resume", id="runs.resume"),
        Binding("c", "chat", "Chat", id="runs.chat"),
        Binding("x", "export", "Export", id="runs.export"),
        Binding("o", "overlay", "Overlay", id="runs.overlay"),
        Binding("w", "sweep", "Sweep", id="runs.sweep"),
    ]

    @dataclass
    class ActionDone(Message):
        text: str
        severity: str = "information"

    # --- layout --------------------------------------------------------------------------------------

    def __init__(self) -> None:
        super().__init__(id="runs-screen")
        self.run_list = RunList(self.now, id="runs-list-view")
        self.dashboard = RunDashboard(self.now, id="runs-dashboard")
        self._alerted: set[tuple] = set()
        self._pending_run: str | None = None
        self._spawned: list[Any] = []  # runners this screen resumed (reaped when they exit)

    @property
    def workspace(self) -> Workspace:
        return self.app.workspace  # type: ignore[attr-defined]

    def now(self) -> float:
        """The wall clock (tests replace it to draw durations and ETAs that do not move)."""
        return time.time()

    def compose(self) -> ComposeResult:
        with ContentSwitcher(initial="runs-list-view", id="runs-switcher"):
            yield self.run_list
            yield self.dashboard
        yield KeysFooter()

    def on_mount(self) -> None:
        start = self._pending_run or getattr(self.app, "start_run", None)
        self._pending_run = None
        if start:
            self.call_later(self._open_run, start)
        else:
            self.run_list.focus_table()

    # --- what the list and the dashboard show (tests and benchmarks read these) --------------------

    @property
    def rows(self) -> list[RunRow]:
        """The runs as the list last read them."""
        return self.run_list.rows

    @property
    def run_id(self) -> str | None:
        """The run on the dashboard."""
        return self.dashboard.run_id

    @property
    def history(self) -> RunHistory | None:
        return self.dashboard.history

    @property
    def snapshot(self) -> Snapshot | None:
        return self.dashboard.snapshot

    @property
    def refreshes(self) -> int:
        """Dashboard refreshes handled."""
        return self.dashboard.refreshes

    @property
    def overlay_ids(self) -> list[str]:
        return self.dashboard.overlay_ids

    # --- the list ------------------------------------------------------------------------------------

    @on(RunList.Listed)
    def _on_listed(self) -> None:
        for proc in list(self._spawned):
            if proc.poll() is not None:  # reap a runner this screen resumed
                self._spawned.remove(proc)

    @on(RunList.Ended)
    def _on_run_ended(self, message: RunList.Ended) -> None:
        """Runs other than the one on the dashboard (which says more) that ended since the last read."""
        row = message.row
        if row.id == self.run_id:
            return
        where = f" at step {row.step}" + (f"/{row.max_steps}" if row.max_steps else "")
        error = f": {row.error_message}" if row.error_message else ""
        text = f"run {row.id} {row.state_label}{where}{error}"
        self._alert((row.id, row.state, row.ended), text, ALERT_SEVERITY.get(row.state, "warning"))

    @on(RunDashboard.Alert)
    def _on_dashboard_alert(self, message: RunDashboard.Alert) -> None:
        self._alert(message.key, message.text, message.severity, message.title)

    def _alert(self, key: tuple, text: str, severity: str, title: str = "Run ended") -> None:
        """A notification and the terminal bell, once per key."""
        if key in self._alerted:
            return
        self._alerted.add(key)
        self.notify(text, title=title, severity=severity, markup=False, timeout=10)  # type: ignore[arg-type]
        self.app.bell()

    @on(RunList.Chosen)
    def _on_chosen(self, message: RunList.Chosen) -> None:
        self.show_run(message.run_id)

    # --- the dashboard -------------------------------------------------------------------------------

    @property
    def dashboard_open(self) -> bool:
        return self.query_one("#runs-switcher", ContentSwitcher).current == "runs-dashboard"

    def show_run(self, run_id: str) -> None:
        """Open the dashboard of run `run_id` (reading its history starts on a worker)."""
        if not self.is_mounted:
            self._pending_run = run_id
            return
        self.call_later(self._open_run, run_id)

    async def _open_run(self, run_id: str) -> None:
        path = self.workspace.runs / run_id
        if not path.is_dir():
            self.notify(f"no run {run_id} in {self.workspace.runs}", severity="error", markup=False)
            return
        await self.dashboard.open(run_id)
        self.query_one("#runs-switcher", ContentSwitcher).current = "runs-dashboard"
        self.dashboard.start()

    async def overlay(self, run_ids: list[str], run_id: str | None = None) -> None:
        """Draw the loss curves of `run_ids` in one chart (the Compare tab), following them live."""
        if not self.dashboard_open or (run_id and run_id != self.run_id):
            await self._open_run(run_id or run_ids[0])
        self.dashboard.show_overlay(run_ids)

    # --- actions -------------------------------------------------------------------------------------

    def _current_run(self) -> str | None:
        if self.dashboard_open:
            return self.run_id
        return self.run_list.highlighted_id()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if not self.is_mounted:
            return True
        if action == "filter":
            return not self.dashboard_open
        if action == "back":
            return self.dashboard_open or self.run_list.filtering
        if action in ("stop", "resume", "chat", "export", "overlay"):
            return self._current_run() is not None
        if action == "sweep":
            return self._current_sweep() is not None
        return True

    def action_filter(self) -> None:
        self.run_list.focus_filter()

    def action_back(self) -> None:
        if not self.dashboard_open:
            self.run_list.focus_table()
            return
        self.dashboard.close()
        self.query_one("#runs-switcher", ContentSwitcher).current = "runs-list-view"
        self.run_list.focus_table()
        self.run_list.fill()

    def action_stop(self) -> None:
        run_id = self._current_run()
        if run_id:
            self.notify(f"asking {run_id} to stop (it saves a checkpoint first)…", markup=False)
            self._stop_worker(run_id)

    @work(
        thread=True,
        exclusive=True,
        group="runs-stop",
        exit_on_error=False,
        description="asking the run to stop",
    )
    def _stop_worker(self, run_id: str) -> None:
        """What `tui-ft stop RUN --no-wait` does; the dashboard shows the run become `stopped`."""
        from tui_ft.runs.registry import find_run, request_stop

        try:
            request_stop(find_run(self.workspace, run_id))
        except UserError as exc:
            self.post_message(self.ActionDone(exc.message, "warning"))
            return
        self.post_message(self.ActionDone(f"stop requested for {run_id}"))

    def action_resume(self) -> None:
        run_id = self._current_run()
        if run_id:
            self._resume_worker(run_id)

    @work(
        thread=True, exclusive=True, group="runs-resume", exit_on_error=False, description="resuming the run"
    )
    def _resume_worker(self, run_id: str) -> None:
        """What `tui-ft resume RUN --detach` does: the same domain call."""
        from tui_ft.runs.launcher import resume_run
        from tui_ft.runs.registry import find_run

        try:
            proc, last = resume_run(find_run(self.workspace, run_id), detach=True)
        except UserError as exc:
            self.post_message(self.ActionDone(str(exc), "warning"))
            return
        except OSError as exc:
            self.post_message(self.ActionDone(f"cannot start the runner: {exc}", "error"))
            return
        self._spawned.append(proc)
        self.post_message(self.ActionDone(f"{run_id} resuming from step {last.step}"))

    @on(ActionDone)
    def _on_action_done(self, message: ActionDone) -> None:
        self.notify(message.text, severity=message.severity, markup=False)  # type: ignore[arg-type]

    def action_chat(self) -> None:
        from tui_ft.errors import NotFoundError
        from tui_ft.modelref import resolve_model

        run_id = self._current_run()
        if not run_id:
            return
        for ref in (run_id, f"{run_id}:last"):
            try:
                resolve_model(ref, self.workspace)
            except NotFoundError:
                continue
            open_chat = getattr(self.app, "open_chat", None)
            if open_chat is not None:
                open_chat(ref)
            return
        self.notify(
            f"{run_id} has no model yet (no final model, no checkpoint)", severity="warning", markup=False
        )

    def action_export(self) -> None:
        run_id = self._current_run()
        if not run_id:
            return
        default = self.workspace.root / "exports" / run_id

        def chosen(request: ExportRequest | None) -> None:
            if request is not None:
                what = {"safetensors": " (merging)", "gguf": f" (GGUF {request.quant})"}.get(request.fmt, "")
                self.notify(f"exporting {run_id}{what}…", markup=False)
                self._export_worker(request)

        self.app.push_screen(ExportDialog(run_id, default), chosen)

    @work(
        thread=True, exclusive=True, group="runs-export", exit_on_error=False, description="exporting the run"
    )
    def _export_worker(self, request: ExportRequest) -> None:
        """What `tui-ft export RUN --out DIR [--merge | --format gguf --quant Q]` does, in a child process."""
        run_export(
            request,
            self.workspace.root,
            lambda text, severity: self.post_message(self.ActionDone(text, severity)),
        )

    def _current_sweep(self) -> str | None:
        """The sweep the current run is a trial of."""
        run_id = self._current_run()
        row = next((r for r in self.rows if r.id == run_id), None)
        return row.sweep if row is not None else None

    def action_sweep(self) -> None:
        """The current run's sweep: its trials ranked; open one, or overlay their losses."""
        sweep_id = self._current_sweep()
        if sweep_id:
            self._sweep_worker(sweep_id)

    @work(
        thread=True, exclusive=True, group="runs-sweep", exit_on_error=False, description="Reading the sweep"
    )
    def _sweep_worker(self, sweep_id: str) -> None:
        from tui_ft.runs.sweep import find_sweep

        folder = find_sweep(self.workspace, sweep_id)
        if folder is None:
            self.post_message(self.ActionDone(f"sweep {sweep_id} is gone from the workspace", "error"))
            return
        sweep = folder.load()
        self.app.call_from_thread(self._show_sweep, sweep)

    def _show_sweep(self, sweep) -> None:
        def chosen(choice: tuple[str, list[str]] | None) -> None:
            if choice is None:
                return
            what, ids = choice
            if what == "open":
                self.call_later(self.show_run, ids[0])
            else:
                self.call_later(self.overlay, ids, ids[0])

        self.app.push_screen(SweepDialog(sweep), chosen)

    def action_overlay(self) -> None:
        run_id = self._current_run()
        if not run_id:
            return
        selected = self.overlay_ids or [run_id]

        def chosen(ids: list[str] | None) -> None:
            if ids:
                self.call_later(self.overlay, ids, run_id)

        self.app.push_screen(OverlayDialog(self.rows, selected), chosen)
