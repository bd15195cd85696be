"""Runs: the list of runs in the workspace, and the live dashboard of one run.

The list is re-read every `LIST_POLL_S` on a worker (`RunsIndex` re-reads a run only when its files
changed) and filtered in place. The dashboard tails one run with a `RunHistory` on a worker: each
refresh reads only what the runner appended, downsamples the charted series that changed to their
chart's width, and posts one message; the next refresh is scheduled when that message was handled,
so a slow read never piles up. Charts repaint only when their data changed, at most every
`charts.MIN_REDRAW_S`. Stop, resume and export call the same domain functions as `tui-ft stop`,
`tui-ft resume --detach` and `tui-ft export`, on workers. A run that ends (completed, stopped, failed,
crashed) and a watchdog alarm raise a notification and ring the terminal bell.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.screen import ModalScreen, Screen
from textual.timer import Timer
from textual.widgets import (
    Button,
    Checkbox,
    ContentSwitcher,
    DataTable,
    Footer,
    Input,
    Label,
    Log,
    SelectionList,
    Static,
    TabbedContent,
    TabPane,
)
from textual.widgets.selection_list import Selection

from tui_ft.errors import UserError
from tui_ft.runs.history import Progress, RefreshResult, RunHistory
from tui_ft.runs.listing import RunRow, RunsIndex
from tui_ft.runs.registry import ACTIVE_STATES, Checkpoint
from tui_ft.runs.rundir import RunDir, Status
from tui_ft.runs.series import SeriesPoints
from tui_ft.ui.widgets.charts import ChartGrid, MetricChart, short_label
from tui_ft.workspace import Workspace

LIST_POLL_S = 2.0
LIST_POLL_BEHIND_S = 5.0  # while a dashboard hides the list: only for other runs' alerts
RUN_POLL_S = 1.0  # while the run is active
IDLE_RUN_POLL_S = 3.0  # a finished run (it may be resumed from elsewhere)
LOG_LINES = 300

#: Chart groups of the Charts tab: (id, title, series). A chart appears when the run logged any of
#: its series, so each method gets its own charts (DPO/ORPO/KTO rewards, reward-model accuracy and
#: margin, GRPO/RLOO reward and KL) without the screen knowing the method.
CHART_GROUPS: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("loss", "loss", ("loss", "eval_loss")),
    ("lr", "learning rate", ("learning_rate",)),
    ("grad", "grad norm", ("grad_norm",)),
    ("tokens", "tokens/s", ("tokens_per_s",)),
    ("margins", "reward margin", ("rewards/margins", "eval_rewards/margins")),
    ("accuracies", "reward accuracy", ("rewards/accuracies", "eval_rewards/accuracies")),
    ("rm-accuracy", "accuracy", ("accuracy", "eval_accuracy")),
    ("rm-margin", "margin", ("margin", "eval_margin")),
    ("reward", "reward", ("reward", "reward_std")),
    ("kl", "KL", ("kl",)),
)
GPU_CHARTS: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("memory", "memory MiB", ("memory_used_mb", "memory_total_mb")),
    ("util", "utilisation %", ("utilization_pct",)),
    ("temp", "temperature °C", ("temperature_c",)),
    ("power", "power W", ("power_w",)),
)
SYSTEM_CHARTS: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("cpu", "CPU %", ("system/cpu_percent", "system/process_cpu_percent")),
    ("ram", "RAM MiB", ("system/ram_used_mb", "system/process_rss_mb")),
)
SYSTEM_LABELS = {
    "system/cpu_percent": "machine",
    "system/process_cpu_percent": "runner",
    "system/ram_used_mb": "machine",
    "system/process_rss_mb": "runner",
}
STATE_STYLE = {
    "completed": "green",
    "running": "cyan",
    "starting": "cyan",
    "stopping": "yellow",
    "queued": "yellow",
    "stopped": "yellow",
    "failed": "red",
    "crashed": "red",
}
RUN_COLUMNS = ("run", "state", "method", "progress", "loss", "started", "duration")
ALERT_SEVERITY = {"completed": "information", "stopped": "warning", "failed": "error", "crashed": "error"}


def charted_series(names: list[str]) -> list[str]:
    """The series some chart of the dashboard draws (the others are only listed)."""
    wanted = {n for _, _, group in CHART_GROUPS for n in group}
    wanted |= {n for _, _, group in SYSTEM_CHARTS for n in group}
    gpu_keys = {n for _, _, group in GPU_CHARTS for n in group}
    return [n for n in names if n in wanted or (n.startswith("gpu") and n.split("/", 1)[-1] in gpu_keys)]


# ------------------------------------------------------------------------------------------------
# formatting


def format_duration(seconds: float | None) -> str:
    if seconds is None or not math.isfinite(seconds):
        return "-"
    seconds = int(seconds)
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def format_started(ts: float | None) -> str:
    return datetime.fromtimestamp(ts).strftime("%m-%d %H:%M") if ts else "-"


def format_value(value: float | None) -> str:
    if value is None:
        return "-"
    if not math.isfinite(value):
        return str(value)
    if abs(value) >= 1e7:
        return f"{value:.3g}"
    return f"{value:.4g}" if abs(value) < 1e5 else f"{value:,.0f}"


def state_text(label: str, state: str) -> Text:
    return Text(label, style=STATE_STYLE.get(state, ""))


def progress_bar(fraction: float | None, width: int) -> Text:
    """A one-line bar: `━━━━━━━╸───────` (empty when the length of the run is unknown)."""
    if fraction is None:
        return Text("─" * width, style="dim")
    filled = fraction * width
    full = int(filled)
    bar = Text("━" * full, style="cyan")
    if full < width:
        bar.append("╸" if filled - full >= 0.5 else "─", style="cyan" if filled - full >= 0.5 else "dim")
        bar.append("─" * (width - full - 1), style="dim")
    return bar


def progress_line(progress: Progress, status: Status | None) -> Text:
    """`━━━╸──── 12/40 30% · 1.5 steps/s · ETA 0:18 · 0:08 elapsed`."""
    text = progress_bar(progress.fraction, 20)
    steps = f"{progress.step}/{progress.max_steps}" if progress.max_steps else f"step {progress.step}"
    text.append(f" {steps}")
    if progress.fraction is not None:
        text.append(f" {progress.fraction:.0%}")
    active = status is not None and status.state in ACTIVE_STATES
    if active and progress.steps_per_s:
        text.append(f" · {progress.steps_per_s:.3g} steps/s", style="dim")
    if active and progress.eta_s is not None:
        text.append(" · ETA ")
        text.append(format_duration(progress.eta_s), style="bold")
    if progress.elapsed_s is not None:
        text.append(
            f" · {format_duration(progress.elapsed_s)} {'elapsed' if active else 'in all'}", style="dim"
        )
    return text


def title_line(status: Status | None, run_id: str) -> Text:
    if status is None:
        return Text.assemble((run_id, "bold"), (" · reading…", "dim"))
    error = status.error or {}
    kind = error.get("kind")
    label = f"{status.state} ({kind})" if kind and kind != status.state else status.state
    text = Text.assemble((status.id or run_id, "bold"), " · ", state_text(label, status.state))
    details = [status.method, status.model, status.adapter]
    if status.device:
        details.append(status.device + (f" ×{status.world_size}" if status.world_size > 1 else ""))
    text.append(" · " + " · ".join(str(d) for d in details if d), style="dim")
    return text


def alert_text(status: Status | None, watchdog: tuple[dict[str, Any], ...]) -> Text | None:
    """The error and its hint for a run that failed or crashed, and the watchdog's alarms."""
    lines: list[Text] = []
    if status is not None and status.error and status.state in ("failed", "crashed"):
        error = status.error
        lines.append(Text.assemble(("✗ ", "bold red"), (str(error.get("message") or status.state), "red")))
        if error.get("hint"):
            lines.append(Text.assemble(("hint: ", "bold"), str(error["hint"])))
    for event in watchdog[-2:]:
        stop = event.get("action") == "stop"
        lines.append(
            Text.assemble(
                ("⚠ watchdog ", "bold red" if stop else "bold yellow"),
                f"step {event.get('step')}: {event.get('text') or event.get('problem')}",
            )
        )
    return Text("\n").join(lines) if lines else None


