"""Configure screen: the schema-derived form, inline validation, estimate, command, save, launch."""

from __future__ import annotations

import asyncio
import time

import pytest
from textual.app import App
from textual.widgets import Input, Select, Static

from tests.conftest import until
from tui_ft.recipe import AdapterSpec, DataSpec, ModelSpec, find_recipe, load_recipe, saved_recipes_dir
from tui_ft.ui.screens.configure import ConfigureScreen, recipe_choices
from tui_ft.ui.widgets.recipe_form import ADAPTER_FIELDS, FieldRow, RecipeForm


class ConfigApp(App):
    """The smallest host for the screen: a workspace and an `open_run` that records its calls."""

    def __init__(self, workspace):
        super().__init__()
        self.workspace = workspace
        self.opened: list[str] = []

    def on_mount(self) -> None:
        self.push_screen(ConfigureScreen())

    def open_run(self, run_id: str) -> None:
        self.opened.append(run_id)


@pytest.fixture(scope="module")
def ws(demo_ws):
    from tui_ft.training_fields import training_fields

    training_fields("sft", cache_dir=demo_ws.cache)  # the form reads TRL's field table from this cache
    return demo_ws


async def edit(pilot, widget_id: str, text: str) -> None:
    """Focus an Input and replace its text by typing (select-on-focus, then the keys)."""
    widget = pilot.app.screen.query_one(f"#{widget_id}", Input)
    widget.focus()
    await pilot.pause()
    widget.action_select_all()
    await pilot.press("backspace", *list(text))
    await pilot.pause(0.05)


def screen_of(app) -> ConfigureScreen:
    screen = app.screen
    assert isinstance(screen, ConfigureScreen)
    return screen


def rich_text(renderable) -> str:
    import io

    from rich.console import Console

    out = io.StringIO()
    Console(file=out, width=60, color_system=None).print(renderable)
    return out.getvalue()


def command_text(app) -> str:
    return str(screen_of(app).query_one("#command", Static).render())


def test_every_schema_field_has_a_row(ws):
    async def go():
        app = ConfigApp(ws)
        async with app.run_test(size=(120, 40)) as pilot:
            await pilot.pause()
            rows = {row.spec.key for row in app.screen.query(FieldRow)}
            for section, model in (("model", ModelSpec), ("adapter", AdapterSpec), ("data", DataSpec)):
                for name in model.model_fields:
                    assert f"{section}.{name}" in rows
            assert {"method", "training.learning_rate", "training.max_steps"} <= rows
            # every adapter setting belongs to some adapter type (else it would never be shown)
            assert set(AdapterSpec.model_fields) - {"type"} <= {
                n for ns in ADAPTER_FIELDS.values() for n in ns
            }

    asyncio.run(go())


def test_pick_edit_and_see_estimate_and_command_at_80x24(ws):
    async def go():
        app = ConfigApp(ws)
        async with app.run_test(size=(80, 24)) as pilot:
            screen = screen_of(app)
            await until(pilot, lambda: screen.last_estimate is not None)
            assert command_text(app) == "$ tui-ft train sft-lora"
            # pick sft-qlora with the keyboard
            labels = [label for label, _ in recipe_choices(ws)]
            steps = labels.index("sft-qlora") - labels.index("sft-lora")
            await pilot.press("ctrl+o")  # opens the drop-down
            await pilot.press(*["down" if steps > 0 else "up"] * abs(steps), "enter")
            await until(pilot, lambda: screen.source == find_recipe("sft-qlora"))
            await until(pilot, lambda: screen.last_estimate and "4bit" in screen.last_estimate.dtype)
            before = screen.last_estimate
            await edit(pilot, "f-adapter--r", "8")
            await until(pilot, lambda: "--set adapter.r=8" in command_text(app))
            assert command_text(app) == "$ tui-ft train sft-qlora --set adapter.r=8"
            await until(pilot, lambda: screen.last_estimate.trainable_params * 2 == before.trainable_params)
            shown = rich_text(screen.query_one("#estimate", Static).content)
            assert "total" in shown and "KiB" in shown

    asyncio.run(go())


def test_invalid_value_shows_the_schema_message_under_the_field(ws):
    async def go():
        app = ConfigApp(ws)
        async with app.run_test(size=(80, 24)) as pilot:
            await pilot.pause()
            await edit(pilot, "f-adapter--r", "0")
            form = app.screen.query_one(RecipeForm)
            await until(pilot, lambda: form.error is not None)
            with pytest.raises(Exception) as cli:
                load_recipe("sft-lora", ["adapter.r=0"], cache_dir=ws.cache)
            shown = str(app.screen.query_one("#err-f-adapter--r", Static).render())
            assert shown.startswith(cli.value.message)  # the command line's own words
            assert "greater than 0" in shown
            assert "invalid" in str(app.screen.query_one("#form-state", Static).render())
            # an unknown TRL key is refused with the nearest valid name, as in the YAML
            add = app.screen.query_one("#add-training", Input)
            add.focus()
            await pilot.press(*"learning_rat", "enter")
            await pilot.pause()
            assert "learning_rate" in str(app.screen.query_one("#add-training-error", Static).render())

    asyncio.run(go())


