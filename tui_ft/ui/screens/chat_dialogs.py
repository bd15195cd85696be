"""The Chat screen's dialogs: pick a model, the sampling settings (each number field says what it takes),
a model that may not fit, a name to save under, a saved conversation to open."""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Input, Label, OptionList, Static
from textual.widgets.option_list import Option

from tui_ft.errors import UserError
from tui_ft.inference.resources import LoadAdvice

NUMBER_SETTINGS: dict[str, tuple[type, str]] = {
    "temperature": (float, "0 (greedy) or more"),
    "top_p": (float, "above 0, at most 1"),
    "top_k": (int, "0 (off) or a count"),
    "max_new_tokens": (int, "a count, at least 1"),
    "repetition_penalty": (float, "above 0; 1 is off"),
}


def check_setting(key: str, text: str) -> Any:
    """The value typed for setting `key`, or UserError saying what it accepts."""
    kind, accepts = NUMBER_SETTINGS[key]
    try:
        value = kind(text)
    except ValueError:
        raise UserError(f"{text!r} is not a number", field=key, hint=accepts) from None
    ok = {
        "temperature": value >= 0,
        "top_p": 0 < value <= 1,
        "top_k": value >= 0,
        "max_new_tokens": value >= 1,
        "repetition_penalty": value > 0,
    }[key]
    if not ok:
        raise UserError(f"{text} is out of range", field=key, hint=accepts)
    return value


# --- dialogs ---------------------------------------------------------------------------------------


class ModelPicker(ModalScreen[str | None]):
    """Pick a model: the workspace's models, runs, checkpoints, recipe names and `last`, or type any
    reference (a directory, a hub id). Dismisses with the reference or None."""

    BINDINGS = [Binding("escape", "cancel", "Cancel", id="chat.picker.cancel")]

    def __init__(self, choices: list[tuple[str, str]], title: str) -> None:
        super().__init__(classes="chat-dialog")
        self.choices = choices
        self.title_text = title

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label(self.title_text, classes="dialog-title")
            yield Input(placeholder="type to filter, or any model reference", id="picker-filter")
            yield OptionList(id="picker-options")
            yield Static("Enter: load · ↓ to the list · Esc: cancel", classes="dialog-help")

    def on_mount(self) -> None:
        self._fill("")

    def _fill(self, text: str) -> None:
        options = self.query_one("#picker-options", OptionList)
        options.clear_options()
        words = text.lower().split()
        for ref, what in self.choices:
            if all(w in f"{ref} {what}".lower() for w in words):
                options.add_option(Option(Text.assemble((ref, "bold"), "  ", (what, "dim")), id=ref))
        if options.option_count:
            options.highlighted = 0

    @on(Input.Changed, "#picker-filter")
    def _filter(self, event: Input.Changed) -> None:
        self._fill(event.value)

    @on(Input.Submitted, "#picker-filter")
    def _typed(self, event: Input.Submitted) -> None:
        options = self.query_one("#picker-options", OptionList)
        typed = event.value.strip()
        exact = any(ref == typed for ref, _ in self.choices)
        if (
            options.highlighted is not None
            and not exact
            and options.option_count
            and not _looks_like_ref(typed)
        ):
            self.dismiss(options.get_option_at_index(options.highlighted).id)
        else:
            self.dismiss(typed or None)

    @on(OptionList.OptionSelected, "#picker-options")
    def _picked(self, event: OptionList.OptionSelected) -> None:
        self.dismiss(event.option.id)

    def key_down(self) -> None:
        if self.focused is self.query_one("#picker-filter"):
            self.query_one("#picker-options").focus()

    def action_cancel(self) -> None:
        self.dismiss(None)


def _looks_like_ref(text: str) -> bool:
    """A typed directory, hub id or checkpoint reference, taken as typed rather than the highlight."""
    return "/" in text or ":" in text or text.startswith(("~", "."))


