"""Charts of run metrics: one textual-plotext plot per chart (each with its own `plt`), drawn from
points already downsampled to its width, with round ticks (`nice_ticks`) and the legend on a line under
the plot; redrawn only when its data changed and only while it is on screen, at most every
`MIN_REDRAW_S` and within a share of one core for all the charts of a grid; and a grid that sizes its
charts to the space it has and scrolls (`ChartGrid.cycle` brings the next row of charts into view).
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Sequence
from typing import Any

from rich.text import Text
from textual.app import ComposeResult, RenderResult
from textual.containers import Grid, Vertical, VerticalScroll
from textual.dom import NoScreen
from textual.errors import NoWidget
from textual.timer import Timer
from textual.widgets import Static
from textual_plotext import PlotextPlot

from tui_ft.runs.series import SeriesPoints

MIN_REDRAW_S = 2.0  # a chart is rebuilt at most this often (a plotext build costs 10-40 ms)
# ... and at most this share of one core goes to rebuilding the charts of one grid, shared among the
# charts it shows: 4 charts that took 20 ms each to build wait 4 x 20 ms / DRAW_SHARE = 20 s before
# their next rebuild (big charts, slow machines).
DRAW_SHARE = 0.004
# Line colours in the order of a chart's series: 256-colour numbers, the same in plotext and Rich, so
# the legend under the plot shows each series in its line's colour.
COLOURS = (14, 11, 10, 13, 208, 12, 9, 15)


def _step_for(span: float, most: int) -> float:
    """The smallest 1-2-5 step (times a power of ten) that cuts `span` into at most `most` intervals."""
    raw = span / max(1, most)
    power = 10.0 ** math.floor(math.log10(raw))
    for factor in (1.0, 2.0, 5.0, 10.0):
        if factor * power >= raw * (1 - 1e-9):
            return factor * power
    return 10.0 * power


def tick_labels(ticks: Sequence[float], step: float) -> list[str]:
    """The labels of an axis's `ticks` (multiples of `step`), all with the decimals the step needs:
    `0.25 0.50 0.75` (step 0.25), `2 3 4`; in scientific notation with one exponent's digits when the
    values are all tiny (`2.5e-4`), whole thousands from 10,000 as `12k`."""
    largest = max((abs(t) for t in ticks), default=0.0)
    if step < 1e-3 and largest < 1e-2:
        exponent = math.floor(math.log10(largest or step))
        digits = max(0, exponent - math.floor(math.log10(step) + 1e-6))
        return ["0" if abs(t) < step / 2 else f"{t / 10.0**exponent:.{digits}f}e{exponent}" for t in ticks]
    if step >= 1000 and all(t % 1000 == 0 for t in ticks) and largest >= 10000:
        return [f"{t / 1000:.0f}k" if t else "0" for t in ticks]
    decimals = max(0, -math.floor(math.log10(step) + 1e-6))
    return [f"{t + 0.0:.{decimals}f}" for t in ticks]  # + 0.0: no -0


def nice_ticks(low: float, high: float, most: int) -> tuple[float, float, list[float], list[str]]:
    """At most `most` intervals of round ticks (steps of 1, 2 or 5 times a power of ten) covering
    [low, high]: (axis low, axis high, ticks, labels); the axis is widened to the outer ticks."""
    most = max(1, most)
    low, high = _span(low, high)
    step = _step_for(high - low, most)
    while True:
        first = math.floor(low / step + 1e-9)
        last = math.ceil(high / step - 1e-9)
        if last - first <= most:
            break
        step = _step_for(step * 1.01 * most, most)
    ticks = [k * step for k in range(first, last + 1)]
    return ticks[0], ticks[-1], ticks, tick_labels(ticks, step)


def _span(low: float, high: float) -> tuple[float, float]:
    if not (math.isfinite(low) and math.isfinite(high)):
        return 0.0, 1.0
    if high <= low:
        pad = abs(low) * 0.05 or 0.5
        return low - pad, high + pad
    return low, high


def row_ticks(low: float, high: float, rows: int) -> tuple[float, float, list[float], list[str]]:
    """Round ticks for a vertical axis `rows` character rows tall, each on a row of its own and the
    same number of rows apart (at least two where there is room), and the axis (low, high) that puts
    them there: (axis low, axis high, ticks, labels). Of the choices with three ticks or more (two on
    a short axis), the one that leaves the data the most rows."""
    low, high = _span(low, high)
    rows = max(2, rows)
    spacing = 2 if rows >= 5 else 1  # rows between ticks, at least
    most_ticks = max(2, min(6, (rows + spacing - 1) // spacing))
    eps = 1e-6  # in rows or steps: float error, not data
    candidates: list[tuple[int, float, float, float, float]] = []  # (ticks, row value, step, low, high)
    for step in {_step_for(high - low, n) for n in range(1, most_ticks + 1)}:
        for per_step in range(spacing, rows):
            unit = step / per_step  # the value of one row
            axis_low = math.floor(low / unit + eps) * unit
            axis_high = axis_low + unit * (rows - 1)
            if axis_high < high - unit * eps:
                continue  # the data does not fit
            count = math.floor(axis_high / step + eps) - math.ceil(axis_low / step - eps) + 1
            if 2 <= count <= most_ticks:
                candidates.append((count, unit, step, axis_low, axis_high))
    if not candidates:  # too few rows for two round ticks: the ends of the data
        return low, high, [low, high], tick_labels([low, high], (high - low) / 10)
    wanted = min(3, most_ticks)
    tightest = min(c[1] for c in candidates)
    enough = [c for c in candidates if c[0] >= wanted and c[1] <= 1.6 * tightest] or candidates
    _, unit, step, axis_low, axis_high = min(enough, key=lambda c: (c[1], -c[0]))
    first = math.ceil(axis_low / step - eps)
    last = math.floor(axis_high / step + eps)
    ticks = [k * step for k in range(first, last + 1)]
    # min/max: float error must not leave the data's ends a hair outside (a row is far coarser)
    return min(axis_low, low), max(axis_high, high), ticks, tick_labels(ticks, step)


def short_label(name: str) -> str:
    """A series name as a legend shows it: `rewards/margins` -> `margins`, `eval_loss` -> `eval loss`."""
    if name.startswith("eval_"):
        return "eval " + short_label(name[5:])
    return name.rsplit("/", 1)[-1]


def _in_view(widget: Any) -> bool:
    try:
        return bool(widget.screen.find_widget(widget).visible_region)
    except (NoScreen, NoWidget):  # not mounted, or not on the map (a hidden tab)
        return False


class _Plot(PlotextPlot):
    """The drawing of a `MetricChart`: rebuilt from the chart's points when the chart asks for it
    (`wanted` changes) or its size or theme changes, and only when Textual paints it (which it asks
    only of a widget on screen). Any other repaint (a notification over it, the footer's keys
    changing, a neighbour's update) reuses the lines of the last build: a plotext build and Textual's
    conversion of its ANSI text into lines cost 10-40 ms."""

    def __init__(self) -> None:
        super().__init__()
        self.wanted = 0  # bumped by the chart when its data should be drawn anew
        self._built: tuple | None = None  # (wanted, size, theme) of the lines in Textual's cache

    def render(self) -> RenderResult:
        chart = self.parent
        assert isinstance(chart, MetricChart)
        if not chart.draw_into(self.plt, self.size.width, self.size.height):
            return Text("no data yet", style="dim")
        return super().render()

    def _render_content(self) -> None:
        # Textual's one render path (Textual is pinned): it turns `render()` into lines when the
        # widget was marked dirty, for whatever reason. Reusing the lines is what keeps a repaint cheap;
        # the time of a real build is what the chart's throttle budgets.
        key = (self.wanted, self.size, self.app.theme)
        if key == self._built and self._render_cache.size == self.size:
            self._dirty_regions.clear()
            return
        start = time.thread_time()  # CPU time: a loaded machine must not stretch the throttle
        super()._render_content()
        self._built = key
        chart = self.parent
        if isinstance(chart, MetricChart):
            chart.build_s = time.thread_time() - start


class MetricChart(Vertical):
    """A line chart of one or more series against the step (or, for system samples, the time), under
    a one-line title with the last values and over a one-line legend (when it has several series).

    `set_points` gives it new data (a worker downsampled it to `data_width` columns); the plot is
    repainted when its last drawing is old enough (`MIN_REDRAW_S`, and the grid's share of a core),
    else once when it is; a chart off screen is rebuilt only when it comes back into view.
    """

    DEFAULT_CSS = """
    MetricChart { height: 1fr; width: 1fr; min-height: 5; }
    MetricChart > .chart-title { height: 1; width: 1fr; text-align: center; text-style: bold;
                                 text-wrap: nowrap; text-overflow: ellipsis; }
    MetricChart > .chart-legend { height: 1; width: 1fr; text-align: center;
                                  text-wrap: nowrap; text-overflow: ellipsis; display: none; }
    MetricChart > _Plot { height: 1fr; }
    """

    def __init__(
        self,
        title: str,
        series: Sequence[str],
        *,
        x: str = "step",
        labels: dict[str, str] | None = None,
        id: str | None = None,  # noqa: A002 - Textual's name
        classes: str | None = None,
    ) -> None:
        super().__init__(id=id, classes=classes)
        self.title = title
        self.series_names = tuple(series)
        self.x_axis = x  # "step" or "time" (minutes since `origin`)
        self.labels = labels or {}
        self.points: dict[str, SeriesPoints] = {}
        self.origin: float | None = None
        self.data_width: int | None = None  # the width the points were downsampled for
        self.draws = 0  # plotext builds, for tests and the benchmark
        self.version = 0  # changes of the data
        self.drawn_version = -1  # the data version the last drawing showed
        self._last_draw = -math.inf
        self.build_s = 0.0  # the CPU time the last drawing took
        self._pending: Timer | None = None
        self._next_title = title
        self._title = Static(title, classes="chart-title")
        self._plot = _Plot()
        self._legend = Static("", classes="chart-legend")
        self._legend_names: tuple[str, ...] = ()

    def compose(self) -> ComposeResult:
        yield self._title
        yield self._plot
        yield self._legend

    # -- data ---------------------------------------------------------------------------------------
    @property
    def wanted_width(self) -> int:
        """How many columns to downsample for: the chart's width once laid out."""
        return max(16, self.size.width or 60)

    def has_data(self) -> bool:
        return any(len(p) for p in self.points.values())

    def set_title(self, title: str) -> None:
        """The title (with the last values) to show from the next drawing on, in step with the plot."""
        self._next_title = title
        if not self.has_data():
            self._show_title()

    def _show_title(self) -> None:
        if self._next_title != self.title:
            self.title = self._next_title
            self._title.update(self.title, layout=False)  # one line, fixed height: no re-layout
        self._show_legend()

    def legend_text(self) -> Text | None:
        """`━ loss  ━ eval loss`, each mark in its line's colour; None for a chart of one series."""
        names = [n for n in self.series_names if len(self.points.get(n, ()))]
        if len(names) < 2:
            return None
        text = Text()
        for name in names:
            k = self.series_names.index(name)
            if text:
                text.append("  ")
            text.append("━━ ", style=f"bold color({COLOURS[k % len(COLOURS)]})")
            text.append(self.labels.get(name, short_label(name)))
        return text

    def _show_legend(self) -> None:
        names = tuple(n for n in self.series_names if len(self.points.get(n, ())))
        if names == self._legend_names:
            return
        self._legend_names = names
        legend = self.legend_text()
        if legend is not None:
            self._legend.update(legend)
        self._legend.display = legend is not None

    def set_points(
        self, points: dict[str, SeriesPoints], width: int | None, origin: float | None = None
    ) -> None:
        """New points for some of this chart's series (the others keep theirs)."""
        changed = False
        for name, value in points.items():
            if name in self.series_names and self.points.get(name) != value:
                self.points[name] = value
                changed = True
        if origin is not None and origin != self.origin:
            self.origin, changed = origin, True
        if width is not None:
            self.data_width = width
        if changed:
            self.version += 1
            self.request_draw()

    @property
    def plot_on_screen(self) -> bool:
        """Some of the plot is in view (only then is it drawn): on the screen's map and not clipped
        away by the scrolling grid."""
        return _in_view(self._plot)

    def plot_region(self):  # noqa: ANN201 - a textual Region
        """Where the plot is on screen."""
        return self._plot.region

    @property
    def up_to_date(self) -> bool:
        """The last drawing shows the current data."""
        return self.drawn_version == self.version

    def last_value(self, name: str) -> float | None:
        points = self.points.get(name)
        return points.values[-1] if points is not None and len(points) else None

    # -- drawing ------------------------------------------------------------------------------------
    def request_draw(self) -> None:
        """Repaint now, or when `MIN_REDRAW_S` has passed since the last drawing (one pending timer)."""
        if self._pending is not None:
            return
        if self.drawn_version < 1:  # nothing drawn yet: at once, the throttle is for updates
            self._redraw()
            return
        interval = max(MIN_REDRAW_S, self._draw_cost() / DRAW_SHARE)
        wait = interval - (time.monotonic() - self._last_draw)
        if wait <= 0 or not self.is_mounted:
            self._redraw()
        else:
            self._pending = self.set_timer(wait, self._draw_later)

    def _draw_cost(self) -> float:
        """Seconds one round of rebuilds costs: this chart's, or that of every chart its grid shows."""
        grid = self.parent.parent if self.parent is not None else None
        if isinstance(grid, ChartGrid):
            return grid.draw_cost()
        return self.build_s

    def _draw_later(self) -> None:
        self._pending = None
        self._redraw()

    def _redraw(self) -> None:
        self._show_title()
        self._plot.wanted += 1
        self._plot.refresh()

    def _xy(self, points: SeriesPoints) -> tuple[list[float], list[float], int]:
        """The finite points to plot and how many were not finite (NaN/inf are not drawable)."""
        xs: list[float] = []
        ys: list[float] = []
        bad = 0
        if self.x_axis == "time":
            origin = self.origin if self.origin is not None else (points.times[0] if points.times else 0.0)
            source: Iterable = ((t - origin) / 60.0 for t in points.times)
        else:
            source = points.steps
        for x, y in zip(source, points.values, strict=False):
            if x is None:
                continue
            if not math.isfinite(y):
                bad += 1
                continue
            xs.append(float(x))
            ys.append(y)
        return xs, ys, bad

    def draw_into(self, plt: Any, width: int, height: int = 12) -> bool:
        """Set up `plt` (this chart's own plotext figure) with the current points; False: nothing to draw."""
        self._last_draw = time.monotonic()
        self.draws += 1
        self.drawn_version = self.version
        plt.clear_data()
        plt.clear_figure()
        drawn = 0
        x_min, x_max = math.inf, -math.inf
        y_min, y_max = math.inf, -math.inf
        bad_total = 0
        for k, name in enumerate(self.series_names):
            points = self.points.get(name)
            if points is None or not len(points):
                continue
            xs, ys, bad = self._xy(points)
            bad_total += bad
            if not xs:
                continue
            # no plotext legend: it is drawn over the plot; ours is the line under it
            plt.plot(xs, ys, marker="hd", color=COLOURS[k % len(COLOURS)])
            x_min, x_max = min(x_min, min(xs)), max(x_max, max(xs))
            y_min, y_max = min(y_min, min(ys)), max(y_max, max(ys))
            drawn += 1
        if not drawn:
            return False
        plt.xaxes(True, False)  # an L: the left and bottom axes only, one more row for the data
        plt.yaxes(True, False)
        if bad_total:
            plt.title(f"{bad_total} not finite")
        rows = max(1, (height or 12) - 2 - (1 if bad_total else 0))  # less the x axis and its labels
        low, high, ticks, labels = row_ticks(y_min, y_max, rows)
        plt.ylim(low, high)
        plt.yticks(ticks, labels)
        low, high, ticks, labels = self._x_ticks(x_min, x_max, width)
        plt.xlim(low, high)
        plt.xticks(ticks, labels)
        return True

    def _x_ticks(self, low: float, high: float, width: int) -> tuple[float, float, list[float], list[str]]:
        """Round x ticks: whole steps, or minutes (`12m`, seconds `40s` for a short span) for system
        samples."""
        most = max(1, min(6, (width or 60) // 12))
        if self.x_axis == "time":
            if high - low < 2:  # under two minutes: in seconds
                low_s, high_s, ticks, labels = nice_ticks(low * 60, high * 60, most)
                return low_s / 60, high_s / 60, [t / 60 for t in ticks], [f"{x}s" for x in labels]
            low, high, ticks, labels = nice_ticks(low, high, most)
            return low, high, ticks, [f"{x}m" for x in labels]
        if high - low < most:  # steps are whole: no 2.5
            most = max(1, int(high - low))
        return nice_ticks(low, high, most)


class ChartGrid(VerticalScroll):
    """Charts in a grid that fills the space: as many columns as the width allows, rows at least
    `MIN_ROW` tall (scrolling when they do not fit; `cycle` scrolls a row at a time)."""

    DEFAULT_CSS = """
    ChartGrid { height: 1fr; }
    ChartGrid > Grid { height: auto; grid-gutter: 0 1; }
    """
    MIN_ROW = 8
    MIN_COLUMN = 38
    row_height = MIN_ROW  # as laid out
    _told_overflow = False  # what the screen's keys were last asked with (`_tell_overflow`)

    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:  # noqa: A002
        super().__init__(id=id, classes=classes)
        self._grid = Grid()

    def compose(self):
        yield self._grid

    @property
    def charts(self) -> list[MetricChart]:
        return list(self._grid.query_children(MetricChart))

    async def add_chart(self, chart: MetricChart, *, before: int | None = None) -> None:
        await self._grid.mount(chart, before=before)
        self._relayout()

    async def add_charts(self, charts: list[MetricChart]) -> None:
        """Several charts at once, after those there are (one layout for all)."""
        await self._grid.mount_all(charts)
        self._relayout()

    async def clear(self) -> None:
        await self._grid.remove_children()
        self._relayout()

    def on_resize(self) -> None:
        self._relayout()

    def watch_virtual_size(self) -> None:
        # the rows as laid out: `_relayout` asks too, but a layout can end after what it asked for ran
        self.call_after_refresh(self._tell_overflow)

    def draw_cost(self) -> float:
        """Seconds one rebuild of every chart this grid shows costs (the charts off screen cost none)."""
        return sum(c.build_s for c in self.charts if c.plot_on_screen)

    @property
    def columns(self) -> int:
        return int(self._grid.styles.grid_size_columns or 1)

    @property
    def overflows(self) -> bool:
        """Some charts are below (or above) the visible part."""
        return self.max_scroll_y > 0

    def cycle(self, by: int = 1) -> int:
        """Scroll the next (`by` = 1) or previous row of charts to the top, wrapping around at either
        end; the row now at the top."""
        charts = self.charts
        if not charts:
            return 0
        rows = math.ceil(len(charts) / self.columns)
        row = (round(self.scroll_y / self.row_height) + by) % rows
        if by > 0 and self.scroll_y >= self.max_scroll_y:
            row = 0  # the last rows are all in view: back to the top
        elif by < 0 and self.scroll_y <= 0:
            row = max(0, rows - max(1, self.size.height // self.row_height))  # to the last rows
        self.scroll_to(y=row * self.row_height, animate=False)
        return row

    def _relayout(self) -> None:
        self.call_after_refresh(self._tell_overflow)
        n = len(self._grid.children)
        width, height = self.size.width, self.size.height
        if not n or not width:
            return
        most = max(1, min(n, 3, width // self.MIN_COLUMN))
        rows = math.ceil(n / most)
        columns = math.ceil(n / rows)  # 4 charts in 2 x 2 rather than 3 + 1
        shown = max(1, height // self.MIN_ROW) if height else rows  # rows in view at once
        row_height = max(self.MIN_ROW, height // min(rows, shown) if height else self.MIN_ROW)
        # when they do not all fit, pad the end so that scrolling stops with a whole row at the top
        overflow = rows * row_height - height
        pad = (-overflow) % row_height if height and overflow > 0 else 0
        styles = self._grid.styles
        if styles.grid_size_columns != columns:
            styles.grid_size_columns = columns
        styles.grid_rows = f"{row_height}"
        styles.padding = (0, 0, pad, 0)
        self.row_height = row_height

    def _tell_overflow(self) -> None:
        """Ask the screen's keys again when charts came to be out of view or all fit again: `n` (more
        charts) is shown only then. Asked once laid out, and again after every resize and every change of
        the rows' total height."""
        if self.overflows != self._told_overflow:
            self._told_overflow = self.overflows
            self.refresh_bindings()