# ------------------------------------------------------------------------------------------------
# what one refresh of the dashboard carries from the worker to the screen


@dataclass
class RefreshRequest:
    """What the screen asks of one refresh: each charted series' width, series to send again."""

    widths: dict[str, int]
    force: set[str]
    default_width: int
    overlay: list[RunHistory] = field(default_factory=list)
    overlay_width: int = 80


@dataclass
class Snapshot:
    """Everything the dashboard shows, read on the worker (immutable values and copies only)."""

    status: Status | None
    progress: Progress
    metric_names: list[str]
    system_names: list[str]
    points: dict[str, SeriesPoints]
    widths: dict[str, int]
    origin: float | None
    last: dict[str, float | None]
    log: list[str] | None  # None: unchanged since the previous refresh
    checkpoints: list[Checkpoint] | None  # None: unchanged
    gpu_error: str | None
    gpu_names: dict[int, str]
    gpu_indices: list[int]
    watchdog: tuple[dict[str, Any], ...]
    overlay: dict[str, dict[str, SeriesPoints]] | None


class _Tail:
    """State the refresh worker keeps between refreshes of one run (only workers touch it, one at a time)."""

    def __init__(self) -> None:
        self.log: list[str] | None = None
        self.checkpoints: list[tuple] | None = None
        self.sent: set[str] = set()


