"""Open datasets (local files, directories, hub ids) and read their rows lazily, by index.

A `DatasetSource` answers `len(src)`, `src.row(i)` and iteration without holding the rows in memory
where the format allows it:

- `.jsonl`: a line-offset index (8 bytes a row, built by scanning bytes in chunks, with progress and
  cancellation for a UI thread); a row is read by seeking to its line. Blank lines are not rows, but
  row line numbers stay those of the file.
- `.csv`: the same offset index, record by record (a quoted field may span lines).
- `.parquet`: row groups decoded on demand with pyarrow, batch by batch and only as far as the rows
  asked for, and kept in a small LRU cache; `row_at_hand` tells a UI which rows it can have without
  decoding.
- `.json` (an array of objects, or an object holding one list): parsed whole.
- a `datasets.save_to_disk` directory or a hub id: a memory-mapped `datasets.Dataset`.

Everything wrong with the input becomes a `DataError` naming the file and line. A problem confined to one
row (a JSONL line that is not JSON) is raised by `row(i)` or yielded by `scan()`; a problem with the whole
file (binary data, a broken CSV quote, a truncated JSON array) is raised when the file is indexed.

Heavy libraries (pyarrow, datasets) are imported inside the functions that need them.
"""

from __future__ import annotations

import bisect
import codecs
import csv
import json
import os
import re
import threading
from array import array
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tui_ft.data import DATA_SUFFIXES
from tui_ft.data.formats import EXAMPLES, Format, detect_format
from tui_ft.errors import DataError

if TYPE_CHECKING:
    import datasets

_CHUNK = 1 << 20
_WHITESPACE = frozenset(b" \t\r\n\x0b\x0c")
_BOM = codecs.BOM_UTF8
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")

Progress = Callable[[int], None]
Cancelled = Callable[[], bool]


@dataclass(frozen=True, slots=True)
class Row:
    """One row: its 0-based position, the line it starts on (1-based) and its fields."""

    index: int
    line: int
    data: dict[str, Any]


def _not_object_error(value: Any, path: Path | str, line: int, what: str) -> DataError:
    kind = {list: "an array", str: "a string", bool: "a boolean", type(None): "null"}.get(
        type(value), "a number"
    )
    return DataError(
        f"{what} is {kind}, expected a JSON object",
        path=path,
        line=line,
        hint=f"each row is one object, like {EXAMPLES[Format.prompt_completion]}",
    )


class DatasetSource:
    """Rows of one dataset, read on demand. Subclasses fill in the storage."""

    kind: str = ""

    def __init__(self, path: Path | str) -> None:
        self.path = path
        self._columns: list[str] | None = None

    # --- indexing ---------------------------------------------------------------------------------

    @property
    def indexed(self) -> bool:
        """True once `len()` is known without more scanning."""
        return True

    @property
    def rows_indexed(self) -> int:
        """Rows readable right now (grows while an index is being built)."""
        return len(self)

    def build_index(self, progress: Progress | None = None, cancelled: Cancelled | None = None) -> bool:
        """Make every row addressable; False if `cancelled()` said stop (call again to resume)."""
        return True

    # --- access -----------------------------------------------------------------------------------

    def __len__(self) -> int:
        raise NotImplementedError

    def row(self, index: int) -> Row:
        """The row at `index` (negative counts from the end); IndexError past the end."""
        raise NotImplementedError

    def rows(self, start: int, stop: int) -> list[Row]:
        """Rows `start` to `stop` (exclusive), clipped to the dataset."""
        stop = min(stop, len(self))
        return [self.row(i) for i in range(max(start, 0), stop)]

    def row_at_hand(self, index: int) -> Row | None:
        """The row at `index` if reading it is cheap now, else None (it needs decoding: read it on a thread).

        A UI calls this on its event loop and reads with `row()`/`rows()` on a thread the rows it gets None
        for. Most sources read any row in microseconds and always answer; raises like `row()`.
        """
        return self.row(index)

    def scan(self) -> Iterator[Row | DataError]:
        """Every row in order, or the DataError of a row that cannot be read; file-level errors raise."""
        for i in range(len(self)):
            try:
                yield self.row(i)
            except DataError as err:
                yield err

    def __iter__(self) -> Iterator[Row]:
        for item in self.scan():
            if isinstance(item, DataError):
                raise item
            yield item

    @property
    def columns(self) -> list[str]:
        """Column names: the keys of the first rows, in order of appearance."""
        if self._columns is None:
            seen: dict[str, None] = {}
            for item in self.head(100):
                if isinstance(item, Row):
                    seen.update(dict.fromkeys(item.data))
            self._columns = list(seen)
        return self._columns

    def index_of_line(self, line: int) -> int | None:
        """The row that starts on `line` (1-based), or None if no row starts there."""
        index = line - 1
        return index if 0 <= index < self.rows_indexed else None

    def head(self, n: int) -> Iterator[Row | DataError]:
        """The first `n` items of `scan()`."""
        for i, item in enumerate(self.scan()):
            if i >= n:
                return
            yield item

    def close(self) -> None:
        """Release open files."""

    def __enter__(self) -> DatasetSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.kind} {self.path}>"

    def _check_index(self, index: int, length: int) -> int:
        if index < 0:
            index += length
        if not 0 <= index < length:
            raise IndexError(f"row {index} out of range ({length} rows)")
        return index