class SettingsDialog(ModalScreen[dict[str, Any] | None]):
    """The system prompt, the sampling settings and few-shot examples. Each number field says what it
    accepts and keeps its value until a valid one is typed; dismisses with the new settings or None."""

    BINDINGS = [
        Binding("escape", "cancel", "Cancel", id="chat.settings.cancel"),
        Binding("ctrl+s", "apply", "Apply", id="chat.settings.apply"),
    ]

    def __init__(self, current: dict[str, Any]) -> None:
        super().__init__(classes="chat-dialog")
        self.current = current

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label("Chat settings", classes="dialog-title")
            yield Label("system prompt")
            yield Input(self.current.get("system", ""), id="set-system")
            for key, (_, accepts) in NUMBER_SETTINGS.items():
                with Horizontal(classes="setting-row"):
                    yield Label(key, classes="setting-label")
                    yield Input(str(self.current.get(key, "")), id=f"set-{key}", placeholder=accepts)
                    yield Static(accepts, id=f"hint-{key}", classes="setting-hint")
            with Horizontal(classes="setting-row"):
                yield Label("few-shot data", classes="setting-label")
                yield Input(
                    self.current.get("few_shot_data", ""),
                    id="set-few_shot_data",
                    placeholder="a chat or prompt/completion dataset",
                )
            with Horizontal(classes="setting-row"):
                yield Label("few-shot k", classes="setting-label")
                yield Input(
                    str(self.current.get("few_shot_k", 0)), id="set-few_shot_k", placeholder="0: none"
                )
            yield Static("Enter or ctrl+s: apply · Esc: cancel", classes="dialog-help")

    @on(Input.Changed)
    def _check(self, event: Input.Changed) -> None:
        key = (event.input.id or "").removeprefix("set-")
        if key not in NUMBER_SETTINGS:
            return
        hint = self.query_one(f"#hint-{key}", Static)
        try:
            check_setting(key, event.value)
        except UserError as exc:
            hint.update(Text(exc.message + f" ({NUMBER_SETTINGS[key][1]})", style="bold red"))
        else:
            hint.update(NUMBER_SETTINGS[key][1])

    @on(Input.Submitted)
    def _submitted(self) -> None:
        self.action_apply()

    def action_apply(self) -> None:
        out: dict[str, Any] = {"system": self.query_one("#set-system", Input).value}
        for key in NUMBER_SETTINGS:
            text = self.query_one(f"#set-{key}", Input).value.strip()
            try:
                out[key] = check_setting(key, text)
            except UserError:
                out[key] = self.current.get(key)  # the last valid value stays
        out["few_shot_data"] = self.query_one("#set-few_shot_data", Input).value.strip()
        try:
            out["few_shot_k"] = max(0, int(self.query_one("#set-few_shot_k", Input).value or 0))
        except ValueError:
            out["few_shot_k"] = self.current.get("few_shot_k", 0)
        self.dismiss(out)

    def action_cancel(self) -> None:
        self.dismiss(None)


class LoadChoiceDialog(ModalScreen[str | None]):
    """A model that would not fit: load it on the CPU, quantized, anyway, or not at all. Dismisses
    with "cpu", "4bit", "8bit", "anyway" or None."""

    BINDINGS = [Binding("escape", "cancel", "Cancel", id="chat.fit.cancel")]

    def __init__(self, advice: LoadAdvice) -> None:
        super().__init__(classes="chat-dialog")
        self.advice = advice

    def compose(self) -> ComposeResult:
        labels = {
            "cpu": "Load on the CPU (slower, leaves the GPU alone)",
            "4bit": "Load in 4-bit NF4 (bitsandbytes; about a quarter of the memory)",
            "8bit": "Load in 8-bit (bitsandbytes; about half the memory)",
        }
        with Vertical():
            yield Label("This model may not fit", classes="dialog-title")
            yield Static(self.advice.problem or "")
            options = [Option(labels[o], id=o) for o in self.advice.options if o in labels]
            options.append(Option("Load it anyway", id="anyway"))
            options.append(Option("Cancel", id="cancel"))
            yield OptionList(*options, id="fit-options")
            yield Static("Enter: choose · Esc: cancel", classes="dialog-help")

    @on(OptionList.OptionSelected, "#fit-options")
    def _chosen(self, event: OptionList.OptionSelected) -> None:
        self.dismiss(None if event.option.id == "cancel" else event.option.id)

    def action_cancel(self) -> None:
        self.dismiss(None)


class NameDialog(ModalScreen[str | None]):
    """Ask for a name (saving a conversation)."""

    BINDINGS = [Binding("escape", "cancel", "Cancel", id="chat.name.cancel")]

    def __init__(self, title: str, value: str) -> None:
        super().__init__(classes="chat-dialog")
        self.title_text = title
        self.value = value

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label(self.title_text, classes="dialog-title")
            yield Input(self.value, id="name-input")
            yield Static("Enter: save · Esc: cancel", classes="dialog-help")

    @on(Input.Submitted)
    def _done(self, event: Input.Submitted) -> None:
        self.dismiss(event.value.strip() or None)

    def action_cancel(self) -> None:
        self.dismiss(None)


class OpenDialog(ModelPicker):
    """Pick a saved conversation."""
