"""The app's header (the five places to work: click one, or press its number; the workspace and GPUs), its
footer (the keys), and what every screen of the app shares in how it is styled and laid out."""

from __future__ import annotations

from itertools import groupby
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

from rich.cells import cell_len
from rich.style import Style
from rich.text import Text
from textual import events
from textual.content import Content
from textual.geometry import Size
from textual.style import Style as VisualStyle
from textual.widget import Widget

if TYPE_CHECKING:
    from textual.binding import Binding
    from textual.screen import Screen

    from tui_ft.monitor.system import GpuStatus

#: Mode name, its title, the key that opens it.
PLACES: tuple[tuple[str, str, str], ...] = (
    ("datasets", "Datasets", "1"),
    ("configure", "Configure", "2"),
    ("runs", "Runs", "3"),
    ("annotate", "Annotate", "4"),
    ("chat", "Chat", "5"),
)


def gpu_summary(status: GpuStatus | None) -> str:
    """A few words on the GPUs: name, memory in use, utilisation; or why there is none."""
    if status is None:
        return "GPU: checking…"
    if not status.available or not status.gpus:
        return "no GPU" + (f" ({status.reason})" if status.reason else "")
    gpus = status.gpus
    used = sum(g.memory_used_mb or 0 for g in gpus) / 1024
    total = sum(g.memory_total_mb or 0 for g in gpus) / 1024
    name = gpus[0].name if len(gpus) == 1 else f"{len(gpus)}× {gpus[0].name}"
    util = [g.utilization_pct for g in gpus if g.utilization_pct is not None]
    text = f"{name} · {used:.1f}/{total:.0f} GB"
    if util:
        text += f" · {sum(util) / len(util):.0f}%"
    return text


def short_path(path: Path) -> str:
    """`path` with the home directory written as ~ (as shells do), so the header stays short."""
    try:
        inside = path.relative_to(Path.home())
    except ValueError:
        return str(path)
    return "~" if inside == Path(".") else f"~/{inside}"


def fit_left(text: str, width: int) -> str:
    """`text` cut from the left to `width` cells (`…` where it was cut), so a path's end shows."""
    if width <= 0 or len(text) <= width:
        return text
    if width == 1:
        return "…"
    return "…" + text[len(text) - width + 1 :]


class ShellHeader(Widget):
    """Two lines on top of every screen: the modes (click one), then the workspace and the GPU summary.
    One widget drawing both lines: the first frame styles, lays out and draws one, not five."""

    DEFAULT_CSS = """
    ShellHeader { dock: top; height: 2; width: 1fr; background: $panel;
                  & > .shell-header--muted { color: $text-muted; } }
    """
    COMPONENT_CLASSES = {"shell-header--muted"}
    ALLOW_SELECT = False

    def __init__(self) -> None:
        super().__init__()
        self._mode = ""
        self._gpu = ""
        self._modes_line: tuple[tuple[str, VisualStyle], Content] | None = None

    def on_mount(self) -> None:
        self.app.mode_change_signal.subscribe(self, self._draw_modes)
        self.watch(self.app, "gpu_summary", self._draw_gpu)  # (calls it now, which draws)
        self._mode = self.app.current_mode

    def _draw_modes(self, current: str) -> None:
        self._mode = current
        self.refresh()

    def _draw_gpu(self, summary: str) -> None:
        self._gpu = summary
        self.refresh()

    def modes_line(self) -> Content:
        key = (self._mode, self._muted())  # parsed once, not at each GPU sample; again for a new theme
        if self._modes_line is None or self._modes_line[0] != key:
            self._modes_line = (key, self._parse_modes_line())
        return self._modes_line[1]

    def _parse_modes_line(self) -> Content:
        parts = [" [b]tui-ft[/b] "]
        for mode, title, key in PLACES:
            label = f" {key} {title} "
            if mode == self._mode:
                parts.append(f"[@click=app.switch_mode('{mode}')][reverse b]{label}[/][/]")
            else:
                parts.append(f"[@click=app.switch_mode('{mode}')]{label}[/]")
        return Content.from_markup("".join(parts)) + Content.styled("  ^p commands", self._muted())

    def _muted(self) -> VisualStyle:
        return VisualStyle.from_rich_style(self.get_component_rich_style("shell-header--muted"))

    def status_line(self, width: int) -> Content:
        """The workspace on the left, the GPU summary on the right (in at most 60% of the width). Where
        the workspace's path does not fit, its start gives way, so that its own folder stays in view."""
        workspace = getattr(self.app, "workspace", None)
        where = short_path(workspace.root) if workspace is not None else ""
        muted = self._muted()
        gpu = Content.styled(self._gpu, muted).truncate(int(width * 0.6) - 1, ellipsis=True)
        room = max(0, width - gpu.cell_length - 1 - len(" workspace "))
        where = fit_left(where, room) if room > 1 else ""
        left = Content.styled(f" workspace {where}", muted).truncate(
            width - gpu.cell_length - 1, ellipsis=True, pad=True
        )
        return left + gpu + " "

    def render(self) -> Content:
        width = self.size.width
        return Content("\n").join([self.modes_line().truncate(width, ellipsis=True), self.status_line(width)])