# --- JSON Lines ------------------------------------------------------------------------------------


def _json_error(err: json.JSONDecodeError, text: str, *, jsonl: bool) -> str:
    """A sentence for a JSON syntax error, telling a cut-off value from text that is not JSON."""
    content = text.strip()
    if content and content[0] not in "{[":
        what = "this line is not a JSON object" if jsonl else "this file is not JSON"
        return f"{what} (it starts with {content[:20]!r})"
    if err.pos >= len(text.rstrip()) or err.msg.startswith("Unterminated string"):
        return f"the JSON value ends too early: {err.msg} (the line is cut off?)"
    return f"invalid JSON: {err.msg} at column {err.colno}"


class _ScannedSource(DatasetSource):
    """A text file made addressable by a row-offset index (`_offsets`) built by scanning it."""

    _done: bool
    _offsets: Any

    @property
    def indexed(self) -> bool:
        return self._done

    @property
    def rows_indexed(self) -> int:
        return len(self._offsets)


class JsonlSource(_ScannedSource):
    """A JSON Lines file behind a line-offset index."""

    kind = "jsonl"

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self._size = path.stat().st_size
        if self._size == 0:
            raise DataError(
                "the file is empty", path=path, hint=f"each line holds one row, like {EXAMPLES[Format.text]}"
            )
        self._offsets = array("q")
        # Line numbers without a second array: from row _jump_rows[k] on, line = row + 1 + _jump_extra[k].
        self._jump_rows = array("q")
        self._jump_extra = array("q")
        # Resumable scan state.
        self._scan_pos = 0
        self._line_start = 0
        self._line_no = 1
        self._line_has_content = False
        self._decoder = codecs.getincrementaldecoder("utf-8")()
        self._done = False
        self._index_lock = threading.Lock()
        self._read_lock = threading.Lock()
        self._file: Any = None
        with path.open("rb") as f:
            if f.read(3) == _BOM:
                self._scan_pos = self._line_start = 3

    def build_index(self, progress: Progress | None = None, cancelled: Cancelled | None = None) -> bool:
        with self._index_lock:
            return self._scan(progress, cancelled)

    def _scan(self, progress: Progress | None, cancelled: Cancelled | None) -> bool:
        if self._done:
            return True
        offsets, path = self._offsets, Path(self.path)
        with path.open("rb") as f:
            f.seek(self._scan_pos)
            while True:
                if cancelled is not None and cancelled():
                    return False
                base = f.tell()
                chunk = f.read(_CHUNK)
                if not chunk:
                    break
                self._check_chunk(chunk, base, final=False)
                pos = 0
                line_start, has_content = self._line_start, self._line_has_content
                while True:
                    nl = chunk.find(b"\n", pos)
                    end = len(chunk) if nl < 0 else nl
                    if not has_content and pos < end:
                        has_content = chunk[pos] not in _WHITESPACE or bool(chunk[pos:end].strip())
                    if nl < 0:
                        break
                    if has_content:
                        self._add_row(line_start)
                    self._line_no += 1
                    line_start = base + nl + 1
                    has_content = False
                    pos = nl + 1
                self._line_start, self._line_has_content = line_start, has_content
                self._scan_pos = base + len(chunk)
                if progress is not None:
                    progress(len(offsets))
            self._check_chunk(b"", self._scan_pos, final=True)
        if self._line_has_content:  # a last line without a newline
            self._add_row(self._line_start)
        self._done = True
        if progress is not None:
            progress(len(offsets))
        if not offsets:
            raise DataError("the file holds only blank lines, no rows", path=path)
        return True

    def _add_row(self, offset: int) -> None:
        row = len(self._offsets)
        extra = self._line_no - 1 - row
        if extra != (self._jump_extra[-1] if self._jump_extra else 0):
            self._jump_rows.append(row)
            self._jump_extra.append(extra)
        self._offsets.append(offset)

    def _check_chunk(self, chunk: bytes, base: int, *, final: bool) -> None:
        """Refuse binary data: NUL bytes or bytes that are not UTF-8."""
        nul = chunk.find(b"\x00")
        if nul >= 0:
            line = self._line_no + chunk.count(b"\n", 0, nul)
            raise DataError(
                "this is a binary file (it holds NUL bytes), not JSON Lines text", path=self.path, line=line
            )
        try:
            self._decoder.decode(chunk, final)
        except UnicodeDecodeError as err:
            line = self._line_no + chunk.count(b"\n", 0, max(err.start, 0))
            raise DataError(
                f"this file is not UTF-8 text (byte {chunk[err.start : err.start + 1]!r} at offset {base + err.start})",
                path=self.path,
                line=line,
                hint="save the file as UTF-8",
            ) from None

    def _line_of(self, index: int) -> int:
        k = bisect.bisect_right(self._jump_rows, index) - 1
        return index + 1 + (self._jump_extra[k] if k >= 0 else 0)

    def index_of_line(self, line: int) -> int | None:
        lo, hi = 0, len(self._offsets)
        while lo < hi:  # lines grow with the row index: binary search without reading the file
            mid = (lo + hi) // 2
            if self._line_of(mid) < line:
                lo = mid + 1
            else:
                hi = mid
        return lo if lo < len(self._offsets) and self._line_of(lo) == line else None

    def raw_rows(self, start: int, stop: int) -> list[bytes]:
        """The undecoded text of rows `start` to `stop` of the index built so far, in one read."""
        start, stop = max(start, 0), min(stop, len(self._offsets))
        if start >= stop:
            return []
        end = self._offsets[stop] if stop < len(self._offsets) else None
        with self._read_lock:
            if self._file is None:
                self._file = Path(self.path).open("rb")  # noqa: SIM115 - kept open for random access
            self._file.seek(self._offsets[start])
            chunk = self._file.read(-1 if end is None else end - self._offsets[start])
        lines = [line for line in chunk.split(b"\n") if line.strip()]
        return lines[: stop - start]

    def __len__(self) -> int:
        if not self._done:
            self.build_index()
        return len(self._offsets)

    def row(self, index: int) -> Row:
        if index >= len(self._offsets) or index < 0:
            index = self._check_index(index, len(self))
        offset = self._offsets[index]
        with self._read_lock:
            if self._file is None:
                self._file = Path(self.path).open("rb")  # noqa: SIM115 - kept open for random access
            self._file.seek(offset)
            raw = self._file.readline()
        return self._parse(index, self._line_of(index), raw)

    def rows(self, start: int, stop: int) -> list[Row]:
        """Rows `start` to `stop`; served from a partial index when it already covers them."""
        if self._done or stop > len(self._offsets):
            stop = min(stop, len(self))
        return [self.row(i) for i in range(max(start, 0), stop)]

    def _parse(self, index: int, line: int, raw: bytes) -> Row:
        text = raw.decode("utf-8", errors="replace")
        try:
            data = json.loads(text)
        except json.JSONDecodeError as err:
            raise DataError(
                _json_error(err, text, jsonl=True),
                path=self.path,
                line=line,
                hint=f"each line of a .jsonl file is one JSON object, like {EXAMPLES[Format.text]}",
            ) from None
        if not isinstance(data, dict):
            raise _not_object_error(data, self.path, line, "this line")
        return Row(index, line, data)

    def scan(self) -> Iterator[Row | DataError]:
        """Stream the file front to back (no index needed), skipping blank lines."""
        path = Path(self.path)
        decoder = codecs.getincrementaldecoder("utf-8")()
        index = 0
        with path.open("rb") as f:
            for line_no, raw in enumerate(f, 1):
                if line_no == 1 and raw.startswith(_BOM):
                    raw = raw[3:]
                if b"\x00" in raw:
                    raise DataError(
                        "this is a binary file (it holds NUL bytes), not JSON Lines text",
                        path=path,
                        line=line_no,
                    )
                try:
                    decoder.decode(raw)
                except UnicodeDecodeError:
                    raise DataError(
                        "this file is not UTF-8 text", path=path, line=line_no, hint="save the file as UTF-8"
                    ) from None
                if not raw.strip():
                    continue
                try:
                    yield self._parse(index, line_no, raw)
                except DataError as err:
                    yield err
                index += 1
        if index == 0:
            raise DataError("the file holds only blank lines, no rows", path=path)

    def close(self) -> None:
        with self._read_lock:
            if self._file is not None:
                self._file.close()
                self._file = None


