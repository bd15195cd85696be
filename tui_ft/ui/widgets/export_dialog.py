"""The export dialog, shared by the Runs and Chat screens (`x`): where and how to export a run's model.

An export runs as a child process (`tui-ft export ... --json --progress-jsonl`), never in the UI
process: a merge that runs out of memory ends the child, not the UI. `run_export` is the body of the
thread worker the screens start for it; it reports through a callback.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Checkbox, Input, Label, Select, Static

EXPORT_FORMATS = [
    ("adapter (copy; peft loads it on its base)", "adapter"),
    ("merged full model (safetensors)", "safetensors"),
    ("GGUF for llama.cpp / Ollama (merged)", "gguf"),
]
GGUF_QUANTS = [("f16", "f16"), ("q8_0", "q8_0"), ("bf16", "bf16"), ("f32", "f32")]


@dataclass(frozen=True)
class ExportRequest:
    """What the export dialog asks for: the `tui-ft export` options."""

    run_ref: str
    folder: str
    fmt: str = "adapter"  # "adapter" | "safetensors" | "gguf"
    quant: str = "f16"
    force: bool = False
    smoke: bool = True

    @property
    def merge(self) -> bool:
        return self.fmt in ("safetensors", "gguf")

    def command(self) -> list[str]:
        """The `tui-ft export` command line (run with this interpreter, so it is this checkout's code)."""
        args = [sys.executable, "-m", "tui_ft", "export", self.run_ref, "--out", self.folder]
        if self.fmt == "safetensors":
            args.append("--merge")
        elif self.fmt == "gguf":
            args += ["--format", "gguf", "--quant", self.quant]
        if self.force:
            args.append("--force")
        if not self.smoke:
            args.append("--no-smoke")
        return [*args, "--json", "--progress-jsonl"]


class ExportDialog(ModalScreen[ExportRequest | None]):
    """Where and how to export a run's model: the folder, the form (adapter, merged, GGUF and its type),
    replacing a previous export, the smoke prompt. Dismisses with an ExportRequest or None."""

    BINDINGS = [Binding("escape", "cancel", "Cancel", id="runs.export.cancel")]

    def __init__(self, run_ref: str, default_dir: Path, error: str | None = None) -> None:
        super().__init__(classes="runs-dialog")
        self.run_ref = run_ref
        self.default_dir = default_dir
        self.error = error

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label(f"Export [b]{self.run_ref}[/b] to")
            yield Input(str(self.default_dir), id="export-dir")
            yield Select(EXPORT_FORMATS, value="adapter", allow_blank=False, id="export-format")
            yield Select(GGUF_QUANTS, value="f16", allow_blank=False, id="export-quant", disabled=True)
            yield Checkbox("merge the adapter into the base model (a full model)", id="export-merge")
            yield Checkbox("replace a previous export in that folder", id="export-force")
            yield Checkbox("load it back and answer a smoke prompt", value=True, id="export-smoke")
            yield Static(self.error or "", id="export-error")
            with Horizontal(classes="dialog-buttons"):
                yield Button("Cancel", id="export-cancel")
                yield Button("Export", variant="primary", id="export-ok")

    @on(Select.Changed, "#export-format")
    def _format_changed(self, event: Select.Changed) -> None:
        self.query_one("#export-quant", Select).disabled = event.value != "gguf"
        merge = self.query_one("#export-merge", Checkbox)
        if event.value in ("safetensors", "gguf") and not merge.value:
            merge.value = True
        elif event.value == "adapter" and merge.value:
            merge.value = False

    @on(Checkbox.Changed, "#export-merge")
    def _merge_changed(self, event: Checkbox.Changed) -> None:
        fmt = self.query_one("#export-format", Select)
        if event.value and fmt.value == "adapter":
            fmt.value = "safetensors"
        elif not event.value and fmt.value != "adapter":
            fmt.value = "adapter"

    @on(Input.Submitted, "#export-dir")
    @on(Button.Pressed, "#export-ok")
    def _export(self) -> None:
        folder = self.query_one("#export-dir", Input).value.strip()
        if not folder:
            self.query_one("#export-error", Static).update("give a folder")
            return
        self.dismiss(
            ExportRequest(
                run_ref=self.run_ref,
                folder=str(Path(folder).expanduser()),
                fmt=str(self.query_one("#export-format", Select).value),
                quant=str(self.query_one("#export-quant", Select).value),
                force=self.query_one("#export-force", Checkbox).value,
                smoke=self.query_one("#export-smoke", Checkbox).value,
            )
        )

    @on(Button.Pressed, "#export-cancel")
    def action_cancel(self) -> None:
        self.dismiss(None)


def result_sentence(result: dict[str, Any]) -> str:
    """What an export wrote, as the UI says it: where, how big, its dtype, the smoke reply, the notes."""
    from tui_ft.estimate import format_bytes

    what = {"gguf": f"GGUF ({result.get('quant')})", "safetensors": "full model (merged)"}.get(
        str(result.get("format")), "model" if result.get("format") == "model" else "adapter"
    )
    where = result.get("gguf_file") or result.get("out_dir")
    size = format_bytes(int(result.get("bytes") or 0))
    dtype = f", {result['dtype']}" if result.get("dtype") and result.get("format") != "gguf" else ""
    parts = [f"exported the {what} of {result.get('run_id')} to {where} ({size}{dtype})"]
    verify = result.get("verify")
    if verify:
        parts.append(f"GGUF loads back; greedy tokens agree {verify['agreement']:.0%} with the merged model")
    smoke = result.get("smoke")
    if smoke:
        reply = " ".join(str(smoke.get("reply") or "").split())[:160] or "(empty reply)"
        parts.append(f"smoke reply: {reply!r}")
    parts += [f"note: {n}" for n in result.get("notes") or []]
    return "\n".join(parts)


def run_export(
    request: ExportRequest, workspace_root: Path, tell: Callable[[str, str], object]
) -> dict[str, Any] | None:
    """Run `tui-ft export` for `request` as a child process (the body of a thread worker).

    `tell(text, severity)` is called with the stages as they start, the result sentence at the end, or
    the error the command printed (its sentence and hint). Returns the command's JSON result or None."""
    env = dict(os.environ, TUI_FT_HOME=str(workspace_root), PYTHONUNBUFFERED="1")
    try:
        proc = subprocess.Popen(
            request.command(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            text=True,
            env=env,
        )
    except OSError as exc:
        tell(f"cannot start the export: {exc}", "error")
        return None
    errors: list[str] = []
    assert proc.stderr is not None and proc.stdout is not None
    for line in proc.stderr:
        try:
            step = json.loads(line)
        except ValueError:
            if line.strip():
                errors.append(line.rstrip())
            continue
        stage = step.get("stage") if isinstance(step, dict) else None
        if stage == "written":
            tell(f"exported {request.run_ref} to {request.folder}; loading it back…", "information")
        elif stage in ("merging", "gguf tensors", "verifying", "smoke test") and step.get("fraction") == 0:
            tell(f"export of {request.run_ref}: {stage}…", "information")
    out = proc.stdout.read()
    status = proc.wait()
    if status != 0:
        said = [e.removeprefix("tui-ft: ") for e in errors if not e.startswith(("Warning", "  warnings"))]
        tell("cannot export: " + ("\n".join(said[-4:]) or f"the export ended with status {status}"), "error")
        return None
    try:
        result = json.loads(out)
    except ValueError:
        tell("the export finished but its result could not be read", "error")
        return None
    tell(result_sentence(result), "information")
    return result
