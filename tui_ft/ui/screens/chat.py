"""Chat: talk to a base model, a run's adapter or a checkpoint; compare two models side by side.

Models load and generate in the generation service (a child process, `inference.service`), never in
the UI: each load and each reply is one thread worker reading the service's replies and posting them
here as messages. A reply's text arrives whole-so-far in a message that coalesces, so a fast model
never floods the event loop. Escape stops a reply and keeps what came. In compare mode one prompt goes
to both models; when both replies are in, 1 / 2 / t / x records which is better in the annotation
store (`prefs.store`), the same lines the Annotate screen writes.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Container, Horizontal
from textual.geometry import Region
from textual.message import Message
from textual.screen import Screen
from textual.timer import Timer
from textual.widgets import Input, Static

from tui_ft.errors import UserError
from tui_ft.inference.chats import (
    Conversation,
    Reply,
    Turn,
    few_shot_turns,
    list_conversations,
    load_conversation,
    save_conversation,
)
from tui_ft.inference.client import GenerationClient, Pending
from tui_ft.inference.resources import LoadAdvice, advise_load
from tui_ft.modelref import model_choices
from tui_ft.prefs.store import PreferenceStore, Response, new_decision, store_path
from tui_ft.ui.screens.chat_dialogs import (
    NUMBER_SETTINGS,
    LoadChoiceDialog,
    ModelPicker,
    NameDialog,
    OpenDialog,
    SettingsDialog,
)
from tui_ft.ui.widgets.chat_log import ChatColumn, ReplyMessage, reply_stats
from tui_ft.ui.widgets.export_dialog import ExportDialog, ExportRequest, run_export
from tui_ft.ui.widgets.shell import KeysFooter
from tui_ft.workspace import Workspace

SIDES = ("a", "b")
REPLY_DRAW_S = 0.15  # a streaming reply is drawn at most this often (bench/chat_service.py)
# While a prompt is being typed, the keys come first: a reply's new text waits until the typing pauses
# for TYPING_PAUSE_S, or, typed on, REPLY_DRAW_TYPING_S after its last draw, and then it is drawn just
# after a key's frame, so the next key finds the layout done. Each draw lays the columns out again
# (tens of milliseconds with long replies), and a key that comes meanwhile waits for it.
TYPING_PAUSE_S = 0.3
REPLY_DRAW_TYPING_S = 1.0
COMPARE_STORE = "chat-compare"  # annotations/chat-compare.jsonl
DECISION_LABELS = {"1": "A", "2": "B", "t": "tie", "x": "both_bad"}
# --- the screen -------------------------------------------------------------------------------------


class ChatBody(Container):
    """The two columns; focused after a compare turn, when 1 / 2 / t / x say which reply is better."""

    # the decision keys are on the line above the prompt (80 columns: not in the footer too; in the palette)
    BINDINGS = [
        Binding("1", "decide('1')", "A better", show=False, id="chat.decide.a"),
        Binding("2", "decide('2')", "B better", show=False, id="chat.decide.b"),
        Binding("t", "decide('t')", "Tie", show=False, id="chat.decide.tie"),
        Binding("x", "decide('x')", "Both bad", show=False, id="chat.decide.both_bad"),
        Binding("u", "undo_decision", "Undo", id="chat.decide.undo"),
        Binding("i,enter", "screen.focus_prompt", "Type", id="chat.decide.type"),
    ]

    def __init__(self) -> None:
        super().__init__(id="chat-body")
        self.can_focus = True

    def compose(self) -> ComposeResult:
        yield ChatColumn(id="chat-a")
        yield ChatColumn(id="chat-b")

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """1 / 2 / t / x judge only while a comparison waits; otherwise the keys pass on (1-5 switch
        places, as everywhere)."""
        screen = self.screen
        if action == "decide":
            return isinstance(screen, ChatScreen) and screen.awaiting_decision is not None
        if action == "undo_decision":
            return isinstance(screen, ChatScreen) and bool(screen.decisions)
        return True

    def action_decide(self, key: str) -> None:
        screen = self.screen
        if isinstance(screen, ChatScreen):
            screen.decide(DECISION_LABELS[key])

    def action_undo_decision(self) -> None:
        screen = self.screen
        if isinstance(screen, ChatScreen):
            screen.undo_decision()


class PromptInput(Input):
    """The prompt. Its size never depends on its text (3 lines, the screen's width), so a key typed
    into it needs a repaint of it, never a new layout of the screen: Textual's Input asks for one on
    every change of its text (the text's width is its virtual size), and with two long replies on the
    screen, that reflow of every widget was most of a key's latency while both streamed
    (bench/chat_service.py)."""

    _text_changing = False

    def _watch_value(self, value: str) -> None:
        self._text_changing = True
        try:
            super()._watch_value(value)
        finally:
            self._text_changing = False

    def refresh(
        self, *regions: Region, repaint: bool = True, layout: bool = False, recompose: bool = False
    ) -> PromptInput:
        if self._text_changing:
            layout = False
        return super().refresh(*regions, repaint=repaint, layout=layout, recompose=recompose)


class ChatScreen(Screen):
    """One conversation with one model, or the same prompts to two models side by side."""

    CSS_PATH = Path(__file__).with_name("chat.tcss")
    # the footer (80 columns) shows the keys of a conversation and ^q; the others are in the palette (^p)
    BINDINGS = [
        Binding("escape", "stop_or_leave", "Stop", id="chat.stop"),
        Binding("ctrl+l", "pick_model('a')", "Model", id="chat.model"),
        Binding("ctrl+b", "compare", "Compare", id="chat.compare"),  # b: both (ctrl+k is the prompt's)
        Binding("ctrl+t", "settings", "Settings", show=False, id="chat.settings"),
        Binding("ctrl+r", "regenerate", "Regenerate", id="chat.regenerate"),
        # priority: the prompt's own ctrl+e (end of line) is also the End key
        Binding("ctrl+e", "edit_last", "Edit last", show=False, id="chat.edit_last", priority=True),
        Binding("ctrl+s", "save", "Save", show=False, id="chat.save"),
        Binding("ctrl+o", "open", "Open", show=False, id="chat.open"),
        Binding("ctrl+n", "new", "New", show=False, id="chat.new"),
        Binding(
            "x", "export", "Export", show=False, id="chat.export"
        ),  # typed into the prompt while it has focus
    ]

    # --- messages from the workers -------------------------------------------------------------------

    @dataclass
    class LoadProgress(Message):
        side: int
        stage: str
        fraction: float

        def can_replace(self, message: Message) -> bool:
            return isinstance(message, type(self)) and message.side == self.side

    @dataclass
    class Loaded(Message):
        side: int
        ref: str
        info: dict[str, Any]

    @dataclass
    class LoadFailed(Message):
        side: int
        ref: str
        error: dict[str, Any]

    @dataclass
    class ReplyGrew(Message):
        """A reply has new text (in `ChatScreen._grown`); at most one is on its way per side."""

        side: int

    @dataclass
    class ReplyEnded(Message):
        side: int
        turn: int
        final: dict[str, Any]  # the service's `done` or `error`

    @dataclass
    class NeedsChoice(Message):
        """The model would not fit where it would load: ask before loading."""

        side: int
        ref: str
        advice: LoadAdvice

    @dataclass
    class FewShotReady(Message):
        turns: list[dict[str, str]]
        error: str | None = None

    def __init__(self) -> None:
        super().__init__(id="chat-screen")
        self.models: list[str | None] = [None, None]
        self.info: list[dict[str, Any] | None] = [None, None]
        self.status_text = ["no model: ctrl+l picks one", ""]
        self.pending: list[Pending | None] = [None, None]
        self.compare = False
        self.conversation = Conversation(models=[])
        self.settings: dict[str, Any] = {"system": "", "few_shot_data": "", "few_shot_k": 0}
        self.awaiting_decision: int | None = None  # the compare turn waiting for 1 / 2 / t / x
        self.decisions: dict[int, str] = {}  # turn -> decision id (for undo)
        self.model_loading = [False, False]
        self.queued_prompt: str | None = None  # sent once the models have loaded again
        self._asked_for: list[str] = []  # models asked for before the screen was mounted
        # Streaming: a reply worker leaves the text so far in `_grown` and posts one ReplyGrew unless one
        # is on its way; the replies are drawn at most every REPLY_DRAW_S, both sides in one frame.
        self._grown: dict[int, tuple[int, str]] = {}  # side -> (turn, text so far), not drawn yet
        self._grew_posted = [False, False]
        self._last_draw = 0.0
        self._last_typed = 0.0  # when the prompt's text last changed (see TYPING_PAUSE_S)
        self._draw_timer: Timer | None = None

    @property
    def workspace(self) -> Workspace:
        return self.app.workspace  # type: ignore[attr-defined]

    @property
    def client(self) -> GenerationClient:
        return self.app.generation  # type: ignore[attr-defined]

    def compose(self) -> ComposeResult:
        with Horizontal(id="chat-models"):
            yield Static(id="chat-model-a", classes="chat-model")
            yield Static(id="chat-model-b", classes="chat-model")
        yield ChatBody()
        yield Static(id="chat-verdict")
        yield PromptInput(placeholder="Message · Enter sends · Esc stops a reply", id="chat-prompt")
        yield KeysFooter()

    def on_mount(self) -> None:
        self._layout()
        self.query_one("#chat-prompt").focus()
        start = self._asked_for or getattr(self.app, "chat_models", None) or []
        self.app.chat_models = None  # type: ignore[attr-defined]
        if len(start) > 1:
            self._set_compare(True)
            self.load(1, start[1])
        if start:
            self.load(0, start[0])

    def show_model(self, model_ref: str) -> None:
        """Chat with `model_ref` (Runs' "open in Chat", `tui-ft chat MODEL`)."""
        if not self.is_mounted:  # asked for as the screen is made: loaded once it is mounted
            self._asked_for = [model_ref]
            return
        self.load(0, model_ref)

    # --- layout --------------------------------------------------------------------------------------

    def _layout(self) -> None:
        body = self.query_one(ChatBody)
        body.set_class(self.compare, "-compare")
        body.set_class(self.size.width < 100, "-narrow")
        self.query_one("#chat-b").display = self.compare
        self.query_one("#chat-model-b").display = self.compare
        for side in (0, 1):
            self.query_one(f"#chat-model-{SIDES[side]}", Static).update(self._model_line(side))
            # shown where the columns have a top rule (stacked compare), to tell A from B
            self.query_one(f"#chat-{SIDES[side]}").border_title = f"{'AB'[side]} {self.models[side] or ''}"
        self._draw_verdict()

    def on_resize(self) -> None:
        self._layout()

    def _model_line(self, side: int) -> Text:
        """` A demo-tiny  cpu · float32 · 417.2K params` (or what is happening to it)."""
        line = Text(f" {'AB'[side]} " if self.compare else " ", style="bold")
        ref, info = self.models[side], self.info[side]
        if ref is None:
            return line + Text(self.status_text[side], style="dim")
        line.append(ref, style="bold")
        line.append("  ")
        if info is None:
            return line + Text(self.status_text[side], style="italic")
        from tui_ft.display import format_params as format_count

        details = [
            str(info.get("device", "?")),
            str(info.get("dtype", "?")),
            f"{format_count(int(info.get('parameters', 0)))} params",
        ]
        if not info.get("chat_template"):
            details.append("no chat template: plain text")
        return line + Text(" · ".join(details), style="dim")

    def _draw_verdict(self) -> None:
        # called as a reply starts, as a comparison waits and when it is decided: the keys the footer
        # shows (greyed while a reply streams, undo once decided) are asked again
        self.refresh_bindings()
        verdict = self.query_one("#chat-verdict", Static)
        shown = self.awaiting_decision is not None
        if shown:
            verdict.update(
                Text.assemble(
                    ("Which reply is better? ", "bold"), "1 A · 2 B · t tie · x both bad · i no decision"
                )
            )
        if verdict.display != shown:  # the columns get shorter or taller: keep their ends in view
            columns = list(self.query(ChatColumn))
            ends = [column.at_bottom for column in columns]
            verdict.display = shown
            for column, was in zip(columns, ends, strict=True):  # once the new heights are laid out
                self.call_after_refresh(column.follow, was)

    # --- loading -------------------------------------------------------------------------------------

    def load(
        self,
        side: int,
        ref: str,
        *,
        device: str | None = None,
        quantization: str | None = None,
        check: bool = True,
    ) -> None:
        """Load `ref` on `side`; first (unless `check` is off) ask whether it fits where it would go."""
        ref = ref.strip()
        if not ref:
            return
        if self.pending[side] is not None:
            self.client.cancel(self.pending[side])  # type: ignore[arg-type]
        self.models[side] = ref
        self.info[side] = None
        self.model_loading[side] = True
        self.status_text[side] = "loading…"
        self._layout()
        self._load_worker(
            side,
            ref,
            device or self.settings.get("device", "auto"),
            quantization or self.settings.get("quantization", "none"),
            check,
        )

    @work(thread=True, group="chat-load", exit_on_error=False, description="Loading a model for chat")
    def _load_worker(self, side: int, ref: str, device: str, quantization: str, check: bool) -> None:
        if check:
            advice = self._advice(ref, device, quantization)
            if advice is not None and not advice.fits:
                self.post_message(self.NeedsChoice(side, ref, advice))
                return
        pending = self.client.load(SIDES[side], ref, device=device, quantization=quantization)
        for message in pending:
            kind = message.get("type")
            if kind == "progress":
                self.post_message(self.LoadProgress(side, str(message["stage"]), float(message["fraction"])))
            elif kind == "loaded":
                self.post_message(self.Loaded(side, ref, message.get("info") or {}))
            elif kind == "error":
                self.post_message(self.LoadFailed(side, ref, message))

    def _advice(self, ref: str, device: str, quantization: str) -> LoadAdvice | None:
        """Whether `ref` fits where it would load (the GPU, else RAM); None when that cannot be told
        from its files (the load itself then says what is wrong)."""
        from tui_ft.runs.listing import RunsIndex

        gpu = getattr(self.app, "gpu_status", None)
        busy = tuple(row.id for row in RunsIndex(self.workspace).rows(state="active"))
        try:
            return advise_load(
                ref, self.workspace, gpu=gpu, device=device, quantization=quantization, busy_runs=busy
            )
        except (UserError, OSError, ValueError):
            return None

    @on(NeedsChoice)
    def _on_needs_choice(self, message: NeedsChoice) -> None:
        side, ref = message.side, message.ref
        self.model_loading[side] = False
        self.status_text[side] = "does not fit: choose how to load it"
        self._layout()

        def chosen(choice: str | None) -> None:
            if choice is None:
                self.models[side] = None
                self.status_text[side] = f"{ref} not loaded"
                self._layout()
            elif choice == "cpu":
                self.load(side, ref, device="cpu", check=False)
            elif choice in ("4bit", "8bit"):
                self.load(side, ref, quantization=choice, check=False)
            else:
                self.load(side, ref, check=False)

        self.app.push_screen(LoadChoiceDialog(message.advice), chosen)

    @on(LoadProgress)
    def _on_progress(self, message: LoadProgress) -> None:
        self.status_text[message.side] = f"loading {message.stage} {message.fraction:.0%}"
        self._layout()

    @on(Loaded)
    def _on_loaded(self, message: Loaded) -> None:
        if self.models[message.side] != message.ref:
            return  # another model was picked meanwhile
        self.info[message.side] = message.info
        self.model_loading[message.side] = False
        for key, value in (message.info.get("defaults") or {}).items():
            self.settings.setdefault(key, value)
        self._layout()
        if self.queued_prompt and all(self.info[s] is not None for s in self.sides):
            text, self.queued_prompt = self.queued_prompt, None
            self._submit(text)

    @on(LoadFailed)
    def _on_load_failed(self, message: LoadFailed) -> None:
        if self.models[message.side] != message.ref:
            return
        self.models[message.side] = None
        self.model_loading[message.side] = False
        self.queued_prompt = None
        self.status_text[message.side] = f"{message.ref} did not load: {message.error.get('message')}"
        self._layout()
        self.notify(
            _error_text(message.error), title=f"Could not load {message.ref}", severity="error", timeout=12
        )

    # --- sending -------------------------------------------------------------------------------------

    @property
    def sides(self) -> list[int]:
        return [0, 1] if self.compare else [0]

    @property
    def generating(self) -> bool:
        return any(p is not None for p in self.pending)

    @on(Input.Submitted, "#chat-prompt")
    def _send(self, event: Input.Submitted) -> None:
        text = event.value.strip()
        if not text:
            return
        if self.generating:
            self.notify("a reply is still coming: Esc stops it", severity="warning")
            return
        if any(self.models[s] is None for s in self.sides):
            which = " and ".join(SIDES[s].upper() for s in self.sides if self.models[s] is None)
            self.notify(
                "pick a model first: ctrl+l" if not self.compare else f"pick model {which} first",
                severity="warning",
            )
            return
        event.input.value = ""
        unloaded = [s for s in self.sides if self.info[s] is None]
        if unloaded:  # still loading, or loading again after the service ended
            self.queued_prompt = text
            for side in unloaded:
                if not self.model_loading[side]:
                    self.load(side, self.models[side] or "")
            return
        self._submit(text)

    def _submit(self, text: str) -> None:
        self.awaiting_decision = None
        self.conversation.turns.append(Turn(text))
        self._start_turn(len(self.conversation.turns) - 1)

    def _start_turn(self, index: int) -> None:
        turn = self.conversation.turns[index]
        turn.replies = [Reply(model=self.models[s] or "", text="") for s in self.sides]
        history = self.conversation.prompt_for(index)
        self.conversation.models = [m for m in self.models if m] if self.compare else [self.models[0] or ""]
        for side in self.sides:
            column = self.query_one(f"#chat-{SIDES[side]}", ChatColumn)
            column.add_turn(turn.user, self.models[side] or "")
            self.pending[side] = self.client.generate(SIDES[side], history, self._params())
            self._reply_worker(side, index, self.pending[side])
        self._draw_verdict()

    def _params(self) -> dict[str, Any]:
        params = {k: self.settings[k] for k in NUMBER_SETTINGS if self.settings.get(k) is not None}
        params["seed"] = int(time.time()) if params.get("temperature", 0) else 0
        return params

    @work(thread=True, group="chat-reply", exit_on_error=False)
    def _reply_worker(self, side: int, turn: int, pending: Pending) -> None:
        text = ""
        for message in pending:
            if message.get("type") == "piece":
                text += str(message.get("text", ""))
                self._grown[side] = (turn, text)
                if not self._grew_posted[side]:  # else the one on its way draws this text too
                    self._grew_posted[side] = True
                    self.post_message(self.ReplyGrew(side))
            elif pending.final is not None:
                self.post_message(self.ReplyEnded(side, turn, message))

    def _reply_box(self, side: int, turn: int) -> ReplyMessage | None:
        boxes = self.query_one(f"#chat-{SIDES[side]}", ChatColumn).replies()
        return boxes[turn] if turn < len(boxes) else None

    @on(ReplyGrew)
    def _on_grew(self) -> None:
        if self._draw_timer is not None:
            return  # a draw is already due
        wait = self._draw_due() - time.monotonic()
        if wait > 0:
            self._draw_timer = self.set_timer(wait, self._draw_grown)
        else:
            self._draw_grown()

    def _draw_due(self) -> float:
        """When the replies' new text may be drawn: REPLY_DRAW_S after the last draw, and not before
        the typing pauses (TYPING_PAUSE_S after the last key; `_on_typed` draws one that is overdue)."""
        return max(self._last_draw + REPLY_DRAW_S, self._last_typed + TYPING_PAUSE_S)

    @on(Input.Changed, "#chat-prompt")
    def _on_typed(self) -> None:
        self._last_typed = time.monotonic()
        if self._draw_timer is not None and self._last_typed - self._last_draw >= REPLY_DRAW_TYPING_S:
            self._draw_timer.stop()
            self._draw_timer = None
            self.call_after_refresh(self._draw_grown, True)  # once this key's frame is drawn

    def _draw_grown(self, overdue: bool = False) -> None:
        """Draw the text that came since the last draw, on every side (one layout for both)."""
        self._draw_timer = None
        wait = self._draw_due() - time.monotonic()
        if wait > 0.001 and not overdue:  # typed into the prompt since this draw was planned
            self._draw_timer = self.set_timer(wait, self._draw_grown)
            return
        self._last_draw = time.monotonic()
        for side in (0, 1):
            self._grew_posted[side] = False  # before taking the text: a later piece posts again
            grown = self._grown.pop(side, None)
            box = None if grown is None else self._reply_box(side, grown[0])
            if grown is None or box is None:
                continue
            column = self.query_one(f"#chat-{SIDES[side]}", ChatColumn)
            was = column.at_bottom
            box.show(grown[1])
            column.follow(was)

    @on(ReplyEnded)
    def _on_ended(self, message: ReplyEnded) -> None:
        side, index, final = message.side, message.turn, message.final
        self.pending[side] = None
        self.refresh_bindings()  # (greyed keys come back once no reply streams)
        self._grown.pop(side, None)  # the final text is drawn below
        if index >= len(self.conversation.turns):
            return
        turn = self.conversation.turns[index]
        reply = turn.replies[side if self.compare else 0]
        if final.get("type") == "done":
            reply.text = str(final.get("text", ""))
            reply.new_tokens = int(final.get("new_tokens") or 0)
            reply.seconds = float(final.get("seconds") or 0.0)
            reply.stopped = bool(final.get("stopped"))
            reply.prompt_tokens = int(final.get("prompt_tokens") or 0)
        else:
            reply.error = str(final.get("message"))
            if final.get("kind") == "crashed":  # every model is gone with the service
                self.info = [None, None]
                self.model_loading = [False, False]
                self.status_text = ["the service ended: the next prompt loads it again"] * 2
                self._layout()
            self.notify(_error_text(final), title="The reply failed", severity="error", timeout=12)
        box = self._reply_box(side, index)
        if box is not None:
            column = self.query_one(f"#chat-{SIDES[side]}", ChatColumn)
            was = column.at_bottom
            box.show(reply.text, reply_stats(reply))
            column.follow(was)
        if self.compare and not self.generating and all(r.error is None for r in turn.replies):
            self.awaiting_decision = index
            self._draw_verdict()
            self.query_one(ChatBody).focus()

    # --- stopping, editing, regenerating ---------------------------------------------------------------

    def action_stop_or_leave(self) -> None:
        if self.generating:
            for pending in self.pending:
                if pending is not None:
                    self.client.cancel(pending)
            return
        if self.focused is self.query_one("#chat-prompt"):
            self.query_one(ChatBody).focus()
        else:
            self.action_focus_prompt()

    def action_focus_prompt(self) -> None:
        self.query_one("#chat-prompt").focus()

    def action_regenerate(self) -> None:
        if self.generating or not self.conversation.turns:
            return
        index = len(self.conversation.turns) - 1
        self._drop_last_boxes()
        self._start_turn(index)

    def action_edit_last(self) -> None:
        """Put the last user turn back into the prompt to edit and resend (its replies are dropped)."""
        if self.generating or not self.conversation.turns:
            return
        turn = self.conversation.turns.pop()
        self._drop_last_boxes()
        self.awaiting_decision = None
        self._draw_verdict()
        prompt = self.query_one("#chat-prompt", Input)
        prompt.value = turn.user
        prompt.cursor_position = len(turn.user)
        prompt.focus()

    def _drop_last_boxes(self) -> None:
        for side in (0, 1):
            column = self.query_one(f"#chat-{SIDES[side]}", ChatColumn)
            children = list(column.children)
            for widget in children[-2:]:
                widget.remove()

    def action_new(self) -> None:
        if self.generating:
            return
        self.conversation = Conversation(
            models=[m for m in self.models if m],
            system=self.settings.get("system", ""),
            few_shot=self.conversation.few_shot,
        )
        self.awaiting_decision = None
        for side in (0, 1):
            self.query_one(f"#chat-{SIDES[side]}", ChatColumn).clear()
        self._layout()

    # --- compare ---------------------------------------------------------------------------------------

    def action_compare(self) -> None:
        if self.generating:
            return
        if self.compare:
            self._set_compare(False)
            return
        self._set_compare(True)
        self.action_pick_model("b")

    def _set_compare(self, on_: bool) -> None:
        self.compare = on_
        self.action_new()

    def decide(self, label: str) -> None:
        index = self.awaiting_decision
        if index is None:
            self.notify("nothing to judge: send a prompt to both models first", severity="warning")
            return
        turn = self.conversation.turns[index]
        prompt = self.conversation.prompt_for(index)
        responses = [
            Response(
                turn.replies[s].text, self.models[s] or "", side, {k: v for k, v in self._params().items()}
            )
            for s, side in ((0, "A"), (1, "B"))
        ]
        decision = new_decision(
            prompt, responses[0], responses[1], label, annotator=_annotator(self.workspace), origin="chat"
        )
        store = PreferenceStore(store_path(self.workspace.annotations, COMPARE_STORE))
        store.add(decision)
        self.decisions[index] = decision.id
        if label in ("A", "B"):
            turn.preferred = 0 if label == "A" else 1
        self.awaiting_decision = None
        self._draw_verdict()
        self.notify(f"{label_text(label)}: saved to {store.path.name} (u undoes)", timeout=4)
        self.action_focus_prompt()

    def undo_decision(self) -> None:
        if not self.decisions:
            return
        index = max(self.decisions)
        decision_id = self.decisions.pop(index)
        PreferenceStore(store_path(self.workspace.annotations, COMPARE_STORE)).retract(
            decision_id, annotator=_annotator(self.workspace)
        )
        self.conversation.turns[index].preferred = None
        self.awaiting_decision = index
        self._draw_verdict()
        self.notify("decision taken back", timeout=3)

    # --- dialogs -----------------------------------------------------------------------------------------

    def action_pick_model(self, side: str = "a") -> None:
        index = SIDES.index(side)
        self._pick_worker(index)

    @work(thread=True, exclusive=True, group="chat-pick", exit_on_error=False)
    def _pick_worker(self, side: int) -> None:
        choices = model_choices(self.workspace)  # lists folders: off the event loop
        self.app.call_from_thread(self._show_picker, side, choices)

    def _show_picker(self, side: int, choices: list[tuple[str, str]]) -> None:
        title = "Model to chat with" if not self.compare else f"Model {SIDES[side].upper()}"

        def picked(ref: str | None) -> None:
            if ref:
                self.load(side, ref)
            elif self.compare and self.models[1] is None and side == 1:
                self._set_compare(False)
            self.action_focus_prompt()

        self.app.push_screen(ModelPicker(choices, title), picked)

    def action_settings(self) -> None:
        current = dict(self.settings)

        def applied(values: dict[str, Any] | None) -> None:
            if values is None:
                return
            old_data, old_k = self.settings.get("few_shot_data"), self.settings.get("few_shot_k")
            self.settings.update(values)
            self.conversation.system = values.get("system", "")
            if (values.get("few_shot_data"), values.get("few_shot_k")) != (old_data, old_k):
                if values.get("few_shot_k") and values.get("few_shot_data"):
                    self._few_shot_worker(values["few_shot_data"], int(values["few_shot_k"]))
                else:
                    self.conversation.few_shot = []
            self.action_focus_prompt()

        self.app.push_screen(SettingsDialog(current), applied)

    @work(thread=True, exclusive=True, group="chat-few-shot", exit_on_error=False)
    def _few_shot_worker(self, ref: str, k: int) -> None:
        try:
            turns = few_shot_turns(ref, k, self.workspace)
        except UserError as exc:
            self.post_message(self.FewShotReady([], str(exc)))
            return
        self.post_message(self.FewShotReady(turns))

    @on(FewShotReady)
    def _on_few_shot(self, message: FewShotReady) -> None:
        if message.error:
            self.notify(message.error, title="Few-shot examples", severity="error", timeout=10)
            return
        self.conversation.few_shot = message.turns
        self.notify(f"{len(message.turns) // 2} examples go before every prompt", title="Few-shot")

    def export_ref(self) -> str | None:
        """Side A's model as `tui-ft export` takes it (RUN or RUN:checkpoint-N), None when it is not a run."""
        from tui_ft.modelref import resolve_model

        ref = self.models[0]
        if not ref:
            return None
        try:
            resolved = resolve_model(ref, self.workspace)
        except UserError:
            return None
        if resolved.kind == "run" and resolved.run_id:
            return resolved.run_id
        if resolved.kind == "checkpoint" and resolved.run_id:
            return f"{resolved.run_id}:{Path(resolved.path).name}"
        return None

    def action_export(self) -> None:
        """Export side A's model with the Runs screen's dialog (a run or a checkpoint only)."""
        run_ref = self.export_ref()
        if run_ref is None:
            shown = self.models[0] or "no model"
            self.notify(
                f"{shown} is not a run or a checkpoint: only a run's model exports (pick one with ctrl+l)",
                severity="warning",
                markup=False,
            )
            return
        default = self.workspace.root / "exports" / run_ref.replace(":", "-")

        def chosen(request: ExportRequest | None) -> None:
            if request is not None:
                self.notify(f"exporting {run_ref}…", markup=False)
                self._export_worker(request)

        self.app.push_screen(ExportDialog(run_ref, default), chosen)

    @work(thread=True, exclusive=True, group="chat-export", exit_on_error=False, description="exporting")
    def _export_worker(self, request: ExportRequest) -> None:
        """`tui-ft export` in a child process; what it says comes back as notifications."""
        run_export(
            request, self.workspace.root, lambda text, severity: self.post_message(self.Told(text, severity))
        )

    @dataclass
    class Told(Message):
        text: str
        severity: str = "information"

    @on(Told)
    def _told(self, message: Told) -> None:
        self.notify(message.text, severity=message.severity, markup=False, timeout=12)  # type: ignore[arg-type]

    def action_save(self) -> None:
        if not self.conversation.turns:
            self.notify("nothing to save yet", severity="warning")
            return

        def named(name: str | None) -> None:
            if not name:
                return
            try:
                path = save_conversation(self.workspace, name, self.conversation)
            except (UserError, OSError) as exc:
                self.notify(str(exc), title="Not saved", severity="error")
                return
            self.notify(f"saved to {path}", title="Conversation saved")

        self.app.push_screen(NameDialog("Save conversation as", time.strftime("chat-%Y%m%d-%H%M%S")), named)

    def action_open(self) -> None:
        saved = [
            (p.stem, time.strftime("%Y-%m-%d %H:%M", time.localtime(p.stat().st_mtime)))
            for p in list_conversations(self.workspace)
        ]
        if not saved:
            self.notify("no saved conversations yet (ctrl+s saves one)", severity="warning")
            return

        def chosen(name: str | None) -> None:
            if name:
                self.open_conversation(name)

        self.app.push_screen(OpenDialog(saved, "Open a saved conversation"), chosen)

    def open_conversation(self, name: str) -> None:
        try:
            conversation = load_conversation(self.workspace, name)
        except UserError as exc:
            self.notify(str(exc), title="Not opened", severity="error")
            return
        self._set_compare(len(conversation.models) > 1)
        self.conversation = conversation
        self.settings.update(conversation.settings)
        self.settings["system"] = conversation.system
        for turn in conversation.turns:
            for side in self.sides:
                reply = turn.replies[side] if side < len(turn.replies) else None
                column = self.query_one(f"#chat-{SIDES[side]}", ChatColumn)
                column.add_turn(turn.user, reply.model if reply else "", reply)
        for side, ref in enumerate(conversation.models[:2]):
            if ref and ref != self.models[side]:
                self.load(side, ref)

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "stop_or_leave":
            return True
        if action in ("regenerate", "edit_last", "new", "compare") and self.generating:
            return None  # shown greyed while a reply streams
        return True


def label_text(label: str) -> str:
    return {"A": "A is better", "B": "B is better", "tie": "a tie", "both_bad": "both bad"}.get(label, label)


def _annotator(ws: Workspace) -> str:
    import getpass

    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "anonymous"


def _error_text(error: dict[str, Any]) -> str:
    text = str(error.get("message") or "failed")
    if error.get("hint"):
        text += f"\n{error['hint']}"
    return text
