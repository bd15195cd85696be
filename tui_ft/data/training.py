"""Turn a dataset into training data: validate every row, normalise it for the method, build an Arrow table.

Heavy libraries (datasets) are imported inside the function that needs them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tui_ft.data.formats import (
    Format,
    check_method_format,
    class_names,
    detect_format,
    label_name,
    normalise,
    rows_for_method,
)
from tui_ft.data.sources import DatasetSource, Row, open_dataset
from tui_ft.data.validation import RowProblem, check_rows
from tui_ft.errors import DataError

if TYPE_CHECKING:
    import datasets


@dataclass(frozen=True)
class LoadedData:
    """A dataset ready for a TRL trainer."""

    dataset: datasets.Dataset
    format: Format
    source: Path | str
    rows: int
    labels: tuple[str, ...] | None = None  # classify: the class names, in label-id order


def load_for_training(
    ref: str | Path | DatasetSource,
    *,
    method: str,
    base_dir: Path | None = None,
    ranking_mode: str = "all",
    cache_dir: Path | None = None,
    labels: tuple[str, ...] | None = None,
) -> LoadedData:
    """Read, validate, normalise and convert a dataset for `method` into a `datasets.Dataset`.

    Every row is validated; any problem raises one DataError naming the first (path:line: field)
    and counting the rest. A format the method cannot use raises before the rows are validated.
    With `cache_dir`, the dataset is written there and memory-mapped back (as `load_dataset` does):
    training reads it as fast as a hub dataset, and the trainer's tokenized copies are cached beside it
    instead of held in memory.

    For `classify`, labels become label ids: of `labels` when given (an evaluation file, whose every
    label must be one the training data has), else of the classes this data holds (at least two).
    """
    source = ref if isinstance(ref, DatasetSource) else open_dataset(ref, base_dir=base_dir)
    path = source.path
    first_format = _first_format(source)
    if first_format is not None:
        check_method_format(method, first_format, path)
    if first_format is Format.annotations:
        return _from_store(Path(str(path)), method, cache_dir)
    keep_extra = method in ("grpo", "rloo")
    out: list[dict[str, Any]] = []

    known = set(labels) if labels is not None else None

    def collect(row: Row, fmt: Format) -> list[RowProblem] | None:
        if known is not None and fmt is Format.classification:
            name = label_name(row.data["label"])
            if name not in known:
                return [unseen_label_problem(row.line, name, labels or ())]
        out.extend(
            rows_for_method(
                normalise(row.data, fmt, keep_extra=keep_extra), fmt, method, ranking_mode=ranking_mode
            )
        )
        return None

    fmt, rows, problems, total = check_rows(source, on_valid=collect, max_errors=1)
    if problems:
        first = problems[0]
        more = (
            f" (and {total - 1} more error{'s' if total > 2 else ''}; run `tui-ft data check {path}`)"
            if total > 1
            else ""
        )
        raise DataError(first.message + more, path=path, line=first.line, field=first.field, hint=first.hint)
    if fmt is None:
        raise DataError("no rows to train on", path=path)
    if method == "classify":
        labels = labels or class_names(r["label"] for r in out)
        check_class_count(labels, path)
        ids = {name: i for i, name in enumerate(labels)}
        for r in out:
            r["label"] = ids[label_name(r["label"])]
    import datasets

    try:
        dataset = datasets.Dataset.from_list(out)
    except Exception as err:  # noqa: BLE001 - pyarrow raises several kinds for columns that do not line up
        raise DataError(
            f"the rows do not share one column layout: {err}",
            path=path,
            hint="a field must have the same type on every row",
        ) from None
    out.clear()  # the rows now live in the Arrow table
    if cache_dir is not None:
        dataset.save_to_disk(str(cache_dir))
        dataset = datasets.load_from_disk(str(cache_dir))
    return LoadedData(dataset=dataset, format=fmt, source=path, rows=rows, labels=labels)


def unseen_label_problem(line: int | None, name: str, labels: tuple[str, ...]) -> RowProblem:
    """An evaluation row whose label the classifier never saw in training: it has no output for it."""
    shown = ", ".join(labels[:12]) + (", ..." if len(labels) > 12 else "")
    return RowProblem(
        line,
        "label",
        f"label {name!r} does not occur in the training data, so the classifier has no class for it "
        f"(the training labels: {shown})",
        "add examples of it to the training data, or drop these rows from the evaluation data",
    )


def check_class_count(labels: tuple[str, ...], path: Path | str) -> None:
    """A classifier needs two classes at least (one label would make transformers fit a regression)."""
    if len(labels) < 2:
        raise DataError(
            f"classification needs at least two labels; the training data has only {', '.join(labels) or 'none'}",
            path=path,
            field="label",
            hint="add rows of the other classes",
        )


def _from_store(path: Path, method: str, cache_dir: Path | None) -> LoadedData:
    """An annotation store read whole (retractions applied, a torn last line skipped) and turned into
    the method's rows by the export rules (`prefs.export`, documented in docs/annotations.md)."""
    import datasets

    from tui_ft.prefs.export import training_rows
    from tui_ft.prefs.store import PreferenceStore

    result = training_rows(PreferenceStore(path).read().decisions, method)
    if not result.rows:
        dropped = ", ".join(f"{n} {label}" for label, n in result.dropped.items()) or "no decisions"
        raise DataError(f"no pairs to train on in this annotation store ({dropped})", path=path)
    dataset = datasets.Dataset.from_list(result.rows)
    if cache_dir is not None:
        dataset.save_to_disk(str(cache_dir))
        dataset = datasets.load_from_disk(str(cache_dir))
    return LoadedData(dataset=dataset, format=Format.annotations, source=path, rows=result.kept)


def _first_format(source: DatasetSource) -> Format | None:
    """The format of the first readable row (None if none of the first rows tell)."""
    for item in source.head(20):
        if isinstance(item, Row):
            found = detect_format(item.data)
            if found is not None:
                return found
    return None
