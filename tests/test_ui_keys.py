"""Keys that never land in the wrong place: Escape leaves every kind of field (Configure's text, number,
yaml, Select and Switch rows; the Datasets path box; the Chat prompt; Annotate's rationale), and the
mode keys typed next switch places without changing the recipe, its command line or the text typed;
the footer says how to leave and quit while a field has the keyboard; number fields say what they take
and keep the recipe's value; ^o opens the recipe drop-down; the palette lists every place's keys; and
the panes share the width by proportion and move with [ and ]."""

from __future__ import annotations

from pathlib import Path

import pytest
from textual.widgets import DataTable, Input, Select, Static, Switch

from tests.conftest import until
from tui_ft.prefs.session import SessionSpec, remember_annotator, save_spec
from tui_ft.ui.app import TuiFtApp
from tui_ft.ui.commands import place_keys
from tui_ft.ui.screens.configure import ConfigureScreen
from tui_ft.ui.widgets.fields import in_field
from tui_ft.ui.widgets.recipe_form import FieldRow, NumberInput, RecipeForm
from tui_ft.workspace import Workspace

pytestmark = pytest.mark.anyio
SAMPLES = Path(__file__).parents[1] / "tui_ft" / "samples"


@pytest.fixture(scope="module")
def ws(demo_ws):
    from tui_ft.training_fields import training_fields

    training_fields("sft", cache_dir=demo_ws.cache)  # the form reads TRL's field table from this cache
    return demo_ws


class KeysApp(TuiFtApp):
    """The real app; the GPU line is not sampled (not what these tests are about)."""

    def _sample_gpu(self) -> None:
        pass


def command(screen: ConfigureScreen) -> str:
    return str(screen.query_one("#command", Static).render())


async def configure(pilot) -> ConfigureScreen:
    app = pilot.app
    await until(pilot, lambda: isinstance(app.screen, ConfigureScreen))
    screen = app.screen
    await until(pilot, lambda: screen.last_estimate is not None, timeout=60)
    return screen


def first_row(screen: ConfigureScreen, kind: str) -> FieldRow:
    return next(r for r in screen.query(FieldRow) if r.spec.kind == kind and not r.has_class("-hidden"))


async def test_mode_keys_after_escape_in_every_kind_of_configure_field_change_nothing(ws):
    app = KeysApp(ws, start_mode="configure")
    async with app.run_test(size=(100, 30)) as pilot:
        screen = await configure(pilot)
        form = screen.query_one(RecipeForm)
        start_command, start_recipe = command(screen), form.recipe
        assert start_command == "$ tui-ft train sft-lora"
        controls = {kind: first_row(screen, kind).control for kind in ("text", "int", "float", "yaml")}
        controls["select"] = screen.query_one("#f-adapter--type", Select)
        controls["switch"] = first_row(screen, "switch").control
        assert isinstance(controls["float"], NumberInput) and isinstance(controls["switch"], Switch)
        for kind, control in controls.items():
            for key, mode in (
                ("1", "datasets"),
                ("3", "runs"),
                ("4", "annotate"),
                ("5", "chat"),
                ("2", None),
            ):
                control.focus()
                await pilot.pause()
                assert in_field(screen), kind
                # while the field has the keyboard the footer says how to leave it and how to quit
                active = screen.active_bindings
                assert active["escape"].binding.description == "Leave field"
                if kind in ("select", "switch"):  # q is not a letter of these: it quits, and says so
                    assert active["q"].binding.action == "quit" and active["q"].binding.show
                else:  # q is text here: ctrl+q quits, and the footer says so
                    assert (
                        active["ctrl+q"].binding.action == "quit_from_field" and active["ctrl+q"].binding.show
                    )
                    assert "q" not in active
                await pilot.press("escape")
                assert screen.focused is None, kind
                assert "q" in screen.active_bindings  # and q quits again
                await pilot.press(key)
                await pilot.pause()
                assert app.current_mode == (mode or "configure"), (kind, key)
                if mode is not None:
                    await app.switch_mode("configure")
                    await pilot.pause()
                assert app.screen is screen
                assert form.overrides() == [], (kind, key)
                assert command(screen) == start_command, (kind, key)
                assert form.recipe == start_recipe, (kind, key)


async def test_number_fields_say_what_they_take_and_keep_the_recipes_value(ws):
    app = KeysApp(ws, start_mode="configure")
    async with app.run_test(size=(100, 30)) as pilot:
        screen = await configure(pilot)
        form = screen.query_one(RecipeForm)
        field = screen.query_one("#f-training--learning_rate", NumberInput)
        recipe_value = field.value
        note = screen.query_one("#note-f-training--learning_rate", Static)
        field.focus()
        await pilot.pause()
        field.action_end()
        await pilot.press("x")  # a letter: refused, and said
        await pilot.pause()
        assert field.value == recipe_value
        assert "takes a number" in str(note.render()) and note.display
        field.action_select_all()
        await pilot.press("backspace")  # cleared: the recipe's value, not TRL's default
        await pilot.pause()
        assert field.value == "" and form.overrides() == [] and command(screen) == "$ tui-ft train sft-lora"
        assert "the recipe's value" in str(note.render()) and recipe_value in str(note.render())
        assert recipe_value in field.placeholder and "recipe's value" in field.placeholder
        await pilot.press(*"3e-")  # not a number yet: the recipe's value is kept
        await pilot.pause()
        assert form.overrides() == [] and "is not yet a number" in str(note.render())
        await pilot.press("4")
        await until(pilot, lambda: "--set training.learning_rate=3e-4" in command(screen))
        assert not note.display


