"""The tokenization cache: a run's tokenized, formatted training data, kept for the next run with the same key.

`<workspace>/cache/tokenized/<key>/` holds one dataset written with `datasets`' `save_to_disk` (memory-mapped
back by `load_from_disk`) and `tui-ft.json` (what it holds). The key hashes the data's content, the
tokenizer, the chat template and every setting that changes the tokens (see `engine/sft.py`), so a sweep's
trials, a rerun and a resume map the cached copy instead of tokenizing again. The folder is bounded: after
each write the entries least recently used go first until it is under the limit
(`$TUI_FT_TOKEN_CACHE_LIMIT`, e.g. `500MB`, `8GB`; `0` turns the cache off; default 4 GB). Light: datasets is
imported only by the functions that read or hash one.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

LIMIT_ENV = "TUI_FT_TOKEN_CACHE_LIMIT"
DEFAULT_LIMIT = 4 * 1024**3
META_FILE = "tui-ft.json"
_UNITS = {"": 1, "b": 1, "k": 1024, "kb": 1024, "m": 1024**2, "mb": 1024**2, "g": 1024**3, "gb": 1024**3}


def parse_size(text: str) -> int:
    """Bytes from `4GB`, `500MB`, `1024`; ValueError for anything else."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kmg]?b?)\s*", text.lower())
    if match is None:
        raise ValueError(f"not a size: {text!r} (say e.g. 500MB or 4GB)")
    return int(float(match.group(1)) * _UNITS[match.group(2)])


def cache_limit() -> int:
    """The cache's size limit in bytes: $TUI_FT_TOKEN_CACHE_LIMIT, else 4 GB (an unreadable value: the default)."""
    raw = os.environ.get(LIMIT_ENV)
    if not raw:
        return DEFAULT_LIMIT
    try:
        return parse_size(raw)
    except ValueError:
        return DEFAULT_LIMIT


def cache_key(parts: dict[str, Any]) -> str:
    """A short stable hash of everything that decides the tokens."""
    blob = json.dumps(parts, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:32]


def dataset_content_hash(dataset: Any) -> str:
    """A hash of a `datasets.Dataset`'s rows as stored: the Arrow buffers of its table (memory-mapped, so
    read at disk speed) and its row order (the indices a split or a shuffle leaves). The same file read
    the same way hashes the same; any change to a row changes it."""
    h = hashlib.blake2b(digest_size=20)
    tables = [dataset.data.table]
    indices = getattr(dataset, "_indices", None)
    if indices is not None:
        tables.append(indices.table)
    for table in tables:
        h.update(str(table.schema).encode())
        for column in table.columns:
            for chunk in column.chunks:
                _hash_array(h, chunk)
    return h.hexdigest()


def _hash_array(h: Any, array: Any) -> None:
    h.update(f"{array.offset}:{len(array)}".encode())
    for buffer in array.buffers():
        if buffer is not None:
            h.update(memoryview(buffer))
    for child in _children(array):
        _hash_array(h, child)


def _children(array: Any) -> list[Any]:
    # buffers() of a nested array already lists its children's buffers; dictionaries are the exception
    dictionary = getattr(array, "dictionary", None)
    return [dictionary] if dictionary is not None else []


@dataclass(frozen=True)
class CacheEntry:
    key: str
    path: Path
    size: int
    used: float  # last written or read (the mtime of its meta file)
    meta: dict[str, Any]


class TokenCache:
    """The tokenized datasets of past runs, least recently used out first once over `limit` bytes."""

    def __init__(self, root: Path, limit: int | None = None) -> None:
        self.root = root
        self.limit = cache_limit() if limit is None else limit

    @classmethod
    def for_workspace(cls, ws: Any, limit: int | None = None) -> TokenCache:
        return cls(Path(ws.cache) / "tokenized", limit)

    def lookup(self, key: str) -> CacheEntry | None:
        """The entry under `key`, marked as just used; None on a miss (or a half-written entry, or a limit of 0:
        the cache is off)."""
        if self.limit <= 0:
            return None
        path = self.root / key
        meta_file = path / META_FILE
        try:
            meta = json.loads(meta_file.read_text())
            os.utime(meta_file)
        except (OSError, ValueError):
            return None
        return CacheEntry(key, path, _folder_size(path), time.time(), meta)

    def store(self, key: str, write: Callable[[Path], None], meta: dict[str, Any]) -> CacheEntry | None:
        """Write an entry with `write(folder)` (then its meta, last: an entry without one is never read),
        move it into place atomically and trim the cache. None when it does not fit under the limit."""
        if self.limit <= 0:
            return None
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = self.root / f".{key}.{os.getpid()}.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        try:
            write(tmp)
            (tmp / META_FILE).write_text(json.dumps({**meta, "key": key, "created": time.time()}, indent=1))
            target = self.root / key
            if (
                target / META_FILE
            ).is_file():  # another run (a sweep's trial) stored it meanwhile: keep that one
                return self.lookup(key)
            shutil.rmtree(target, ignore_errors=True)  # a half-written entry of a run that died
            os.replace(tmp, target)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        self.trim()
        return self.lookup(key)

    def entries(self) -> list[CacheEntry]:
        """Every complete entry, most recently used first."""
        found: list[CacheEntry] = []
        if not self.root.is_dir():
            return found
        for path in self.root.iterdir():
            meta_file = path / META_FILE
            if path.name.startswith(".") or not meta_file.is_file():
                continue
            try:
                meta = json.loads(meta_file.read_text())
                used = meta_file.stat().st_mtime
            except (OSError, ValueError):
                continue
            found.append(CacheEntry(path.name, path, _folder_size(path), used, meta))
        return sorted(found, key=lambda e: e.used, reverse=True)

    def size(self) -> int:
        return sum(e.size for e in self.entries())

    def trim(self) -> list[str]:
        """Drop the least recently used entries until the cache is under its limit; the keys dropped."""
        entries = self.entries()
        total = sum(e.size for e in entries)
        dropped = []
        while entries and total > self.limit:
            oldest = entries.pop()
            shutil.rmtree(oldest.path, ignore_errors=True)
            total -= oldest.size
            dropped.append(oldest.key)
        return dropped

    def clear(self) -> tuple[int, int]:
        """Remove every entry (and half-written ones); (entries removed, bytes freed)."""
        entries = self.entries()
        freed = sum(e.size for e in entries)
        if self.root.is_dir():
            for path in self.root.iterdir():
                shutil.rmtree(path, ignore_errors=True) if path.is_dir() else path.unlink(missing_ok=True)
        return len(entries), freed


def _folder_size(path: Path) -> int:
    total = 0
    for item in path.rglob("*"):
        try:
            if item.is_file():
                total += item.stat().st_size
        except OSError:
            continue
    return total