def read_snapshot(
    history: RunHistory, tail: _Tail, request: RefreshRequest, now: float
) -> tuple[RefreshResult, Snapshot]:
    """One refresh of `history` and everything the dashboard needs from it (runs on a worker)."""
    result = history.refresh()
    metric_names = history.metric_names()
    system_names = history.system_names()
    points: dict[str, SeriesPoints] = {}
    widths: dict[str, int] = {}
    for name in charted_series(metric_names + system_names):
        width = request.widths.get(name, request.default_width)
        if name in result.changed or name in request.force or name not in tail.sent:
            points[name] = history.downsample(name, width)
            widths[name] = width
            tail.sent.add(name)
    status = history.status
    origin = None
    if system_names:
        origin = status.started if status is not None and status.started else None
        if origin is None:
            origin = min((history.downsample(n, 1).times or (now,))[0] for n in system_names)
    log = history.log_tail(LOG_LINES)
    if log == tail.log:
        log_out = None
    else:
        tail.log = log_out = log
    checkpoints = history.checkpoints()
    signature = [(c.step, c.complete, tuple(sorted(c.metrics.items()))) for c in checkpoints]
    if signature == tail.checkpoints:
        checkpoints_out = None
    else:
        tail.checkpoints, checkpoints_out = signature, checkpoints
    last = {name: history.last(name) for name in metric_names + system_names}
    overlay = None
    if request.overlay:
        overlay = {}
        for other in request.overlay:
            other.refresh()
            overlay[other.run.id] = {
                n: other.downsample(n, request.overlay_width)
                for n in ("loss", "eval_loss")
                if other.has_series(n)
            }
    info = history.info
    return result, Snapshot(
        status=status,
        progress=history.progress(now),
        metric_names=metric_names,
        system_names=system_names,
        points=points,
        widths=widths,
        origin=origin,
        last=last,
        log=log_out,
        checkpoints=checkpoints_out,
        gpu_error=info.gpu_error,
        gpu_names=dict(info.gpu_names),
        gpu_indices=history.gpu_indices(),
        watchdog=tuple(info.watchdog),
        overlay=overlay,
    )


# ------------------------------------------------------------------------------------------------
# dialogs


class ExportDialog(ModalScreen[tuple[str, bool] | None]):
    """Where to export a run's model, and whether to merge it into its base; dismisses with
    (folder, merge) or None."""

    BINDINGS = [Binding("escape", "cancel", "Cancel", id="runs.export.cancel")]

    def __init__(self, run_ref: str, default_dir: Path) -> None:
        super().__init__(classes="runs-dialog")
        self.run_ref = run_ref
        self.default_dir = default_dir

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label(f"Export [b]{self.run_ref}[/b] to")
            yield Input(str(self.default_dir), id="export-dir")
            yield Checkbox("merge the adapter into the base model (a full model)", id="export-merge")
            yield Static("", id="export-error")
            with Horizontal(classes="dialog-buttons"):
                yield Button("Cancel", id="export-cancel")
                yield Button("Export", variant="primary", id="export-ok")

    @on(Input.Submitted, "#export-dir")
    @on(Button.Pressed, "#export-ok")
    def _export(self) -> None:
        folder = self.query_one("#export-dir", Input).value.strip()
        if not folder:
            self.query_one("#export-error", Static).update("give a folder")
            return
        self.dismiss((folder, self.query_one("#export-merge", Checkbox).value))

    @on(Button.Pressed, "#export-cancel")
    def action_cancel(self) -> None:
        self.dismiss(None)


class OverlayDialog(ModalScreen[list[str] | None]):
    """Pick the runs whose loss curves to draw in one chart; dismisses with their ids or None."""

    BINDINGS = [
        Binding("escape", "cancel", "Cancel", id="runs.overlay.cancel"),
        Binding("enter", "done", "Overlay", priority=True, id="runs.overlay.done"),
    ]

    def __init__(self, rows: list[RunRow], selected: list[str]) -> None:
        super().__init__(classes="runs-dialog")
        self.rows = rows
        self.selected = selected

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label("Overlay the loss of  [dim](space: pick · enter: draw)[/dim]")
            yield SelectionList[str](
                *(
                    Selection(
                        f"{row.id}  {row.state_label}  loss {format_value(row.last_loss)}",
                        row.id,
                        row.id in self.selected,
                    )
                    for row in self.rows
                ),
                id="overlay-runs",
            )
            with Horizontal(classes="dialog-buttons"):
                yield Button("Cancel", id="overlay-cancel")
                yield Button("Overlay", variant="primary", id="overlay-ok")

    def on_mount(self) -> None:
        self.query_one("#overlay-runs", SelectionList).focus()

    @on(Button.Pressed, "#overlay-ok")
    def action_done(self) -> None:
        if self.focused is not None and self.focused.id == "overlay-cancel":
            self.dismiss(None)
            return
        chosen = list(self.query_one("#overlay-runs", SelectionList).selected)
        self.dismiss(chosen or None)

    @on(Button.Pressed, "#overlay-cancel")
    def action_cancel(self) -> None:
        self.dismiss(None)


