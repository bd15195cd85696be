"""A recipe form generated from the `Recipe` pydantic schema, validated exactly as `--set` overrides are.

Every field of every section becomes a row: a Select for Literal fields, a Switch for booleans, an Input
(integer/number restricted) for numbers, a text Input for strings, and a YAML Input for lists and unions.
The `training:` section comes from the method's TRL config table (`training_fields`): the keys the
recipe sets plus common ones, and any other valid key can be added by name.

The form never builds a recipe itself: each edited row becomes a `--set key=value` override on the
starting recipe file, and the overrides go through `load_recipe`, the same path as
`tui-ft train RECIPE --set ...`, so the form shows the command line's own error messages.
"""

from __future__ import annotations

import json
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel
from textual import on, work
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.message import Message
from textual.suggester import SuggestFromList
from textual.widget import Widget
from textual.widgets import Collapsible, Input, Label, Select, Static, Switch

from tui_ft.errors import RecipeError, UserError
from tui_ft.recipe import MANAGED_TRAINING_KEYS, LoadedRecipe, Recipe, load_recipe

if typing.TYPE_CHECKING:
    from tui_ft.training_fields import TrainingField

Kind = Literal["select", "switch", "int", "float", "text", "yaml"]

# Which adapter settings apply to which adapter type (the others are hidden while that type is chosen).
ADAPTER_FIELDS: dict[str, tuple[str, ...]] = {
    "full": (),
    "freeze": ("trainable_layers",),
    "lora": ("r", "alpha", "dropout", "target_modules"),
    "dora": ("r", "alpha", "dropout", "target_modules"),
    "prompt_tuning": ("num_virtual_tokens", "prompt_init_text"),
}
# A selector field, and for each of its values the fields of its section that apply.
RELEVANCE: dict[tuple[str, str], dict[str, tuple[str, ...]]] = {("adapter", "type"): ADAPTER_FIELDS}

# TRL keys shown in the training section even when the recipe leaves them at TRL's default.
COMMON_TRAINING_KEYS = (
    "learning_rate",
    "num_train_epochs",
    "max_steps",
    "per_device_train_batch_size",
    "gradient_accumulation_steps",
    "optim",
    "activation_checkpointing",
)


@dataclass
class FieldSpec:
    """One row of the form: where its value goes and how it is edited."""

    path: tuple[str, ...]
    kind: Kind
    help: str
    optional: bool = False
    choices: tuple[str, ...] = ()
    initial: Any = None  # the value the row starts with (the recipe's, else the default)
    default_text: str = ""  # training keys: what a cleared row means (TRL's default)

    @property
    def key(self) -> str:
        return ".".join(self.path)

    @property
    def widget_id(self) -> str:
        return "f-" + "--".join(self.path)


class NumberInput(Input):
    """An Input for a whole number or a number: a character that cannot be part of one is refused
    (as Textual's `type=` does) and said (`Refused`), rather than vanishing without a word."""

    @dataclass
    class Refused(Message):
        input: NumberInput
        text: str

        @property
        def control(self) -> NumberInput:
            return self.input

    _typed = ""

    def replace(self, text: str, start: int, end: int) -> None:
        self._typed = text
        super().replace(text, start, end)

    def restricted(self) -> None:
        self.post_message(self.Refused(self, self._typed))


def number_text_ok(text: str, kind: Kind) -> bool:
    """`text` is a complete whole number (`int`) or number (`float`), as YAML and `--set` read it."""
    try:
        (int if kind == "int" else float)(text.replace("_", ""))
    except ValueError:
        return False
    return True


NUMBER_WORDS = {"int": "a whole number (e.g. 8)", "float": "a number (e.g. 0.0002 or 2e-4)"}


def _is_model(annotation: Any) -> bool:
    return isinstance(annotation, type) and issubclass(annotation, BaseModel)


