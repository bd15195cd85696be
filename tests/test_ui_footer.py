"""Every place's footer fits 80 columns: each key it shows is whole on screen, and quitting is among them
(q, or ^q while a field has the keyboard). Keys the footer leaves out are still in the palette. The
footer has its keys on the first frame, draws again only when they change, and a click presses one."""

from __future__ import annotations

import pytest

from tests.conftest import until
from tui_ft.prefs.session import SessionSpec, remember_annotator, save_spec
from tui_ft.ui.app import TuiFtApp
from tui_ft.ui.commands import place_keys
from tui_ft.ui.widgets.shell import FooterKey, KeysFooter

pytestmark = pytest.mark.anyio
WIDTH = 80


class FooterApp(TuiFtApp):
    def _sample_gpu(self) -> None:
        pass


@pytest.fixture(scope="module")
def ws(demo_ws):
    from tui_ft.training_fields import training_fields

    training_fields("sft", cache_dir=demo_ws.cache)
    prompts = str(demo_ws.data / "preferences.jsonl")
    save_spec(demo_ws, SessionSpec(name="footer-rev", prompts=prompts, kind="review"))
    remember_annotator(demo_ws, "ana")
    return demo_ws


def shown_keys(app) -> list[FooterKey]:
    return app.screen.query_one(KeysFooter).keys


def laid_out(app) -> bool:
    return bool(shown_keys(app))


async def assert_fits(pilot, place: str) -> None:
    app = pilot.app
    await until(pilot, lambda: laid_out(app))  # the footer is drawn again when the keys change
    keys = shown_keys(app)
    assert keys, place
    footer = app.screen.query_one(KeysFooter)
    assert footer.region.x == 0 and footer.region.width == WIDTH
    line = str(footer.render())
    for key in keys:
        assert 0 <= key.start < key.end <= WIDTH, (place, key.description, key.start, key.end)
        assert line[key.start : key.end].startswith(key.display), (place, key, line)
    actions = {key.action for key in keys}
    assert actions & {"app.quit", "app.quit_from_field", "quit", "quit_from_field"}, (place, actions)


@pytest.mark.parametrize("mode", ["datasets", "configure", "runs", "chat"])
async def test_each_places_footer_fits_80_columns_and_shows_quit(ws, mode):
    app = FooterApp(ws, start_mode=mode)
    async with app.run_test(size=(WIDTH, 24)) as pilot:
        await pilot.pause(0.3)
        await assert_fits(pilot, mode)  # as the place opens (Chat's prompt has the keyboard: ^q quits)
        app.screen.set_focus(None)  # the place's own keys, not a field's
        await pilot.pause(0.1)
        await assert_fits(pilot, mode)


async def test_annotates_footer_fits_80_columns_and_the_other_keys_are_said_or_in_the_palette(ws):
    app = FooterApp(ws, start_mode="annotate", annotate_session="footer-rev")
    async with app.run_test(size=(WIDTH, 24)) as pilot:
        await until(pilot, lambda: getattr(app.screen, "session", None) is not None, timeout=30)
        await until(pilot, lambda: any(k.description == "Undo" for k in shown_keys(app)))
        await assert_fits(pilot, "annotate")
        shown = {key.description for key in shown_keys(app)}
        assert {"Undo", "Previous", "Next", "Train DPO", "Quit"} <= shown
        verdict = str(app.screen.query_one("#annotate-verdict").render())
        assert "1 A · 2 B · t tie · x both bad · s skip" in verdict  # the decision keys, under the pair
        palette = {name for name, _, _ in place_keys(app)}
        for hidden in ("A better", "B better", "Tie", "Both bad", "Skip", "Regenerate"):
            assert f"Annotate: {hidden}" in palette


async def test_the_footer_has_its_keys_on_the_first_frame_and_draws_again_only_when_they_change(
    ws, monkeypatch
):
    draws: list[list[str]] = []
    render = KeysFooter.render

    def counted(self):
        line = render(self)
        draws.append([key.description for key in self.keys])
        return line

    monkeypatch.setattr(KeysFooter, "render", counted)
    at_first_frame: list[list[str]] = []

    class Watched(FooterApp):
        def on_ready(self) -> None:
            at_first_frame.append([key.description for key in self.screen.query_one(KeysFooter).keys])
            super().on_ready()

    app = Watched(ws)
    async with app.run_test(size=(WIDTH, 24)) as pilot:
        await until(pilot, lambda: at_first_frame)
        assert {"Open", "Tokens", "Quit", "palette"} <= set(at_first_frame[0])  # Textual's footer: none yet
        await app.screen._hidden_views.wait()
        await pilot.pause(0.2)
        assert app.screen.focused.id == "ds-tree"  # the tree has the keyboard from the first frame
        drawn = len(draws)
        for _ in range(3):  # nothing changed: Textual's footer would build all its keys again each time
            app.screen.refresh_bindings()
            await pilot.pause(0.05)
        assert len(draws) == drawn
        app.screen.set_focus(app.screen.query_one("#ds-path"))  # a field: other keys
        await until(pilot, lambda: any(k.description == "Leave field" for k in shown_keys(app)))
        assert len(draws) == drawn + 1
        app.screen.set_focus(app.screen.query_one("#ds-tree"))
        await until(pilot, lambda: any(k.description == "Open" for k in shown_keys(app)))
        assert len(draws) == drawn + 2


async def test_clicking_a_key_in_the_footer_presses_it_and_hovering_tells_its_tooltip(ws):
    app = FooterApp(ws)
    async with app.run_test(size=(WIDTH, 24)) as pilot:
        await until(pilot, lambda: laid_out(app))
        await app.screen._hidden_views.wait()
        tokens = next(key for key in shown_keys(app) if key.description == "Tokens")
        await pilot.hover(KeysFooter, offset=(tokens.start, 0))
        footer = app.screen.query_one(KeysFooter)
        assert footer._hover == shown_keys(app).index(tokens)
        await pilot.click(KeysFooter, offset=(tokens.start, 0))
        await until(pilot, lambda: app.screen.query_one("#ds-tabs").active == "tab-tokens")
        grouped = [key for key in shown_keys(app) if key.description == ""]  # the divider's [ and ]
        assert [key.display for key in grouped] == ["[", "]"]
        assert all(key.tooltip for key in grouped)  # a group's keys tell what each does when hovered
        await pilot.hover(KeysFooter, offset=(grouped[0].start, 0))
        assert footer.tooltip == grouped[0].tooltip


async def test_the_footer_follows_the_keys_while_the_terminal_is_not_focused(ws):
    """A change while the user looks at another pane (a run ends, a field takes the keyboard) is drawn
    then, not at the next change after the terminal is focused again (Textual's footer waits)."""
    app = FooterApp(ws)
    async with app.run_test(size=(WIDTH, 24)) as pilot:
        await until(pilot, lambda: any(k.description == "Open" for k in shown_keys(app)))
        app.app_focus = False
        await pilot.pause()
        app.screen.set_focus(app.screen.query_one("#ds-path"))
        await until(pilot, lambda: any(k.description == "Leave field" for k in shown_keys(app)))
        assert not app.app_focus
