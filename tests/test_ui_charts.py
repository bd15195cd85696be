"""The dashboard's charts and lists read at a glance: round, evenly spaced ticks; the legend under the
plot; every chart reachable at 80x24; wrapped log lines; what there is for a run that logged no step;
a column of losses written alike; token pieces with their leading spaces; a clean file's Errors tab;
and charts drawn only when on screen."""

from __future__ import annotations

import math

import pytest
from textual.widgets import OptionList, Static, TabbedContent

from tests.conftest import until
from tests.test_ui_runs import OOM_ERROR, RecordingApp, record_run, train_fields
from tui_ft.runs.rundir import EventWriter, Status
from tui_ft.ui.app import TuiFtApp
from tui_ft.ui.widgets.charts import ChartGrid, MetricChart, nice_ticks, row_ticks, tick_labels
from tui_ft.ui.widgets.run_dashboard import LogView, charts_note, wrap_lines
from tui_ft.ui.widgets.run_format import format_metric_column
from tui_ft.ui.widgets.token_view import shown_piece, with_leading_spaces
from tui_ft.workspace import Workspace

pytestmark = pytest.mark.anyio


# ------------------------------------------------------------------------------------------------
# ticks


def _rows_of(ticks: list[float], low: float, high: float, rows: int) -> list[int]:
    """The canvas row plotext puts each tick on (its own formula: `get_matrix_data`)."""
    return [math.floor(round(0.5 + (rows - 1) * (t - low) / (high - low), 8)) for t in ticks]


@pytest.mark.parametrize(
    ("low", "high", "rows"),
    [
        (2.04, 3.80, 8),  # the walk-through's loss axis (3.80, 3.36, 2.48, 2.04 before)
        (1.11, 3.22, 5),
        (0.00075, 0.00297, 9),  # a learning rate
        (940.1, 1059.4, 16),  # tokens/s
        (0.0, 81920.0, 10),  # GPU memory MiB
        (1e-5, 3e-5, 7),
        (-0.3, 0.2, 6),
        (1.2, 1.2, 6),  # a flat line
    ],
)
def test_y_ticks_are_round_evenly_spaced_and_cover_the_data(low, high, rows):
    axis_low, axis_high, ticks, labels = row_ticks(low, high, rows)
    assert axis_low <= low and axis_high >= high
    assert 2 <= len(ticks) <= 6 and len(labels) == len(ticks)
    step = ticks[1] - ticks[0]
    mantissa = step / 10 ** math.floor(math.log10(step))
    assert min(abs(mantissa - m) for m in (1, 2, 5, 10)) < 1e-6  # 1-2-5 steps
    assert all(abs((b - a) - step) < step * 1e-6 for a, b in zip(ticks, ticks[1:], strict=False))
    placed = _rows_of(ticks, axis_low, axis_high, rows)
    gaps = {b - a for a, b in zip(placed, placed[1:], strict=False)}
    assert len(gaps) == 1 and gaps.pop() >= (2 if rows >= 5 else 1)  # the same rows apart on screen
    assert len({len(label.split(".")[-1]) if "." in label else 0 for label in labels}) == 1  # decimals


def test_tick_labels_share_their_decimals():
    assert tick_labels([2.0, 2.5, 3.0], 0.5) == ["2.0", "2.5", "3.0"]
    assert tick_labels([0.001, 0.002, 0.003], 0.001) == ["0.001", "0.002", "0.003"]
    assert tick_labels([0.0, 20000.0, 40000.0], 20000.0) == ["0", "20k", "40k"]
    assert tick_labels([1e-5, 2e-5], 1e-5) == ["1e-5", "2e-5"]
    assert nice_ticks(2, 40, 6)[2:] == ([0.0, 10.0, 20.0, 30.0, 40.0], ["0", "10", "20", "30", "40"])


# ------------------------------------------------------------------------------------------------
# lists and text


def test_a_column_of_losses_is_written_alike():
    assert format_metric_column([1.183, 0.7053, None, 2.0]) == ["1.1830", "0.7053", "-", "2.0000"]
    # the walk-through's column: one tiny loss beside larger ones -> all in scientific notation
    assert format_metric_column([0.0004422, 1.183, 0.7053]) == ["4.422e-04", "1.183e+00", "7.053e-01"]
    assert format_metric_column([float("nan"), 0.5]) == ["nan", "0.5000"]