def _unwrap(annotation: Any) -> tuple[list[Any], bool]:
    """The members of a union other than None, and whether None is allowed."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        members = list(typing.get_args(annotation))
        return [m for m in members if m is not type(None)], type(None) in members
    return [annotation], False


def spec_for(path: tuple[str, ...], annotation: Any, help: str, initial: Any) -> FieldSpec:
    """A row for a pydantic field, from its type alone."""
    members, optional = _unwrap(annotation)
    if len(members) == 1:
        core = members[0]
        if typing.get_origin(core) is Literal:
            choices = tuple(str(c) for c in typing.get_args(core))
            return FieldSpec(path, "select", help, optional, choices, initial)
        kinds: dict[Any, Kind] = {bool: "switch", int: "int", float: "float", str: "text"}
        kind = kinds.get(core)
        if kind is not None:
            return FieldSpec(path, kind, help, optional, (), initial)
    return FieldSpec(path, "yaml", help, optional, (), initial)


def spec_for_training(tf: TrainingField, initial: Any, is_set: bool) -> FieldSpec:
    """A row for a TRL config key, from its field table entry."""
    path = ("training", tf.name)
    kinds = set(tf.kinds)
    default_text = value_text(tf.default)
    value = initial if is_set else None
    if tf.choices:
        return FieldSpec(path, "select", tf.help, True, tf.choices, value, default_text)
    if kinds <= {"bool", "null"} and "bool" in kinds:
        return FieldSpec(
            path, "switch", tf.help, False, (), initial if is_set else bool(tf.default), default_text
        )
    if kinds <= {"int", "null"} and "int" in kinds:
        return FieldSpec(path, "int", tf.help, True, (), value, default_text)
    if kinds <= {"int", "float", "null"} and "float" in kinds:
        return FieldSpec(path, "float", tf.help, True, (), value, default_text)
    if kinds <= {"str", "null"}:
        return FieldSpec(path, "text", tf.help, True, (), value, default_text)
    return FieldSpec(path, "yaml", tf.help, True, (), value, default_text)


def value_text(value: Any) -> str:
    """How a value reads in the form (and in `--set`): YAML flow style for lists and mappings."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, dict)):
        return yaml.safe_dump(value, default_flow_style=True, width=10_000).strip()
    return str(value)


def _as_yaml_string(text: str) -> str:
    """`text` written so that YAML reads it back as this very string (quoted only when needed)."""
    try:
        if yaml.safe_load(text) == text:
            return text
    except yaml.YAMLError:
        pass
    return json.dumps(text)


def schema_specs(recipe: Recipe) -> list[tuple[str, list[FieldSpec]]]:
    """The form's sections and rows, walked from the `Recipe` model (training excepted)."""
    top: list[FieldSpec] = []
    sections: list[tuple[str, list[FieldSpec]]] = []
    for name, info in Recipe.model_fields.items():
        members, _ = _unwrap(info.annotation)
        value = getattr(recipe, name)
        if len(members) == 1 and _is_model(members[0]):
            model: type[BaseModel] = members[0]
            rows = []
            for sub, sub_info in model.model_fields.items():
                if value is not None:
                    initial = getattr(value, sub)
                else:
                    initial = sub_info.get_default(call_default_factory=True)
                rows.append(spec_for((name, sub), sub_info.annotation, sub_info.description or "", initial))
            sections.append((name, rows))
        elif name == "training":
            sections.append((name, []))  # filled from the TRL table
        else:
            top.append(spec_for((name,), info.annotation, info.description or "", value))
    top.sort(key=lambda s: s.path != ("method",))  # the method first: it decides the rest
    return [("recipe", top), *sections]