# --- JSON ------------------------------------------------------------------------------------------


class JsonSource(DatasetSource):
    """A JSON document: an array of row objects, or an object holding one such array.

    The whole file is parsed on first use. A row's line is its position in the array + 1.
    """

    kind = "json"

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        if path.stat().st_size == 0:
            raise DataError("the file is empty", path=path, hint="a .json file holds an array of row objects")
        self._items: list[Any] | None = None
        self.list_key: str | None = None

    def build_index(self, progress: Progress | None = None, cancelled: Cancelled | None = None) -> bool:
        if self._items is None:
            self._items = self._load()
            if progress is not None:
                progress(len(self._items))
        return True

    def _load(self) -> list[Any]:
        path = Path(self.path)
        raw = path.read_bytes()
        if b"\x00" in raw:
            line = raw.count(b"\n", 0, raw.find(b"\x00")) + 1
            raise DataError("this is a binary file (it holds NUL bytes), not JSON text", path=path, line=line)
        try:
            text = raw.decode("utf-8-sig")
        except UnicodeDecodeError as err:
            line = raw.count(b"\n", 0, err.start) + 1
            raise DataError(
                "this file is not UTF-8 text", path=path, line=line, hint="save the file as UTF-8"
            ) from None
        if not text.strip():
            raise DataError("the file holds only blank lines, no rows", path=path)
        try:
            root = json.loads(text)
        except json.JSONDecodeError as err:
            message = _json_error(err, text, jsonl=False)
            if err.pos >= len(text.rstrip()) or err.msg.startswith("Unterminated string"):
                message = f"the JSON document ends too early: {err.msg} (the file is cut off?)"
            raise DataError(message, path=path, line=err.lineno) from None
        if isinstance(root, list):
            items = root
        elif isinstance(root, dict) and detect_format(root) is not None:
            items = [root]
        elif isinstance(root, dict):
            lists = [k for k, v in root.items() if isinstance(v, list)]
            if len(lists) != 1:
                raise DataError(
                    f"expected an array of rows, or an object holding one list; found an object with "
                    f"{len(lists)} lists ({', '.join(lists) or 'none'})",
                    path=path,
                    line=1,
                )
            self.list_key = lists[0]
            items = root[lists[0]]
        else:
            raise _not_object_error(root, path, 1, "the document")
        if not items:
            raise DataError("the JSON array is empty: no rows", path=path, line=1)
        return items

    def __len__(self) -> int:
        self.build_index()
        assert self._items is not None
        return len(self._items)

    def row(self, index: int) -> Row:
        index = self._check_index(index, len(self))
        assert self._items is not None
        data = self._items[index]
        if not isinstance(data, dict):
            raise _not_object_error(data, self.path, index + 1, f"item {index + 1}")
        return Row(index, index + 1, data)


