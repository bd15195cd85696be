"""Check a dataset (every row, token lengths) and render one row as the tokens a trainer sees.

`check_dataset` is the domain side of `tui-ft data check` and of the Datasets screen. It never raises
for what is wrong with the data: every problem, also a file that cannot be read at all, becomes an
entry in `CheckReport.errors` (a file-level one with `CheckReport.fatal` set). It raises DataError only
for a bad tokenizer argument (one that cannot be loaded, or lacks the chat template the data needs).

`render_tokens` tokenizes a normalised row the way TRL does (EOS appended to text and text completions;
chat template for conversations) and marks the tokens the loss is computed on. Token lengths in the
report come from the same rendering.
"""

from __future__ import annotations

import re
from array import array
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tui_ft.data.formats import Format, normalise, split_implicit_prompt
from tui_ft.data.sources import Cancelled, DatasetSource, Progress, Row, open_dataset
from tui_ft.data.validation import CheckCancelled, RowProblem, check_rows
from tui_ft.errors import DataError

_GENERATION_BLOCK = re.compile(r"\{%-?\s*generation\s*-?%\}")


class ChatTemplateMissing(DataError):
    """The tokenizer cannot render conversations: a problem with the tokenizer, not with a row."""


@dataclass
class TokenView:
    """One row as token ids, with the pieces they decode to and which of them train.

    `mask_kind` says where the mask comes from: "text" (every token), "completion" (after the prompt),
    "assistant" (the chat template's `{% generation %}` blocks), "all" (a conversation whose template has
    no generation blocks, so TRL trains on every token) or "none" (a prompt for online generation).
    """

    ids: list[int]
    tokens: list[str]
    train_mask: list[bool]
    eos_id: int | None
    truncated_at: int | None
    mask_kind: str

    def __len__(self) -> int:
        return len(self.ids)


# --- rendering -------------------------------------------------------------------------------------


def _template_text(tokenizer: Any) -> str:
    template = getattr(tokenizer, "chat_template", None)
    if isinstance(template, dict):
        template = template.get("default") or next(iter(template.values()), None)
    return template or ""


def _chat(tokenizer: Any, messages: list[dict[str, Any]], **kwargs: Any) -> dict[str, Any]:
    if not _template_text(tokenizer):
        raise ChatTemplateMissing(
            "the tokenizer has no chat template, so conversations cannot be rendered",
            field="tokenizer",
            hint="use the tokenizer of an instruct/chat model, or set tokenizer.chat_template",
        )
    try:
        return tokenizer.apply_chat_template(messages, tokenize=True, return_dict=True, **kwargs)
    except Exception as err:  # noqa: BLE001 - templates raise jinja2 errors and ValueErrors of their own
        raise DataError(f"the chat template failed on this row: {err}") from None


def _text_ids(tokenizer: Any, text: str) -> list[int]:
    return list(tokenizer(text=text)["input_ids"])


def _with_eos(tokenizer: Any, text: str) -> str:
    eos = getattr(tokenizer, "eos_token", None)
    return text + eos if eos and not text.endswith(eos) else text


def _common_prefix(a: list[int], b: list[int]) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


def _render_whole(sequence: Any, tokenizer: Any, *, eos: bool = True) -> tuple[list[int], list[bool], str]:
    if isinstance(sequence, list):
        if _GENERATION_BLOCK.search(_template_text(tokenizer)):
            out = _chat(tokenizer, sequence, return_assistant_tokens_mask=True)
            return list(out["input_ids"]), [bool(m) for m in out["assistant_masks"]], "assistant"
        ids = list(_chat(tokenizer, sequence)["input_ids"])
        return ids, [True] * len(ids), "all"
    ids = _text_ids(tokenizer, _with_eos(tokenizer, sequence) if eos else sequence)
    return ids, [True] * len(ids), "text"


def _render_pair(prompt: Any, completion: Any, tokenizer: Any) -> tuple[list[int], list[bool], str]:
    """Prompt + completion, training the completion: the tokens after the longest shared prefix."""
    if not prompt:
        return _render_whole(completion, tokenizer)
    if isinstance(prompt, list):
        prompt_ids = list(_chat(tokenizer, prompt, add_generation_prompt=True)["input_ids"])
        ids = list(_chat(tokenizer, prompt + completion)["input_ids"])
    else:
        prompt_ids = _text_ids(tokenizer, prompt)
        ids = _text_ids(tokenizer, _with_eos(tokenizer, prompt + completion))
    start = _common_prefix(prompt_ids, ids)
    return ids, [False] * start + [True] * (len(ids) - start), "completion"


def _render_prompt(prompt: Any, tokenizer: Any) -> tuple[list[int], list[bool], str]:
    if isinstance(prompt, list):
        ids = list(_chat(tokenizer, prompt, add_generation_prompt=True)["input_ids"])
    else:
        ids = _text_ids(tokenizer, prompt)
    return ids, [False] * len(ids), "none"