class StyledOnMount:
    """For a screen: its first showing does not style every widget a second time, and a resize to the
    size it is laid out at does not lay it all out again.

    Textual styles a screen's whole tree again each time the screen is shown (the CSS may have changed
    while it was away). When it is shown for the first time, each widget was styled as it was mounted,
    a moment before; doing it all again was a tenth of the time to the first frame. And every app gets
    a Resize at its start, with the size its first screen was laid out at a moment before: Textual laid
    the whole screen out again for it (another tenth). A widget that changes asks for its own layout,
    as ever; only a whole layout at an unchanged size is skipped."""

    _shown_before = False
    _laid_out_at: Size | None = None  # the size of the last whole layout

    def _on_screen_resume(self, event: events.ScreenResume) -> None:
        if not self._shown_before:
            self._shown_before = True
            event.refresh_styles = False  # read by Screen's own handler, which runs after this one

    def _screen_resized(self, size: Size) -> None:
        if size != self._laid_out_at:
            super()._screen_resized(size)  # type: ignore[misc]

    def _refresh_layout(self, size: Size | None = None, scroll: bool = False) -> None:
        super()._refresh_layout(size, scroll)  # type: ignore[misc]
        if not scroll:  # (a scroll lays out only what came into view)
            self._laid_out_at = self.outer_size if size is None else size  # type: ignore[attr-defined]


class FooterKey(NamedTuple):
    """A key the footer shows, and the columns it spans once drawn (`start` to `end`, not included)."""

    key: str  # the key a click presses
    display: str  # the key as shown
    description: str  # "" for a key of a group (the group's label follows its keys)
    action: str
    enabled: bool
    tooltip: str
    start: int = 0
    end: int = 0