class FieldRow(Horizontal):
    """A label, the control for one field, and the field's error under them."""

    DEFAULT_CSS = """
    FieldRow { height: auto; }
    FieldRow > Label {
        width: 40%; min-width: 14; max-width: 30; padding: 0 1 0 0; color: $text-muted;
        text-wrap: nowrap; text-overflow: ellipsis;
    }
    FieldRow > .control { width: 1fr; }
    FieldRow.-changed > Label { color: $accent; text-style: bold; }
    FieldRow.-hidden { display: none; }
    FieldRow > Switch.control { border: none; padding: 0; height: 1; width: 8; }
    FieldRow > Switch:focus { background: $accent 40%; }
    """

    def __init__(self, spec: FieldSpec) -> None:
        super().__init__(id="row-" + spec.widget_id)
        self.spec = spec
        self.initial_text = self._initial_text()

    def _initial_text(self) -> str:
        spec = self.spec
        if spec.kind == "switch":
            return value_text(bool(spec.initial))
        return value_text(spec.initial)

    def compose(self) -> ComposeResult:
        spec = self.spec
        label = Label(spec.path[-1])
        # a long name is cut with an ellipsis, never broken mid-word: the whole key is on hover and in
        # the help line under the form while the row has the focus
        label.tooltip = f"{spec.key}: {spec.help}" if spec.help else spec.key
        yield label
        control: Widget
        if spec.kind == "select":
            options = [(c, c) for c in spec.choices]
            value = str(spec.initial) if spec.initial is not None else Select.NULL
            control = Select(
                options,
                value=value,
                allow_blank=spec.optional,
                prompt="default" if spec.default_text else "none",
                compact=True,
                id=spec.widget_id,
            )
        elif spec.kind == "switch":
            control = Switch(bool(spec.initial), animate=False, id=spec.widget_id)
        elif spec.kind in ("int", "float"):
            control = NumberInput(
                self.initial_text,
                placeholder=self.empty_means(),
                type="integer" if spec.kind == "int" else "number",
                compact=True,
                id=spec.widget_id,
            )
        else:
            input_type = "text"
            placeholder = spec.default_text or ("none" if spec.optional else "")
            control = Input(
                self.initial_text,
                placeholder=placeholder,
                type=input_type,  # type: ignore[arg-type]
                compact=True,
                id=spec.widget_id,
            )
        control.add_class("control")
        control.tooltip = spec.help or None
        yield control

    @property
    def control(self) -> Widget:
        return self.query_one(f"#{self.spec.widget_id}")

    @property
    def is_number(self) -> bool:
        return self.spec.kind in ("int", "float")

    def empty_means(self) -> str:
        """What an empty number field stands for: the recipe's value (its own, or the default it
        leaves in place), said in the field while it is empty."""
        if self.initial_text:
            return f"recipe's value: {self.initial_text}"
        if self.spec.default_text:
            return f"recipe's value: default {self.spec.default_text}"
        return "recipe's value: none"

    def note(self) -> str:
        """A line under a number field whose text is not a number (yet), or empty: the recipe's value
        holds until a valid number is typed."""
        if not self.is_number:
            return ""
        text = self.text()
        kept = self.initial_text or (
            f"default {self.spec.default_text}" if self.spec.default_text else "none"
        )
        if not text and self.initial_text:
            return f"empty: the recipe's value {kept} is used"
        if text and not number_text_ok(text, self.spec.kind):
            return f"{text!r} is not yet {NUMBER_WORDS[self.spec.kind]}: the recipe's value {kept} is kept"
        return ""

    def text(self) -> str:
        """The row's current value, as text (its initial text until its control is composed)."""
        found = self.query(f"#{self.spec.widget_id}")
        if not found:
            return self.initial_text
        control = found.first()
        if isinstance(control, Select):
            # `value` reads NULL until the Select has mounted; `_value` holds the value it will show
            # (and follows `value` afterwards). Textual is pinned, so this private name is stable here.
            value = control._value
            return "" if value is Select.NULL else str(value)
        if isinstance(control, Switch):
            return value_text(control.value)
        assert isinstance(control, Input)
        return control.value.strip()

    def override(self) -> str | None:
        """`key=value` if the row differs from how it started, else None."""
        text = self.text()
        if text == self.initial_text:
            return None
        spec = self.spec
        if self.is_number and (not text or not number_text_ok(text, spec.kind)):
            return None  # empty or not a number yet: the recipe's value holds
        if not text:
            text = spec.default_text or "null" if (spec.optional or spec.default_text) else ""
        elif spec.kind in ("text", "select"):
            text = _as_yaml_string(text)
        return f"{spec.key}={text}"