def test_long_log_lines_wrap_and_keep_every_character():
    line = "Traceback: " + " ".join(f"word{i}" for i in range(40))
    wrapped = wrap_lines(["short", line, "    indented " + "x" * 100], 40)
    assert wrapped[0] == "short"
    assert all(len(w) <= 40 for w in wrapped)
    assert wrapped[1].startswith("Traceback: word0") and wrapped[2].startswith("  word")  # indented on
    assert sum(len(w.replace(" ", "")) for w in wrapped) == len(
        ("short" + line + "    indented " + "x" * 100).replace(" ", "")
    )


def test_tokens_show_their_leading_spaces():
    # a SentencePiece tokenizer decodes `▁is` alone as `is`: the vocabulary's piece gives the space back
    assert with_leading_spaces(["What", "is", "2"], ["What", "▁is", "▁2"]) == ["What", " is", " 2"]
    assert with_leading_spaces(["What", " is"], ["What", "Ġis"]) == ["What", " is"]
    assert shown_piece(" is") == "·is" and shown_piece("  ") == "··" and shown_piece("a\n") == "a↵\n"
    assert shown_piece("") == "∅"


def test_charts_note_of_a_run_that_failed_before_its_first_step():
    status = Status(
        id="r",
        name="r",
        method="sft",
        state="failed",
        step=0,
        max_steps=40,
        error=OOM_ERROR,
        updated=1795300000.0,
    )
    text = charts_note(status, None, ["loading demo-tiny", "Traceback ...", "OutOfMemoryError"], True)
    plain = text.plain
    assert "No training step was logged: the run failed" in plain
    assert "last status: failed · step 0/40" in plain
    assert "System tab" in plain and "OutOfMemoryError" in plain  # what else there is


# ------------------------------------------------------------------------------------------------
# the dashboard


def _grpo_run(ws: Workspace, run_id: str = "20261122-080000-grpo-lora"):
    run = record_run(ws, run_id, method="grpo")
    with EventWriter(run.events_file) as events:
        for step in range(2, 41, 2):
            events.write("train", t=1795300000.0 + step, step=step, reward=0.2 + 0.01 * step, kl=0.01 * step)
    return run


@pytest.fixture
def ws(tmp_path) -> Workspace:
    return Workspace(tmp_path / "home").ensure()


async def test_every_chart_is_reachable_at_80x24_with_n(ws):
    run = _grpo_run(ws)
    app = RecordingApp(ws, start_mode="runs", start_run=run.id)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = app.screen
        await until(pilot, lambda: screen.refreshes >= 1 and screen.query("#chart-kl"))
        await pilot.pause(0.3)
        grid = screen.query_one("#dash-charts", ChartGrid)
        kl = screen.query_one("#chart-kl", MetricChart)
        assert grid.overflows and not kl.plot_on_screen  # below the fold
        footer_keys = {b.binding.key for b in screen.active_bindings.values() if b.binding.show and b.enabled}
        assert "n" in footer_keys  # shown in the footer while charts are out of view
        await pilot.press("n")
        await pilot.pause(0.2)
        assert kl.plot_on_screen and kl.up_to_date and kl.draws >= 1  # scrolled into view and drawn
        await pilot.press("n")  # past the last row: back to the top
        await pilot.pause(0.2)
        assert grid.scroll_y == 0 and screen.query_one("#chart-loss", MetricChart).plot_on_screen


async def test_tabs_have_keys_and_the_footer_shows_them(ws):
    run = record_run(ws, "20261122-080000-sft-lora", checkpoints=(20, 40))
    app = RecordingApp(ws, start_mode="runs", start_run=run.id)
    async with app.run_test(size=(160, 48)) as pilot:
        screen = app.screen
        await until(pilot, lambda: screen.refreshes >= 1)
        tabs = screen.query_one("#dash-tabs", TabbedContent)
        shown = {
            b.binding.key: b.binding.description
            for b in screen.active_bindings.values()
            if b.binding.show and b.enabled
        }
        assert {k: shown.get(k) for k in "gylke"} == {
            "g": "Charts",
            "y": "System",
            "l": "Log",
            "k": "Checkpoints",
            "e": "Eval",
        }
        assert "m" not in shown  # Compare has no tab until an overlay
        for key, pane in (("y", "tab-system"), ("l", "tab-log"), ("k", "tab-checkpoints"), ("e", "tab-eval")):
            await pilot.press(key)
            await pilot.pause()
            assert tabs.active == pane
        await pilot.press("g")
        await pilot.pause()
        assert tabs.active == "tab-charts"
        assert "g" in str(tabs.get_tab("tab-charts").label)  # the tab bar shows the key too
    app = RecordingApp(ws, start_mode="runs", start_run=run.id)
    async with app.run_test(size=(80, 24)) as pilot:  # narrow: the keys work, the tab bar shows them
        screen = app.screen
        await until(pilot, lambda: screen.refreshes >= 1)
        await pilot.press("l")
        await pilot.pause()
        assert screen.query_one("#dash-tabs", TabbedContent).active == "tab-log"