# --- CSV -------------------------------------------------------------------------------------------


def _csv_cell(column: str, value: str) -> Any:
    """CSV holds only text: a `label` column of true/false or integers becomes a bool or an int."""
    if column == "label":
        lowered = value.strip().lower()
        if lowered in ("true", "false"):
            return lowered == "true"
        if re.fullmatch(r"-?\d+", lowered):
            return int(lowered)
    return value


class CsvSource(_ScannedSource):
    """A CSV file with a header row, behind an index of record offsets (a field may span lines)."""

    kind = "csv"

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        if path.stat().st_size == 0:
            raise DataError("the file is empty", path=path, hint="a .csv file starts with a header row")
        self._offsets = array("q")
        self._lines = array("q")
        self._header: list[str] | None = None
        self._done = False
        self._lock = threading.Lock()

    def _physical_lines(self, f: Any, start_line: int, tracker: list[int]) -> Iterator[str]:
        """Decoded lines of `f`, recording in `tracker` [offset, line] of the next line to be read."""
        line_no = start_line
        tracker[0], tracker[1] = f.tell(), line_no
        while True:
            offset = f.tell()
            raw = f.readline()
            if not raw:
                return
            if b"\x00" in raw:
                raise DataError(
                    "this is a binary file (it holds NUL bytes), not CSV text", path=self.path, line=line_no
                )
            try:
                text = raw.decode("utf-8-sig" if offset == 0 else "utf-8")
            except UnicodeDecodeError:
                raise DataError(
                    "this file is not UTF-8 text", path=self.path, line=line_no, hint="save the file as UTF-8"
                ) from None
            line_no += 1
            tracker[0], tracker[1] = f.tell(), line_no
            yield text

    def build_index(self, progress: Progress | None = None, cancelled: Cancelled | None = None) -> bool:
        with self._lock:
            if self._done:
                return True
            path = Path(self.path)
            tracker = [0, 1]
            with path.open("rb") as f:
                reader = csv.reader(self._physical_lines(f, 1, tracker), strict=True)
                count = 0
                while True:
                    start_offset, start_line = tracker
                    try:
                        record = next(reader)
                    except StopIteration:
                        break
                    except csv.Error as err:
                        raise DataError(
                            f"broken CSV record: {err} (a quote opened here is not closed properly?)",
                            path=path,
                            line=start_line,
                        ) from None
                    if not record:  # a blank line
                        continue
                    if self._header is None:
                        self._header = record
                        if len(set(record)) != len(record):
                            raise DataError("the header repeats a column name", path=path, line=start_line)
                        continue
                    if len(record) != len(self._header):
                        raise DataError(
                            f"this record has {len(record)} fields but the header has {len(self._header)}",
                            path=path,
                            line=start_line,
                        )
                    self._offsets.append(start_offset)
                    self._lines.append(start_line)
                    count += 1
                    if count % 65536 == 0:
                        if progress is not None:
                            progress(count)
                        if cancelled is not None and cancelled():
                            # CSV indexing restarts from the top next time: records do not resume mid-file.
                            self._offsets, self._lines, self._header = array("q"), array("q"), None
                            return False
            if self._header is None:
                raise DataError("the file holds only blank lines, no rows", path=path)
            if not self._offsets:
                raise DataError("the file holds a header but no rows", path=path, line=1)
            self._done = True
            if progress is not None:
                progress(len(self._offsets))
            return True

    def __len__(self) -> int:
        self.build_index()
        return len(self._offsets)

    def index_of_line(self, line: int) -> int | None:
        k = bisect.bisect_left(self._lines, line)
        return k if k < len(self._lines) and self._lines[k] == line else None

    def row(self, index: int) -> Row:
        index = self._check_index(index, len(self))
        assert self._header is not None
        line = self._lines[index]
        with Path(self.path).open("rb") as f:
            f.seek(self._offsets[index])
            record = next(csv.reader(self._physical_lines(f, line, [0, 0]), strict=True))
        data = {col: _csv_cell(col, value) for col, value in zip(self._header, record, strict=True)}
        return Row(index, line, data)

    def scan(self) -> Iterator[Row | DataError]:
        """Stream the records front to back (one pass, after the index has checked the file)."""
        self.build_index()
        assert self._header is not None
        header = self._header
        with Path(self.path).open("rb") as f:
            records = (r for r in csv.reader(self._physical_lines(f, 1, [0, 1]), strict=True) if r)
            next(records)  # the header
            for index, (record, line) in enumerate(zip(records, self._lines, strict=False)):
                data = {col: _csv_cell(col, value) for col, value in zip(header, record, strict=True)}
                yield Row(index, line, data)

    @property
    def columns(self) -> list[str]:
        self.build_index()
        return list(self._header or [])


