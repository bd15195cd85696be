"""`tui-ft cache` and `tui-ft cache clear`: the tokenization cache (`data/token_cache.py`)."""

from __future__ import annotations

import argparse
import time

from tui_ft.commands import print_json
from tui_ft.data.token_cache import LIMIT_ENV, TokenCache
from tui_ft.display import format_count, format_duration
from tui_ft.workspace import Workspace


def register(sub: argparse._SubParsersAction) -> None:
    cache = sub.add_parser(
        "cache",
        help="the tokenization cache: list its entries and size; `cache clear` empties it",
        description=f"Tokenized training data kept for the next run with the same key; bounded by ${LIMIT_ENV} "
        "(e.g. 500MB, 8GB; 0 keeps nothing; default 4GB), least recently used out first.",
    )
    cache.add_argument("action", nargs="?", choices=["list", "clear"], default="list")
    cache.add_argument("--json", action="store_true")
    cache.set_defaults(func=cmd_cache)


def _size(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024  # type: ignore[assignment]
    return f"{n} B"


def cmd_cache(args, ws: Workspace) -> int:
    cache = TokenCache.for_workspace(ws)
    if args.action == "clear":
        removed, freed = cache.clear()
        if args.json:
            print_json({"removed": removed, "freed_bytes": freed, "path": str(cache.root)})
        else:
            print(f"removed {format_count(removed, 'entry', 'entries')} ({_size(freed)}) from {cache.root}")
        return 0
    entries = cache.entries()
    total = sum(e.size for e in entries)
    if args.json:
        print_json(
            {
                "path": str(cache.root),
                "size_bytes": total,
                "limit_bytes": cache.limit,
                "entries": [
                    {"key": e.key, "size_bytes": e.size, "used": e.used, **{k: e.meta.get(k) for k in _SHOWN}}
                    for e in entries
                ],
            }
        )
        return 0
    print(
        f"{cache.root}: {format_count(len(entries), 'entry', 'entries')}, {_size(total)} of {_size(cache.limit)}"
    )
    now = time.time()
    for e in entries:
        packed = " packed" if e.meta.get("packing") else ""
        print(
            f"  {e.key[:12]}  {_size(e.size):>9}  {e.meta.get('dataset', '?'):<5} {e.meta.get('rows', '?')} rows"
            f"{packed}, max_length {e.meta.get('max_length')}, used {format_duration(now - e.used)} ago"
        )
    return 0


_SHOWN = ("dataset", "rows", "prepared_rows", "max_length", "packing", "created")