def test_adapter_type_shows_only_its_fields(ws):
    async def go():
        app = ConfigApp(ws)
        async with app.run_test(size=(100, 30)) as pilot:
            await pilot.pause()
            rows = {row.spec.key: row for row in app.screen.query(FieldRow)}
            assert not rows["adapter.r"].has_class("-hidden")
            assert rows["adapter.trainable_layers"].has_class("-hidden")
            select = app.screen.query_one("#f-adapter--type", Select)
            select.focus()
            await pilot.press("enter")
            await pilot.press(*"freeze", "enter")
            await until(pilot, lambda: select.value == "freeze")
            await pilot.pause()
            assert rows["adapter.r"].has_class("-hidden")
            assert not rows["adapter.trainable_layers"].has_class("-hidden")
            assert "--set adapter.type=freeze" in command_text(app)

    asyncio.run(go())


def test_save_writes_a_recipe_load_recipe_accepts(ws):
    async def go():
        app = ConfigApp(ws)
        async with app.run_test(size=(80, 24)) as pilot:
            await pilot.pause()
            await edit(pilot, "f-training--learning_rate", "0.0005")
            form = app.screen.query_one(RecipeForm)
            await until(
                pilot, lambda: form.recipe is not None and form.recipe.training["learning_rate"] == 5e-4
            )
            expected = form.recipe.model_copy(update={"name": "my-lora"})
            await pilot.press("ctrl+s")
            await pilot.pause()
            name = app.screen.query_one("#save-name", Input)
            name.action_select_all()
            await pilot.press("backspace", *"my-lora", "enter")
            path = saved_recipes_dir(ws) / "my-lora.yaml"
            await until(pilot, lambda: path.exists() and screen_of(app).source == path)
            loaded = load_recipe(path, cache_dir=ws.cache)
            assert loaded.recipe == expected
            assert command_text(app) == "$ tui-ft train my-lora"
            assert screen_of(app).query_one(RecipeForm).recipe == expected

    asyncio.run(go())


def test_launch_creates_a_run_and_opens_it(ws, monkeypatch):
    monkeypatch.setenv("TUI_FT_HOME", str(ws.root))
    from tui_ft.runs.registry import find_run, kill_now, refresh

    async def go():
        app = ConfigApp(ws)
        async with app.run_test(size=(80, 24)) as pilot:
            await pilot.pause()
            await edit(pilot, "f-training--max_steps", "2")
            await until(pilot, lambda: "--set training.max_steps=2" in command_text(app))
            await pilot.press("ctrl+l")
            await until(pilot, lambda: app.opened, timeout=30)
            return app.opened[0]

    run_id = asyncio.run(go())
    run = find_run(ws, run_id)
    assert run.recipe_file.exists()
    assert load_recipe(run.recipe_file, check_training=False).recipe.training["max_steps"] == 2
    deadline = time.monotonic() + 120
    status = refresh(run)
    while (status is None or not status.is_final) and time.monotonic() < deadline:
        time.sleep(0.5)
        status = refresh(run)
    if status is None or not status.is_final:
        kill_now(run)
    assert status is not None and status.state == "completed", status


def test_a_sweep_starts_from_the_form_and_runs_its_trials(ws, monkeypatch):
    """ctrl+g: a grid on any key, the form's values as the base; the sweep's driver runs each trial."""
    import json

    monkeypatch.setenv("TUI_FT_HOME", str(ws.root))

    async def go():
        app = ConfigApp(ws)
        async with app.run_test(size=(80, 24)) as pilot:
            await pilot.pause()
            await edit(pilot, "f-training--max_steps", "4")
            await until(pilot, lambda: "--set training.max_steps=4" in command_text(app))
            await pilot.press("ctrl+g")
            await until(pilot, lambda: app.screen.query("#sweep-grid"))
            await pilot.press(*"adapter.r=4,8")
            await pilot.press("enter")
            screen = app.screen_stack[1] if len(app.screen_stack) > 1 else app.screen
            await until(pilot, lambda: getattr(screen, "sweeps", None), timeout=60)
            return screen.sweeps[0]

    sweep_id = asyncio.run(go())
    path = ws.root / "sweeps" / sweep_id / "sweep.json"
    doc = json.loads(path.read_text())
    assert doc["grid"] == {"adapter.r": ["4", "8"]} and "training.max_steps=4" in doc["overrides"]
    deadline = time.monotonic() + 600
    while doc["state"] == "running" and time.monotonic() < deadline:
        time.sleep(1)
        doc = json.loads(path.read_text())
    assert doc["state"] == "completed", doc
    assert [t["state"] for t in doc["trials"]] == ["completed", "completed"]
    assert (
        ws.root / "recipes" / f"{json.loads(path.read_text())['best_recipe'].rsplit('/', 1)[-1]}"
    ).exists()


