"""The conversation as the Chat screen draws it: one column per model, a user message and a reply per
turn; the reply grows as its pieces stream in, and the column follows only while the reader is at the
bottom (Elia's rule: scrolling up to read is never undone by a new token)."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical, VerticalScroll
from textual.widgets import Static

from tui_ft.display import format_count
from tui_ft.inference.chats import Reply


def reply_stats(reply: Reply) -> str:
    """`24 tokens · 18.2 tok/s` (and `stopped` or the error), for the line under a reply."""
    if reply.error:
        return f"failed: {reply.error}"
    parts = [format_count(reply.new_tokens, "token")]
    if reply.seconds > 0 and reply.new_tokens:
        parts.append(f"{reply.new_tokens / reply.seconds:.1f} tok/s")
    if reply.stopped:
        parts.append("stopped")
    return " · ".join(parts)


class UserMessage(Static):
    def __init__(self, text: str) -> None:
        super().__init__(Text(text), classes="chat-user")
        self.border_title = "you"


class ReplyMessage(Vertical):
    """A reply: its text so far, and once it ends, its token count and speed.

    A long reply is drawn as blocks of whole lines: once the growing tail holds more than
    `BLOCK_CHARS`, its finished lines become a block that is never wrapped or drawn again, so each new
    piece costs the width of the tail, not of the whole reply (a 10,000-character reply re-wrapped per
    token starved the UI: `bench/chat_service.py`)."""

    BLOCK_CHARS = 800

    def __init__(self, model: str, text: str = "", stats: str = "") -> None:
        super().__init__(classes="chat-reply")
        self.border_title = model
        self.text = text
        self.stats = stats
        self._frozen = ""  # the start of `text` drawn in finished blocks (up to a newline)
        self._tail = Static(classes="chat-reply-part")

    def compose(self) -> ComposeResult:
        yield self._tail

    def on_mount(self) -> None:
        self._draw()

    def show(self, text: str, stats: str | None = None) -> None:
        self.text = text
        if stats is not None:
            self.stats = stats
        self._draw()

    def _draw(self) -> None:
        text = self.text
        if not text.startswith(self._frozen):  # replaced, not grown: draw it afresh
            self.query(".chat-reply-block").remove()
            self._frozen = ""
        tail = text[len(self._frozen) :]
        if len(tail) > self.BLOCK_CHARS and (cut := tail.rfind("\n")) > 0:
            self.mount(
                Static(Text(tail[:cut]), classes="chat-reply-part chat-reply-block"), before=self._tail
            )
            self._frozen += tail[: cut + 1]
            tail = tail[cut + 1 :]
        tail = tail.rstrip("\n")  # a reply's closing newline is no blank line in its box
        self._tail.display = bool(tail) or not self._frozen
        self._tail.update(Text(tail or "…"))
        self.border_subtitle = self.stats
        self.set_class(self.stats.startswith("failed"), "-failed")


class ChatColumn(VerticalScroll):
    """One model's side of the conversation. It is anchored (Textual's rule, Elia's too): it stays at
    the bottom as a reply grows, in the same layout pass (no frame drawn before the scroll), until the
    reader scrolls up; scrolling back to the bottom anchors it again."""

    def __init__(self, *, id: str) -> None:  # noqa: A002 - Textual's name
        super().__init__(id=id, classes="chat-column")
        self.can_focus = False

    def on_mount(self) -> None:
        self.anchor()

    @property
    def at_bottom(self) -> bool:
        return self.scroll_y >= self.max_scroll_y - 1

    def follow(self, was_at_bottom: bool) -> None:
        """Keep to the bottom if the reader was there. The anchor does it while it holds; this restores
        it when the reader had scrolled away and back without the scroll bar noticing."""
        if was_at_bottom and self.scroll_y < self.max_scroll_y:  # a fraction of a line above counts too
            self.scroll_end(animate=False)

    def add_turn(self, user: str, model: str, reply: Reply | None = None) -> ReplyMessage:
        box = ReplyMessage(model, reply.text if reply else "", reply_stats(reply) if reply else "")
        self.mount(UserMessage(user))
        self.mount(box)
        self.scroll_end(animate=False)  # a new turn is read from its start: anchored again
        return box

    def clear(self) -> None:
        self.remove_children()

    def replies(self) -> list[ReplyMessage]:
        return [child for child in self.children if isinstance(child, ReplyMessage)]
