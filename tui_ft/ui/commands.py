"""The command palette's tui-ft commands: go to a place, open a dataset, open a run, find rows, and
every key of every place (the bindings of each place's screen, once it has been opened)."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING

from textual.binding import Binding
from textual.command import DiscoveryHit, Hit, Hits, Provider
from textual.screen import Screen

from tui_ft.data import DATA_SUFFIXES
from tui_ft.ui.widgets.shell import PLACES

if TYPE_CHECKING:
    from tui_ft.ui.app import TuiFtApp


# Keys that are not commands: leaving a field, moving the divider (the footer shows them where they apply)
NOT_COMMANDS = {"leave_field", "back"}
# Textual's own screen keys (focus next/previous...): not tui-ft's
SCREEN_BASE = {b.action if isinstance(b, Binding) else b[1] for b in Screen.BINDINGS}


def place_keys(app: TuiFtApp) -> list[tuple[str, str, Callable[[], object]]]:
    """(name, help, callback) for each key of each place whose screen exists: the current place's
    first. A key of another place switches there, then acts."""
    found: list[tuple[str, str, Callable[[], object]]] = []
    modes = [mode for mode, _, _ in PLACES]
    current = app.current_mode
    for mode in sorted(modes, key=lambda m: m != current):
        try:
            stack = app.get_screen_stack(mode)
        except KeyError:
            continue
        if not stack:
            continue
        screen = stack[0]
        title = next(t for m, t, _ in PLACES if m == mode)
        seen: set[str] = set()
        for _, binding in screen._bindings:  # (the screen's merged bindings: Textual pinned)
            if not binding.description or binding.system or binding.action in seen | SCREEN_BASE:
                continue
            if binding.action.split("(")[0] in NOT_COMMANDS or binding.action.startswith("split("):
                continue
            seen.add(binding.action)
            found.append(
                (
                    f"{title}: {binding.description}",
                    f"key {app.get_key_display(binding)} on the {title} screen",
                    partial(_act, app, mode, screen, binding),
                )
            )
    return found


async def _act(app: TuiFtApp, mode: str, screen: Screen, binding: Binding) -> None:
    if app.current_mode != mode:
        await app.switch_mode(mode)
    await app.run_action(binding.action, screen)


class TuiFtCommands(Provider):
    """Places, the workspace's datasets and runs, and the Datasets screen's actions."""

    def _commands(self) -> list[tuple[str, str, Callable[[], object]]]:
        app: TuiFtApp = self.app  # type: ignore[assignment]
        commands: list[tuple[str, str, Callable[[], object]]] = [
            (f"Go to {title}", f"switch to the {title} screen (key {key})", partial(app.switch_mode, mode))
            for mode, title, key in PLACES
        ]
        commands += [
            ("Open dataset…", "type a path or a hub id on the Datasets screen", app.action_open_dataset),
            ("Find rows…", "find rows containing text on the Datasets screen", app.action_find_rows),
            (
                "Token view",
                "the current row through the model's chat template",
                partial(app.show_tab, "tab-tokens"),
            ),
            (
                "Validation errors",
                "the dataset's errors; Enter jumps to the row",
                partial(app.show_tab, "tab-errors"),
            ),
        ]
        commands += [
            (title, f"{help_text} (Runs screen, key {key})", partial(app.runs_action, action))
            for title, help_text, key, action in (
                (
                    "Filter runs…",
                    "show the runs whose id, method, model or state has these words",
                    "f",
                    "filter",
                ),
                ("Stop run", "stop the run shown (a checkpoint first)", "s", "stop"),
                ("Resume run", "resume the stopped, failed or crashed run shown", "r", "resume"),
                ("Open run in Chat", "chat with the run's model (or its newest checkpoint)", "c", "chat"),
                ("Export run…", "copy the run's adapter, or merge it into a full model", "x", "export"),
                ("Overlay runs…", "draw the loss curves of several runs in one chart", "o", "overlay"),
            )
        ]
        commands += place_keys(app)
        data = app.workspace.data
        if data.is_dir():
            for path in sorted(data.iterdir()):
                if path.suffix.lower() in DATA_SUFFIXES:
                    commands.append(
                        (f"Open dataset {path.name}", str(path), partial(app.open_dataset, str(path)))
                    )
        runs = app.workspace.runs
        if runs.is_dir():
            for run in sorted((p for p in runs.iterdir() if p.is_dir()), reverse=True)[:50]:
                commands.append((f"Open run {run.name}", "show the run", partial(app.open_run, run.name)))
        return commands

    async def discover(self) -> Hits:
        for name, help_text, callback in self._commands():
            if not name.startswith(("Open dataset ", "Open run ")):
                yield DiscoveryHit(name, callback, help=help_text)

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for name, help_text, callback in self._commands():
            score = matcher.match(name)
            if score > 0:
                yield Hit(score, matcher.highlight(name), callback, help=help_text)