# --- Parquet ---------------------------------------------------------------------------------------


class RowGroupCache:
    """Decoded Parquet row groups (each whole, or its first rows so far), least recently used dropped
    first, within a count and a byte budget.

    The newest group is always kept, even when it alone is over the budget (a file with one huge row
    group is still browsable). Thread-safe; the lock is held only to look up and store, never while
    a group is decoded, so a UI can ask what is cached while a thread decodes.
    """

    def __init__(self, max_groups: int = 8, max_bytes: int = 96 << 20) -> None:
        self.max_groups = max_groups
        self.max_bytes = max_bytes
        self._tables: OrderedDict[int, Any] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def get(self, group: int) -> Any | None:
        """The decoded table of `group` (now the most recently used), or None."""
        with self._lock:
            table = self._tables.get(group)
            if table is not None:
                self._tables.move_to_end(group)
            return table

    def put(self, group: int, table: Any) -> None:
        with self._lock:
            old = self._tables.pop(group, None)
            if old is not None:
                self._bytes -= old.nbytes
            self._tables[group] = table
            self._bytes += table.nbytes
            while len(self._tables) > 1 and (
                len(self._tables) > self.max_groups or self._bytes > self.max_bytes
            ):
                _, dropped = self._tables.popitem(last=False)
                self._bytes -= dropped.nbytes

    @property
    def groups(self) -> list[int]:
        """The cached groups, least recently used first."""
        with self._lock:
            return list(self._tables)

    @property
    def nbytes(self) -> int:
        return self._bytes

    def clear(self) -> None:
        with self._lock:
            self._tables.clear()
            self._bytes = 0


