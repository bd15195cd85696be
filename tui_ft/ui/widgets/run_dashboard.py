"""The live dashboard of one run: its title, progress, alerts, and tabs of charts, system samples,
log, checkpoints, its newest evaluation and a loss overlay of several runs.

It tails the run with a `RunHistory` on a worker: each refresh reads only what the runner appended,
downsamples the charted series that changed to their chart's width, and posts one message; the next
refresh is scheduled when the last one ended (handled or failed), so a slow read never piles up and a
failed one does not stop the dashboard. Charts repaint only when their data changed, at most every
`charts.MIN_REDRAW_S`, and only while on screen (the charts of a hidden tab are fed, not drawn). A run
that ends and a watchdog alarm are posted as `RunDashboard.Alert`.

Keys (in the footer): a letter per tab (`g` Charts, `y` System, `l` Log, `k` Checkpoints, `e` Eval,
`m` Compare) and `n` / `N` to bring the next / previous row of charts into view when they do not all fit.
"""

from __future__ import annotations

import re
import textwrap
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.message import Message
from textual.timer import Timer
from textual.widgets import DataTable, Log, Static, TabbedContent, TabPane
from textual.worker import Worker, WorkerState

from tui_ft.display import format_duration, format_started
from tui_ft.evaluation.store import NO_EVAL_TEXT, eval_table, latest_signature, load_latest
from tui_ft.runs.history import Progress, RefreshResult, RunHistory
from tui_ft.runs.registry import ACTIVE_STATES, Checkpoint
from tui_ft.runs.rundir import RunDir, Status
from tui_ft.runs.series import SeriesPoints
from tui_ft.ui.widgets.charts import ChartGrid, MetricChart, short_label
from tui_ft.ui.widgets.confusion import ConfusionMatrix
from tui_ft.ui.widgets.run_format import (
    ALERT_SEVERITY,
    format_metric,
    format_metric_column,
    progress_bar,
    state_text,
)
from tui_ft.ui.widgets.run_nodes import RunNodes

RUN_POLL_S = 1.0  # while the run is active
IDLE_RUN_POLL_S = 3.0  # a finished run (it may be resumed from elsewhere)
LOG_LINES = 300
NOTE_LOG_LINES = 8  # the last lines of output.log the Charts tab shows while it has no chart

#: The dashboard's tabs: (pane id, key, title). Each key is a letter no other key of the Runs screen
#: takes (shown before the title in the tab bar).
TAB_KEYS: tuple[tuple[str, str, str], ...] = (
    ("tab-charts", "g", "Charts"),
    ("tab-system", "y", "System"),
    ("tab-log", "l", "Log"),
    ("tab-checkpoints", "k", "Checkpoints"),
    ("tab-eval", "e", "Eval"),
    ("tab-compare", "m", "Compare"),
)


def _tab_title(pane: str) -> str:
    """A tab's title with its key before it, as the header writes the places: `g Charts`."""
    key, title = next((key, title) for p, key, title in TAB_KEYS if p == pane)
    return f"[b]{key}[/b] {title}"


FOOTER_TABS_WIDTH = 100  # columns from which the footer shows the tabs' keys
_TABS_GROUP = Binding.Group("Tabs ", compact=True)  # the space: the next key comes right after it

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
    ("f1", "macro F1", ("eval_f1_macro",)),  # classify (its accuracy is the chart above)
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


_TASK_LOSS = re.compile(r"eval_(.+)_loss")


def task_losses(names: Iterable[str]) -> list[str]:
    """The per-task evaluation losses of a multi-task run (`eval_<task>_loss`), by task name."""
    return sorted(n for n in names if n != "eval_loss" and _TASK_LOSS.fullmatch(n))


def charted_series(names: list[str]) -> list[str]:
    """The series some chart of the dashboard draws (the others are only listed)."""
    wanted = {n for _, _, group in CHART_GROUPS for n in group} | set(task_losses(names))
    wanted |= {n for _, _, group in SYSTEM_CHARTS for n in group}
    gpu_keys = {n for _, _, group in GPU_CHARTS for n in group}
    return [n for n in names if n in wanted or (n.startswith("gpu") and n.split("/", 1)[-1] in gpu_keys)]


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


def title_line(status: Status | None, run_id: str, status_error: str | None = None) -> Text:
    if status is None:
        if status_error:
            return Text.assemble((run_id, "bold"), " · ", state_text("unreadable", "unreadable"))
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


