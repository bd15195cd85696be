"""Screens for the places that are still being built: they say so, and what to use meanwhile."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import Center, Vertical
from textual.reactive import reactive
from textual.screen import Screen
from textual.widgets import Footer, Static

from tui_ft.ui.widgets.shell import ShellHeader

COMING: dict[str, tuple[str, str, str]] = {
    "annotate": (
        "Annotate",
        "Keyboard-driven preference pairs are coming.",
        'write pairs as {"prompt", "chosen", "rejected"} rows and open them in Datasets',
    ),
}


class ComingScreen(Screen):
    """A mode whose screen is not built yet: what it will do, and the command line to use meanwhile."""

    run_id: reactive[str | None] = reactive(None)

    def __init__(self, mode: str) -> None:
        super().__init__(id=f"{mode}-screen", classes="coming")
        self.mode = mode

    def compose(self) -> ComposeResult:
        title, what, meanwhile = COMING[self.mode]
        yield ShellHeader()
        with Center(), Vertical(classes="coming-box"):
            yield Static(f"[b]{title}[/b] — coming", classes="coming-title")
            yield Static(what)
            yield Static(f"Meanwhile: [b]{meanwhile}[/b]", classes="coming-meanwhile")
            yield Static(self._run_text(), id="coming-run")
        yield Footer(compact=True)

    def show_run(self, run_id: str) -> None:
        """The run someone asked to open (shown until the screen for it exists)."""
        self.run_id = run_id

    def _run_text(self) -> str:
        if not self.run_id:
            return ""
        return f"Run [b]{self.run_id}[/b] — follow it with: tui-ft logs {self.run_id} --follow"

    def watch_run_id(self) -> None:
        if self.is_mounted:
            self.query_one("#coming-run", Static).update(self._run_text())
