"""Annotate: judge pairs of candidates from the keyboard, one decision per key, straight into the store.

A session (`prefs.session`) holds the pairs in order; the store (`prefs.store`) holds the decisions,
fsynced before the next pair shows, so kill -9 loses none and a restart continues at the first pair not
decided. Candidates from models are made by one thread worker through the generation service (as the
Chat screen's replies are), a buffer of pairs ahead of the annotator; a pairs file's candidates are
there from the start. Showing the next pair after a key is text replaced in place: no widget is mounted
and nothing waits on the generator while the buffer is ahead.

With no session open the screen lists the workspace's sessions to continue and offers a new one.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Container, Vertical
from textual.message import Message
from textual.screen import ModalScreen, Screen
from textual.widgets import Input, Label, OptionList, Static
from textual.widgets.option_list import Option
from textual.worker import Worker, get_current_worker

from tui_ft.errors import UserError
from tui_ft.inference.client import GenerationClient
from tui_ft.prefs.session import (
    AnnotationSession,
    SessionSpec,
    default_settings,
    list_sessions,
    load_spec,
    prompt_pairs,
    remember_annotator,
    remembered_annotator,
    save_spec,
    session_name_ok,
    side_settings,
)
from tui_ft.prefs.store import Decision
from tui_ft.ui.widgets.annotate_pair import CandidateColumn, PromptView
from tui_ft.ui.widgets.shell import KeysFooter
from tui_ft.workspace import Workspace

NEW_SESSION = "__new__"
LABEL_TEXT = {
    "A": "A is better",
    "B": "B is better",
    "tie": "a tie",
    "both_bad": "both bad",
    "skip": "skipped",
}
MODEL_KEYS = ("annotate-a", "annotate-b")  # the service's keys for the two sources


def open_session(ws: Workspace, name: str, annotator: str) -> tuple[AnnotationSession, list[Any]]:
    """Session `name` read back (its prompts file read again, its store and generated pairs); the
    prompts file's bad rows come back with it (the good ones are used)."""
    from tui_ft.data.prompts import read_prompts

    spec = load_spec(ws, name)
    if spec is None:
        raise UserError(
            f"no annotation session {name}", hint="`tui-ft annotate PROMPTS --a MODEL` starts one"
        )
    prompts = read_prompts(spec.prompts)
    if spec.kind == "review" and not prompts.has_pairs:
        raise UserError("this session reviews pairs, but the file holds none now", path=spec.prompts)
    if not prompts.items:
        raise UserError("no usable prompts in this file", path=spec.prompts)
    return AnnotationSession(ws, spec, prompt_pairs(prompts.items, spec), annotator), prompts.problems


# --- dialogs ---------------------------------------------------------------------------------------


class TextDialog(ModalScreen[str | None]):
    """One line of text (the annotator's name, a rationale); Enter keeps it, Esc cancels."""

    BINDINGS = [Binding("escape", "cancel", "Cancel", id="annotate.dialog.cancel")]

    def __init__(self, title: str, value: str = "", placeholder: str = "") -> None:
        super().__init__(classes="annotate-dialog")
        self.title_text = title
        self.value = value
        self.placeholder = placeholder

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label(self.title_text, classes="dialog-title")
            yield Input(self.value, placeholder=self.placeholder, id="dialog-input")
            yield Static("Enter: keep · Esc: cancel", classes="dialog-help")

    @on(Input.Submitted)
    def _done(self, event: Input.Submitted) -> None:
        self.dismiss(event.value.strip())

    def action_cancel(self) -> None:
        self.dismiss(None)


class NewSessionDialog(ModalScreen[dict[str, str] | None]):
    """A new session: the prompts (or pairs) file, the two sources, a name. Dismisses with the values."""

    BINDINGS = [
        Binding("escape", "cancel", "Cancel", id="annotate.new.cancel"),
        Binding("ctrl+s", "start", "Start", id="annotate.new.start"),
    ]
    FIELDS = (
        ("prompts", "prompts or pairs file", "a path, or a file in the workspace's data/"),
        ("a", "model A", "a model, run or checkpoint; empty to review a pairs file"),
        ("b", "model B", "empty: a second sample of model A"),
        ("name", "session name", "the store is annotations/NAME.jsonl"),
    )

    def __init__(self, error: str = "", values: dict[str, str] | None = None) -> None:
        super().__init__(classes="annotate-dialog")
        self.error = error
        self.values = values or {}

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label("New annotation session", classes="dialog-title")
            for key, label, hint in self.FIELDS:
                yield Label(label)
                yield Input(self.values.get(key, ""), placeholder=hint, id=f"new-{key}")
            yield Static(Text(self.error, style="bold red"), id="new-error")
            yield Static("Enter: start · Esc: cancel", classes="dialog-help")

    @on(Input.Submitted)
    def _submitted(self) -> None:
        self.action_start()

    def action_start(self) -> None:
        self.dismiss({key: self.query_one(f"#new-{key}", Input).value.strip() for key, _, _ in self.FIELDS})

    def action_cancel(self) -> None:
        self.dismiss(None)


