"""The Datasets screen driven by keys: open, read rows, jump to an error, tokens, search, preference pairs."""

from __future__ import annotations

import json

import pytest
from rich.style import Style
from textual.widgets import Input, OptionList, Static

from tests.conftest import until
from tui_ft.ui.app import TuiFtApp
from tui_ft.ui.screens.datasets import DatasetsScreen
from tui_ft.ui.widgets.pane_tabs import PaneTabs
from tui_ft.ui.widgets.row_table import RowTable
from tui_ft.ui.widgets.token_view import EOS_STYLE, TRAIN_STYLES, TokenPanel

pytestmark = pytest.mark.anyio


def screen_lines(app) -> list[str]:
    """The text on the terminal, line by line."""
    return [strip.text for strip in app.screen._compositor.render_strips()]


def screen_segments(app) -> list[tuple[str, str | None]]:
    """Every painted piece of text with its background colour (hex), top to bottom."""
    out = []
    for strip in app.screen._compositor.render_strips():
        for segment in strip:
            bg = segment.style.bgcolor if segment.style else None
            out.append((segment.text, bg.triplet.hex if bg is not None and bg.triplet else None))
    return out


async def open_by_typing(pilot, ref: str) -> DatasetsScreen:
    screen = pilot.app.screen
    assert isinstance(screen, DatasetsScreen)
    await pilot.press("o")
    assert isinstance(screen.focused, Input)
    await pilot.press(*ref, "enter")
    await until(pilot, lambda: screen.report is not None)
    return screen


async def test_open_sample_chat_shows_format_and_rows(demo_ws):
    app = TuiFtApp(demo_ws)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_by_typing(pilot, "chat.jsonl")
        info = str(screen.query_one("#ds-info", Static).render())
        assert "chat.jsonl" in info and "messages" in info and "400 rows" in info and "no errors" in info
        table = screen.query_one(RowTable)
        assert table.row_count == 400
        first = json.loads((demo_ws.data / "chat.jsonl").read_text().splitlines()[0])
        words = first["messages"][0]["content"][:15]
        assert any(words in line for line in screen_lines(app))
        await pilot.press("down", "down", "enter")
        await pilot.pause()
        assert screen.query_one("#ds-tabs", PaneTabs).active == "tab-row"
        third = json.loads((demo_ws.data / "chat.jsonl").read_text().splitlines()[2])
        last_turn = third["messages"][-1]["content"][:20]
        assert any(last_turn in line for line in screen_lines(app))


async def test_error_list_jumps_to_the_bad_row(demo_ws, tmp_path):
    good = json.dumps({"prompt": "What is 2 plus 2?", "completion": " 4."})
    lines = (
        [good] * 10 + [""] + [good] * 20 + ['{"prompt": "cut off', json.dumps({"prompt": "x"})] + [good] * 5
    )
    path = tmp_path / "broken.jsonl"
    path.write_text("\n".join(lines) + "\n")
    app = TuiFtApp(demo_ws, open_path=str(path))
    async with app.run_test(size=(80, 24)) as pilot:
        screen = app.screen
        await until(pilot, lambda: screen.report is not None)
        assert screen.report is not None and screen.report.error_count == 2
        assert "2 errors" in str(screen.query_one("#ds-info", Static).render())
        await pilot.press("e")
        # (the list mounts just after the first frame: on a loaded machine the check can end first)
        await until(pilot, lambda: screen.focused is not None and screen.focused.id == "ds-errors")
        errors = screen.query_one("#ds-errors", OptionList)
        assert screen.focused is errors
        assert "line 32" in str(errors.get_option_at_index(0).prompt)
        await pilot.press("down", "enter")  # the second error: line 33, row 31 (the blank line is no row)
        await pilot.pause()
        table = screen.query_one(RowTable)
        assert screen.query_one("#ds-tabs", PaneTabs).active == "tab-rows"
        assert table.cursor == 31
        assert table.get_row(31).line == 33
        assert screen.focused is table


async def test_the_tabs_count_the_errors_and_a_click_on_one_shows_it(demo_ws, tmp_path):
    path = tmp_path / "broken.jsonl"
    path.write_text(json.dumps({"prompt": "a", "completion": " b"}) + '\n{"prompt": "cut off\n')
    app = TuiFtApp(demo_ws, open_path=str(path))
    async with app.run_test(size=(80, 24)) as pilot:
        screen = app.screen
        await until(pilot, lambda: screen.report is not None)
        tabs = screen.query_one("#ds-tabs", PaneTabs)
        line = str(tabs.render().renderables[0])
        assert line.split() == ["Rows", "Row", "Tokens", "Errors", "(1)"]
        start, end = tabs.spans()["tab-errors"]
        assert line[start:end] == " Errors (1) "
        await pilot.click(PaneTabs, offset=(start + 2, 0))
        await until(pilot, lambda: screen.query_one("#ds-panes").current == "tab-errors")
        assert tabs.active == "tab-errors"
        await pilot.click(PaneTabs, offset=(1, 0))  # Rows
        await until(pilot, lambda: tabs.active == "tab-rows")
        assert screen.query_one("#tab-rows").display and not screen.query_one("#tab-errors").display