# ------------------------------------------------------------------------------------------------
# the screen


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
    ]

    # --- messages from the workers -------------------------------------------------------------------

    @dataclass
    class Listed(Message):
        rows: list[RunRow]

    @dataclass
    class Refreshed(Message):
        history: RunHistory
        result: RefreshResult
        snapshot: Snapshot

    @dataclass
    class Unreadable(Message):
        history: RunHistory
        error: str

    @dataclass
    class ActionDone(Message):
        text: str
        severity: str = "information"

    # --- layout --------------------------------------------------------------------------------------

    def __init__(self) -> None:
        super().__init__(id="runs-screen")
        self.rows: list[RunRow] = []
        self.run_id: str | None = None  # the run on the dashboard
        self.history: RunHistory | None = None
        self.snapshot: Snapshot | None = None
        self.refreshes = 0  # dashboard refreshes handled (tests and benchmarks read it)
        self.overlay_ids: list[str] = []
        self._overlay: list[RunHistory] = []
        self._tail = _Tail()
        self._run_timer: Timer | None = None
        self._force: set[str] = set()
        self._states: dict[str, str] = {}  # run id -> state at the previous list poll
        self._alerted: set[tuple] = set()
        self._pending_run: str | None = None
        self._spawned: list[Any] = []  # runners this screen resumed (reaped when they exit)
        self._shown: dict[str, Text] = {}  # what each dashboard Static shows

    @property
    def workspace(self) -> Workspace:
        return self.app.workspace  # type: ignore[attr-defined]

    def now(self) -> float:
        """The wall clock (tests replace it to draw durations and ETAs that do not move)."""
        return time.time()

    def compose(self) -> ComposeResult:
        with ContentSwitcher(initial="runs-list-view", id="runs-switcher"):
            with Vertical(id="runs-list-view"):
                with Horizontal(id="runs-filter-row"):
                    yield Label("filter")
                    yield Input(
                        placeholder="words of the id, method, model or state (running, dpo, failed…)",
                        compact=True,
                        id="runs-filter",
                    )
                    yield Static("", id="runs-count")
                yield DataTable(cursor_type="row", zebra_stripes=True, id="runs-table")
                yield Static(
                    "No runs yet. Launch one from Configure (2), or: [b]tui-ft train sft-lora[/b]",
                    id="runs-empty",
                )
            with Vertical(id="runs-dashboard"):
                yield Static("", id="dash-title")
                yield Static("", id="dash-progress")
                yield Static("", id="dash-alert")
                with TabbedContent(id="dash-tabs", initial="tab-charts"):
                    with TabPane("Charts", id="tab-charts"):
                        yield ChartGrid(id="dash-charts")
                    with TabPane("System", id="tab-system"):
                        yield Static("", id="dash-gpu-note")
                        yield ChartGrid(id="dash-system")
                    with TabPane("Log", id="tab-log"):
                        yield Log(max_lines=LOG_LINES * 2, id="dash-log")
                    with TabPane("Checkpoints", id="tab-checkpoints"):
                        yield DataTable(cursor_type="row", id="dash-checkpoints")
                    with TabPane("Compare", id="tab-compare"):
                        yield Static("", id="dash-compare-note")
                        yield MetricChart("loss", (), id="dash-compare")
        yield Footer(compact=True)

    def on_mount(self) -> None:
        table = self.query_one("#runs-table", DataTable)
        checkpoints = self.query_one("#dash-checkpoints", DataTable)
        for column in ("checkpoint", "step", "complete", "loss", "eval_loss", "path"):
            checkpoints.add_column(column, key=column)
        self.query_one("#dash-tabs", TabbedContent).hide_tab("tab-compare")
        self.query_one("#dash-alert", Static).display = False
        self.query_one("#runs-empty", Static).display = False
        start = self._pending_run or getattr(self.app, "start_run", None)
        self._pending_run = None
        if start:
            self.call_later(self._open_run, start)
        else:
            table.focus()
        self._poll_list()

    # --- the list ------------------------------------------------------------------------------------

    @work(thread=True, exclusive=True, group="runs-list", exit_on_error=False)
    def _poll_list(self) -> None:
        index = self._index
        self.post_message(self.Listed(index.rows(now=self.now())))

    @property
    def _index(self) -> RunsIndex:
        index = getattr(self, "_runs_index", None)
        if index is None:
            index = self._runs_index = RunsIndex(self.workspace)
        return index

    @on(Listed)
    def _on_listed(self, message: Listed) -> None:
        self.rows = message.rows
        self._alert_list_changes(message.rows)
        if not self.dashboard_open:  # a hidden table is filled when it is shown again
            self._fill_table()
        for proc in list(self._spawned):
            if proc.poll() is not None:  # reap a runner this screen resumed
                self._spawned.remove(proc)
        self.set_timer(LIST_POLL_BEHIND_S if self.dashboard_open else LIST_POLL_S, self._poll_list)

    def _alert_list_changes(self, rows: list[RunRow]) -> None:
        """Runs other than the one on the dashboard (which says more) that ended since the last poll."""
        before = self._states
        self._states = {row.id: row.state for row in rows}
        for row in rows:
            was = before.get(row.id)
            if was in ACTIVE_STATES and row.state not in ACTIVE_STATES and row.id != self.run_id:
                where = f" at step {row.step}" + (f"/{row.max_steps}" if row.max_steps else "")
                message = f": {row.error_message}" if row.error_message else ""
                text = f"run {row.id} {row.state_label}{where}{message}"
                self._alert((row.id, row.state, row.ended), text, ALERT_SEVERITY.get(row.state, "warning"))

    def _alert(self, key: tuple, text: str, severity: str, title: str = "Run ended") -> None:
        """A notification and the terminal bell, once per key."""
        if key in self._alerted:
            return
        self._alerted.add(key)
        self.notify(text, title=title, severity=severity, markup=False, timeout=10)  # type: ignore[arg-type]
        self.app.bell()

    def _columns(self) -> tuple[str, ...]:
        """The run list's columns; below 100 columns `started` goes (the run id starts with it)."""
        if self.size.width and self.size.width < 100:
            return tuple(c for c in RUN_COLUMNS if c != "started")
        return RUN_COLUMNS

    def on_resize(self) -> None:
        if self.rows and self._columns() != getattr(self, "_table_columns", None):
            self._fill_table()

    def _fill_table(self) -> None:
        table = self.query_one("#runs-table", DataTable)
        text = self.query_one("#runs-filter", Input).value
        rows = [row for row in self.rows if not text or row.matches(text)]
        columns = self._columns()
        cells = [tuple(self._cells(row)[c] for c in columns) for row in rows]
        signature = [(row.id, *map(str, c)) for row, c in zip(rows, cells, strict=True)]
        if columns != getattr(self, "_table_columns", None):
            self._table_columns = columns
            self._table_signature = None
            current = self._highlighted_id()
            table.clear(columns=True)
            for column in columns:
                table.add_column(column, key=column)
        if signature != getattr(self, "_table_signature", None):
            self._table_signature = signature
            current = self._highlighted_id()
            table.clear()
            for row, row_cells in zip(rows, cells, strict=True):
                table.add_row(*row_cells, key=row.id)
            if current is not None and current in {r.id for r in rows}:
                table.move_cursor(row=table.get_row_index(current), animate=False)
        shown = f"{len(rows)} of {len(self.rows)}" if text else f"{len(self.rows)} runs"
        self.query_one("#runs-count", Static).update(shown)
        self.query_one("#runs-empty", Static).display = not self.rows
        table.display = bool(self.rows)

    @staticmethod
    def _cells(row: RunRow) -> dict[str, Any]:
        steps = f"{row.step}/{row.max_steps}" if row.max_steps else str(row.step)
        progress = progress_bar(row.progress, 5) if row.max_steps else Text("")
        progress.append(f" {steps}")
        return {
            "run": row.id,
            "state": state_text(row.state_label, row.state),
            "method": row.method,
            "progress": progress,
            "loss": format_value(row.last_loss),
            "started": format_started(row.started or row.created),
            "duration": format_duration(row.duration_s),
        }

    def _highlighted_id(self) -> str | None:
        table = self.query_one("#runs-table", DataTable)
        if not table.row_count:
            return None
        try:
            return str(table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value)
        except Exception:  # noqa: BLE001 - an empty or changing table has no cursor row
            return None

    @on(Input.Changed, "#runs-filter")
    def _on_filter(self) -> None:
        self._fill_table()

    @on(Input.Submitted, "#runs-filter")
    def _on_filter_submitted(self) -> None:
        self.query_one("#runs-table", DataTable).focus()

    @on(DataTable.RowSelected, "#runs-table")
    def _on_row_selected(self, event: DataTable.RowSelected) -> None:
        self.show_run(str(event.row_key.value))

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
        self._stop_run_poll()
        self.run_id = run_id
        self.history = RunHistory(RunDir(path), log_lines=LOG_LINES)
        self.snapshot = None
        self._tail = _Tail()
        self._force = set()
        self.overlay_ids, self._overlay = [], []
        await self.query_one("#dash-charts", ChartGrid).clear()
        await self.query_one("#dash-system", ChartGrid).clear()
        self.query_one("#dash-log", Log).clear()
        self.query_one("#dash-checkpoints", DataTable).clear()
        self.query_one("#dash-tabs", TabbedContent).hide_tab("tab-compare")
        self._shown = {}
        self.query_one("#dash-title", Static).update(title_line(None, run_id))
        self.query_one("#dash-progress", Static).update("")
        self.query_one("#dash-alert", Static).display = False
        self.query_one("#dash-gpu-note", Static).update("")
        self.query_one("#runs-switcher", ContentSwitcher).current = "runs-dashboard"
        tabs = self.query_one("#dash-tabs", TabbedContent)
        tabs.active = "tab-charts"
        tabs.query_one("Tabs").focus()
        self._poll_run()

    def _stop_run_poll(self) -> None:
        if self._run_timer is not None:
            self._run_timer.stop()
            self._run_timer = None
        self.workers.cancel_group(self, "run-refresh")

    def _charts(self) -> list[MetricChart]:
        return [
            *self.query_one("#dash-charts", ChartGrid).charts,
            *self.query_one("#dash-system", ChartGrid).charts,
        ]

    def _poll_run(self) -> None:
        self._run_timer = None
        if self.history is None:
            return
        widths: dict[str, int] = {}
        for chart in self._charts():
            width = chart.wanted_width
            for name in chart.series_names:
                widths[name] = width
                if chart.data_width is not None and chart.data_width != width:
                    self._force.add(name)  # resized: downsample again for the new width
        grid = self.query_one("#dash-charts", ChartGrid)
        default = max(20, (grid.size.width or 80) // 2)
        compare = self.query_one("#dash-compare", MetricChart)
        request = RefreshRequest(widths, self._force, default, list(self._overlay), compare.wanted_width)
        self._force = set()
        self._refresh_run(self.history, self._tail, request)

    @work(thread=True, exclusive=True, group="run-refresh", exit_on_error=False)
    def _refresh_run(self, history: RunHistory, tail: _Tail, request: RefreshRequest) -> None:
        try:
            result, snapshot = read_snapshot(history, tail, request, self.now())
        except OSError as exc:
            self.post_message(self.Unreadable(history, str(exc)))
            return
        self.post_message(self.Refreshed(history, result, snapshot))

    @on(Unreadable)
    def _on_unreadable(self, message: Unreadable) -> None:
        if message.history is not self.history:
            return
        self.notify(f"cannot read the run: {message.error}", severity="error", markup=False)
        self._run_timer = self.set_timer(IDLE_RUN_POLL_S, self._poll_run)

    @on(Refreshed)
    async def _on_refreshed(self, message: Refreshed) -> None:
        if message.history is not self.history:
            return  # an answer about a run no longer shown
        first = self.snapshot is None
        snap = self.snapshot = message.snapshot
        result = message.result
        status = snap.status
        run_id = self.run_id or ""
        if result.alert and status is not None:
            key = (status.id or run_id, status.state, status.ended)
            self._alert(key, result.alert, ALERT_SEVERITY.get(status.state, "warning"))
        if not first:  # alarms already in the history on opening are shown, not rung
            for event in result.watchdog:
                text = f"run {run_id} step {event.get('step')}: {event.get('text') or event.get('problem')}"
                severity = "error" if event.get("action") == "stop" else "warning"
                self._alert((run_id, "watchdog", event.get("t")), text, severity, title="Watchdog")
        self._show("#dash-title", title_line(status, run_id), layout=False)  # one line: no re-layout
        self._show("#dash-progress", progress_line(snap.progress, status), layout=False)
        text = alert_text(status, snap.watchdog)
        self.query_one("#dash-alert", Static).display = text is not None
        if text is not None:
            self._show("#dash-alert", text)
        await self._update_charts(snap)
        await self._update_system(snap)
        if snap.log is not None:
            log = self.query_one("#dash-log", Log)
            log.clear()
            log.write_lines(snap.log)
        if snap.checkpoints is not None:
            self._fill_checkpoints(snap.checkpoints)
        if snap.overlay is not None:
            self._draw_overlay(snap.overlay)
        self.refreshes += 1  # counted once everything it brought is shown
        active = status is None or status.state in ACTIVE_STATES
        self._run_timer = self.set_timer(RUN_POLL_S if active else IDLE_RUN_POLL_S, self._poll_run)

    def _show(self, selector: str, content: Text, *, layout: bool = True) -> None:
        """Update a Static when what it shows changed (an unchanged one costs no repaint)."""
        widget = self.query_one(selector, Static)
        if self._shown.get(selector) != content:
            self._shown[selector] = content
            widget.update(content, layout=layout)

    async def _update_charts(self, snap: Snapshot) -> None:
        grid = self.query_one("#dash-charts", ChartGrid)
        have = {chart.id: chart for chart in grid.charts}
        names = set(snap.metric_names)
        order = [group_id for group_id, _, _ in CHART_GROUPS]
        for group_id, title, series in CHART_GROUPS:
            chart_id = f"chart-{group_id.replace('/', '-')}"
            present = [n for n in series if n in names]
            if not present:
                continue
            chart = have.get(chart_id)
            if chart is None:
                chart = MetricChart(title, series, id=chart_id)
                later = [
                    c for c in grid.charts if order.index(c.id.removeprefix("chart-")) > order.index(group_id)
                ]
                await grid.add_chart(chart, before=grid.charts.index(later[0]) if later else None)
                have[chart_id] = chart
            self._feed(chart, snap, title)

    def _feed(self, chart: MetricChart, snap: Snapshot, title: str) -> None:
        points = {n: snap.points[n] for n in chart.series_names if n in snap.points}
        widths = [snap.widths[n] for n in points]
        present = [n for n in chart.series_names if snap.last.get(n) is not None]
        if len(present) == 1:
            chart.set_title(f"{title} {format_value(snap.last[present[0]])}")
        elif present:
            figures = [format_value(snap.last[present[0]])]  # the first series is the title's
            for name in present[1:]:
                label = "eval" if name.startswith("eval_") else chart.labels.get(name, short_label(name))
                figures.append(f"{label} {format_value(snap.last[name])}")
            chart.set_title(f"{title} {' · '.join(figures)}")
        else:
            chart.set_title(title)
        chart.set_points(points, widths[0] if widths else None, snap.origin)

    async def _update_system(self, snap: Snapshot) -> None:
        grid = self.query_one("#dash-system", ChartGrid)
        have = {chart.id: chart for chart in grid.charts}
        names = set(snap.system_names)
        wanted: list[tuple[str, str, tuple[str, ...], dict[str, str]]] = []
        for index in snap.gpu_indices:
            for chart_key, title, keys in GPU_CHARTS:
                series = tuple(f"gpu{index}/{k}" for k in keys)
                if any(s in names for s in series):
                    labels = {f"gpu{index}/memory_used_mb": "used", f"gpu{index}/memory_total_mb": "total"}
                    wanted.append((f"gpu{index}-{chart_key}", f"GPU {index} {title}", series, labels))
        for chart_key, title, series in SYSTEM_CHARTS:
            if any(s in names for s in series):
                wanted.append((chart_key, title, series, SYSTEM_LABELS))
        for chart_key, title, series, labels in wanted:
            chart = have.get(f"sys-{chart_key}")
            if chart is None:
                chart = MetricChart(title, series, x="time", labels=labels, id=f"sys-{chart_key}")
                await grid.add_chart(chart)
            self._feed(chart, snap, title)
        self._show("#dash-gpu-note", self._gpu_note(snap))

    @staticmethod
    def _gpu_note(snap: Snapshot) -> Text:
        if not snap.system_names:
            return Text(
                "No system samples recorded yet (the runner writes one every few seconds while it trains).",
                style="dim",
            )
        ram_total = snap.last.get("system/ram_total_mb")
        ram = f" · RAM {ram_total / 1024:.0f} GB in all" if ram_total else ""
        ram += " · runner CPU 100% = 1 core"
        if not snap.gpu_indices:
            reason = (snap.gpu_error or "").removeprefix("no GPU: ") or "none was visible to the runner"
            return Text.assemble(("no GPU: ", "bold yellow"), (reason, "yellow"), (ram, "dim"))
        parts = []
        for index in snap.gpu_indices:
            name = snap.gpu_names.get(index, f"GPU {index}")
            used = snap.last.get(f"gpu{index}/memory_used_mb")
            total = snap.last.get(f"gpu{index}/memory_total_mb")
            util = snap.last.get(f"gpu{index}/utilization_pct")
            temp = snap.last.get(f"gpu{index}/temperature_c")
            power = snap.last.get(f"gpu{index}/power_w")
            bits = [f"GPU {index} {name}"]
            if used is not None and total:
                bits.append(f"{used / 1024:.1f}/{total / 1024:.0f} GB")
            if util is not None:
                bits.append(f"{util:.0f}%")
            if temp is not None:
                bits.append(f"{temp:.0f}°C")
            if power is not None:
                bits.append(f"{power:.0f} W")
            parts.append(" · ".join(bits))
        return Text("\n".join(parts) + ram)

    def _fill_checkpoints(self, checkpoints: list[Checkpoint]) -> None:
        table = self.query_one("#dash-checkpoints", DataTable)
        table.clear()
        for c in checkpoints:
            table.add_row(
                c.path.name,
                str(c.step),
                Text("yes", style="green") if c.complete else Text("no (cut short)", style="red"),
                format_value(c.metrics.get("loss")),
                format_value(c.metrics.get("eval_loss")),
                str(c.path),
                key=c.path.name,
            )

    # --- overlay -------------------------------------------------------------------------------------

    def _draw_overlay(self, overlay: dict[str, dict[str, SeriesPoints]]) -> None:
        chart = self.query_one("#dash-compare", MetricChart)
        points: dict[str, SeriesPoints] = {}
        labels: dict[str, str] = {}
        for run_id, series in overlay.items():
            for name, pts in series.items():
                key = f"{run_id}/{name}"
                points[key] = pts
                labels[key] = f"{run_id[16:] or run_id}{' eval' if name == 'eval_loss' else ''}"
        chart.series_names = tuple(points)
        chart.labels = labels
        chart.set_title("loss of " + ", ".join(overlay))
        chart.set_points(points, chart.wanted_width)
        missing = [r for r, s in overlay.items() if not s]
        note = f"no loss logged yet: {', '.join(missing)}" if missing else ""
        self.query_one("#dash-compare-note", Static).update(note)

    # --- actions -------------------------------------------------------------------------------------

    def _current_run(self) -> str | None:
        if self.dashboard_open:
            return self.run_id
        return self._highlighted_id()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if not self.is_mounted:
            return True
        if action == "filter":
            return not self.dashboard_open
        if action == "back":
            return self.dashboard_open or self.focused is self.query_one("#runs-filter")
        if action in ("stop", "resume", "chat", "export", "overlay"):
            return self._current_run() is not None
        return True

    def action_filter(self) -> None:
        self.set_focus(self.query_one("#runs-filter", Input))  # now: keys typed right after `f` land here

    def action_back(self) -> None:
        if not self.dashboard_open:
            self.query_one("#runs-table", DataTable).focus()
            return
        self._stop_run_poll()
        self.history = None
        self.run_id = None
        self.query_one("#runs-switcher", ContentSwitcher).current = "runs-list-view"
        self.query_one("#runs-table", DataTable).focus()
        self._fill_table()

    def action_stop(self) -> None:
        run_id = self._current_run()
        if run_id:
            self.notify(f"asking {run_id} to stop (it saves a checkpoint first)…", markup=False)
            self._stop_worker(run_id)

    @work(thread=True, exclusive=True, group="runs-stop", exit_on_error=False)
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

    @work(thread=True, exclusive=True, group="runs-resume", exit_on_error=False)
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

        def chosen(answer: tuple[str, bool] | None) -> None:
            if answer is not None:
                folder, merge = answer
                self.notify(f"exporting {run_id}{' (merging)' if merge else ''}…", markup=False)
                self._export_worker(run_id, folder, merge)

        self.app.push_screen(ExportDialog(run_id, default), chosen)

    @work(thread=True, exclusive=True, group="runs-export", exit_on_error=False)
    def _export_worker(self, run_id: str, folder: str, merge: bool) -> None:
        """What `tui-ft export RUN --out DIR [--merge]` does."""
        from tui_ft.inference.export import export_run

        try:
            result = export_run(self.workspace, run_id, Path(folder).expanduser(), merge=merge)
        except UserError as exc:
            self.post_message(self.ActionDone(f"cannot export: {exc}", "error"))
            return
        except Exception as exc:  # noqa: BLE001 - the export of a broken model: said, not raised
            self.post_message(self.ActionDone(f"export failed: {type(exc).__name__}: {exc}", "error"))
            return
        what = "full model (merged)" if result.merged else ("adapter" if result.adapter else "model")
        self.post_message(self.ActionDone(f"exported the {what} of {run_id} to {result.out_dir}"))

    def action_overlay(self) -> None:
        run_id = self._current_run()
        if not run_id:
            return
        selected = self.overlay_ids or [run_id]

        def chosen(ids: list[str] | None) -> None:
            if ids:
                self.call_later(self.overlay, ids, run_id)

        self.app.push_screen(OverlayDialog(self.rows, selected), chosen)

    async def overlay(self, run_ids: list[str], run_id: str | None = None) -> None:
        """Draw the loss curves of `run_ids` in one chart (the Compare tab), following them live."""
        if not self.dashboard_open or (run_id and run_id != self.run_id):
            await self._open_run(run_id or run_ids[0])
        self.overlay_ids = list(run_ids)
        self._overlay = [RunHistory(RunDir(self.workspace.runs / r)) for r in run_ids]
        tabs = self.query_one("#dash-tabs", TabbedContent)
        tabs.show_tab("tab-compare")
        tabs.active = "tab-compare"
        self.query_one("#dash-compare-note", Static).update("reading…")
        if self._run_timer is not None:  # refresh now rather than at the next tick
            self._run_timer.stop()
            self._poll_run()
