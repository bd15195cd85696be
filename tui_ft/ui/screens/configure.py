"""Configure: pick a recipe, edit it in a form derived from the schema, see the memory estimate and the
equivalent command, save it to the workspace, launch it (a detached runner) and go to its run."""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.table import Table
from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.message import Message
from textual.reactive import reactive
from textual.screen import ModalScreen, Screen
from textual.widgets import Button, Input, Label, Select, Static
from textual.worker import get_current_worker

from tui_ft.display import format_params as format_count
from tui_ft.errors import UserError
from tui_ft.estimate import MemoryEstimate, describe_padding, format_bytes
from tui_ft.recipe import Recipe, dump_recipe, saved_recipes, saved_recipes_dir, shipped_recipes
from tui_ft.ui.widgets.fields import in_field, leave_field
from tui_ft.ui.widgets.recipe_form import FieldSpec, RecipeForm
from tui_ft.ui.widgets.shell import KeysFooter
from tui_ft.workspace import Workspace

if TYPE_CHECKING:
    from tui_ft.data.lengths import Lengths

ESTIMATE_DELAY_S = 0.3
SPLIT_STEP = 5  # percent of the width moved by one press of [ or ]
SPLIT_RANGE = (30, 85)  # the form's share of the width, in percent


def recipe_choices(ws: Workspace) -> list[tuple[str, str]]:
    """(label, path) for every shipped recipe, then every recipe saved in the workspace."""
    choices = [(p.stem, str(p)) for p in shipped_recipes()]
    shipped = {p.stem for p in shipped_recipes()}
    choices += [(f"{p.stem} (saved)", str(p)) for p in saved_recipes(ws) if p.stem not in shipped]
    return choices


def recipe_ref(source: Path, ws: Workspace) -> str:
    """How `tui-ft train` names this recipe: by name when shipped or saved in the workspace."""
    for folder in (shipped_recipes(), saved_recipes(ws)):
        if source in folder:
            return source.stem
    return str(source)


def train_command(source: Path, overrides: list[str], ws: Workspace) -> str:
    parts = ["tui-ft", "train", recipe_ref(source, ws)]
    for item in overrides:
        parts += ["--set", item]
    return shlex.join(parts)


def render_estimate(estimate: MemoryEstimate, padding: Text | None = None) -> Table:
    """The total and verdict first (visible without scrolling), then the padding share of an SFT recipe's
    batches (`padding`, when there is one), then each part with its reason."""
    colour = {True: "green", False: "red"}.get(estimate.fits, "yellow")  # type: ignore[arg-type]
    table = Table.grid(padding=(0, 1), expand=True)
    table.add_column(ratio=1)
    table.add_column(justify="right", no_wrap=True)
    table.add_row(
        Text("total", style="bold"), Text(format_bytes(estimate.total_bytes), style=f"bold {colour}")
    )
    table.add_row(Text(estimate.verdict(), style=colour), "")
    table.add_row(
        Text(
            f"{format_count(estimate.total_params)} params, {format_count(estimate.trainable_params)} "
            f"trainable; {estimate.dtype}; batch {estimate.batch} x {estimate.seq_len}",
            style="dim",
        ),
        "",
    )
    if padding is not None:
        table.add_row(padding, "")
    for part in estimate.parts:
        table.add_row(Text(part.label, style="bold"), format_bytes(part.bytes))
        table.add_row(Text(part.explanation, style="dim"), "")
    for note in estimate.assumptions:
        table.add_row(Text(f"· {note}", style="dim italic"), "")
    return table


