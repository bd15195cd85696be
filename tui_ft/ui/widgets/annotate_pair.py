"""What the Annotate screen draws for one pair: the prompt's turns, and two candidate columns (A, B),
each scrollable on its own. Updating a pair replaces text in place (no widgets mounted per key), so the
next pair shows within a frame."""

from __future__ import annotations

from rich.console import Group
from rich.text import Text
from textual.containers import VerticalScroll
from textual.widgets import Static


def prompt_text(turns: list[dict[str, str]]) -> Group:
    """The prompt's turns, the role before each (a single user turn is shown without one)."""
    if len(turns) == 1 and turns[0].get("role") == "user":
        return Group(Text(turns[0].get("content", "")))
    parts = []
    for turn in turns:
        role = turn.get("role", "")
        parts.append(
            Text.assemble((f"{role}: ", "bold" if role == "user" else "dim bold"), turn.get("content", ""))
        )
    return Group(*parts)


class PromptView(VerticalScroll, can_focus=False):
    """The prompt (all its turns when it is a conversation)."""

    def __init__(self, id: str | None = None) -> None:
        super().__init__(Static(id="annotate-prompt-text"), id=id)
        self.border_title = "prompt"

    def show(self, turns: list[dict[str, str]], title: str = "prompt") -> None:
        self.border_title = title
        self.query_one("#annotate-prompt-text", Static).update(prompt_text(turns))
        self.scroll_home(animate=False)


class CandidateColumn(VerticalScroll, can_focus=False):
    """One candidate: its text, its side in the border title; marked when it was chosen."""

    def __init__(self, side: str, id: str | None = None) -> None:
        super().__init__(Static(classes="annotate-text"), id=id, classes="annotate-candidate")
        self.side = side
        self.border_title = side
        self.text = ""

    def show(self, text: str, *, note: str = "", state: str = "") -> None:
        """Show `text`; `state` is one of "", "better", "worse", "tie", "bad", "waiting", "failed"."""
        self.text = text
        self.query_one(".annotate-text", Static).update(Text(text))
        self.border_subtitle = note
        for name in ("better", "worse", "tie", "bad", "waiting", "failed"):
            self.set_class(state == name, f"-{name}")
        self.scroll_home(animate=False)
