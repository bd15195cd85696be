"""The parsed CSS kept between starts (tui_ft/ui/css_cache.py): a second start parses nothing the first
one parsed and draws the same first screen; a source whose text changed is parsed again; a file cut
short or not ours is parsed around and written anew."""

from __future__ import annotations

from pathlib import Path

import pytest
import textual.css.stylesheet as stylesheet_module

from tests.conftest import until
from tui_ft.ui.app import TuiFtApp
from tui_ft.ui.css_cache import KeptStylesheet
from tui_ft.workspace import Workspace

pytestmark = pytest.mark.anyio


class QuietApp(TuiFtApp):
    def _sample_gpu(self) -> None:
        pass


@pytest.fixture()
def parsed(monkeypatch) -> list[str]:
    """The sources Textual's CSS parser is run on (`where they were read from`)."""
    calls: list[str] = []
    parse = stylesheet_module.parse

    def counted(scope, css, read_from, *args, **kwargs):
        calls.append(str(read_from))
        return parse(scope, css, read_from, *args, **kwargs)

    monkeypatch.setattr(stylesheet_module, "parse", counted)
    return calls


async def first_screen(ws: Workspace, app_class: type[TuiFtApp] = QuietApp) -> str:
    app = app_class(ws)
    async with app.run_test(size=(80, 24)) as pilot:
        await until(pilot, lambda: app.screen.query_one("KeysFooter").keys)
        await app.screen._hidden_views.wait()
        await pilot.pause(0.1)
        picture = app.export_screenshot()
    return picture


def kept_file(ws: Workspace) -> Path:
    files = list((ws.cache / "ui").glob("css-*.pickle"))
    assert len(files) == 1, files
    return files[0]


async def test_a_second_start_parses_nothing_and_draws_the_same_screen(tmp_path, parsed):
    ws = Workspace(tmp_path / "ws").ensure()
    first = await first_screen(ws)
    assert any("app.tcss" in source for source in parsed) and len(parsed) > 20
    assert kept_file(ws).stat().st_size > 0
    parsed.clear()
    second = await first_screen(ws)
    assert parsed == []
    assert second == first


async def test_a_source_whose_css_changed_is_parsed_again(tmp_path, parsed):
    ws = Workspace(tmp_path / "ws").ensure()
    await first_screen(ws)

    class Greener(QuietApp):
        CSS = "#ds-info { color: green; }"

    parsed.clear()
    await first_screen(ws, Greener)
    # the new source, and App's own, whose tie-breaker (its depth under the app's class) moved
    assert any("Greener.CSS" in source for source in parsed)
    assert all("Greener.CSS" in source or "App.DEFAULT_CSS" in source for source in parsed), parsed
    parsed.clear()
    await first_screen(ws, Greener)
    assert parsed == []  # and kept from then on


async def test_a_file_cut_short_is_parsed_around_and_written_anew(tmp_path, parsed):
    ws = Workspace(tmp_path / "ws").ensure()
    first = await first_screen(ws)
    path = kept_file(ws)
    path.write_bytes(path.read_bytes()[:100])
    parsed.clear()
    assert await first_screen(ws) == first
    assert len(parsed) > 20
    parsed.clear()
    assert await first_screen(ws) == first
    assert parsed == []


def test_another_theme_keeps_another_file(tmp_path):
    sheet = KeptStylesheet(variables={"primary": "#004578"}, folder=tmp_path)
    other = KeptStylesheet(variables={"primary": "#ff0000"}, folder=tmp_path)
    assert sheet.path is not None and sheet.path != other.path
    assert KeptStylesheet(variables={"primary": "#004578"}, folder=None).path is None
