"""The app's header: the five places to work (click one, or press its number), the workspace and GPUs."""

from __future__ import annotations

from pathlib import Path

from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.widgets import Static

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