async def test_token_view_highlights_the_tokens_that_train(demo_ws):
    app = TuiFtApp(demo_ws, open_path="chat.jsonl")
    async with app.run_test(size=(80, 24)) as pilot:
        screen = app.screen
        await until(pilot, lambda: screen.report is not None)
        await pilot.press("t")
        panel = screen.query_one(TokenPanel)
        await until(pilot, lambda: panel.view is not None, timeout=60)
        view = panel.view
        assert 0 < sum(view.train_mask) < len(view.ids)  # assistant turns train, the rest does not
        assert view.eos_id in view.ids
        painted = screen_segments(app)
        train_bg = {Style.parse(style).bgcolor.triplet.hex for style in TRAIN_STYLES}
        eos_bg = Style.parse(EOS_STYLE).bgcolor.triplet.hex
        trained_text = "".join(text for text, bg in painted if bg in train_bg)
        assert "is" in trained_text  # the assistant's words are painted as training tokens
        eos = "".join(text for text, bg in painted if bg == eos_bg)
        assert "<|im_end|>" in eos
        summary = str(screen.query_one("#tok-summary", Static).render())
        assert f"{len(view.ids)} tokens" in summary and "train" in summary and "EOS" in summary
        await until(pilot, lambda: "token lengths" in str(screen.query_one("#tok-hist", Static).render()))
        assert "max_length" in "\n".join(screen_lines(app))


async def test_search_finds_the_next_and_previous_rows(demo_ws):
    rows = (demo_ws.data / "chat.jsonl").read_text().splitlines()
    needle = "spelled backwards"
    hits = [k for k, line in enumerate(rows) if needle in line.lower()]
    assert len(hits) >= 3
    app = TuiFtApp(demo_ws, open_path="chat.jsonl")
    async with app.run_test(size=(80, 24)) as pilot:
        screen = app.screen
        await until(pilot, lambda: screen.report is not None)
        table = screen.query_one(RowTable)
        await pilot.press("slash", *"SPELLED backwards", "enter")
        await until(pilot, lambda: table.cursor == hits[0])
        await pilot.press("escape")  # leave the search bar, back to the table
        await pilot.press("n")
        await until(pilot, lambda: table.cursor == hits[1])
        await pilot.press("n")
        await until(pilot, lambda: table.cursor == hits[2])
        await pilot.press("N")
        await until(pilot, lambda: table.cursor == hits[1])


async def test_preference_pair_side_by_side(demo_ws):
    first = json.loads((demo_ws.data / "preferences.jsonl").read_text().splitlines()[0])
    app = TuiFtApp(demo_ws, open_path="preferences.jsonl")
    async with app.run_test(size=(80, 24)) as pilot:
        screen = app.screen
        await until(pilot, lambda: screen.report is not None)
        assert screen.format is not None and screen.format.value == "preference"
        await pilot.press("enter")
        await pilot.pause()
        lines = screen_lines(app)
        assert any("chosen" in line and "rejected" in line for line in lines), "\n".join(lines)
        chosen, rejected = first["chosen"][0]["content"], first["rejected"][0]["content"]  # conversational
        chosen_words, rejected_words = chosen.split()[:2], rejected.split()[:1]
        pair_line = next(line for line in lines if chosen_words[0] in line and rejected_words[0] in line)
        assert pair_line.index(chosen_words[0]) < pair_line.index(rejected_words[0])


async def test_directory_tree_opens_a_file(demo_ws):
    app = TuiFtApp(demo_ws)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = app.screen
        tree = screen.query_one("#ds-tree")
        await until(pilot, lambda: len(tree.root.children) > 0)
        names = [node.label.plain for node in tree.root.children]
        target = names.index("ranking.jsonl")
        tree.focus()
        await pilot.press(*["down"] * (target + 1), "enter")
        await until(pilot, lambda: screen.report is not None)
        assert screen.format is not None and screen.format.value == "ranking"
        assert screen.query_one("#ds-path", Input).value.endswith("ranking.jsonl")


async def test_an_unexpected_open_error_is_shown_and_the_next_open_works(demo_ws, tmp_path, monkeypatch):
    import shutil

    from tui_ft.data import sources
    from tui_ft.workspace import Workspace

    ws = Workspace(tmp_path / "home").ensure()
    shutil.copy(demo_ws.data / "chat.jsonl", ws.data / "chat.jsonl")
    open_dataset = sources.open_dataset  # (the screen's worker imports it when it opens a dataset)
    calls = []

    def open_failing_once(*args, **kwargs):
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("the reader tripped")
        return open_dataset(*args, **kwargs)

    monkeypatch.setattr(sources, "open_dataset", open_failing_once)
    app = TuiFtApp(ws)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = app.screen
        info = lambda: str(screen.query_one("#ds-info", Static).render())  # noqa: E731
        screen.open("chat.jsonl")
        await until(pilot, lambda: "cannot open" in info())
        assert "cannot open chat.jsonl: RuntimeError: the reader tripped" in info()
        # the app tells it once the worker's end has bubbled up to it (just after the screen)
        await until(pilot, lambda: any(n.title == "Opening the dataset failed" for n in app._notifications))
        screen = await open_by_typing(pilot, "chat.jsonl")
        assert "400 rows" in info() and "no errors" in info()