class RecipeForm(Vertical):
    """Edit a recipe as `--set` overrides on a starting recipe file; posts Changed or Invalid."""

    DEFAULT_CSS = """
    RecipeForm { height: 1fr; }
    RecipeForm > #form-scroll { height: 1fr; }
    RecipeForm Collapsible { padding: 0; border-top: none; }
    RecipeForm Collapsible > Contents { padding: 0 0 0 1; height: auto; }
    RecipeForm .field-error { color: $error; padding: 0 0 0 2; height: auto; }
    RecipeForm .field-error.-empty { display: none; }
    RecipeForm .field-note { color: $warning; padding: 0 0 0 2; height: auto; }
    RecipeForm .field-note.-empty { display: none; }
    RecipeForm #form-error { color: $error; height: auto; }
    RecipeForm #form-error.-empty { display: none; }
    RecipeForm #form-help { height: 2; color: $text-muted; border-top: solid $panel; }
    RecipeForm #training-rows { height: auto; }
    """

    @dataclass
    class Changed(Message):
        """The form holds a valid recipe."""

        form: RecipeForm
        recipe: Recipe
        overrides: list[str] = field(default_factory=list)

        @property
        def control(self) -> RecipeForm:
            return self.form

    @dataclass
    class Invalid(Message):
        """The form's recipe does not validate; `errors` carry the schema's messages and fields."""

        form: RecipeForm
        errors: list[RecipeError]
        overrides: list[str] = field(default_factory=list)

        @property
        def control(self) -> RecipeForm:
            return self.form

    def __init__(self, source: Path, *, cache_dir: Path | None = None, id: str | None = None) -> None:
        super().__init__(id=id)
        self.source = source
        self.cache_dir = cache_dir
        start = load_recipe(source, check_training=False)
        self.start: Recipe = start.recipe
        self.recipe: Recipe | None = start.recipe
        self.error: RecipeError | None = None
        self.extra_training: list[str] = []
        self._table: dict[str, dict[str, TrainingField]] = {}
        self._last: list[str] | None = None
        self._ready = False

    # ---------------------------------------------------------------------------------------------
    # building

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="form-scroll"):
            yield Static("", id="form-error", classes="-empty")
            for title, specs in schema_specs(self.start):
                optional_none = title != "recipe" and getattr(self.start, title, True) is None
                with Collapsible(title=title, collapsed=optional_none, id=f"section-{title}"):
                    if title == "training":
                        yield Vertical(id="training-rows")
                        yield Input(
                            placeholder="add a TRL key, e.g. weight_decay (enter)",
                            id="add-training",
                            compact=True,
                        )
                        yield Static("", id="add-training-error", classes="field-error -empty")
                    for spec in specs:
                        yield from self._row(spec)
        yield Static("", id="form-help")

    def _row(self, spec: FieldSpec) -> ComposeResult:
        yield FieldRow(spec)
        yield Static("", id="note-" + spec.widget_id, classes="field-note -empty")
        yield Static("", id="err-" + spec.widget_id, classes="field-error -empty")

    def on_mount(self) -> None:
        self._apply_relevance()
        self._load_training_fields(self._method())
        self.call_after_refresh(self._settled)

    def _settled(self) -> None:
        # controls post Changed while they mount (a Select reports no value until then): start now
        self._ready = True
        self.revalidate(force=True)

    def _method(self) -> str:
        row = self._rows().get(("method",))
        return row.text() if row is not None and row.is_mounted else self.start.method

    def _rows(self) -> dict[tuple[str, ...], FieldRow]:
        return {row.spec.path: row for row in self.query(FieldRow)}

    def _cached_table(self, method: str) -> dict[str, TrainingField] | None:
        if method in self._table:
            return self._table[method]
        if self.cache_dir is None:
            return None
        from tui_ft.training_fields import _cache_file

        if not _cache_file(self.cache_dir).exists():
            return None
        try:
            if method not in json.loads(_cache_file(self.cache_dir).read_text()):
                return None
        except (OSError, ValueError):
            return None
        return self._read_table(method)

    def _read_table(self, method: str) -> dict[str, TrainingField]:
        from tui_ft.training_fields import training_fields

        table = training_fields(method, cache_dir=self.cache_dir)
        self._table[method] = table
        return table

    def _load_training_fields(self, method: str) -> None:
        table = self._cached_table(method)
        if table is not None:
            self._build_training(method, table)
        else:
            self.query_one("#form-help", Static).update(f"reading {method}'s TRL config fields…")
            self._read_table_worker(method)

    @work(thread=True, exclusive=True, group="training-fields", exit_on_error=False)
    def _read_table_worker(self, method: str) -> None:
        table = self._read_table(method)  # imports trl the first time for this version (seconds)
        self.app.call_from_thread(self._table_ready, method, table)

    def _table_ready(self, method: str, table: dict[str, TrainingField]) -> None:
        if method == self._method():
            self._build_training(method, table)
            self.query_one("#form-help", Static).update("")

    def _build_training(self, method: str, table: dict[str, TrainingField]) -> None:
        container = self.query_one("#training-rows", Vertical)
        current = {
            row.spec.path[1]: row for row in container.query(FieldRow) if row.spec.path[0] == "training"
        }
        if current and all(key in table for key in current) and getattr(self, "_built_for", None) == method:
            return
        container.remove_children()
        self.query_one("#add-training", Input).suggester = SuggestFromList(
            [k for k in table if k not in MANAGED_TRAINING_KEYS], case_sensitive=True
        )
        keys = list(self.start.training)
        keys += [k for k in COMMON_TRAINING_KEYS if k not in keys]
        keys += [k for k in self.extra_training if k not in keys]
        rows: list[Widget] = []
        for key in keys:
            if key in table and key not in MANAGED_TRAINING_KEYS:
                is_set = key in self.start.training
                spec = spec_for_training(table[key], self.start.training.get(key), is_set)
                rows += list(self._row(spec))
        self._built_for = method
        container.mount_all(rows)
        if self._ready:
            self.call_after_refresh(self.revalidate, force=True)

    # ---------------------------------------------------------------------------------------------
    # reacting

    def _apply_relevance(self) -> None:
        rows = self._rows()
        for (section, selector), table in RELEVANCE.items():
            chosen = rows.get((section, selector))
            if chosen is None:
                continue
            keep = set(table.get(chosen.text(), ()))
            governed = {name for names in table.values() for name in names}
            for path, row in rows.items():
                if path[0] == section and path[-1] in governed:
                    row.set_class(path[-1] not in keep, "-hidden")

    @on(Input.Changed)
    @on(Select.Changed)
    @on(Switch.Changed)
    def _edited(self, event: Message) -> None:
        control = getattr(event, "control", None)
        if control is not None and control.id == "add-training":
            return
        event.stop()
        if not self._ready:
            return
        if isinstance(control, NumberInput):
            self._note(control, None)
        if control is not None and control.id == FieldSpec(("method",), "select", "").widget_id:
            self._load_training_fields(self._method())
        self._apply_relevance()
        self.revalidate()

    @on(NumberInput.Refused)
    def _refused(self, event: NumberInput.Refused) -> None:
        event.stop()
        self._note(event.input, event.text)

    def _note(self, control: NumberInput, refused: str | None) -> None:
        """Say under a number field what it takes: after a refused character, or while its text is
        not a number yet (the recipe's value is kept), or while it is empty."""
        row = next((a for a in control.ancestors if isinstance(a, FieldRow)), None)
        if row is None:
            return
        text = row.note()
        if refused is not None and refused.strip():
            text = f"{row.spec.path[-1]} takes {NUMBER_WORDS[row.spec.kind]}: {refused.strip()!r} cannot be typed here"
        for static in self.query(f"#note-{row.spec.widget_id}").results(Static):
            static.update(text)
            static.set_class(not text, "-empty")

    @on(Input.Submitted, "#add-training")
    def _add_training_key(self, event: Input.Submitted) -> None:
        event.stop()
        key = event.value.strip()
        error = self.query_one("#add-training-error", Static)
        if not key:
            return
        if key in self._rows_by_key():
            self._rows_by_key()[key].control.focus()
            event.input.value = ""
            return
        table = self._table.get(self._method(), {})
        if key not in table or key in MANAGED_TRAINING_KEYS:
            # the recipe's own refusal (with the nearest valid name), from the method's keys alone
            method = self._method()
            problem = self._check([f"method={method}", f"training.{key}=null"], only=f"training.{key}")
            if problem is not None:
                message = f"training.{key}: {problem.message}" + (f"; {problem.hint}" if problem.hint else "")
            else:
                message = f"training.{key}: unknown key for method {method}"
            error.update(message)
            error.remove_class("-empty")
            return
        error.update("")
        error.add_class("-empty")
        event.input.value = ""
        self.extra_training.append(key)
        spec = spec_for_training(table[key], None, False)
        self.query_one("#training-rows", Vertical).mount_all(list(self._row(spec)))
        self.call_after_refresh(lambda: self._rows()[spec.path].control.focus())

    def _rows_by_key(self) -> dict[str, FieldRow]:
        return {row.spec.path[1]: row for row in self.query(FieldRow) if row.spec.path[0] == "training"}

    def _check(self, overrides: list[str], only: str) -> RecipeError | None:
        try:
            self.validate(overrides)
        except RecipeError as exc:
            return exc if exc.field == only else None
        return None

    def on_descendant_focus(self, event: Any) -> None:
        widget = event.widget
        row = next((a for a in widget.ancestors_with_self if isinstance(a, FieldRow)), None)
        help_line = self.query_one("#form-help", Static)
        if row is not None:
            help_line.update(f"[b]{row.spec.key}[/b]: {row.spec.help}" if row.spec.help else row.spec.key)

    # ---------------------------------------------------------------------------------------------
    # values

    def overrides(self) -> list[str]:
        """The `--set key=value` overrides that turn the starting recipe into the form's recipe."""
        found = []
        for row in self.query(FieldRow):
            if row.has_class("-hidden"):
                continue
            text = row.override()
            if text is not None:
                found.append(text)
        return found

    def validate(self, overrides: list[str] | None = None) -> LoadedRecipe:
        """The form's recipe through `load_recipe`, as the command line builds it; raises RecipeError."""
        overrides = self.overrides() if overrides is None else overrides
        method = self._method()
        check_training = method in self._table
        try:
            return load_recipe(
                self.source, overrides, cache_dir=self.cache_dir, check_training=check_training
            )
        except RecipeError:
            raise
        except UserError as exc:
            raise RecipeError(exc.message, field=exc.field, hint=exc.hint) from None

    def revalidate(self, *, force: bool = False) -> None:
        """Validate if anything changed since the last time; show errors; post Changed or Invalid."""
        overrides = self.overrides()
        if not force and overrides == self._last:
            return
        self._last = overrides
        for row in self.query(FieldRow):
            row.set_class(row.override() is not None, "-changed")
        try:
            loaded = self.validate(overrides)
        except RecipeError as exc:
            self.recipe, self.error = None, exc
            self._show_error(exc)
            self.post_message(self.Invalid(self, [exc], overrides))
            return
        self.recipe, self.error = loaded.recipe, None
        self._show_error(None)
        self.post_message(self.Changed(self, loaded.recipe, overrides))

    def show_error(self, error: UserError) -> None:
        """Show an error found elsewhere (e.g. when launching: a missing data file) at its field."""
        self._show_error(error)

    def _show_error(self, error: UserError | None) -> None:
        for static in self.query(".field-error"):
            if static.id == "add-training-error":
                continue
            static.add_class("-empty")
            assert isinstance(static, Static)
            static.update("")
        general = self.query_one("#form-error", Static)
        general.add_class("-empty")
        if error is None:
            return
        text = error.message + (f" ({error.hint})" if error.hint else "")
        path = tuple((error.field or "").split("."))
        target = None
        if path != ("",):
            spec_id = FieldSpec(path, "text", "").widget_id
            matches = self.query(f"#err-{spec_id}")
            target = matches.first() if matches else None
        if target is None:
            target = general
            text = f"{error.field}: {text}" if error.field else text
        assert isinstance(target, Static)
        target.update(text)
        target.remove_class("-empty")
