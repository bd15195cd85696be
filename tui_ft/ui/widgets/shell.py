"""The app's header: the five places to work (click one, or press its number), the workspace and GPUs."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from textual import events
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.geometry import Size
from textual.widgets import Footer, Static
from textual.widgets._footer import FooterKey  # (Textual is pinned)

if TYPE_CHECKING:
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


class ShellHeader(Vertical):
    """Two lines on top of every screen: the modes, then the workspace and the GPU summary."""

    DEFAULT_CSS = """
    ShellHeader { dock: top; height: 2; background: $panel; }
    ShellHeader > #shell-modes { height: 1; text-wrap: nowrap; text-overflow: ellipsis; }
    ShellHeader > Horizontal { height: 1; }
    ShellHeader #shell-workspace { width: 1fr; color: $text-muted; text-wrap: nowrap; text-overflow: ellipsis; }
    ShellHeader #shell-gpu { width: auto; max-width: 60%; color: $text-muted; text-wrap: nowrap;
                             text-overflow: ellipsis; padding-right: 1; }
    """

    def compose(self) -> ComposeResult:
        yield Static(id="shell-modes")
        with Horizontal():
            yield Static(id="shell-workspace")
            yield Static(id="shell-gpu")

    def on_mount(self) -> None:
        self._draw_modes(self.app.current_mode)
        self.app.mode_change_signal.subscribe(self, self._draw_modes)
        workspace = getattr(self.app, "workspace", None)
        if workspace is not None:
            self.query_one("#shell-workspace", Static).update(f" workspace {short_path(workspace.root)}")
        self.watch(self.app, "gpu_summary", self._draw_gpu)

    def _draw_modes(self, current: str) -> None:
        parts = [" [b]tui-ft[/b] "]
        for mode, title, key in PLACES:
            label = f" {key} {title} "
            if mode == current:
                parts.append(f"[@click=app.switch_mode('{mode}')][reverse b]{label}[/][/]")
            else:
                parts.append(f"[@click=app.switch_mode('{mode}')]{label}[/]")
        parts.append("  [$text-muted]^p commands[/]")
        self.query_one("#shell-modes", Static).update("".join(parts))

    def _draw_gpu(self, summary: str) -> None:
        self.query_one("#shell-gpu", Static).update(summary)


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


class KeysFooter(Footer):
    """The footer of every place: Textual's compact footer, rebuilt only when the keys it shows change.

    Textual's footer builds all its keys again whenever the screen's bindings may have changed: on
    every change of focus and every mount, five times in the Datasets screen's first half second, each
    time a few milliseconds per key, most of them restyling. This one keeps what it drew and builds
    again only when a key, its label, its state or its tooltip differs. It draws its keys from its
    first compose (Textual's waits for the first change of bindings, so the first frame had none), and
    builds them compact (each key otherwise adds its `-compact` class once mounted and styles itself
    and its parts a second time). The keys end the same either way (tests/test_ui_footer.py)."""

    def __init__(self) -> None:
        super().__init__(compact=True)
        self._bindings_ready = True
        self._drawn: tuple | None = None  # what the keys drawn show (`_shown`)

    def _shown(self, screen: Screen) -> tuple:
        bindings = screen.active_bindings
        shown: list[tuple[object, ...]] = [
            (binding.key, binding.action, binding.description, binding.group, enabled, tooltip)
            for (_, binding, enabled, tooltip) in bindings.values()
            if binding.show
        ]
        palette = bindings.get(self.app.COMMAND_PALETTE_BINDING)
        if self.show_command_palette and self.app.ENABLE_COMMAND_PALETTE and palette is not None:
            shown.append(("palette", palette[1].key, palette[2], palette[3]))
        return tuple(shown)

    def compose(self) -> ComposeResult:
        self._drawn = self._shown(self.screen)
        for widget in super().compose():
            if isinstance(widget, FooterKey):
                widget.set_class(True, "-compact", update=False)
            yield widget

    def bindings_changed(self, screen: Screen) -> None:
        # as Textual's footer, but compared when the rebuild would run: what is shown can change between
        self._bindings_ready = True
        if screen.app.app_focus and self.is_attached and screen is self.screen:
            self.call_after_refresh(self._rebuild_if_changed)

    async def _rebuild_if_changed(self) -> None:
        if self.is_attached and self._shown(self.screen) != self._drawn:
            await self.recompose()
