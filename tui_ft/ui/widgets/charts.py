"""Charts of run metrics: one textual-plotext plot per chart (each with its own `plt`), drawn from
points already downsampled to its width, and redrawn only when its data changed, at most every
`MIN_REDRAW_S`; and a grid that sizes its charts to the space it has.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Sequence
from typing import Any

from rich.text import Text
from textual.app import ComposeResult, RenderResult
from textual.containers import Grid, Vertical, VerticalScroll
from textual.timer import Timer
from textual.widgets import Static
from textual_plotext import PlotextPlot

from tui_ft.runs.series import SeriesPoints

MIN_REDRAW_S = 2.0  # a chart is rebuilt at most this often (a plotext build costs 5-20 ms)
# ... and at most this share of one core goes to rebuilding one chart: a chart that took 15 ms to
# build waits 15 ms / DRAW_SHARE = 5 s before the next rebuild (big charts, slow machines).
DRAW_SHARE = 0.002
# Line colours in the order of a chart's series (plotext colour names).
COLOURS = ("cyan+", "orange+", "green+", "magenta+", "yellow+", "blue+", "red+", "white")


def short_label(name: str) -> str:
    """A series name as a legend shows it: `rewards/margins` -> `margins`, `eval_loss` -> `eval loss`."""
    if name.startswith("eval_"):
        return "eval " + short_label(name[5:])
    return name.rsplit("/", 1)[-1]


class _Plot(PlotextPlot):
    """The drawing of a `MetricChart`: rebuilt from the chart's points when it repaints."""

    def render(self) -> RenderResult:
        chart = self.parent
        assert isinstance(chart, MetricChart)
        start = time.perf_counter()
        try:
            if not chart.draw_into(self.plt, self.size.width):
                return Text("no data yet", style="dim")
            return super().render()
        finally:
            chart.build_s = time.perf_counter() - start


class MetricChart(Vertical):
    """A line chart of one or more series against the step (or, for system samples, the time), under
    a one-line title with the last values.

    `set_points` gives it new data (a worker downsampled it to `data_width` columns); the plot is
    repainted when its last drawing is at least `MIN_REDRAW_S` old, else once when it is.
    """

    DEFAULT_CSS = """
    MetricChart { height: 1fr; width: 1fr; min-height: 5; }
    MetricChart > .chart-title { height: 1; width: 1fr; text-align: center; text-style: bold;
                                 text-wrap: nowrap; text-overflow: ellipsis; }
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
        self.build_s = 0.0  # how long the last drawing took
        self._pending: Timer | None = None
        self._next_title = title
        self._title = Static(title, classes="chart-title")
        self._plot = _Plot()

    def compose(self) -> ComposeResult:
        yield self._title
        yield self._plot

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
        interval = max(MIN_REDRAW_S, self.build_s / DRAW_SHARE)
        wait = interval - (time.monotonic() - self._last_draw)
        if wait <= 0 or not self.is_mounted:
            self._redraw()
        else:
            self._pending = self.set_timer(wait, self._draw_later)

    def _draw_later(self) -> None:
        self._pending = None
        self._redraw()

    def _redraw(self) -> None:
        self._show_title()
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

    def draw_into(self, plt: Any, width: int) -> bool:
        """Set up `plt` (this chart's own plotext figure) with the current points; False: nothing to draw."""
        self._last_draw = time.monotonic()
        self.draws += 1
        self.drawn_version = self.version
        plt.clear_data()
        plt.clear_figure()
        drawn = 0
        x_min, x_max = math.inf, -math.inf
        legend = sum(1 for p in self.points.values() if len(p)) > 1
        bad_total = 0
        for k, name in enumerate(self.series_names):
            points = self.points.get(name)
            if points is None or not len(points):
                continue
            xs, ys, bad = self._xy(points)
            bad_total += bad
            if not xs:
                continue
            label = self.labels.get(name, short_label(name)) if legend else None
            plt.plot(xs, ys, label=label, marker="hd", color=COLOURS[k % len(COLOURS)])
            x_min, x_max = min(x_min, min(xs)), max(x_max, max(xs))
            drawn += 1
        if not drawn:
            return False
        plt.xaxes(True, False)  # an L: the left and bottom axes only, one more row for the data
        plt.yaxes(True, False)
        if bad_total:
            plt.title(f"{bad_total} not finite")
        plt.xticks(*self._ticks(x_min, x_max, width))
        return True

    def _ticks(self, low: float, high: float, width: int) -> tuple[list[float], list[str]]:
        """A few x ticks: whole steps, or minutes (`12m`) for system samples."""
        n = max(2, min(6, (width or 60) // 14))
        if high <= low:
            high = low + 1
        ticks = sorted({low + (high - low) * i / (n - 1) for i in range(n)})
        if self.x_axis == "time":  # minutes; seconds for a short span
            span = high - low
            labels = [
                f"{t * 60:.0f}s" if span < 2 else (f"{t:.1f}m" if span < 10 else f"{t:.0f}m") for t in ticks
            ]
            return ticks, labels
        whole = sorted({round(t) for t in ticks})
        return [float(t) for t in whole], [str(t) for t in whole]


class ChartGrid(VerticalScroll):
    """Charts in a grid that fills the space: as many columns as the width allows, rows at least
    `MIN_ROW` tall (scrolling when they do not fit)."""

    DEFAULT_CSS = """
    ChartGrid { height: 1fr; }
    ChartGrid > Grid { height: auto; grid-gutter: 0 1; }
    """
    MIN_ROW = 8
    MIN_COLUMN = 38

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

    async def clear(self) -> None:
        await self._grid.remove_children()
        self._relayout()

    def on_resize(self) -> None:
        self._relayout()

    def _relayout(self) -> None:
        n = len(self._grid.children)
        width, height = self.size.width, self.size.height
        if not n or not width:
            return
        columns = max(1, min(n, 3, width // self.MIN_COLUMN))
        rows = math.ceil(n / columns)
        row_height = max(self.MIN_ROW, height // rows if height else self.MIN_ROW)
        styles = self._grid.styles
        if styles.grid_size_columns != columns:
            styles.grid_size_columns = columns
        styles.grid_rows = f"{row_height}"