class _GroupReader:
    """One row group's record batches, decoded in order and only as they are asked for."""

    def __init__(self, path: Path | str, metadata: Any, group: int, batch_rows: int) -> None:
        self.path, self.metadata, self.group, self.batch_rows = path, metadata, group, batch_rows
        self.rows = 0  # rows handed over so far
        self._file: Any = None
        self._batches: Iterator[Any] | None = None

    def take(self, upto: int) -> list[Any]:
        """The next batches, until `upto` rows are handed over in all (or the group ends)."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        out = []
        try:
            if self._batches is None:
                # The first read reaches `upto` in one batch: pyarrow decodes it in one call that lets go
                # of the GIL once. Many small batches would each wait for the GIL again while another
                # thread holds it (a check scanning rows), and a jump far into a group would crawl.
                size = max(self.batch_rows, -(-upto // self.batch_rows) * self.batch_rows)
                # a reader of its own, so that readers of two groups never share decoding state
                self._file = pq.ParquetFile(self.path, metadata=self.metadata)
                self._batches = iter(self._file.iter_batches(batch_size=size, row_groups=[self.group]))
            while self.rows < upto:
                batch = next(self._batches, None)
                if batch is None:
                    break
                out.append(batch)
                self.rows += batch.num_rows
        except (pa.ArrowException, OSError) as err:
            raise DataError(f"cannot read row group {self.group}: {err}", path=self.path) from None
        return out

    def close(self) -> None:
        if self._file is not None:
            self._file.close()


class ParquetSource(DatasetSource):
    """A Parquet file read one row group at a time. A row's line is its position + 1.

    Decoding a whole row group costs time in proportion to its size (a 100,000-row group of chats takes
    a tenth of a second or more), so a group is decoded only as far as the rows asked for: the first
    rows of a group come in milliseconds, a jump into the middle of a group decodes half of it. Pages
    must be decoded in order, so a group's reader is kept to go on where it stopped, `BATCH_ROWS` rows
    at a time (a read that would take more than `RESTART_ROWS` more starts afresh, in one batch). What
    is decoded is kept in a `RowGroupCache`; `row_at_hand` answers only from it, which lets a UI read
    the other rows on a thread.
    """

    BATCH_ROWS = 1024
    RESTART_ROWS = 8 * BATCH_ROWS

    kind = "parquet"

    def __init__(self, path: Path, cache: RowGroupCache | None = None) -> None:
        super().__init__(path)
        import pyarrow as pa
        import pyarrow.parquet as pq

        if path.stat().st_size == 0:
            raise DataError("the file is empty", path=path)
        try:
            self._file = pq.ParquetFile(path)
        except (pa.ArrowException, OSError) as err:
            raise DataError(f"not a readable Parquet file: {err}", path=path) from None
        meta = self._file.metadata
        self._starts = [0]
        for g in range(meta.num_row_groups):
            self._starts.append(self._starts[-1] + meta.row_group(g).num_rows)
        if self._starts[-1] == 0:
            raise DataError("the Parquet file holds no rows", path=path)
        self.cache = cache if cache is not None else RowGroupCache()
        self._read_lock = threading.Lock()
        # group -> (its batch reader, the rows it has handed over): where decoding a group goes on
        self._readers: dict[int, _GroupReader] = {}

    def __len__(self) -> int:
        return self._starts[-1]

    @property
    def row_groups(self) -> int:
        return len(self._starts) - 1

    def group_of(self, index: int) -> int:
        """The row group that holds row `index`."""
        return bisect.bisect_right(self._starts, index) - 1

    def _read_group(self, g: int) -> _GroupReader:
        """A reader of row group `g` from its start (it decodes nothing until asked)."""
        return _GroupReader(self.path, self._file.metadata, g, self.BATCH_ROWS)

    def _group(self, g: int, upto: int) -> Any:
        """A table of at least the first `upto` rows of row group `g` (decoding what is missing)."""
        table = self.cache.get(g)
        if table is not None and table.num_rows >= upto:
            return table
        with self._read_lock:  # two threads wanting one group decode it once
            table = self.cache.get(g)
            if table is not None and table.num_rows >= upto:
                return table
            reader = self._readers.pop(g, None)
            if (
                table is None
                or reader is None
                or reader.rows != table.num_rows
                or upto - reader.rows > self.RESTART_ROWS
            ):
                if reader is not None:
                    reader.close()
                reader, decoded = self._read_group(g), []  # from the group's start
            else:
                decoded = table.to_batches()
            decoded.extend(reader.take(upto))
            import pyarrow as pa

            table = pa.Table.from_batches(decoded, schema=self._file.schema_arrow)
            if reader.rows < self._starts[g + 1] - self._starts[g]:
                self._readers[g] = reader
            else:
                reader.close()
            self.cache.put(g, table)
            for dropped in set(self._readers) - set(self.cache.groups):  # evicted: start afresh if needed
                self._readers.pop(dropped).close()
        return table

    def row(self, index: int) -> Row:
        index = self._check_index(index, len(self))
        return self.rows(index, index + 1)[0]

    def row_at_hand(self, index: int) -> Row | None:
        index = self._check_index(index, len(self))
        g = self.group_of(index)
        table = self.cache.get(g)
        if table is None or index - self._starts[g] >= table.num_rows:
            return None
        return Row(index, index + 1, table.slice(index - self._starts[g], 1).to_pylist()[0])

    def rows(self, start: int, stop: int) -> list[Row]:
        start, stop = max(start, 0), min(stop, len(self))
        if start >= stop:
            return []
        out: list[Row] = []
        i = start
        while i < stop:
            g = self.group_of(i)
            group_end = min(self._starts[g + 1], stop)
            table = self._group(g, group_end - self._starts[g]).slice(i - self._starts[g], group_end - i)
            out.extend(Row(i + k, i + k + 1, data) for k, data in enumerate(table.to_pylist()))
            i = group_end
        return out

    def scan(self) -> Iterator[Row | DataError]:
        import pyarrow.parquet as pq

        index = 0
        # a reader of its own: a scan on one thread and row reads on another do not share one
        with pq.ParquetFile(self.path) as file:
            for batch in file.iter_batches(batch_size=1024):
                for data in batch.to_pylist():
                    yield Row(index, index + 1, data)
                    index += 1

    @property
    def columns(self) -> list[str]:
        return list(self._file.schema_arrow.names)

    def close(self) -> None:
        with self._read_lock:
            for reader in self._readers.values():
                reader.close()
            self._readers.clear()
        self.cache.clear()


# --- datasets.Dataset (save_to_disk directories, hub ids) -------------------------------------------


class ArrowSource(DatasetSource):
    """A `datasets.Dataset` (memory-mapped Arrow). A row's line is its position + 1."""

    def __init__(self, path: Path | str, dataset: datasets.Dataset, kind: str) -> None:
        super().__init__(path)
        self.dataset = dataset
        self.kind = kind
        if len(dataset) == 0:
            raise DataError("the dataset holds no rows", path=path)

    def __len__(self) -> int:
        return len(self.dataset)

    def row(self, index: int) -> Row:
        index = self._check_index(index, len(self))
        return Row(index, index + 1, dict(self.dataset[index]))

    def rows(self, start: int, stop: int) -> list[Row]:
        start, stop = max(start, 0), min(stop, len(self))
        if start >= stop:
            return []
        batch = self.dataset[start:stop]
        keys = list(batch)
        return [Row(i, i + 1, {k: batch[k][i - start] for k in keys}) for i in range(start, stop)]

    def scan(self) -> Iterator[Row | DataError]:
        for index, data in enumerate(self.dataset):
            yield Row(index, index + 1, dict(data))

    @property
    def columns(self) -> list[str]:
        return list(self.dataset.column_names)