async def test_legend_is_under_the_plot_not_on_it(ws):
    run = record_run(ws, "20261122-080000-sft-lora")
    app = RecordingApp(ws, start_mode="runs", start_run=run.id)
    async with app.run_test(size=(80, 24)) as pilot:
        await until(pilot, lambda: app.screen.refreshes >= 1)
        await pilot.pause(0.2)
        loss = app.screen.query_one("#chart-loss", MetricChart)
        legend = loss.query_one(".chart-legend", Static)
        plot = loss.plot_region()
        assert legend.display and legend.region.y >= plot.y + plot.height  # under the plot
        assert "loss" in str(legend.render()) and "eval loss" in str(legend.render())
        lr = app.screen.query_one("#chart-lr", MetricChart)
        assert not lr.query_one(".chart-legend", Static).display  # one series: no legend


async def test_log_lines_wrap_at_the_width_of_the_view(ws):
    run = record_run(ws, "20261122-080000-sft-lora")
    long_line = "ValueError: " + " ".join(f"token{i}" for i in range(60))
    run.log_file.write_text("first line\n" + long_line + "\n")
    app = RecordingApp(ws, start_mode="runs", start_run=run.id)
    async with app.run_test(size=(80, 24)) as pilot:
        await until(pilot, lambda: app.screen.refreshes >= 1)
        await pilot.press("l")
        await pilot.pause(0.2)
        log = app.screen.query_one("#dash-log", LogView)
        assert log.line_count > 2 and all(len(line) < 80 for line in log.lines)
        assert "token59" in log.lines[-1]  # the end of the long line is on screen, not cut off


async def test_a_run_that_failed_before_its_first_step_shows_what_there_is(ws):
    run = record_run(ws, "20261122-082000-sft-lora", state="failed", steps=0, error=OOM_ERROR)
    run.log_file.write_text("loading demo-tiny\ntorch.OutOfMemoryError: CUDA out of memory\n")
    app = RecordingApp(ws, start_mode="runs", start_run=run.id)
    async with app.run_test(size=(80, 24)) as pilot:
        await until(pilot, lambda: app.screen.refreshes >= 1)
        await pilot.pause(0.2)
        note = app.screen.query_one("#dash-charts-note", Static)
        assert note.display
        text = str(note.render())
        assert "failed" in text and "torch.OutOfMemoryError" in text and "last status" in text
        assert "Out of GPU memory" in str(app.screen.query_one("#dash-alert", Static).render())


async def test_charts_of_a_hidden_tab_or_out_of_view_are_not_rebuilt(ws, stand_in_runners):
    proc = stand_in_runners()
    run = record_run(ws, "20261122-090000-sft-lora", state="running", steps=20, max_steps=200, pid=proc.pid)
    app = RecordingApp(ws, start_mode="runs", start_run=run.id)
    async with app.run_test(size=(160, 48)) as pilot:
        screen = app.screen
        await until(pilot, lambda: screen.refreshes >= 1)
        await pilot.pause(0.3)
        cpu = screen.query_one("#sys-cpu", MetricChart)
        loss = screen.query_one("#chart-loss", MetricChart)
        assert cpu.draws == 0  # on the System tab, not shown
        await pilot.press("l")  # the Log tab: the charts are hidden
        await pilot.pause(0.2)
        drawn = loss.draws
        before = screen.refreshes
        with EventWriter(run.events_file) as events:
            for step in range(22, 31, 2):
                events.write("train", step=step, **train_fields(step))
        await until(pilot, lambda: screen.refreshes >= before + 2)
        assert loss.version > loss.drawn_version  # fed the new points ...
        assert loss.draws == drawn  # ... and not rebuilt while hidden
        await pilot.press("g")
        await until(pilot, lambda: loss.up_to_date)  # drawn once it shows
        assert loss.draws == drawn + 1


async def test_a_clean_files_errors_tab_says_so(demo_ws):
    app = TuiFtApp(demo_ws, open_path="chat.jsonl")
    async with app.run_test(size=(80, 24)) as pilot:
        screen = app.screen
        await until(pilot, lambda: getattr(screen, "report", None) is not None)
        await pilot.pause()
        errors = screen.query_one("#ds-errors", OptionList)
        assert errors.option_count == 1
        assert str(errors.get_option_at_index(0).prompt) == "no errors in chat.jsonl (400 rows checked)"
