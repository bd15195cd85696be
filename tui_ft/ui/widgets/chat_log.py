"""The conversation as the Chat screen draws it: one column per model, a user message and a reply per
turn; the reply grows as its pieces stream in, and the column follows only while the reader is at the
bottom (Elia's rule: scrolling up to read is never undone by a new token)."""

from __future__ import annotations

from rich.text import Text
from textual.containers import VerticalScroll
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


class ReplyMessage(Static):
    """A reply: its text so far, and once it ends, its token count and speed."""

    def __init__(self, model: str, text: str = "", stats: str = "") -> None:
        super().__init__(classes="chat-reply")
        self.border_title = model
        self.text = text
        self.stats = stats

    def on_mount(self) -> None:
        self._draw()

    def show(self, text: str, stats: str | None = None) -> None:
        self.text = text
        if stats is not None:
            self.stats = stats
        self._draw()

    def _draw(self) -> None:
        self.update(Text(self.text or "…"))
        self.border_subtitle = self.stats
        self.set_class(self.stats.startswith("failed"), "-failed")


class ChatColumn(VerticalScroll):
    """One model's side of the conversation."""

    def __init__(self, *, id: str) -> None:  # noqa: A002 - Textual's name
        super().__init__(id=id, classes="chat-column")
        self.can_focus = False

    @property
    def at_bottom(self) -> bool:
        return self.scroll_y >= self.max_scroll_y - 1

    def follow(self, was_at_bottom: bool) -> None:
        if was_at_bottom:
            self.call_after_refresh(self.scroll_end, animate=False)

    def add_turn(self, user: str, model: str, reply: Reply | None = None) -> ReplyMessage:
        was = self.at_bottom
        box = ReplyMessage(model, reply.text if reply else "", reply_stats(reply) if reply else "")
        self.mount(UserMessage(user))
        self.mount(box)
        self.follow(was or True)
        return box

    def clear(self) -> None:
        self.remove_children()

    def replies(self) -> list[ReplyMessage]:
        return list(self.query(ReplyMessage))