def _pick_split(dataset: Any, path: Path | str) -> Any:
    """The train split of a DatasetDict (or its only split)."""
    import datasets

    if isinstance(dataset, datasets.DatasetDict):
        if "train" in dataset:
            return dataset["train"]
        if len(dataset) == 1:
            return next(iter(dataset.values()))
        raise DataError(
            f"the dataset has splits {', '.join(dataset)} and none is called train",
            path=path,
            hint="name the split's own directory instead",
        )
    return dataset


def _open_saved(path: Path) -> ArrowSource:
    import datasets

    try:
        dataset = datasets.load_from_disk(str(path))
    except (FileNotFoundError, ValueError, OSError) as err:
        raise DataError(f"cannot read this saved dataset: {err}", path=path) from None
    return ArrowSource(path, _pick_split(dataset, path), "arrow")


def _hub_reachable(timeout: float = 3.0) -> bool:
    """A quick TCP probe of the hub, so an offline machine fails in seconds rather than after retries."""
    import socket
    from urllib.parse import urlparse

    url = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    try:
        with socket.create_connection((url.hostname or "huggingface.co", url.port or 443), timeout=timeout):
            return True
    except OSError:
        return False


def _offline_flag() -> bool:
    return any(
        os.environ.get(v, "").lower() in ("1", "true", "yes", "on")
        for v in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")
    )