def sequence_parts(record: dict[str, Any], fmt: Format) -> list[str | int]:
    """The `part` names of the sequences one normalised row trains on.

    ["chosen", "rejected"] for preference formats, response indexes for ranking, ["main"] otherwise.
    """
    if fmt in (Format.preference, Format.preference_implicit):
        return ["chosen", "rejected"]
    if fmt is Format.ranking:
        return list(range(len(record["responses"])))
    return ["main"]


def _render(
    record: dict[str, Any], fmt: Format, tokenizer: Any, part: str | int
) -> tuple[list[int], list[bool], str]:
    if fmt is Format.text:
        return _render_whole(record["text"], tokenizer)
    if fmt is Format.classification:
        return _render_whole(record["text"], tokenizer, eos=False)
    if "messages" in record and fmt in (Format.messages, Format.sharegpt):
        return _render_whole(record["messages"], tokenizer)
    if fmt in (Format.prompt_completion, Format.alpaca, Format.unpaired):
        return _render_pair(record["prompt"], record["completion"], tokenizer)
    if fmt is Format.prompt_only:
        return _render_prompt(record["prompt"], tokenizer)
    if fmt in (Format.preference, Format.preference_implicit):
        side = "chosen" if part == "main" else str(part)
        if side not in ("chosen", "rejected"):
            raise ValueError(f"part must be chosen or rejected, not {part!r}")
        if "prompt" in record:
            return _render_pair(record["prompt"], record[side], tokenizer)
        prompt, chosen, rejected = split_implicit_prompt(record["chosen"], record["rejected"])
        return _render_pair(prompt, chosen if side == "chosen" else rejected, tokenizer)
    if fmt is Format.ranking:
        k = 0 if part == "main" else int(part)
        return _render_pair(record["prompt"], record["responses"][k], tokenizer)
    raise ValueError(f"cannot render format {fmt!r}")


def render_tokens(
    record_normalised: dict[str, Any],
    fmt: Format,
    tokenizer: Any,
    max_length: int | None = None,
    *,
    part: str | int = "main",
) -> TokenView:
    """Tokenize one normalised row as the trainer would and mark the tokens that train.

    `part` picks the sequence of a multi-sequence row: "chosen"/"rejected" for preference formats,
    a response index for ranking. The ids are not cut at `max_length`; `truncated_at` says where
    truncation would happen (None when the row fits).
    """
    ids, mask, kind = _render(record_normalised, fmt, tokenizer, part)
    tokens = [tokenizer.decode([i]) for i in ids]
    truncated_at = max_length if max_length is not None and len(ids) > max_length else None
    return TokenView(
        ids=ids,
        tokens=tokens,
        train_mask=mask,
        eos_id=getattr(tokenizer, "eos_token_id", None),
        truncated_at=truncated_at,
        mask_kind=kind,
    )


def token_length(record_normalised: dict[str, Any], fmt: Format, tokenizer: Any) -> int:
    """Tokens in the longest sequence a normalised row trains on (same rendering as `render_tokens`)."""
    parts = sequence_parts(record_normalised, fmt)
    return max(len(_render(record_normalised, fmt, tokenizer, part)[0]) for part in parts)


# --- the report ------------------------------------------------------------------------------------


@dataclass
class CheckReport:
    """What `tui-ft data check` prints. `errors` holds dicts {line, field, message}."""

    path: str
    format: str | None = None
    rows: int = 0
    columns: list[str] = field(default_factory=list)
    errors: list[dict[str, Any]] = field(default_factory=list)
    error_count: int = 0
    fatal: bool = False
    token_stats: dict[str, Any] | None = None

    @property
    def ok(self) -> bool:
        return self.error_count == 0

    def lines(self) -> list[str]:
        """Each error as `path:line: field: message` (the parts that apply)."""
        return [
            str(DataError(e["message"], path=self.path, line=e["line"], field=e["field"]))
            for e in self.errors
        ]

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "path": self.path,
            "format": self.format,
            "rows": self.rows,
            "columns": self.columns,
            "errors": self.errors,
            "error_count": self.error_count,
            "fatal": self.fatal,
        }
        if self.token_stats is not None:
            out["token_stats"] = self.token_stats
        return out


def _load_tokenizer(ref: str | Path) -> Any:
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(str(ref))
    except Exception as err:  # noqa: BLE001 - transformers raises OSError, ValueError, hub errors...
        raise DataError(f"cannot load a tokenizer from {ref}: {err}", field="tokenizer") from None