def test_configure_through_the_app_shell(ws):
    pytest.importorskip("tui_ft.ui.app")
    from tui_ft.ui.app import TuiFtApp

    async def go():
        app = TuiFtApp(ws, start_mode="configure")
        async with app.run_test(size=(80, 24)) as pilot:
            await until(pilot, lambda: isinstance(app.screen, ConfigureScreen))
            screen = app.screen
            await until(pilot, lambda: screen.last_estimate is not None)
            assert screen.query_one(RecipeForm).recipe is not None

    asyncio.run(go())


def test_snapshot_80x24(ws, snap_compare):
    async def settle(pilot):
        screen = pilot.app.screen
        await until(pilot, lambda: getattr(screen, "last_estimate", None) is not None)
        # the padding line measured (not "measuring…"): the same picture every time
        await until(pilot, lambda: "measuring" not in (screen.padding_text or "measuring"), timeout=60)
        await pilot.pause()

    assert snap_compare(ConfigApp(ws), terminal_size=(80, 24), run_before=settle)


def test_the_estimate_shows_the_padding_share_of_an_sft_recipes_batches(ws):
    """The share of a padded batch that would be padding, from the training data's token lengths (measured on
    a worker with the Datasets view's code), recomputed as batch size, max_length, packing and the data file
    change; a file that cannot be measured says so; a DPO recipe has no such line."""
    from textual.widgets import Switch

    from tui_ft.data.lengths import token_lengths
    from tui_ft.data.packing import padding_share
    from tui_ft.data.sources import open_dataset
    from tui_ft.engine.models import load_tokenizer
    from tui_ft.modelref import resolve_model

    tokenizer = load_tokenizer(resolve_model("demo-tiny", ws, field="model.name"))
    with open_dataset(ws.data / "chat.jsonl") as source:
        lengths = token_lengths(source.head(2000), tokenizer).lengths

    def share(batch: int, max_length: int) -> str:
        return f"{padding_share(lengths, batch, max_length):.0%}"

    (ws.data / "padding-unknown.jsonl").write_text('{"neither": "a format"}\n')

    async def go():
        app = ConfigApp(ws)
        async with app.run_test(size=(120, 40)) as pilot:
            screen = screen_of(app)

            def shows(text: str):
                return lambda: screen.padding_text is not None and text in screen.padding_text

            # as shipped: packed, so next to no padding; what padded batches would waste is said beside it
            await until(pilot, shows(f"would be {share(8, 256)} padding"), timeout=60)
            assert screen.padding_text.startswith(
                "padding: ~0% (packing on); padded batches of 8, max_length 256"
            )
            assert f"({len(lengths):,} rows)" in screen.padding_text
            shown = " ".join(rich_text(screen.query_one("#estimate", Static).content).split())
            assert screen.padding_text in shown  # on screen, under the parameter counts
            screen.query_one("#f-data--packing", Switch).value = False
            await until(pilot, shows(f"padding: {share(8, 256)} of a padded batch (batch 8, max_length 256)"))
            assert "packing off" in screen.padding_text
            await edit(pilot, "f-training--per_device_train_batch_size", "2")
            await until(pilot, shows(f"padding: {share(2, 256)} of a padded batch (batch 2, max_length 256)"))
            await edit(pilot, "f-data--max_length", "24")
            await until(pilot, shows(f"padding: {share(2, 24)} of a padded batch (batch 2, max_length 24)"))
            assert share(2, 24) != share(8, 256)
            # a file whose rows say no format: a message, never a blank
            await edit(pilot, "f-data--train", "padding-unknown.jsonl")
            await until(pilot, shows("padding: cannot measure"))
            assert "format" in screen.padding_text
            await edit(pilot, "f-data--train", "no-such-file.jsonl")
            # no such file: said (by the padding line, or by the form when the recipe refuses it)
            await until(
                pilot,
                lambda: (
                    shows("padding: not measured (data.train is not a local file)")()
                    or "invalid: data.train" in str(screen.query_one("#form-state", Static).render())
                ),
            )
        app2 = ConfigApp(ws)
        async with app2.run_test(size=(120, 40)) as pilot:
            screen = screen_of(app2)
            await until(pilot, lambda: screen.last_estimate is not None, timeout=60)
            await screen.open_recipe(find_recipe("dpo-lora"))
            await until(
                pilot,
                lambda: screen.last_estimate is not None and screen._estimated.method == "dpo",
                timeout=60,
            )
            # drawn with the DPO estimate (the SFT one may still be shown for a moment): no padding line
            await until(pilot, lambda: screen.padding_text is None, timeout=60)

    asyncio.run(go())
