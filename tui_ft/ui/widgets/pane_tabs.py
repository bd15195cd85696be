"""A row of tabs that picks which of a ContentSwitcher's panes shows, drawn by one widget."""

from __future__ import annotations

from collections.abc import Sequence

from rich.cells import cell_len
from rich.console import Group
from rich.style import Style
from rich.text import Text
from textual import events
from textual.message import Message
from textual.reactive import reactive
from textual.renderables.bar import Bar
from textual.widget import Widget
from textual.widgets import ContentSwitcher


class PaneTabs(Widget, can_focus=False):
    """The tabs over a ContentSwitcher (`switcher`, its id), whose panes have the tabs' ids.

    It looks and acts as the tabs of Textual's TabbedContent: each label, the active one bright over a
    highlighted stretch of the bar under them; a click picks a tab; `active` says or sets the shown
    pane, and `Activated` tells a change. It has no keys of its own (its screen binds one per tab).
    TabbedContent builds this row from nine widgets (a scrolling container, two more around the tabs,
    a widget per tab, the underline), and each of them was styled, laid out and drawn for the Datasets
    screen's first frame; this is one."""

    DEFAULT_CSS = """
    PaneTabs {
        height: 2;
        width: 1fr;
        & > .pane-tabs--tab { color: $foreground 50%; }
        & > .pane-tabs--active { color: $foreground; }
        & > .pane-tabs--bar { color: $block-cursor-background; background: $foreground 10%; }
        &:ansi {
            & > .pane-tabs--tab { text-style: dim; }
            & > .pane-tabs--active { text-style: not dim bold; }
            & > .pane-tabs--bar { color: $block-cursor-background; background: $border-blurred; }
        }
    }
    """
    COMPONENT_CLASSES = {"pane-tabs--tab", "pane-tabs--active", "pane-tabs--bar"}
    ALLOW_SELECT = False

    active: reactive[str] = reactive("", init=False)
    _hover: reactive[str | None] = reactive(None)

    class Activated(Message):
        """A tab was picked (by a click or by setting `active`)."""

        def __init__(self, tabs: PaneTabs, tab: str) -> None:
            super().__init__()
            self.tabs = tabs
            self.tab = tab

        @property
        def control(self) -> PaneTabs:
            return self.tabs

    def __init__(self, tabs: Sequence[tuple[str, str]], *, switcher: str, id: str | None = None) -> None:
        super().__init__(id=id)
        self.labels = dict(tabs)  # tab (its pane's id) -> label
        self.switcher = switcher
        self.set_reactive(PaneTabs.active, tabs[0][0])

    def relabel(self, tab: str, label: str) -> None:
        if self.labels.get(tab) != label:
            self.labels[tab] = label
            self.refresh()

    def validate_active(self, tab: str) -> str:
        if tab not in self.labels:
            raise ValueError(f"no tab {tab!r} (there are {', '.join(self.labels)})")
        return tab

    def watch_active(self, tab: str) -> None:
        self.screen.query_one(f"#{self.switcher}", ContentSwitcher).current = tab
        self.post_message(self.Activated(self, tab))

    def spans(self) -> dict[str, tuple[int, int]]:
        """Each tab's columns, its padding included (start, end not included)."""
        spans, x = {}, 0
        for tab, label in self.labels.items():
            width = cell_len(label) + 2
            spans[tab] = (x, x + width)
            x += width
        return spans

    def render(self) -> Group:
        normal = self.get_component_rich_style("pane-tabs--tab")
        bright = self.get_component_rich_style("pane-tabs--active")
        line = Text(no_wrap=True, overflow="crop")
        for tab, label in self.labels.items():
            line.append(f" {label} ", bright if tab in (self.active, self._hover) else normal)
        start, end = self.spans()[self.active]
        bar = self.get_component_rich_style("pane-tabs--bar")
        underline = Bar(
            highlight_range=(start + 1, end - 1),  # under the label, not its padding
            highlight_style=Style.from_color(bar.color),
            background_style=Style.from_color(bar.bgcolor),
        )
        return Group(line, underline)

    def _tab_at(self, x: int) -> str | None:
        return next((tab for tab, (start, end) in self.spans().items() if start <= x < end), None)

    def on_mouse_move(self, event: events.MouseMove) -> None:
        self._hover = self._tab_at(event.x)

    def on_leave(self, _: events.Leave) -> None:
        self._hover = None

    def on_click(self, event: events.Click) -> None:
        tab = self._tab_at(event.x)
        if tab is not None:
            self.active = tab