class SaveRecipeScreen(ModalScreen[str | None]):
    """Ask for the name to save the recipe under; dismisses with the name, or None."""

    DEFAULT_CSS = """
    SaveRecipeScreen { align: center middle; }
    SaveRecipeScreen > Vertical {
        width: 60; max-width: 95%; height: auto; border: thick $primary; padding: 0 1; background: $surface;
    }
    SaveRecipeScreen #save-error { color: $error; height: auto; }
    SaveRecipeScreen #save-where { color: $text-muted; height: auto; }
    SaveRecipeScreen Horizontal { height: auto; align-horizontal: right; }
    """
    BINDINGS = [Binding("escape", "cancel", "Cancel", id="configure.save.cancel")]

    def __init__(self, name: str, folder: Path, check: Any) -> None:
        super().__init__()
        self.initial = name
        self.folder = folder
        self.check = check  # name -> error message or None

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label("Save the recipe as")
            yield Input(self.initial, id="save-name")
            yield Static("", id="save-where")
            yield Static("", id="save-error")
            with Horizontal():
                yield Button("Cancel", id="save-cancel")
                yield Button("Save", variant="primary", id="save-ok")

    def on_mount(self) -> None:
        self._describe(self.initial)

    @on(Input.Changed, "#save-name")
    def _typed(self, event: Input.Changed) -> None:
        self._describe(event.value)

    def _describe(self, name: str) -> None:
        path = self.folder / f"{name.strip()}.yaml"
        note = " (exists: will be replaced)" if path.exists() else ""
        self.query_one("#save-where", Static).update(f"{path}{note}")

    @on(Input.Submitted, "#save-name")
    @on(Button.Pressed, "#save-ok")
    def _save(self) -> None:
        name = self.query_one("#save-name", Input).value.strip()
        problem = self.check(name)
        if problem:
            self.query_one("#save-error", Static).update(problem)
            return
        self.dismiss(name)

    @on(Button.Pressed, "#save-cancel")
    def action_cancel(self) -> None:
        self.dismiss(None)


class SweepSetupDialog(ModalScreen[dict[str, Any] | None]):
    """What to sweep over: grid values and/or Optuna ranges on any recipe key (as `--set` names them),
    the number of trials and the metric that ranks them. Dismisses with the spec or None."""

    DEFAULT_CSS = """
    SweepSetupDialog { align: center middle; }
    SweepSetupDialog > Vertical {
        width: 80; max-width: 95%; height: auto; border: thick $primary; padding: 0 1; background: $surface;
    }
    SweepSetupDialog Horizontal { height: auto; }
    SweepSetupDialog Horizontal > Label { padding-top: 1; }
    SweepSetupDialog #sweep-trials { width: 10; }
    SweepSetupDialog #sweep-metric { width: 1fr; }
    SweepSetupDialog #sweep-error { height: auto; }
    """
    BINDINGS = [Binding("escape", "cancel", "Cancel", id="configure.sweep.cancel")]

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label("Sweep over  [dim](keys as --set names them; several separated by spaces)[/dim]")
            yield Label("grid: key=v1,v2 ...")
            yield Input(placeholder="training.learning_rate=1e-3,3e-3 adapter.r=8,16", id="sweep-grid")
            yield Label("Optuna ranges: key=lo:hi[:log] ...")
            yield Input(placeholder="training.learning_rate=1e-5:1e-2:log", id="sweep-ranges")
            with Horizontal():
                yield Label("trials (Optuna) ")
                yield Input("8", id="sweep-trials", type="integer")
                yield Label(" metric ")
                yield Input("eval_loss", id="sweep-metric")
            yield Static("", id="sweep-error")
            with Horizontal():
                yield Button("Cancel", id="sweep-cancel")
                yield Button("Start", variant="primary", id="sweep-start")

    def on_mount(self) -> None:
        self.query_one("#sweep-grid", Input).focus()

    @on(Input.Submitted)
    @on(Button.Pressed, "#sweep-start")
    def _start(self) -> None:
        grid = self.query_one("#sweep-grid", Input).value.split()
        ranges = self.query_one("#sweep-ranges", Input).value.split()
        if not grid and not ranges:
            self.query_one("#sweep-error", Static).update(Text("give grid values or ranges", style="red"))
            return
        trials_text = self.query_one("#sweep-trials", Input).value.strip()
        self.dismiss(
            {
                "grid": grid,
                "ranges": ranges,
                "trials": int(trials_text) if ranges and trials_text.isdigit() else 0,
                "metric": self.query_one("#sweep-metric", Input).value.strip(),
            }
        )

    @on(Button.Pressed, "#sweep-cancel")
    def action_cancel(self) -> None:
        self.dismiss(None)