async def test_ctrl_o_opens_the_recipe_drop_down(ws):
    app = KeysApp(ws, start_mode="configure")
    async with app.run_test(size=(100, 30)) as pilot:
        screen = await configure(pilot)
        await pilot.press("ctrl+o")
        await pilot.pause()
        picker = screen.query_one(".picker", Select)
        assert picker.expanded
        await pilot.press("escape")  # closes the list, the picker keeps the focus
        await pilot.pause()
        assert not picker.expanded


async def test_mode_keys_after_escape_in_the_datasets_path_box_and_the_chat_prompt(ws):
    app = KeysApp(ws)
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.pause()
        path = app.screen.query_one("#ds-path", Input)
        await pilot.press("o", *"chat")  # o: the path box
        assert path.value == "chat"
        await pilot.press("escape")
        assert not path.has_focus and app.screen.focused is app.screen.query_one("#ds-tree")
        await pilot.press("3")
        await pilot.pause()
        assert app.current_mode == "runs"
        await pilot.press("5")
        await until(pilot, lambda: app.screen.query("#chat-prompt"))
        prompt = app.screen.query_one("#chat-prompt", Input)
        prompt.focus()
        await pilot.pause()
        await pilot.press(*"hi")
        await pilot.press("escape")
        assert not prompt.has_focus
        await pilot.press("1")
        await pilot.pause()
        assert app.current_mode == "datasets" and path.value == "chat"
        await app.switch_mode("chat")
        assert prompt.value == "hi"


async def test_mode_keys_after_escape_in_annotates_rationale(tmp_path):
    ws = Workspace(tmp_path / "ws").ensure()
    save_spec(ws, SessionSpec(name="rev", prompts=str(SAMPLES / "preferences.jsonl"), kind="review"))
    remember_annotator(ws, "ana")
    app = KeysApp(ws, start_mode="annotate", annotate_session="rev")
    async with app.run_test(size=(120, 36)) as pilot:
        await until(pilot, lambda: getattr(app.screen, "session", None) is not None, timeout=30)
        annotate = app.screen
        await pilot.press("e", *"rude")
        await pilot.pause()
        await pilot.press("escape")  # the rationale's dialog closes, nothing kept
        await pilot.pause()
        assert app.screen is annotate and annotate.rationale == ""
        await pilot.press("3")
        await pilot.pause()
        assert app.current_mode == "runs"
        await app.switch_mode("annotate")
        await pilot.pause()
        assert annotate.shown_index == 0 and annotate.rationale == ""
        assert not (ws.annotations / "rev.jsonl").exists() or not (ws.annotations / "rev.jsonl").read_text()


async def test_the_palette_lists_every_place_s_keys(ws):
    app = KeysApp(ws, start_mode="configure")
    async with app.run_test(size=(100, 30)) as pilot:
        await configure(pilot)
        for key in ("1", "3", "5"):
            if app.current_mode == "chat":
                await pilot.press("escape")
            await pilot.press(key)
            await pilot.pause()
        names = [name for name, _, _ in place_keys(app)]
        for name in (
            "Configure: Save",
            "Configure: Launch",
            "Configure: Pick recipe",
            "Configure: Sweep",
            "Datasets: Open",
            "Datasets: Find",
            "Runs: Filter",
            "Runs: Stop",
            "Chat: Settings",
            "Chat: Compare",
        ):
            assert name in names, name
        assert names[0].startswith("Chat: ")  # the place shown first
        assert not [name for name in names if "Focus" in name]  # Textual's own keys are not listed


@pytest.mark.parametrize("size", [(80, 24), (160, 48)], ids=lambda s: f"{s[0]}x{s[1]}")
async def test_panes_share_the_width_and_move_with_brackets(ws, size):
    app = KeysApp(ws, start_mode="configure")
    async with app.run_test(size=size) as pilot:
        screen = await configure(pilot)
        side, form = screen.query_one("#side"), screen.query_one("#form-holder")
        assert side.size.width >= 24 and form.size.width > side.size.width
        if size[0] == 160:
            assert side.size.width >= 50  # the estimate gets room: it no longer wraps over the screen
        before = side.size.width
        assert in_field(screen) and "left_square_bracket" not in screen.active_bindings  # the picker
        await pilot.press("escape")
        await pilot.press("left_square_bracket")  # nothing has the keyboard: the divider moves
        await pilot.pause()
        assert side.size.width > before
        labels = [row.query_one("Label") for row in screen.query(FieldRow) if row.display]
        assert all(label.size.height == 1 for label in labels if label.region)  # never broken mid-word
        await pilot.press("1")
        await pilot.pause()
        tree = app.screen.query_one("#ds-sidebar")
        width = tree.size.width
        assert width >= 24 and (size[0] == 80 or width >= 48)
        await pilot.press("right_square_bracket")
        await pilot.pause()
        assert tree.size.width > width


@pytest.mark.parametrize("size", [(80, 24), (160, 48)], ids=lambda s: f"{s[0]}x{s[1]}")
async def test_the_run_list_keeps_its_key_columns_at_80_and_uses_160(tmp_path, size, monkeypatch):
    from tests.test_ui_runs import record_run

    ws = Workspace(tmp_path / "ws").ensure()
    record_run(ws, "20261122-080000-sft-lora", checkpoints=(20,))
    app = KeysApp(ws, start_mode="runs")
    async with app.run_test(size=size) as pilot:
        await until(pilot, lambda: app.screen.query("#runs-table"))
        table = app.screen.query_one("#runs-table", DataTable)
        await until(pilot, lambda: table.row_count == 1)
        columns = [str(c.label) for c in table.columns.values()]
        assert {"run", "state", "method", "progress", "loss"} <= set(columns)
        if size[0] == 160:
            assert {"started", "duration"} <= set(columns)