def alert_text(
    status: Status | None, watchdog: tuple[dict[str, Any], ...], status_error: str | None = None
) -> Text | None:
    """The error and its hint for a run that failed or crashed, why its status cannot be read, and the
    watchdog's alarms."""
    lines: list[Text] = []
    if status_error:
        lines.append(Text.assemble(("✗ ", "bold red"), (status_error, "red")))
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


def charts_note(
    status: Status | None, status_error: str | None, log: list[str], system_samples: bool
) -> Text:
    """What the Charts tab shows while the run has logged no training step: that it has not, its last
    status, the samples there are elsewhere and the end of its output (the error of a run that failed
    or crashed is in the alert over the tabs)."""
    lines: list[Text] = []
    if status is None:
        lines.append(Text(status_error or "reading the run…", style="red" if status_error else "dim"))
    elif status.state in ACTIVE_STATES:
        lines.append(
            Text(f"No training step logged yet: the run is {status.state}; charts appear with the first.")
        )
    else:  # its error and hint, if any, are in the alert over the tabs
        lines.append(Text(f"No training step was logged: the run {status.state} before its first."))
    if status is not None:
        bits = [status.state, f"step {status.step}" + (f"/{status.max_steps}" if status.max_steps else "")]
        if status.updated:
            bits.append(f"updated {format_started(status.updated)}")
        lines.append(Text("last status: " + " · ".join(bits), style="dim"))
    if system_samples:
        lines.append(Text("System samples were recorded: see the System tab (y).", style="dim"))
    tail = [line for line in log if line.strip()][-NOTE_LOG_LINES:]
    if tail:
        lines.append(Text("last lines of output.log (all in the Log tab, l):", style="bold"))
        lines.extend(Text(line, style="dim") for line in tail)
    return Text("\n").join(lines)