def _open_hub(ref: str) -> ArrowSource:
    unreachable = DataError(
        f"could not reach the Hugging Face hub to fetch dataset {ref!r}",
        path=ref,
        hint="this machine looks offline; local files work: a .jsonl, .json, .csv or .parquet path, or a "
        "directory saved with datasets.save_to_disk",
    )
    offline = _offline_flag()
    if not offline and not _hub_reachable():
        raise unreachable
    import datasets

    try:
        dataset = datasets.load_dataset(ref, split="train")
    except ConnectionError:
        raise unreachable from None
    except Exception as err:  # noqa: BLE001 - the hub client raises many kinds; each is a bad reference here
        if offline:
            raise unreachable from None
        raise DataError(f"could not load dataset {ref!r} from the hub: {err}", path=ref) from None
    return ArrowSource(ref, _pick_split(dataset, ref), "hub")


# --- opening ---------------------------------------------------------------------------------------


def _is_saved_dataset(path: Path) -> bool:
    return (path / "dataset_dict.json").is_file() or (
        (path / "state.json").is_file() and (path / "dataset_info.json").is_file()
    )


def _data_file_in(directory: Path) -> Path:
    """The one data file of a directory: a train* file, else the only data file (also under data/)."""
    for folder in (directory, directory / "data"):
        if not folder.is_dir():
            continue
        files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in DATA_SUFFIXES)
        train = [p for p in files if p.name.lower().startswith("train")]
        candidates = train or files
        if len(candidates) == 1:
            return candidates[0]
        if len(candidates) > 1:
            names = ", ".join(p.name for p in candidates[:6])
            raise DataError(
                f"this directory holds several data files ({names}); cannot tell which one to read",
                path=directory,
                hint="name the file itself, or call the training file train.jsonl",
            )
    raise DataError(
        "this directory holds no dataset: no .jsonl, .json, .csv or .parquet file and no save_to_disk data",
        path=directory,
    )


def _sniff_jsonl(path: Path) -> bool:
    """True for a .json file that is really JSON Lines (one object per line)."""
    with path.open("rb") as f:
        head = f.read(1 << 16)
    if head.startswith(_BOM):
        head = head[3:]
    lines = [line for line in head.split(b"\n") if line.strip()]
    if len(lines) < 2 or not lines[0].lstrip().startswith(b"{"):
        return False
    try:
        return isinstance(json.loads(lines[0]), dict)
    except (json.JSONDecodeError, UnicodeDecodeError):
        return False


def _open_file(path: Path) -> DatasetSource:
    suffix = path.suffix.lower()
    if suffix == ".jsonl":
        return JsonlSource(path)
    if suffix == ".json":
        return JsonlSource(path) if _sniff_jsonl(path) else JsonSource(path)
    if suffix == ".csv":
        return CsvSource(path)
    if suffix == ".parquet":
        return ParquetSource(path)
    raise DataError(
        f"unknown data file type {path.suffix or '(no extension)'!r}; expected .jsonl, .json, .csv or .parquet",
        path=path,
    )


def resolve_path(ref: str | Path, base_dir: Path | None = None) -> Path | None:
    """The local path `ref` names: absolute, else under `base_dir`, else under the current directory."""
    path = Path(ref).expanduser()
    if path.is_absolute():
        return path if path.exists() else None
    for root in (base_dir, Path.cwd()):
        if root is not None and (root / path).exists():
            return root / path
    return None


def open_dataset(ref: str | Path, *, base_dir: Path | None = None) -> DatasetSource:
    """A `DatasetSource` for a local file or directory, or a hub id `owner/name` (online only).

    Relative paths resolve against `base_dir` first (e.g. the workspace's data folder), then the
    current directory. Raises DataError for anything that cannot be opened.
    """
    path = resolve_path(ref, base_dir)
    if path is None:
        text = str(ref)
        if isinstance(ref, str) and _HUB_ID.match(text) and Path(text).suffix.lower() not in DATA_SUFFIXES:
            return _open_hub(text)
        looked = f" (looked in {base_dir} and the current directory)" if base_dir else ""
        raise DataError(f"no such file or directory{looked}", path=text)
    if path.is_dir():
        if _is_saved_dataset(path):
            return _open_saved(path)
        return _open_file(_data_file_in(path))
    return _open_file(path)


def load_records(src: DatasetSource | str | Path, *, base_dir: Path | None = None) -> Iterator[Row]:
    """Every row of a dataset in order; raises DataError at the first row that cannot be read."""
    source = src if isinstance(src, DatasetSource) else open_dataset(src, base_dir=base_dir)
    yield from source