# --- the screen -------------------------------------------------------------------------------------


class AnnotateScreen(Screen):
    """Two candidates for one prompt; a key says which is better and the next pair shows."""

    CSS_PATH = Path(__file__).with_name("annotate.tcss")
    # The footer (80 columns) shows the keys that are not on screen; the verdict line under the pair lists
    # the decision keys, and every key is in the palette (^p).
    BINDINGS = [
        Binding("1", "decide('A')", "A better", show=False, id="annotate.a"),
        Binding("2", "decide('B')", "B better", show=False, id="annotate.b"),
        Binding("t", "decide('tie')", "Tie", show=False, id="annotate.tie"),
        Binding("x", "decide('both_bad')", "Both bad", show=False, id="annotate.both_bad"),
        Binding("s", "decide('skip')", "Skip", show=False, id="annotate.skip"),
        Binding("u", "undo", "Undo", id="annotate.undo"),
        Binding("left,left_square_bracket", "move(-1)", "Previous", id="annotate.previous"),
        Binding("right,right_square_bracket", "move(1)", "Next", id="annotate.next"),
        Binding("e", "rationale", "Rationale", id="annotate.rationale"),
        Binding("r", "regenerate", "Regenerate", show=False, id="annotate.regenerate"),
        Binding("up", "scroll(-1)", "Scroll up", show=False, id="annotate.scroll_up"),
        Binding("down", "scroll(1)", "Scroll down", show=False, id="annotate.scroll_down"),
        Binding("pageup", "scroll(-10)", "Page up", show=False, id="annotate.page_up"),
        Binding("pagedown", "scroll(10)", "Page down", show=False, id="annotate.page_down"),
        Binding("d", "train", "Train DPO", id="annotate.train"),
        Binding("o", "sessions", "Sessions", id="annotate.sessions"),
    ]

    # --- messages from the workers -------------------------------------------------------------------

    @dataclass
    class Opened(Message):
        session: AnnotationSession
        problems: list[Any]

    @dataclass
    class OpenFailed(Message):
        name: str
        error: str

    @dataclass
    class PairMade(Message):
        index: int

    @dataclass
    class GeneratorNote(Message):
        text: str
        error: bool = False

    def __init__(self) -> None:
        super().__init__(id="annotate-screen")
        self.session: AnnotationSession | None = None
        self.problems: list[Any] = []
        self.rationale = ""  # typed for the shown pair, saved with its decision
        self.generator_note = ""
        self._wake = threading.Event()  # tells the generator that the position moved
        self._generator: Worker | None = None
        self.shown_index: int | None = None  # the pair on screen (tests and the benchmark read it)
        self.shown_pair: str | None = None

    @property
    def workspace(self) -> Workspace:
        return self.app.workspace  # type: ignore[attr-defined]

    @property
    def client(self) -> GenerationClient:
        return self.app.generation  # type: ignore[attr-defined]

    def compose(self) -> ComposeResult:
        yield Static(id="annotate-title")
        yield Static(id="annotate-progress")
        with Vertical(id="annotate-start"):
            yield Label("Annotate: start or continue a session", classes="dialog-title")
            yield OptionList(id="annotate-sessions")
            yield Static(
                "Enter: open · or on the command line: tui-ft annotate PROMPTS --a MODEL [--b MODEL]",
                classes="dialog-help",
            )
        with Vertical(id="annotate-work"):
            yield PromptView(id="annotate-prompt")
            with Container(id="annotate-pair"):
                yield CandidateColumn("A", id="annotate-a")
                yield CandidateColumn("B", id="annotate-b")
            yield Static(id="annotate-verdict")
        yield KeysFooter()

    def on_mount(self) -> None:
        self._layout()
        name = getattr(self.app, "annotate_session", None)
        if name:
            self.app.annotate_session = None  # type: ignore[attr-defined]
            self.open(name)
        else:
            self.action_sessions()

    def on_unmount(self) -> None:
        self._stop_generator()

    # --- layout --------------------------------------------------------------------------------------

    def on_resize(self) -> None:
        self._layout()

    def _layout(self) -> None:
        self.query_one("#annotate-pair").set_class(self.size.width < 100, "-narrow")
        working = self.session is not None
        self.refresh_bindings()  # the pair keys belong to an open session
        self.query_one("#annotate-start").display = not working
        self.query_one("#annotate-work").display = working
        self.query_one("#annotate-progress").display = working

    # --- sessions --------------------------------------------------------------------------------------

    def action_sessions(self) -> None:
        """Show the workspace's sessions (continue one, or start a new one)."""
        self._stop_generator()
        self.session = None
        self._layout()
        self.query_one("#annotate-title", Static).update(Text(" Annotate", style="bold"))
        options = self.query_one("#annotate-sessions", OptionList)
        options.clear_options()
        for spec in list_sessions(self.workspace):
            options.add_option(
                Option(
                    Text.assemble(("continue ", "dim"), (spec.name, "bold"), "  ", (spec.sources(), "dim")),
                    id=spec.name,
                )
            )
        options.add_option(Option(Text("+ new session…", style="bold"), id=NEW_SESSION))
        options.highlighted = 0
        options.focus()

    @on(OptionList.OptionSelected, "#annotate-sessions")
    def _session_picked(self, event: OptionList.OptionSelected) -> None:
        if event.option.id == NEW_SESSION:
            self._ask_new_session()
        elif event.option.id:
            self.open(event.option.id)

    def _ask_new_session(self, error: str = "", values: dict[str, str] | None = None) -> None:
        def given(values: dict[str, str] | None) -> None:
            if values is not None:
                self._create_worker(values)

        self.app.push_screen(NewSessionDialog(error, values), given)

    @work(
        thread=True,
        exclusive=True,
        group="annotate-open",
        exit_on_error=False,
        description="starting a session",
    )
    def _create_worker(self, values: dict[str, str]) -> None:
        from tui_ft.data.prompts import read_prompts
        from tui_ft.modelref import resolve_model

        ws = self.workspace
        try:
            prompts = read_prompts(values["prompts"], base_dir=ws.data)
            name = values.get("name") or prompts.path.stem
            if not session_name_ok(name):
                raise UserError(f"{name!r} cannot name a session (letters, digits, - _ .)")
            existing = load_spec(ws, name)
            if existing is None:
                a, b = values.get("a") or None, values.get("b") or None
                if a is None and not prompts.has_pairs:
                    raise UserError("a prompts file needs model A (a pairs file can be reviewed without)")
                for ref in (a, b):
                    if ref:
                        resolve_model(ref, ws, field="model")
                save_spec(
                    ws,
                    SessionSpec(
                        name=name,
                        prompts=str(prompts.path),
                        kind="generate" if a else "review",
                        a=a,
                        b=b,
                        settings_a=default_settings(seed=1) if a else {},
                        settings_b=default_settings(seed=1 if b else 100_003) if a else {},
                    ),
                )
        except UserError as exc:
            self.app.call_from_thread(self._ask_new_session, str(exc), values)
            return
        self.app.call_from_thread(self.open, name)

    def open(self, name: str) -> None:
        """Open session `name` (asking the annotator's name first, the first time)."""
        annotator = remembered_annotator(self.workspace)
        if annotator:
            self._open_worker(name, annotator)
            return

        def named(given: str | None) -> None:
            if given:
                remember_annotator(self.workspace, given)
                self._open_worker(name, given)

        self.app.push_screen(
            TextDialog("Your name, on every decision (asked once)", placeholder="name"), named
        )

    @work(
        thread=True,
        exclusive=True,
        group="annotate-open",
        exit_on_error=False,
        description="opening a session",
    )
    def _open_worker(self, name: str, annotator: str) -> None:
        try:
            session, problems = open_session(self.workspace, name, annotator)
        except UserError as exc:
            self.post_message(self.OpenFailed(name, str(exc)))
            return
        self.post_message(self.Opened(session, problems))

    @on(OpenFailed)
    def _open_failed(self, message: OpenFailed) -> None:
        self.notify(message.error, title=f"Session {message.name} did not open", severity="error", timeout=12)

    @on(Opened)
    def _opened(self, message: Opened) -> None:
        session = message.session
        self.session = session
        self.problems = message.problems
        self.rationale = ""
        self._layout()
        spec = session.spec
        self.query_one("#annotate-title", Static).update(
            Text.assemble(
                (f" {spec.name}", "bold"),
                "  ",
                (spec.sources(), ""),
                "  ",
                (f"annotator {session.annotator}", "dim"),
            )
        )
        if message.problems:
            first = message.problems[0]
            lines = "; ".join(
                f"line {p.line}: {p.field + ': ' if p.field else ''}{p.message}" for p in message.problems[:5]
            )
            more = f" (and {len(message.problems) - 5} more)" if len(message.problems) > 5 else ""
            self.notify(
                f"{len(message.problems)} bad line(s) left out: {lines}{more}",
                title=f"{Path(spec.prompts).name}:{first.line}",
                severity="warning",
                timeout=15,
                markup=False,
            )
        if session.torn_lines:
            self.notify(
                f"a line cut short by a crash was skipped: line {', '.join(map(str, session.torn_lines))}",
                title=session.store.path.name,
                severity="warning",
            )
        if spec.kind == "generate":
            self._generator = self._generate_worker(session)
        self.show_current()

    # --- showing a pair -------------------------------------------------------------------------------

    def show_current(self) -> None:
        """Draw the pair at the position (or where the session stands when there is none)."""
        session = self.session
        if session is None:
            return
        self._wake.set()
        pair = session.current
        columns = (
            self.query_one("#annotate-a", CandidateColumn),
            self.query_one("#annotate-b", CandidateColumn),
        )
        prompt = self.query_one("#annotate-prompt", PromptView)
        verdict = self.query_one("#annotate-verdict", Static)
        self.shown_index = session.position
        self.shown_pair = pair.id if pair is not None and pair.ready else None
        if pair is None:
            prompt.show([{"role": "user", "content": "Every pair is decided."}], title="done")
            for column in columns:
                column.show("", state="")
            verdict.update(
                Text.assemble(
                    ("All pairs done. ", "bold"),
                    f"d trains DPO on annotations/{session.spec.name}.jsonl · ← goes back · u undoes",
                )
            )
            self._draw_progress()
            return
        where = f"pair {pair.index + 1} of {session.total}" + (f" · line {pair.line}" if pair.line else "")
        prompt.show(pair.prompt, title=where)
        decision = session.decision_on(pair)
        if pair.error is not None:
            for column in columns:
                column.show("", state="failed")
            verdict.update(
                Text.assemble(("Generation failed: ", "bold red"), pair.error, " · r tries again · → next")
            )
        elif pair.responses is None:
            for column in columns:
                column.show("generating…", state="waiting")
            verdict.update(Text("Generating candidates for this prompt…", style="italic"))
        else:
            for column, response in zip(columns, pair.responses, strict=True):
                column.show(response.text, state=_state(decision, response.side))
            verdict.update(self._verdict_text(decision))
        self._draw_progress()

    def _verdict_text(self, decision: Decision | None) -> Text:
        if decision is not None:
            text = Text.assemble(("Decided: ", "bold"), LABEL_TEXT.get(decision.label, decision.label))
            if decision.rationale:
                text.append(f" · “{decision.rationale}”", style="italic")
            text.append(" · a key decides again · u undoes the last", style="dim")
            return text
        text = Text.assemble(("Which is better? ", "bold"), "1 A · 2 B · t tie · x both bad · s skip")
        if self.session is not None and self.session.spec.kind == "generate":
            text.append(" · r regenerate")  # not in the footer (80 columns): said here
        if self.rationale:
            text.append(f" · rationale: “{self.rationale}”", style="italic")
        return text

    def _draw_progress(self) -> None:
        session = self.session
        if session is None:
            return
        line = session.progress().line()
        if session.spec.kind == "generate":
            line += f" · {session.buffered()} ready ahead"
        if self.generator_note:
            line += f" · {self.generator_note}"
        self.query_one("#annotate-progress", Static).update(Text(" " + line))

    # --- keys -------------------------------------------------------------------------------------------

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """The pair keys belong to an open session; with none, 1 and 2 switch places as everywhere."""
        if action in ("sessions", "scroll"):
            return True
        if action == "regenerate" and self.session is not None and self.session.spec.kind != "generate":
            return None  # a pairs file's candidates: shown greyed
        return self.session is not None

    def action_decide(self, label: str) -> None:
        session = self.session
        if session is None:
            return
        pair = session.current
        if pair is None or not pair.ready:
            self.notify(
                "nothing to judge here yet"
                if pair is None or pair.error is None
                else "this pair failed: r or →",
                severity="warning",
                timeout=3,
            )
            return
        try:
            session.decide(label, self.rationale)
        except (UserError, OSError) as exc:
            self.notify(str(exc), title="Not saved", severity="error")
            return
        self.rationale = ""
        self.show_current()

    def action_undo(self) -> None:
        session = self.session
        if session is None:
            return
        decision = session.undo()
        if decision is None:
            self.notify("nothing to undo", severity="warning", timeout=3)
            return
        self.rationale = decision.rationale
        self.show_current()
        self.notify(f"taken back: {LABEL_TEXT.get(decision.label, decision.label)}", timeout=3)

    def action_move(self, step: int) -> None:
        if self.session is not None:
            self.session.move(step)
            self.rationale = ""
            self.show_current()

    def action_scroll(self, lines: int) -> None:
        for column in self.query(CandidateColumn):
            column.scroll_relative(y=lines, animate=False)

    def action_regenerate(self) -> None:
        session = self.session
        if session is None or session.current is None:
            return
        if session.spec.kind != "generate":
            self.notify("this session reviews a pairs file: nothing to generate", severity="warning")
            return
        session.regenerate(session.position)
        pair = session.current
        pair.responses = None  # shown as waiting until the new candidates come
        self.show_current()

    def action_rationale(self) -> None:
        session = self.session
        if session is None or session.current is None:
            return
        pair = session.current
        decision = session.decision_on(pair)

        def given(text: str | None) -> None:
            if text is None or self.session is not session:
                return
            if decision is not None and session.current is pair:
                session.decide(decision.label, text)  # the decision again, with its rationale
                session.position = pair.index
            else:
                self.rationale = text
            self.show_current()

        current = decision.rationale if decision is not None else self.rationale
        self.app.push_screen(TextDialog("Rationale for this pair", current, "why one is better"), given)

    def action_train(self) -> None:
        """Configure on the DPO recipe with this store as its data."""
        session = self.session
        if session is None:
            return
        from tui_ft.recipe import shipped_recipes

        recipe = next((p for p in shipped_recipes() if p.stem == "dpo-lora"), None)
        if recipe is None:
            self.notify("the dpo-lora recipe is missing from this install", severity="error")
            return
        store = str(session.store.path)
        self.app.switch_mode("configure")
        screen = self.app.screen
        opener = getattr(screen, "open_recipe_with", None)
        if opener is not None:
            screen.call_after_refresh(opener, recipe, {"data.train": store})

    # --- generating ahead --------------------------------------------------------------------------------

    def _stop_generator(self) -> None:
        if self._generator is not None:
            self._generator.cancel()
            self._wake.set()
            self._generator = None

    @work(
        thread=True,
        exclusive=True,
        group="annotate-generate",
        exit_on_error=False,
        description="generating candidates",
    )
    def _generate_worker(self, session: AnnotationSession) -> None:
        """Keep `buffer` pairs ready ahead of the annotator: one prompt at a time, both sources."""
        worker = get_current_worker()
        spec = session.spec
        keys = (MODEL_KEYS[0], MODEL_KEYS[1] if spec.b else MODEL_KEYS[0])
        refs = (spec.a or "", spec.b or spec.a or "")
        while not worker.is_cancelled:
            for key, ref in dict(zip(keys, refs, strict=True)).items():
                if key not in self.client.loaded:
                    self.post_message(self.GeneratorNote(f"loading {ref}…"))
                    final = self.client.load(key, ref).wait()
                    if final.get("type") != "loaded":
                        self.post_message(
                            self.GeneratorNote(f"{ref} did not load: {final.get('message')}", True)
                        )
                        return
            todo = session.pairs_to_make()
            if not todo:
                self.post_message(self.GeneratorNote(""))
                self._wake.wait(1.0)
                self._wake.clear()
                continue
            index = todo[0]
            self.post_message(self.GeneratorNote(f"generating pair {index + 1}"))
            prompt = session.pairs[index].prompt
            texts: list[str] = []
            error = None
            for slot, key in zip(("a", "b"), keys, strict=True):
                params = {k: v for k, v in side_settings(spec, index, slot).items() if k != "slot"}
                final = self.client.generate(key, prompt, params).wait()
                if final.get("type") != "done":
                    error = str(final.get("message") or "the generation failed")
                    break
                texts.append(str(final.get("text", "")))
            if worker.is_cancelled:
                return
            session.made(index, (texts[0], texts[1]) if error is None else None, error)
            self.post_message(self.PairMade(index))

    @on(PairMade)
    def _pair_made(self, message: PairMade) -> None:
        session = self.session
        if session is None:
            return
        if message.index == session.position:
            self.show_current()
        else:
            self._draw_progress()

    @on(GeneratorNote)
    def _generator_note(self, message: GeneratorNote) -> None:
        self.generator_note = message.text
        if message.error:
            self.notify(message.text, title="Candidates", severity="error", timeout=12)
        self._draw_progress()


def _state(decision: Decision | None, side: str) -> str:
    if decision is None:
        return ""
    if decision.label in ("A", "B"):
        return "better" if decision.label == side else "worse"
    return {"tie": "tie", "both_bad": "bad"}.get(decision.label, "")