def wrap_lines(lines: Iterable[str], width: int) -> list[str]:
    """`lines` cut to `width` columns at spaces where they can be (long words are split), each
    continuation indented two columns past its line's own indentation: nothing is lost at the edge."""
    if width < 8:
        return list(lines)
    out: list[str] = []
    for line in lines:
        line = line.expandtabs(4).rstrip()
        if len(line) <= width:
            out.append(line)
            continue
        indent = " " * min(len(line) - len(line.lstrip(" ")) + 2, width // 2)
        out.extend(
            textwrap.wrap(
                line, width, subsequent_indent=indent, break_on_hyphens=False, replace_whitespace=False
            )
            or [""]
        )
    return out


class LogView(Log):
    """The run's output, its long lines wrapped at the width of the view (re-wrapped on resize)."""

    def __init__(self, *, max_lines: int | None = None, id: str | None = None) -> None:  # noqa: A002
        super().__init__(max_lines=max_lines, id=id)
        self.source: list[str] = []
        self._wrapped_for = 0

    def _wrap_width(self) -> int:
        return self.size.width - int(self.styles.scrollbar_size_vertical or 0) - 1

    def show(self, lines: list[str]) -> None:
        """Show `lines` (the whole tail) in place of what it showed."""
        self.source = list(lines)
        self._fill()

    def _fill(self) -> None:
        width = self._wrap_width()
        self._wrapped_for = width
        self.clear()
        self.write_lines(wrap_lines(self.source, width) if width > 0 else self.source)

    def on_resize(self) -> None:
        if self.source and self._wrap_width() != self._wrapped_for:
            self._fill()


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
    status_error: str | None  # status.json cannot be read: why
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
    confusion: dict[str, Any] | None = None  # a classifier's last confusion matrix
    eval_changed: bool = False  # eval/latest.json appeared, changed or went since the last refresh
    eval_doc: dict[str, Any] | None = None  # the newest evaluation (when eval_changed)


class _Tail:
    """State the refresh worker keeps between refreshes of one run (only workers touch it, one at a time)."""

    def __init__(self) -> None:
        self.log: list[str] | None = None
        self.checkpoints: list[tuple] | None = None
        self.sent: set[str] = set()
        self.eval_signature: tuple[int, int] | None | bool = False  # False: not read yet


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
    eval_file = latest_signature(history.run.path)
    eval_changed = eval_file != tail.eval_signature
    eval_doc = None
    if eval_changed:
        tail.eval_signature = eval_file
        eval_doc = load_latest(history.run.path) if eval_file is not None else None
    info = history.info
    return result, Snapshot(
        status=status,
        status_error=history.status_error,
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
        confusion=info.confusion,  # replaced whole on each evaluation, never changed in place
        eval_changed=eval_changed,
        eval_doc=eval_doc,
    )


# ------------------------------------------------------------------------------------------------
# the widget


def overlay_names(run_ids: list[str]) -> dict[str, str]:
    """Each run's name in an overlay's legend: the recipe's part of its id (`sft-lora`), with the time
    it started (`13:28:09 sft-lora`) when two runs of one recipe are overlaid (a sweep's trials)."""
    short = {r: r[16:] or r for r in run_ids}
    clash = {n for n in short.values() if list(short.values()).count(n) > 1}
    stamped = {
        r: f"{r[9:11]}:{r[11:13]}:{r[13:15]} {n}" if n in clash and len(r) > 16 else n
        for r, n in short.items()
    }
    return {r: stamped[r] if len(set(stamped.values())) == len(stamped) else r for r in run_ids}


class RunDashboard(Vertical):
    """The live dashboard of one run; `open` shows a run, `close` stops following it."""

    BINDINGS = [
        # each tab's key twice: in the footer where it is wide enough (at 80 columns the Runs screen's
        # own keys fill it), and always (the tab bar shows each tab's key at every width)
        *(
            Binding(key, f"tab('{pane}')", title, id=f"runs.dashboard.{pane}", group=_TABS_GROUP)
            for pane, key, title in TAB_KEYS
        ),
        *(
            Binding(key, f"show_tab('{pane}')", title, show=False, id=f"runs.dashboard.{pane}.any_width")
            for pane, key, title in TAB_KEYS
        ),
        Binding("n", "cycle_charts(1)", "More", id="runs.dashboard.next_charts"),
        Binding("N", "cycle_charts(-1)", "Previous charts", show=False, id="runs.dashboard.previous_charts"),
    ]

    # --- messages ------------------------------------------------------------------------------------

    @dataclass
    class Refreshed(Message):
        """One refresh of the run shown (from the worker to the dashboard itself)."""

        history: RunHistory
        result: RefreshResult
        snapshot: Snapshot

    @dataclass
    class Unreadable(Message):
        """The run's files could not be read this time (the next refresh tries again)."""

        history: RunHistory
        error: str

    @dataclass
    class Alert(Message):
        """The run ended, or its watchdog raised an alarm: worth a notification and the bell, once per key."""

        key: tuple
        text: str
        severity: str
        title: str = "Run ended"

    # --- layout --------------------------------------------------------------------------------------

    def __init__(self, clock: Callable[[], float], *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.clock = clock  # the wall clock (tests give a fixed one)
        self.run_id: str | None = None  # the run shown
        self.history: RunHistory | None = None
        self.snapshot: Snapshot | None = None
        self.refreshes = 0  # refreshes handled (tests and benchmarks read it)
        self.overlay_ids: list[str] = []
        self._overlay: list[RunHistory] = []
        self._tail = _Tail()
        self._run_timer: Timer | None = None
        self._refresh_worker: Worker | None = None  # the refresh in flight
        self._next_poll_s = IDLE_RUN_POLL_S  # after the refresh in flight; set when it is handled
        self._force: set[str] = set()
        self._shown: dict[str, Text] = {}  # what each Static shows
        self._wide = False  # the footer shows the tabs' keys

    def compose(self) -> ComposeResult:
        yield Static("", id="dash-title")
        yield Static("", id="dash-progress")
        yield Static("", id="dash-alert")
        with TabbedContent(id="dash-tabs", initial="tab-charts"):
            with TabPane(_tab_title("tab-charts"), id="tab-charts"):
                yield Static("", id="dash-charts-note")
                yield ChartGrid(id="dash-charts")
                yield ConfusionMatrix(id="dash-confusion")
            with TabPane(_tab_title("tab-system"), id="tab-system"):
                yield RunNodes(id="dash-nodes")  # the nodes of a multi-node run (hidden otherwise)
                yield Static("", id="dash-gpu-note")
                yield ChartGrid(id="dash-system")
            with TabPane(_tab_title("tab-log"), id="tab-log"):
                yield LogView(max_lines=LOG_LINES * 4, id="dash-log")
            with TabPane(_tab_title("tab-checkpoints"), id="tab-checkpoints"):
                yield DataTable(cursor_type="row", id="dash-checkpoints")
            with TabPane(_tab_title("tab-eval"), id="tab-eval"):
                yield Static("", id="dash-eval-note")
                yield DataTable(cursor_type="row", id="dash-eval")
                yield Static("", id="dash-eval-forgetting")
            with TabPane(_tab_title("tab-compare"), id="tab-compare"):
                yield Static("", id="dash-compare-note")
                yield MetricChart("loss", (), id="dash-compare")

    def on_mount(self) -> None:
        checkpoints = self.query_one("#dash-checkpoints", DataTable)
        for column in ("checkpoint", "step", "complete", "loss", "eval_loss", "path"):
            checkpoints.add_column(column, key=column)
        self.query_one("#dash-tabs", TabbedContent).hide_tab("tab-compare")
        self.query_one("#dash-alert", Static).display = False
        self.query_one("#dash-charts-note", Static).display = False
        self.refresh_bindings()  # the keys as mounted (`check_action`), not as they were guessed before

    # --- keys ----------------------------------------------------------------------------------------

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """Compare's key only while it has a tab, the tabs' keys in the footer only where it has room;
        more charts only while some are out of view."""
        if not self.is_mounted:  # (asked again once mounted)
            return action != "cycle_charts"  # every chart is in view before there are any
        tabs = self.query_one("#dash-tabs", TabbedContent)
        if action in ("tab", "show_tab"):
            if parameters and parameters[0] == "tab-compare" and not self.overlay_ids:
                return False
            return action == "show_tab" or self.size.width >= FOOTER_TABS_WIDTH
        if action == "cycle_charts":
            grid = self.query_one("#dash-charts", ChartGrid)
            return tabs.active == "tab-charts" and grid.overflows
        return True

    def action_tab(self, pane: str) -> None:
        self.action_show_tab(pane)

    def on_resize(self) -> None:
        wide = self.size.width >= FOOTER_TABS_WIDTH
        if wide != self._wide:
            self._wide = wide
            self.refresh_bindings()

    def action_show_tab(self, pane: str) -> None:
        tabs = self.query_one("#dash-tabs", TabbedContent)
        if pane == "tab-compare" and not self.overlay_ids:
            return
        tabs.active = pane

    def action_cycle_charts(self, by: int) -> None:
        self.query_one("#dash-charts", ChartGrid).cycle(by)

    @on(TabbedContent.TabActivated, "#dash-tabs")
    def _on_tab(self) -> None:
        self.refresh_bindings()  # `n` only on the Charts tab

    # --- opening and closing -------------------------------------------------------------------------

    async def open(self, run_id: str) -> None:
        """Show run `run_id` (an existing run directory), empty until `start` has read it."""
        self.close()
        self.run_id = run_id
        self.history = RunHistory(RunDir(self._runs_dir / run_id), log_lines=LOG_LINES)
        self.snapshot = None
        self._tail = _Tail()
        self._force = set()
        self.overlay_ids, self._overlay = [], []
        await self.query_one("#dash-charts", ChartGrid).clear()
        await self.query_one("#dash-system", ChartGrid).clear()
        self.query_one("#dash-log", LogView).show([])
        self.query_one("#dash-checkpoints", DataTable).clear()
        self.query_one("#dash-confusion", ConfusionMatrix).show(None)
        self._fill_eval(None)
        self.query_one("#dash-tabs", TabbedContent).hide_tab("tab-compare")
        self._shown = {}
        self.query_one("#dash-title", Static).update(title_line(None, run_id))
        self.query_one("#dash-progress", Static).update("")
        self.query_one("#dash-alert", Static).display = False
        self.query_one("#dash-gpu-note", Static).update("")
        self.query_one("#dash-charts-note", Static).display = False

    def start(self) -> None:
        """Show the Charts tab with the keyboard on the tabs, and start following the run (on a worker)."""
        tabs = self.query_one("#dash-tabs", TabbedContent)
        tabs.active = "tab-charts"
        tabs.query_one("Tabs").focus()
        self._poll_run()

    def close(self) -> None:
        """Stop following the run shown."""
        if self._run_timer is not None:
            self._run_timer.stop()
            self._run_timer = None
        self._refresh_worker = None
        self.workers.cancel_group(self, "run-refresh")
        self.history = None
        self.run_id = None

    @property
    def _runs_dir(self) -> Path:
        return self.app.workspace.runs  # type: ignore[attr-defined]

    # --- refreshing ----------------------------------------------------------------------------------

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
        self._next_poll_s = IDLE_RUN_POLL_S  # unless the refresh is handled and the run is active
        self._refresh_worker = self._refresh_run(self.history, self._tail, request)

    @work(
        thread=True, exclusive=True, group="run-refresh", exit_on_error=False, description="reading the run"
    )
    def _refresh_run(self, history: RunHistory, tail: _Tail, request: RefreshRequest) -> None:
        try:
            result, snapshot = read_snapshot(history, tail, request, self.clock())
        except OSError as exc:
            self.post_message(self.Unreadable(history, str(exc)))
            return
        self.post_message(self.Refreshed(history, result, snapshot))

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        """The next refresh is scheduled when the last one ended, whether it was handled or it failed
        (its messages, posted before it ended, have been handled by now)."""
        ended = event.state in (WorkerState.SUCCESS, WorkerState.ERROR)  # cancelled: closed or superseded
        if event.worker is self._refresh_worker and ended:
            self._refresh_worker = None
            self._run_timer = self.set_timer(self._next_poll_s, self._poll_run)

    @on(Unreadable)
    def _on_unreadable(self, message: Unreadable) -> None:
        if message.history is not self.history:
            return
        self.notify(f"cannot read the run: {message.error}", severity="error", markup=False)
        self._next_poll_s = IDLE_RUN_POLL_S

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
            self.post_message(self.Alert(key, result.alert, ALERT_SEVERITY.get(status.state, "warning")))
        if not first:  # alarms already in the history on opening are shown, not rung
            for event in result.watchdog:
                alarm = f"run {run_id} step {event.get('step')}: {event.get('text') or event.get('problem')}"
                severity = "error" if event.get("action") == "stop" else "warning"
                self.post_message(
                    self.Alert((run_id, "watchdog", event.get("t")), alarm, severity, "Watchdog")
                )
        self._show(
            "#dash-title", title_line(status, run_id, snap.status_error), layout=False
        )  # one line: no re-layout
        self._show("#dash-progress", progress_line(snap.progress, status), layout=False)
        text = alert_text(status, snap.watchdog, snap.status_error)
        self.query_one("#dash-alert", Static).display = text is not None
        if text is not None:
            self._show("#dash-alert", text)
        await self._update_charts(snap)
        self.query_one("#dash-confusion", ConfusionMatrix).show(snap.confusion)
        await self._update_system(snap)
        if snap.log is not None:
            self.query_one("#dash-log", LogView).show(snap.log)
        self._show_charts_note(snap)
        if snap.checkpoints is not None:
            self._fill_checkpoints(snap.checkpoints)
        if snap.overlay is not None:
            self._draw_overlay(snap.overlay)
        if snap.eval_changed:
            self._fill_eval(snap.eval_doc)
        self.refreshes += 1  # counted once everything it brought is shown
        active = status is None or status.state in ACTIVE_STATES
        self._next_poll_s = RUN_POLL_S if active else IDLE_RUN_POLL_S

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
        wanted = [
            (group_id, title, series, f"chart-{group_id.replace('/', '-')}")
            for group_id, title, series in CHART_GROUPS
            if any(n in names for n in series)
        ]
        if not have and wanted:  # the first read: every chart at once, laid out (and drawn) once
            charts = [MetricChart(title, series, id=chart_id) for _, title, series, chart_id in wanted]
            await grid.add_charts(charts)
            have = {chart.id: chart for chart in charts}
        for group_id, title, series, chart_id in wanted:
            chart = have.get(chart_id)
            if chart is None:
                chart = MetricChart(title, series, id=chart_id)
                later = [
                    c
                    for c in grid.charts
                    if order.index((c.id or "").removeprefix("chart-")) > order.index(group_id)
                ]
                await grid.add_chart(chart, before=grid.charts.index(later[0]) if later else None)
                have[chart_id] = chart
            self._feed(chart, snap, title)
        tasks = task_losses(names)  # a mixture: one eval loss per task, in one chart after the loss
        if tasks:
            chart = have.get("chart-tasks")
            if chart is None or list(chart.series_names) != tasks:
                if chart is not None:
                    await chart.remove()
                names_of = {n: n.removeprefix("eval_").removesuffix("_loss") for n in tasks}
                chart = MetricChart("eval loss per task", tuple(tasks), labels=names_of, id="chart-tasks")
                await grid.add_chart(chart, before=1 if grid.charts else None)
            self._feed(chart, snap, "eval loss per task")

    def _show_charts_note(self, snap: Snapshot) -> None:
        """While no chart has a point: why, the last status and the end of the output, in the Charts tab."""
        grid = self.query_one("#dash-charts", ChartGrid)
        note = self.query_one("#dash-charts-note", Static)
        empty = not any(chart.has_data() for chart in grid.charts)
        if note.display != empty:
            note.display = empty
        if empty:
            log = self.query_one("#dash-log", LogView).source
            self._show(
                "#dash-charts-note", charts_note(snap.status, snap.status_error, log, bool(snap.system_names))
            )

    def _feed(self, chart: MetricChart, snap: Snapshot, title: str) -> None:
        points = {n: snap.points[n] for n in chart.series_names if n in snap.points}
        widths = [snap.widths[n] for n in points]
        present = [n for n in chart.series_names if snap.last.get(n) is not None]
        if len(present) == 1:
            chart.set_title(f"{title} {format_metric(snap.last[present[0]])}")
        elif present:
            figures = [format_metric(snap.last[present[0]])]  # the first series is the title's
            for name in present[1:]:
                label = "eval" if name.startswith("eval_") else chart.labels.get(name, short_label(name))
                figures.append(f"{label} {format_metric(snap.last[name])}")
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
        losses = format_metric_column([c.metrics.get("loss") for c in checkpoints])
        eval_losses = format_metric_column([c.metrics.get("eval_loss") for c in checkpoints])
        for c, loss, eval_loss in zip(checkpoints, losses, eval_losses, strict=True):
            table.add_row(
                c.path.name,
                Text(str(c.step), justify="right"),
                Text("yes", style="green") if c.complete else Text("no (cut short)", style="red"),
                Text(loss, justify="right"),
                Text(eval_loss, justify="right"),
                str(c.path),
                key=c.path.name,
            )

    def _fill_eval(self, doc: dict[str, Any] | None) -> None:
        """The Eval tab: the newest evaluation's table (one row per model) and its forgetting line."""
        table = self.query_one("#dash-eval", DataTable)
        table.clear(columns=True)
        forgetting = self.query_one("#dash-eval-forgetting", Static)
        note = self.query_one("#dash-eval-note", Static)
        if doc is None:
            note.update(Text(NO_EVAL_TEXT.format(run=self.run_id or "RUN"), style="dim"))
            forgetting.update("")
            table.display = False
            return
        shown = eval_table(doc)
        note.update(Text(shown.caption, style="dim"))
        for column in shown.columns:
            table.add_column(column, key=column)
        for i, row in enumerate(shown.rows):
            table.add_row(*row, key=str(i))
        table.display = True
        forgetting.update(shown.footer or "")

    # --- overlay -------------------------------------------------------------------------------------

    def _draw_overlay(self, overlay: dict[str, dict[str, SeriesPoints]]) -> None:
        chart = self.query_one("#dash-compare", MetricChart)
        points: dict[str, SeriesPoints] = {}
        labels: dict[str, str] = {}
        names = overlay_names(list(overlay))
        for run_id, series in overlay.items():
            for name, pts in series.items():
                key = f"{run_id}/{name}"
                points[key] = pts
                labels[key] = f"{names[run_id]}{' eval' if name == 'eval_loss' else ''}"
        chart.series_names = tuple(points)
        chart.labels = labels
        chart.set_title("loss of " + ", ".join(overlay))
        chart.set_points(points, chart.wanted_width)
        missing = [r for r, s in overlay.items() if not s]
        note = f"no loss logged yet: {', '.join(missing)}" if missing else ""
        self.query_one("#dash-compare-note", Static).update(note)

    def show_overlay(self, run_ids: list[str]) -> None:
        """Draw the loss curves of `run_ids` in one chart (the Compare tab), following them live."""
        self.overlay_ids = list(run_ids)
        self._overlay = [RunHistory(RunDir(self._runs_dir / r)) for r in run_ids]
        tabs = self.query_one("#dash-tabs", TabbedContent)
        tabs.show_tab("tab-compare")
        tabs.active = "tab-compare"
        self.refresh_bindings()
        self.query_one("#dash-compare-note", Static).update("reading…")
        if self._run_timer is not None:  # refresh now rather than at the next tick
            self._run_timer.stop()
            self._poll_run()
