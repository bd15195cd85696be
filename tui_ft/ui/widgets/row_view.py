"""One dataset row made readable: chat turns as speech panels, preference pairs side by side.

`render_row` turns a row (already read) into a Rich renderable, using the domain's format detection,
validation and normalisation; `RowView` is the scrolling widget that shows it.
"""

from __future__ import annotations

import json
from typing import Any

from rich.console import Group, RenderableType
from rich.panel import Panel
from rich.pretty import Pretty
from rich.table import Table
from rich.text import Text
from textual.containers import VerticalScroll
from textual.widgets import Static

from tui_ft.data.formats import Format, detect_format, normalise, split_implicit_prompt, validate_record
from tui_ft.data.sources import Row
from tui_ft.errors import DataError

ROLE_STYLES = {
    "system": "magenta",
    "developer": "magenta",
    "user": "cyan",
    "assistant": "green",
    "tool": "yellow",
}


def _turns(value: Any) -> RenderableType:
    """A message list as one panel per turn; text as one panel."""
    if isinstance(value, str):
        return Panel(Text(value), border_style="dim", padding=(0, 1))
    panels = []
    for turn in value:
        role = str(turn.get("role", "?"))
        content = turn.get("content")
        body = content if isinstance(content, str) else json.dumps(content, ensure_ascii=False)
        panels.append(
            Panel(
                Text(body),
                title=role,
                title_align="left",
                border_style=ROLE_STYLES.get(role, "white"),
                padding=(0, 1),
            )
        )
    return Group(*panels)


def _titled(title: str, body: RenderableType, style: str = "bold") -> RenderableType:
    return Group(Text(title, style=style), body)


def _side_by_side(columns: list[tuple[str, str, Any]]) -> Table:
    grid = Table.grid(expand=True, padding=(0, 1))
    for _ in columns:
        grid.add_column(ratio=1)
    grid.add_row(*(_titled(title, _turns(value), style) for title, style, value in columns))
    return grid


def render_record(data: dict[str, Any], fmt: Format | None) -> RenderableType:
    """A row's fields laid out for reading in format `fmt` (raw JSON when it does not fit it)."""
    fmt = fmt or detect_format(data)
    problems = validate_record(data, fmt) if fmt is not None else [("", "the format is not known")]
    if fmt is None or problems:
        lines = [Text(f"⚠ {field + ': ' if field else ''}{msg}", style="red") for field, msg in problems]
        return Group(*lines, Text(""), Pretty(data, expand_all=True))
    record = normalise(data, fmt)
    parts: list[RenderableType] = [Text(f"format {fmt.value}", style="dim")]
    if fmt in (Format.preference, Format.preference_implicit):
        prompt = record.get("prompt")
        chosen, rejected = record["chosen"], record["rejected"]
        if prompt is None:
            prompt, chosen, rejected = split_implicit_prompt(chosen, rejected)
        if prompt:
            parts.append(_titled("prompt", _turns(prompt)))
        parts.append(
            _side_by_side([("chosen ✓", "bold green", chosen), ("rejected ✗", "bold red", rejected)])
        )
    elif fmt is Format.ranking:
        parts.append(_titled("prompt", _turns(record["prompt"])))
        responses = record["responses"]
        parts.append(
            _side_by_side(
                [(f"#{k + 1}" + (" best" if k == 0 else ""), "bold", r) for k, r in enumerate(responses)]
            )
        )
    elif "messages" in record:
        parts.append(_turns(record["messages"]))
    elif "completion" in record:
        parts.append(_titled("prompt", _turns(record["prompt"])))
        label = record.get("label")
        title = "completion" if label is None else f"completion  ({'desirable' if label else 'undesirable'})"
        parts.append(_titled(title, _turns(record["completion"]), "bold green"))
    elif "prompt" in record:
        parts.append(_titled("prompt", _turns(record["prompt"])))
    else:
        parts.append(_turns(record["text"]))
        if "label" in record:
            parts.append(Text(f"label: {record['label']}", style="bold"))
    return Group(*parts)


class RowView(VerticalScroll):
    """The row under the table's cursor, rendered by `render_record`."""

    DEFAULT_CSS = """
    RowView { height: 1fr; }
    RowView > #row-body { width: 100%; height: auto; }
    """

    def compose(self):
        yield Static("Choose a row in the table (Enter).", id="row-body")

    def show(self, item: Row | DataError, fmt: Format | None) -> None:
        body = self.query_one("#row-body", Static)
        if isinstance(item, DataError):
            body.update(
                Group(
                    Text(f"line {item.line}: this row cannot be read", style="bold red"), Text(item.message)
                )
            )
        else:
            header = Text(f"row {item.index:,} · line {item.line}", style="bold")
            body.update(Group(header, render_record(item.data, fmt)))
        self.scroll_home(animate=False)