class ConfigureScreen(Screen):
    """The Configure mode: recipe picker, form, memory estimate, command, save and launch."""

    DEFAULT_CSS = """
    ConfigureScreen #picker-row { height: 1; }
    ConfigureScreen #picker-row > Label { width: 8; padding: 0 1 0 0; }
    ConfigureScreen .picker { width: 32; }
    ConfigureScreen #form-state { width: 1fr; padding: 0 0 0 2; }
    ConfigureScreen #main { height: 1fr; }
    ConfigureScreen #form-holder { width: 1fr; min-width: 30; height: 1fr; }
    ConfigureScreen #side { width: 36%; min-width: 24; height: 1fr; border-left: solid $panel; padding: 0 0 0 1; }
    ConfigureScreen #side-title { text-style: bold; }
    ConfigureScreen #command { height: auto; max-height: 4; background: $boost; padding: 0 1; }
    """

    BINDINGS = [
        Binding("ctrl+s", "save", "Save", id="configure.save"),
        Binding("ctrl+l", "launch", "Launch", id="configure.launch"),
        Binding("ctrl+o", "pick", "Pick recipe", id="configure.pick"),
        Binding("ctrl+g", "sweep", "Sweep", id="configure.sweep"),
        # typed into a field while one has the keyboard; after Escape they move the divider
        Binding(
            "left_square_bracket",
            f"split(-{SPLIT_STEP})",
            "Narrower form",
            group=Binding.Group("Divider"),
            id="configure.split_left",
        ),
        Binding(
            "right_square_bracket",
            f"split({SPLIT_STEP})",
            "Wider form",
            group=Binding.Group("Divider"),
            id="configure.split_right",
        ),
        Binding("escape", "leave_field", "Leave field", id="configure.leave_field"),
    ]

    split: reactive[int] = reactive(64, init=False)  # the form's share of the width, in percent

    @dataclass
    class EstimateReady(Message):
        estimate: MemoryEstimate
        generation: int

    @dataclass
    class EstimateFailed(Message):
        message: str
        generation: int

    @dataclass
    class LengthsReady(Message):
        key: tuple
        lengths: Lengths

    @dataclass
    class LengthsFailed(Message):
        key: tuple
        message: str

    @dataclass
    class Launched(Message):
        run_id: str
        pid: int

    @dataclass
    class LaunchFailed(Message):
        error: UserError | str

    @dataclass
    class SweepStarted(Message):
        sweep_id: str

    def __init__(self, *, source: Path | None = None, name: str | None = None, id: str | None = None) -> None:
        super().__init__(name=name, id=id)
        self.source = source
        self._estimate_timer: Any = None
        self._generation = 0
        self._gpu_sampler: Any = None
        self.last_estimate: MemoryEstimate | None = None
        self._estimated: Recipe | None = None  # the recipe of the estimate in flight or shown
        self._lengths_key: tuple | None = None  # what the token lengths are (being) measured for
        self._lengths: Lengths | str | None = None  # the measured lengths, or why there are none
        self._tokenizers: dict[tuple, Any] = {}  # (model, revision, template) -> its tokenizer
        self.padding_text: str | None = None  # the padding line shown (tests read it)
        self.launched: list[str] = []
        self.sweeps: list[str] = []  # sweeps started from this screen
        self._form: RecipeForm | None = None

    @property
    def workspace(self) -> Workspace:
        ws = getattr(self.app, "workspace", None)
        return ws if isinstance(ws, Workspace) else Workspace.default()

    @property
    def form(self) -> RecipeForm:
        """The current form (a replaced one may linger in the DOM for a moment)."""
        return self._form if self._form is not None else self.query_one(RecipeForm)

    def compose(self) -> ComposeResult:
        ws = self.workspace
        choices = recipe_choices(ws)
        if self.source is None:
            preferred = [p for label, p in choices if label == "sft-lora"] or [p for _, p in choices]
            self.source = Path(preferred[0]) if preferred else None
        if self.source is not None:
            self.source = self.source.resolve()
            if str(self.source) not in [value for _, value in choices]:
                choices.append((self.source.stem, str(self.source)))
        with Horizontal(id="picker-row"):
            yield Label("recipe")
            yield Select(
                choices,
                value=str(self.source) if self.source else Select.NULL,
                allow_blank=self.source is None,
                compact=True,
                classes="picker",
            )
            yield Static("", id="form-state")
        with Horizontal(id="main"):
            with Vertical(id="form-holder"):
                if self.source is not None:
                    self._form = RecipeForm(self.source, cache_dir=ws.cache)
                    yield self._form
            with VerticalScroll(id="side"):
                yield Static("Memory estimate", id="side-title")
                yield Static("estimating…", id="estimate")
        yield Static("", id="command")
        yield KeysFooter()  # compact: the keys, Escape and quit fit in 80 columns

    def on_mount(self) -> None:
        self._show_command([])

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "split":  # typed into a field that has the keyboard: not offered there
            return not in_field(self)
        if action == "leave_field":  # shown (and taken) only while a field has the keyboard
            return in_field(self)
        return True

    def action_leave_field(self) -> None:
        """Escape: the keyboard leaves the field (its value stays as typed); the place's keys live again."""
        leave_field(self)

    def action_split(self, step: int) -> None:
        """Move the divider between the form and the memory estimate by `step` percent of the width."""
        low, high = SPLIT_RANGE
        self.split = max(low, min(high, self.split + step))

    def watch_split(self, split: int) -> None:
        self.query_one("#side").styles.width = f"{100 - split}%"

    def on_unmount(self) -> None:
        if self._gpu_sampler is not None:
            self._gpu_sampler.close()

    # ---------------------------------------------------------------------------------------------
    # the recipe

    @on(Select.Changed, ".picker")
    async def _picked(self, event: Select.Changed) -> None:
        if event.value is Select.NULL or str(event.value) == str(self.source):
            return
        await self.open_recipe(Path(str(event.value)))

    async def open_recipe(self, source: Path) -> None:
        """Start the form again from `source`."""
        self.source = source
        holder = self.query_one("#form-holder", Vertical)
        await holder.remove_children()
        self._form = RecipeForm(source, cache_dir=self.workspace.cache)
        await holder.mount(self._form)
        picker = self.query(".picker").last(Select)
        choices = recipe_choices(self.workspace)
        if str(source) not in [value for _, value in choices]:
            choices.append((source.stem, str(source)))
        if [value for _, value in choices] != [value for _, value in picker._options if value != Select.NULL]:
            # a newly saved recipe: a fresh picker (set_options would select its first entry on the way)
            fresh = Select(choices, value=str(source), allow_blank=False, compact=True, classes="picker")
            self.query_one("#picker-row", Horizontal).mount(fresh, before=picker)
            picker.remove()
        self._show_command([])

    async def open_recipe_with(self, source: Path, values: dict[str, str]) -> None:
        """Open `source` with some fields set (`{"data.train": ...}`): the Annotate screen's store as the
        data of a DPO recipe. The values show as changes, as if typed."""
        await self.open_recipe(source)
        for key, value in values.items():
            for control in self.form.query(f"#{FieldSpec(tuple(key.split('.')), 'text', '').widget_id}"):
                if isinstance(control, Input):
                    control.value = value

    def action_pick(self) -> None:
        """Open the recipe drop-down (Enter picks, Escape closes it)."""
        picker = self.query(".picker").last(Select)
        picker.focus()
        picker.action_show_overlay()

    @on(RecipeForm.Changed)
    def _form_changed(self, event: RecipeForm.Changed) -> None:
        if event.form is not self.form:
            return
        self._show_command(event.overrides)
        self.query_one("#form-state", Static).update(Text("valid", style="green"))
        self._schedule_estimate()

    @on(RecipeForm.Invalid)
    def _form_invalid(self, event: RecipeForm.Invalid) -> None:
        if event.form is not self.form:
            return
        self._show_command(event.overrides)
        first = event.errors[0]
        self.query_one("#form-state", Static).update(Text(f"invalid: {first.field or 'recipe'}", style="red"))
        self._generation += 1  # a pending estimate is for an older recipe
        self.query_one("#estimate", Static).update(
            Text(f"fix {first.field or 'the recipe'} to estimate:\n{first.message}", style="yellow")
        )

    def _show_command(self, overrides: list[str]) -> None:
        if self.source is None:
            return
        command = train_command(self.source, overrides, self.workspace)
        self.query_one("#command", Static).update(Text(f"$ {command}"))

    # ---------------------------------------------------------------------------------------------
    # the estimate

    def _schedule_estimate(self) -> None:
        self._generation += 1
        if self._estimate_timer is not None:
            self._estimate_timer.stop()
        generation = self._generation
        self._estimate_timer = self.set_timer(ESTIMATE_DELAY_S, lambda: self._start_estimate(generation))

    def _start_estimate(self, generation: int) -> None:
        recipe = self.form.recipe if self.is_mounted else None
        if recipe is not None and generation == self._generation:
            self._estimated = recipe
            self._estimate(recipe, generation)
            self._start_lengths(recipe)

    @work(thread=True, exclusive=True, group="estimate", exit_on_error=False)
    def _estimate(self, recipe: Recipe, generation: int) -> None:
        from tui_ft.estimate import estimate_memory
        from tui_ft.monitor.system import GpuSampler

        if self._gpu_sampler is None:
            self._gpu_sampler = GpuSampler()
        try:
            estimate = estimate_memory(recipe, self.workspace, gpu=self._gpu_sampler.sample())
        except UserError as exc:
            self.post_message(self.EstimateFailed(str(exc), generation))
            return
        except (OSError, ValueError) as exc:
            self.post_message(self.EstimateFailed(f"cannot estimate: {exc}", generation))
            return
        self.post_message(self.EstimateReady(estimate, generation))

    @on(EstimateReady)
    def _estimate_ready(self, message: EstimateReady) -> None:
        if message.generation != self._generation:
            return
        self.last_estimate = message.estimate
        self._show_estimate()

    def _show_estimate(self) -> None:
        estimate = self.last_estimate
        if estimate is None:
            return
        padding = self._padding_line()
        self.padding_text = padding.plain if padding is not None else None
        self.query_one("#estimate", Static).update(render_estimate(estimate, padding))

    # the padding share (SFT): token lengths of the training data, measured on a worker

    def _start_lengths(self, recipe: Recipe) -> None:
        """Measure the training data's token lengths when the data, its format or the tokenizer changed
        (batch size, max_length and packing only change the arithmetic: no new measuring)."""
        from tui_ft.data.sources import resolve_path  # (not on the start-up path)

        if recipe.method != "sft":
            self._lengths_key, self._lengths = None, None
            return
        path = resolve_path(recipe.data.train, self.workspace.data) if recipe.data.train else None
        if path is None or not path.is_file():
            self._lengths_key = None
            self._lengths = (
                "padding: not measured (a mixture of datasets)"
                if recipe.data.mixture
                else "padding: not measured (data.train is not a local file)"
            )
            return
        try:
            stamp = path.stat().st_mtime_ns, path.stat().st_size
        except OSError as exc:
            self._lengths_key, self._lengths = None, f"padding: cannot read {path}: {exc.strerror}"
            return
        model = recipe.model
        key = (str(path), stamp, recipe.data.format, model.name, model.revision, model.chat_template)
        if key == self._lengths_key:
            return
        self._lengths_key, self._lengths = key, None
        self._measure_lengths(recipe, path, key)

    @work(thread=True, exclusive=True, group="padding", exit_on_error=False)
    def _measure_lengths(self, recipe: Recipe, path: Path, key: tuple) -> None:
        from tui_ft.library_noise import quiet_library_noise

        quiet_library_noise()
        from tui_ft.data.formats import Format
        from tui_ft.data.lengths import SAMPLE_ROWS, token_lengths
        from tui_ft.data.sources import open_dataset
        from tui_ft.engine.models import load_tokenizer
        from tui_ft.modelref import resolve_model

        worker = get_current_worker()
        try:
            tokenizer_key = key[3:]
            tokenizer = self._tokenizers.get(tokenizer_key)
            if tokenizer is None:
                ref = resolve_model(recipe.model.name, self.workspace, field="model.name")
                tokenizer = self._tokenizers[tokenizer_key] = load_tokenizer(ref, recipe.model)
            fmt = None if recipe.data.format == "auto" else Format(recipe.data.format)
            with open_dataset(path) as source:
                measured = token_lengths(
                    source.head(SAMPLE_ROWS), tokenizer, fmt, cancelled=lambda: worker.is_cancelled
                )
        except UserError as exc:
            self.post_message(self.LengthsFailed(key, f"padding: cannot measure: {exc}"))
            return
        except Exception as exc:  # noqa: BLE001 - tokenizers and files fail in many ways: said, never a blank
            self.post_message(
                self.LengthsFailed(key, f"padding: cannot measure: {type(exc).__name__}: {exc}")
            )
            return
        if measured is not None:
            self.post_message(self.LengthsReady(key, measured))

    @on(LengthsReady)
    def _lengths_ready(self, message: LengthsReady) -> None:
        if message.key == self._lengths_key:
            self._lengths = message.lengths
            self._show_estimate()

    @on(LengthsFailed)
    def _lengths_failed(self, message: LengthsFailed) -> None:
        if message.key == self._lengths_key:
            self._lengths = message.message
            self._show_estimate()

    def _padding_line(self) -> Text | None:
        recipe, estimate = self._estimated, self.last_estimate
        if recipe is None or estimate is None or recipe.method != "sft":
            return None
        lengths = self._lengths
        if lengths is None:
            return Text("padding: measuring the data's token lengths…", style="dim italic")
        if isinstance(lengths, str):
            return Text(lengths, style="yellow")
        line = describe_padding(
            lengths.lengths,
            estimate.batch,
            recipe.data.max_length,
            recipe.data.packing,
            sampled=lengths.sampled,
        )
        return Text(line, style="cyan")

    @on(EstimateFailed)
    def _estimate_failed(self, message: EstimateFailed) -> None:
        if message.generation == self._generation:
            self.query_one("#estimate", Static).update(Text(message.message, style="yellow"))

    # ---------------------------------------------------------------------------------------------
    # save

    def _check_name(self, name: str) -> str | None:
        if not name:
            return "give the recipe a name"
        if name in {p.stem for p in shipped_recipes()}:
            return f"{name} is a shipped recipe's name; choose another"
        try:
            self.form.validate([*self.form.overrides(), f"name={name}"])
        except UserError as exc:
            return f"{exc.field}: {exc.message}" if exc.field else exc.message
        return None

    def action_save(self) -> None:
        form = self.form
        if form.recipe is None:
            self.notify(
                "fix the recipe first: " + (form.error.message if form.error else ""), severity="error"
            )
            return
        name = form.recipe.name or "my-recipe"
        saved_dir = saved_recipes_dir(self.workspace)
        if self.source is not None and self.source.parent != saved_dir:
            name = f"{name}-custom"
        self.app.push_screen(SaveRecipeScreen(name, saved_dir, self._check_name), self._saved)

    async def _saved(self, name: str | None) -> None:
        if not name:
            return
        loaded = self.form.validate([*self.form.overrides(), f"name={name}"])
        folder = saved_recipes_dir(self.workspace)
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{name}.yaml"
        path.write_text(dump_recipe(loaded.recipe), encoding="utf-8")
        self.notify(f"saved {path}")
        await self.open_recipe(path)

    # ---------------------------------------------------------------------------------------------
    # sweep

    def action_sweep(self) -> None:
        """A grid or an Optuna search over any of the form's keys, the form's values as the base."""
        form = self.form
        if form.recipe is None or self.source is None:
            self.notify(
                "fix the recipe first: " + (form.error.message if form.error else ""), severity="error"
            )
            return
        source, overrides = self.source, form.overrides()

        def chosen(spec: dict[str, Any] | None) -> None:
            if spec is not None:
                self.query_one("#form-state", Static).update(Text("starting a sweep…", style="cyan"))
                self._start_sweep(source, overrides, spec)

        self.app.push_screen(SweepSetupDialog(), chosen)

    @work(thread=True, exclusive=True, group="launch", exit_on_error=False, description="Starting a sweep")
    def _start_sweep(self, source: Path, overrides: list[str], spec: dict[str, Any]) -> None:
        """What `tui-ft sweep SOURCE --set ... --grid ... --range ... --detach` does."""
        from tui_ft.runs.sweep import create_sweep, parse_grid, parse_ranges, spawn_driver

        ws = self.workspace
        try:
            folder = create_sweep(
                ws,
                str(source),
                overrides,
                grid=parse_grid(spec["grid"]),
                ranges=parse_ranges(spec["ranges"]),
                trials=spec["trials"],
                metric=spec["metric"] or "eval_loss",
                direction=None,
            )
            spawn_driver(folder, ws)
        except UserError as exc:
            self.post_message(self.LaunchFailed(exc))
            return
        self.post_message(self.SweepStarted(folder.path.name))

    @on(SweepStarted)
    def _sweep_started(self, message: SweepStarted) -> None:
        self.sweeps.append(message.sweep_id)
        self.query_one("#form-state", Static).update(Text(f"sweep {message.sweep_id}", style="green"))
        self.notify(
            f"sweep {message.sweep_id} started: its trials appear in Runs (w on one shows the sweep)",
            title="Sweep",
        )
        if "runs" in getattr(self.app, "MODES", {}):
            self.app.switch_mode("runs")

    # ---------------------------------------------------------------------------------------------
    # launch

    def action_launch(self) -> None:
        form = self.form
        if form.recipe is None or self.source is None:
            self.notify(
                "fix the recipe first: " + (form.error.message if form.error else ""), severity="error"
            )
            return
        self.query_one("#form-state", Static).update(Text("launching…", style="cyan"))
        self._launch(self.source, form.overrides())

    @work(thread=True, exclusive=True, group="launch", exit_on_error=False)
    def _launch(self, source: Path, overrides: list[str]) -> None:
        """What `tui-ft train SOURCE --set ... --detach` does: the same domain calls."""
        from tui_ft.recipe import load_recipe
        from tui_ft.runs.launcher import spawn_runner
        from tui_ft.runs.prepare import create_run

        ws = self.workspace
        try:
            loaded = load_recipe(source, overrides, cache_dir=ws.ensure().cache)
            run = create_run(loaded, ws)
            proc = spawn_runner(run, detach=True)
        except UserError as exc:
            self.post_message(self.LaunchFailed(exc))
            return
        except OSError as exc:
            self.post_message(self.LaunchFailed(f"cannot start the runner: {exc}"))
            return
        self.post_message(self.Launched(run.id, proc.pid))

    @on(Launched)
    def _launched(self, message: Launched) -> None:
        self.launched.append(message.run_id)
        self.query_one("#form-state", Static).update(Text(f"launched {message.run_id}", style="green"))
        open_run = getattr(self.app, "open_run", None)
        if callable(open_run):
            open_run(message.run_id)
        else:
            self.notify(f"run {message.run_id} started")

    @on(LaunchFailed)
    def _launch_failed(self, message: LaunchFailed) -> None:
        error = message.error
        self.query_one("#form-state", Static).update(Text("launch failed", style="red"))
        if isinstance(error, UserError):
            self.form.show_error(error)
            self.notify(str(error), severity="error", markup=False)
        else:
            self.notify(error, severity="error", markup=False)