class KeysFooter(Widget, can_focus=False):
    """The footer of every place: the keys the screen's bindings show, drawn as one line by one widget.

    It looks and acts as Textual's compact footer (a binding group's keys share one label, the command
    palette's key stands on the right, a disabled key is dimmed, a click presses the key, hovering one
    shows its tooltip), but that footer is a container of a widget per key, built again whenever the
    bindings may have changed: every focus change and every mount. Its nine keys were the dearest part
    of the first frame to style, lay out and draw. This one only draws again when a key, its label, its
    state or its tooltip differs. A key that does not fit whole is left out (it is in the palette)."""

    COMPONENT_CLASSES = {
        "footer-key--key",
        "footer-key--description",
        "footer-key--hover",
        "footer-key--divider",
    }
    DEFAULT_CSS = """
    KeysFooter {
        dock: bottom;
        height: 1;
        width: 1fr;
        color: $footer-foreground;
        background: $footer-background;
        & > .footer-key--key { color: $footer-key-foreground; background: $footer-key-background;
                               text-style: bold; }
        & > .footer-key--description { color: $footer-description-foreground;
                                       background: $footer-description-background; }
        & > .footer-key--hover { color: $footer-key-foreground; background: $block-hover-background; }
        & > .footer-key--divider { color: $foreground 20%; }
    }
    """
    ALLOW_SELECT = False

    def __init__(self) -> None:
        super().__init__()
        self._shown_keys: tuple | None = None  # what is drawn (`_shown`)
        self._hover: int | None = None  # the index in `keys` of the key under the mouse
        self.keys: list[FooterKey] = []  # the keys as last drawn, with their columns

    def on_mount(self) -> None:
        self.screen.bindings_updated_signal.subscribe(self, self._bindings_changed)

    def on_unmount(self) -> None:
        self.screen.bindings_updated_signal.unsubscribe(self)

    def _shown(self) -> tuple:
        """What the screen's bindings show: ("key", FooterKey) and ("group", label, keys) in order, then
        the command palette's key (or None). One key per action, as Textual's footer."""
        app, bindings = self.app, self.screen.active_bindings

        def footer_key(binding: Binding, enabled: bool, tooltip: str) -> FooterKey:
            display = app.get_key_display(binding)
            return FooterKey(binding.key, display, binding.description, binding.action, enabled, tooltip)

        by_action: dict[str, FooterKey] = {}
        groups: dict[str, object] = {}
        for _, binding, enabled, tooltip in bindings.values():
            if binding.show and binding.action not in by_action:
                by_action[binding.action] = footer_key(binding, enabled, tooltip)
                groups[binding.action] = binding.group
        items: list[tuple] = []
        for group, actions in groupby(by_action, lambda action: groups[action]):
            keys = [by_action[action] for action in actions]
            if group is not None and len(keys) > 1:
                grouped = tuple(
                    key._replace(description="", tooltip=key.tooltip or key.description) for key in keys
                )
                items.append(("group", group.description, group.compact, grouped))  # type: ignore[attr-defined]
            else:
                items.extend(("key", key) for key in keys)
        palette = None
        entry = bindings.get(app.COMMAND_PALETTE_BINDING)
        if app.ENABLE_COMMAND_PALETTE and entry is not None:
            _, binding, enabled, _ = entry
            palette = footer_key(binding, enabled, binding.tooltip or binding.description)
        return tuple(items), palette

    def _bindings_changed(self, screen: Screen) -> None:
        # compared once the change has settled: what is shown can change between now and then. (Also
        # while the terminal is not focused, unlike Textual's footer: a run that ends meanwhile must not
        # leave its stop key shown until the next change.)
        if self.is_attached and screen is self.screen:
            self.call_after_refresh(self._draw_if_changed)

    def _draw_if_changed(self) -> None:
        if self.is_attached and (shown := self._shown()) != self._shown_keys:
            self._shown_keys = shown
            self.refresh()

    def render(self) -> Text:
        # what the last change of bindings showed, not what they say in this instant (a check of the
        # screen's keys that holds only mid-layout would be drawn, and never drawn away)
        if self._shown_keys is None:
            self._shown_keys = self._shown()
        items, palette = self._shown_keys
        width = self.size.width
        key_style = self.get_component_rich_style("footer-key--key")
        description_style = self.get_component_rich_style("footer-key--description")
        hover_style = self.get_component_rich_style("footer-key--hover")
        line = Text(no_wrap=True, overflow="crop", end="")
        keys: list[FooterKey] = []

        def add_key(key: FooterKey, text: str) -> None:
            start = line.cell_len
            state = (Style() if key.enabled else Style(dim=True)) + (
                hover_style if self._hover == len(keys) else Style()
            )
            line.append(key.display, key_style + state)
            if text:
                line.append(text, description_style + state)
            keys.append(key._replace(start=start, end=line.cell_len))

        def needs(item: tuple) -> int:
            if item[0] == "key":
                return cell_len(f"{item[1].display} {item[1].description} ")
            _, label, compact, grouped = item  # a compact group's keys stand side by side
            gaps = 0 if compact else len(grouped) - 1
            return 1 + sum(cell_len(key.display) for key in grouped) + gaps + 1 + cell_len(label) + 1

        palette_text = ""  # where the keys need the room, the palette's key is shown without its label
        if palette is not None:
            palette_text = f" {palette.description}"
            if sum(needs(item) for item in items) + cell_len(f"▏{palette.display}{palette_text} ") > width:
                palette_text = ""
        room = width - (0 if palette is None else cell_len(f"▏{palette.display}{palette_text} "))
        for item in items:
            if line.cell_len + needs(item) > room:
                break
            if item[0] == "key":
                add_key(item[1], f" {item[1].description}")
                line.append(" ")
            else:
                _, label, compact, grouped = item
                line.append(" ")
                for index, key in enumerate(grouped):
                    add_key(key, "")
                    line.append(" " if not compact or index == len(grouped) - 1 else "")
                line.append(label, description_style)
                line.append(" ")
        if palette is not None:
            line.append(" " * max(0, room - line.cell_len))
            line.append("▏", self.get_component_rich_style("footer-key--divider"))
            add_key(palette, palette_text)
            line.append(" ")
        self.keys = keys
        line.stylize_before(self.rich_style)
        return line

    def _key_at(self, x: int) -> int | None:
        return next((index for index, key in enumerate(self.keys) if key.start <= x < key.end), None)

    def on_mouse_move(self, event: events.MouseMove) -> None:
        hover = self._key_at(event.x)
        if hover != self._hover:
            self._hover = hover
            self.tooltip = self.keys[hover].tooltip or None if hover is not None else None
            self.refresh()

    def on_leave(self, _: events.Leave) -> None:
        if self._hover is not None:
            self._hover = None
            self.refresh()

    def on_mouse_down(self, event: events.MouseDown) -> None:
        index = self._key_at(event.x)
        if index is None:
            return
        key = self.keys[index]
        if key.enabled:
            self.app.simulate_key(key.key)
        else:
            self.app.bell()
