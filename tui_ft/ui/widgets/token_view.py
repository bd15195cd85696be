"""The token view: one row as the trainer sees it, and the dataset's length histogram.

The tokenizer is loaded on a worker thread (that imports transformers: never on the start-up path).
Rendering and measuring use the domain's `render_tokens` and `token_length`; this module only draws:
tokens that train on a green background, the others dimmed, the end-of-sequence token in red, and
a marker where `max_length` cuts the example.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.message import Message
from textual.reactive import reactive
from textual.suggester import SuggestFromList
from textual.widgets import Input, Label, Static
from textual.worker import get_current_worker

from tui_ft.data.checks import TokenView, render_tokens, sequence_parts
from tui_ft.data.formats import Format, normalise
from tui_ft.data.lengths import SAMPLE_ROWS, token_lengths
from tui_ft.data.packing import padding_share
from tui_ft.data.sources import DatasetSource, Row
from tui_ft.errors import DataError, UserError, WorkFailed

DEFAULT_MAX_LENGTH = 256  # the shipped SFT recipes' data.max_length
HISTOGRAM_ROWS = SAMPLE_ROWS  # rows measured for the histogram (the first ones of the file)

TRAIN_STYLES = ("black on #87d787", "black on #5faf5f")
PROMPT_STYLES = ("#a8a8a8 on #303030", "#a8a8a8 on #262626")
EOS_STYLE = "bold white on #d70000"
CUT_STYLE = "bold black on #ffaf00"


SPACE_MARK = "·"  # a token's leading space, shown (a blank cell between two shades reads as no space)
_SPACE_PREFIXES = ("Ġ", "▁")  # how byte-level BPE and SentencePiece vocabularies write a leading space


def with_leading_spaces(tokens: list[str], vocabulary_pieces: list[str]) -> list[str]:
    """`tokens` (each id decoded alone) with the leading space put back where the vocabulary's own
    piece has one (`Ġis`, `▁is`) and decoding one id alone dropped it (SentencePiece tokenizers do)."""
    out = []
    for token, piece in zip(tokens, vocabulary_pieces, strict=False):
        if piece.startswith(_SPACE_PREFIXES) and not token.startswith(" "):
            token = " " + token
        out.append(token)
    return out + tokens[len(out) :]


def shown_piece(piece: str) -> str:
    """A token as the view writes it: its leading spaces as `·`, a newline as `↵`, nothing as `∅`."""
    if not piece:
        return "∅"
    body = piece.lstrip(" ")
    return SPACE_MARK * (len(piece) - len(body)) + body.replace("\n", "↵\n")


def token_text(view: TokenView, max_chars: int = 20_000) -> Text:
    """The tokens of `view` one after the other, each shaded by whether it trains, leading spaces shown."""
    out = Text(no_wrap=False, end="")
    used = 0
    for k, (piece, trains, token_id) in enumerate(zip(view.tokens, view.train_mask, view.ids, strict=False)):
        if view.truncated_at is not None and k == view.truncated_at:
            out.append(f" ✂ max_length {view.truncated_at} ", style=CUT_STYLE)
        shown = shown_piece(piece)
        shades = TRAIN_STYLES if trains else PROMPT_STYLES
        style = EOS_STYLE if token_id == view.eos_id else shades[k % 2]
        if view.truncated_at is not None and k >= view.truncated_at:
            style += " strike"
        out.append(shown, style=style)
        used += len(shown)
        if used > max_chars:
            out.append(f" … {len(view.ids) - k - 1} more tokens", style="italic")
            break
    return out


def token_summary(view: TokenView, eos_token: str | None, max_length: int | None) -> Text:
    trains = sum(view.train_mask)
    kinds = {
        "assistant": "assistant turns",
        "completion": "the completion",
        "text": "every token",
        "all": "every token (no generation blocks in the template)",
        "none": "nothing: a prompt for generation",
    }
    out = Text()
    out.append(f"{len(view.ids)} tokens", style="bold")
    out.append(" · ")
    out.append(f"{trains} train", style=TRAIN_STYLES[0])
    out.append(f" ({kinds.get(view.mask_kind, view.mask_kind)}) · ")
    has_eos = view.eos_id is not None and view.eos_id in view.ids
    out.append(f"EOS {eos_token or '?'}", style=EOS_STYLE if has_eos else "bold red")
    out.append(" present" if has_eos else " missing!")
    if max_length:
        if view.truncated_at is not None:
            out.append(f" · cut at max_length {max_length}", style="bold yellow")
        else:
            out.append(f" · fits max_length {max_length}")
    return out


def histogram_text(lengths: list[int], max_length: int | None, rows: int, width: int) -> Text:
    """Horizontal bars of the length distribution, with a line where `max_length` cuts."""
    out = Text(end="")
    if not lengths:
        return out.append("no lengths measured", style="dim")
    longest = max(lengths)
    bins = max(min(rows, 12), 2)
    step = max(-(-(longest + 1) // bins), 1)
    counts = [0] * bins
    for n in lengths:
        counts[min(n // step, bins - 1)] += 1
    label_width = len(f"{step * bins - 1}") * 2 + 1
    bar_width = max(width - label_width - 10, 5)
    peak = max(counts) or 1
    over = sum(1 for n in lengths if max_length is not None and n > max_length)
    cut_drawn = False
    for b, count in enumerate(counts):
        lo, hi = b * step, (b + 1) * step - 1
        if max_length is not None and not cut_drawn and lo > max_length:
            out.append(f"{'':>{label_width}} ├─ max_length {max_length} ─ {over} longer\n", style=CUT_STYLE)
            cut_drawn = True
        bar = "█" * round(count / peak * bar_width) or ("▏" if count else "")
        style = "#ffaf00" if max_length is not None and hi > max_length else "#5fafd7"
        out.append(f"{f'{lo}-{hi}':>{label_width}} │", style="dim")
        out.append(bar, style=style)
        out.append(f" {count}\n")
    mean = sum(lengths) / len(lengths)
    tail = f"{len(lengths):,} rows · min {min(lengths)} · mean {mean:.0f} · max {longest}"
    if max_length is not None and not cut_drawn:
        tail += f" · all fit max_length {max_length}" if not over else ""
    tail += f" · padded batches of 8: {padding_share(lengths, 8, max_length):.0%} padding"  # packing: none
    out.append(tail, style="dim")
    return out


class TokenPanel(Vertical):
    """Tokens of the chosen row through the chosen model's chat template, and the length histogram."""

    DEFAULT_CSS = """
    TokenPanel { height: 1fr; }
    TokenPanel > #tok-controls { height: 1; }
    TokenPanel > #tok-controls > Label { padding: 0 1; }
    TokenPanel > #tok-controls > #tok-model { width: 1fr; }
    TokenPanel > #tok-controls > #tok-max-length { width: 8; }
    TokenPanel > #tok-controls > #tok-part { width: auto; padding: 0 1; }
    TokenPanel > #tok-summary { height: auto; max-height: 2; }
    TokenPanel > #tok-scroll { height: 1fr; min-height: 3; }
    TokenPanel > #tok-hist { height: auto; max-height: 9; }
    """

    part: reactive[str] = reactive("chosen")

    @dataclass
    class Rendered(Message):
        """A row's tokens are on screen."""

        panel: TokenPanel
        view: TokenView

    class _Ready(Message):
        def __init__(self, tokenizer: Any, model: str) -> None:
            super().__init__()
            self.tokenizer = tokenizer
            self.model = model

    class _Failed(Message):
        def __init__(self, text: str) -> None:
            super().__init__()
            self.text = text

    class _Show(Message):
        def __init__(self, view: TokenView, text: Text, summary: Text) -> None:
            super().__init__()
            self.view, self.text, self.summary = view, text, summary

    class _Lengths(Message):
        def __init__(self, key: tuple, lengths: list[int]) -> None:
            super().__init__()
            self.key, self.lengths = key, lengths

    def __init__(self, workspace: Any, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.workspace = workspace
        self.tokenizer: Any = None
        self.tokenizer_model: str | None = None
        self.view: TokenView | None = None  # what is on screen
        self._row: Row | None = None
        self._fmt: Format | None = None
        self._source: DatasetSource | None = None
        self._lengths_key: tuple | None = None
        self._lengths: list[int] = []

    def compose(self) -> ComposeResult:
        models = (
            sorted(p.name for p in self.workspace.models.iterdir()) if self.workspace.models.is_dir() else []
        )
        default = "demo-tiny" if "demo-tiny" in models else (models[0] if models else "")
        with Horizontal(id="tok-controls"):
            yield Label("model")
            yield Input(
                default,
                placeholder="model: workspace name, directory, run id, hub id",
                suggester=SuggestFromList(models),
                compact=True,
                id="tok-model",
            )
            yield Label("max_length")
            yield Input(str(DEFAULT_MAX_LENGTH), type="integer", compact=True, id="tok-max-length")
            yield Static("", id="tok-part")
        yield Static("Choose a row; its tokens appear here.", id="tok-summary")
        with VerticalScroll(id="tok-scroll"):
            yield Static("", id="tok-text")
        yield Static("", id="tok-hist")

    # --- inputs -------------------------------------------------------------------------------------

    @property
    def max_length(self) -> int | None:
        value = self.query_one("#tok-max-length", Input).value.strip()
        return int(value) if value.isdigit() and int(value) > 0 else None

    @property
    def model(self) -> str:
        return self.query_one("#tok-model", Input).value.strip()

    @on(Input.Submitted, "#tok-model")
    def _model_changed(self) -> None:
        self.tokenizer = None
        self._lengths_key = None
        self.refresh_view()

    @on(Input.Submitted, "#tok-max-length")
    def _max_length_changed(self) -> None:
        self.refresh_view()
        self._draw_histogram()

    def toggle_part(self) -> None:
        """Switch between the chosen and rejected side of a preference row."""
        self.part = "rejected" if self.part == "chosen" else "chosen"

    def watch_part(self) -> None:
        self.refresh_view()

    # --- what to show -------------------------------------------------------------------------------

    def show_row(self, source: DatasetSource, row: Row | None, fmt: Format | None) -> None:
        """Render `row` (of `source`, in format `fmt`) once the tokenizer is there."""
        self._source, self._row, self._fmt = source, row, fmt
        self.refresh_view()

    def refresh_view(self) -> None:
        if not self.is_mounted:
            return
        parts = (
            sequence_parts({}, self._fmt)
            if self._fmt in (Format.preference, Format.preference_implicit)
            else []
        )
        part_label = self.query_one("#tok-part", Static)
        part_label.update(f"[@click=screen.toggle_part]part: {self.part}[/]" if parts else "")
        if self._row is None or self._fmt is None:
            return
        if not self.model:
            self.query_one("#tok-summary", Static).update("Name a model to tokenize with.")
            return
        if self.tokenizer is None or self.tokenizer_model != self.model:
            self.query_one("#tok-summary", Static).update(f"loading the tokenizer of {self.model}…")
            self._load_tokenizer(self.model)
            return
        self._render_tokens(
            self.tokenizer, self._row, self._fmt, self.max_length, self.part if parts else "main"
        )
        if self._source is not None:
            self._measure_lengths(self.tokenizer, self._source, self._fmt)

    # --- workers ------------------------------------------------------------------------------------

    @work(thread=True, exclusive=True, group="tokenizer", exit_on_error=False)
    def _load_tokenizer(self, model: str) -> None:
        from tui_ft.library_noise import quiet_library_noise

        quiet_library_noise()
        from tui_ft.engine.models import load_tokenizer
        from tui_ft.modelref import resolve_model

        try:
            tokenizer = load_tokenizer(resolve_model(model, self.workspace, field="model"))
        except (UserError, WorkFailed) as err:
            self.post_message(self._Failed(str(err)))
            return
        except Exception as err:  # noqa: BLE001 - transformers raises OSError, ValueError, hub errors...
            self.post_message(self._Failed(f"cannot load a tokenizer from {model}: {err}"))
            return
        self.post_message(self._Ready(tokenizer, model))

    @work(thread=True, exclusive=True, group="tokens", exit_on_error=False)
    def _render_tokens(
        self, tokenizer: Any, row: Row, fmt: Format, max_length: int | None, part: str
    ) -> None:
        try:
            view = render_tokens(normalise(row.data, fmt), fmt, tokenizer, max_length, part=part)
        except (DataError, KeyError, TypeError, ValueError) as err:
            self.post_message(self._Failed(f"line {row.line}: cannot render this row: {err}"))
            return
        convert = getattr(tokenizer, "convert_ids_to_tokens", None)
        if convert is not None:
            pieces = [p if isinstance(p, str) else "" for p in convert(view.ids)]
            view = replace(view, tokens=with_leading_spaces(view.tokens, pieces))
        summary = token_summary(view, getattr(tokenizer, "eos_token", None), max_length)
        self.post_message(self._Show(view, token_text(view), summary))

    @work(thread=True, exclusive=True, group="lengths", exit_on_error=False)
    def _measure_lengths(self, tokenizer: Any, source: DatasetSource, fmt: Format) -> None:
        key = (id(source), id(tokenizer))
        if key == self._lengths_key:
            return
        worker = get_current_worker()
        total = min(source.rows_indexed, HISTOGRAM_ROWS) if source.indexed else 0
        rows = (source.row(index) for index in range(total))
        measured = token_lengths(
            rows, tokenizer, fmt, limit=HISTOGRAM_ROWS, cancelled=lambda: worker.is_cancelled
        )
        if measured is not None:
            self.post_message(self._Lengths(key, measured.lengths))

    # --- results ------------------------------------------------------------------------------------

    @on(_Ready)
    def _on_ready(self, message: _Ready) -> None:
        self.tokenizer, self.tokenizer_model = message.tokenizer, message.model
        self.refresh_view()

    @on(_Failed)
    def _on_failed(self, message: _Failed) -> None:
        self.query_one("#tok-summary", Static).update(Text(message.text, style="red"))

    @on(_Show)
    def _on_view_ready(self, message: _Show) -> None:
        self.query_one("#tok-summary", Static).update(message.summary)
        self.query_one("#tok-text", Static).update(message.text)
        self.view = message.view
        self.post_message(self.Rendered(self, message.view))

    @on(_Lengths)
    def _on_lengths(self, message: _Lengths) -> None:
        self._lengths_key, self._lengths = message.key, message.lengths
        self._draw_histogram()

    def _draw_histogram(self) -> None:
        if not self._lengths:
            return
        hist = self.query_one("#tok-hist", Static)
        title = Text("token lengths", style="bold")
        if len(self._lengths) >= HISTOGRAM_ROWS:
            title.append(f" (first {HISTOGRAM_ROWS:,} rows)", style="dim")
        title.append("\n")
        width = self.size.width or 60
        hist.update(title + histogram_text(self._lengths, self.max_length, 7, width))