def _percentile(sorted_values: array, q: float) -> int:
    """Nearest-rank percentile of sorted values."""
    rank = max(1, -(-len(sorted_values) * q // 100))
    return sorted_values[int(rank) - 1]


def _token_stats(lengths: array, max_length: int | None) -> dict[str, Any]:
    values = array("q", sorted(lengths))
    stats: dict[str, Any] = {"count": len(values), "max_length": max_length}
    if values:
        stats.update(
            min=values[0],
            max=values[-1],
            mean=round(sum(values) / len(values), 2),
            p50=_percentile(values, 50),
            p95=_percentile(values, 95),
        )
    else:
        stats.update(min=None, max=None, mean=None, p50=None, p95=None)
    stats["over_max_length"] = sum(1 for v in values if v > max_length) if max_length is not None else None
    return stats


def check_dataset(
    ref: str | Path | DatasetSource,
    *,
    tokenizer: Any = None,
    max_length: int | None = None,
    base_dir: Path | None = None,
    max_errors: int = 200,
    progress: Progress | None = None,
    cancelled: Cancelled | None = None,
) -> CheckReport:
    """Validate every row of a dataset and, with a tokenizer, measure token lengths.

    `tokenizer` is a transformers tokenizer or a local directory to load one from. Keeps the first
    `max_errors` problems and counts them all. Problems with the file become error entries; a bad
    tokenizer raises DataError. `progress` and `cancelled` are passed to `check_rows` (a cancelled
    check raises CheckCancelled).
    """
    if isinstance(tokenizer, (str, Path)):
        tokenizer = _load_tokenizer(tokenizer)
    report = CheckReport(path=str(ref.path if isinstance(ref, DatasetSource) else ref))
    lengths = array("q")

    def measure(row: Row, fmt: Format) -> list[RowProblem]:
        if tokenizer is None:
            return []
        try:
            lengths.append(token_length(normalise(row.data, fmt), fmt, tokenizer))
        except ChatTemplateMissing:
            raise
        except DataError as err:
            return [RowProblem(row.line, err.field, err.message)]
        return []

    try:
        source = ref if isinstance(ref, DatasetSource) else open_dataset(ref, base_dir=base_dir)
        report.path = str(source.path)
        report.columns = list(source.columns)
        fmt, rows, problems, total = check_rows(
            source, on_valid=measure, max_errors=max_errors, progress=progress, cancelled=cancelled
        )
    except ChatTemplateMissing:
        raise
    except DataError as err:
        report.fatal = True
        report.path = err.path or report.path
        report.errors = [{"line": err.line, "field": err.field, "message": err.message}]
        report.error_count = 1
        return report
    report.format = fmt.value if fmt is not None else None
    report.rows = rows
    report.errors = [p.to_json() for p in problems]
    report.error_count = total
    if tokenizer is not None:
        report.token_stats = _token_stats(lengths, max_length)
    return report


# Files larger than this are checked in a child process: a pure-Python scan of millions of rows in a
# thread holds the GIL and makes the UI's event loop wait hundreds of milliseconds per frame.
CHILD_CHECK_BYTES = 16 * 1024 * 1024


def check_dataset_isolated(
    ref: str | Path | DatasetSource,
    *,
    max_errors: int = 200,
    progress: Progress | None = None,
    cancelled: Cancelled | None = None,
) -> CheckReport:
    """`check_dataset`, in a child Python process when `ref` is a large local file (else here, reusing an
    open source and its index).

    Progress comes back as lines on the child's stderr; `cancelled()` kills the child (CheckCancelled).
    The report is the same as `check_dataset`'s (a file-level problem is a fatal report, as there).
    """
    import json
    import subprocess
    import sys

    local = Path(str(ref.path if isinstance(ref, DatasetSource) else ref))
    if not local.is_file() or local.stat().st_size < CHILD_CHECK_BYTES:
        return check_dataset(ref, max_errors=max_errors, progress=progress, cancelled=cancelled)
    cmd = [sys.executable, "-m", "tui_ft.data.checks", str(local), str(max_errors)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stderr is not None
    try:
        failure = []
        for line in proc.stderr:  # blocks without the GIL until the child writes
            if cancelled is not None and cancelled():
                raise CheckCancelled()
            if line.startswith("progress ") and progress is not None:
                progress(int(line.split()[1]))
            elif not line.startswith("progress "):
                failure.append(line)
        out = proc.stdout.read()
        if proc.wait() != 0 or not out.strip():
            doc = json.loads(failure[-1]) if failure and failure[-1].startswith("{") else None
            if doc is None:
                tail = "".join(failure[-5:]).strip()
                doc = {"line": None, "field": None, "message": f"checking the file failed: {tail}"}
            return CheckReport(path=str(local), errors=[doc], error_count=1, fatal=True)
        return CheckReport(**json.loads(out))
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def _child_main(argv: list[str]) -> int:
    """`python -m tui_ft.data.checks PATH [MAX_ERRORS]`: the report as JSON on stdout, progress on stderr."""
    import json
    import sys

    def report_progress(rows: int) -> None:
        print(f"progress {rows}", file=sys.stderr, flush=True)

    try:
        report = check_dataset(
            argv[0], max_errors=int(argv[1]) if len(argv) > 1 else 200, progress=report_progress
        )
    except DataError as exc:
        print(json.dumps({"message": exc.message, "line": exc.line, "field": exc.field}), file=sys.stderr)
        return 2
    print(json.dumps(report.to_json()))
    return 0


if __name__ == "__main__":
    import sys

    sys.exit(_child_main(sys.argv[1:]))
