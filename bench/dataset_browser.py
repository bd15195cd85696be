"""The Datasets screen on a 1,000,000-row JSON Lines file: first rows, memory, jumping far.

In one run of this script:
  1. a 1,000,000-row chat JSONL is written to a temporary directory (not timed);
  2. baseline: the file's lines are counted by reading it in 1 MB chunks (what `wc -l` does), and the
     RSS of the app with no dataset open is taken;
  3. the app runs headless (`run_test`, 100x30) and opens the file; timed: from `open()` to the first
     rows painted in the table (budget 1 s), and to the end of indexing (compared with the baseline
     scan);
  4. RSS of the process once indexed (budget 300 MB), next to the baseline RSS;
  5. once indexed, the cursor jumps to row 900,000 and the time until that row is painted is taken
     (budget 200 ms; median of several jumps to rows around it).

    .venv/bin/python bench/dataset_browser.py [--rows 1000000] [--check]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

BUDGET_FIRST_ROWS_S = 1.0
BUDGET_RSS_MB = 300.0
BUDGET_JUMP_S = 0.2


def rss_mb() -> float:
    import psutil

    return psutil.Process(os.getpid()).memory_info().rss / (1 << 20)


def write_rows(path: Path, n: int) -> None:
    rng = random.Random(0)
    words = [
        "the",
        "a",
        "river",
        "tree",
        "capital",
        "spelled",
        "backwards",
        "answer",
        "what",
        "is",
        "of",
        "city",
        "land",
        "colour",
    ]
    with path.open("w", encoding="utf-8") as f:
        for i in range(n):
            question = " ".join(rng.choice(words) for _ in range(rng.randint(4, 12)))
            answer = " ".join(rng.choice(words) for _ in range(rng.randint(4, 20)))
            row = {
                "messages": [
                    {"role": "user", "content": f"{question} #{i}?"},
                    {"role": "assistant", "content": f"{answer}."},
                ]
            }
            f.write(json.dumps(row) + "\n")


def count_lines(path: Path) -> tuple[int, float]:
    start = time.perf_counter()
    n = 0
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            n += chunk.count(b"\n")
    return n, time.perf_counter() - start


async def browse(path: Path, home: Path, target: int) -> dict[str, float]:
    from tui_ft.ui.app import TuiFtApp
    from tui_ft.ui.widgets.row_table import RowTable
    from tui_ft.workspace import Workspace

    app = TuiFtApp(Workspace(home).ensure())
    out: dict[str, float] = {}
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.pause(0.2)
        out["rss_before_mb"] = rss_mb()
        screen = app.screen
        table = screen.query_one(RowTable)
        start = time.perf_counter()
        screen.open(str(path))
        while not (table.row_count and 0 in table._rows):  # row 0 read by render_line: painted
            await asyncio.sleep(0.002)
        out["first_rows_s"] = time.perf_counter() - start
        while not (screen.source is not None and screen.source.indexed and table.row_count >= target):
            await asyncio.sleep(0.01)
        out["indexed_s"] = time.perf_counter() - start
        out["rows"] = table.row_count
        await pilot.pause(0.1)
        out["rss_indexed_mb"] = rss_mb()
        jumps = []
        for k, row in enumerate([target, target + 5000, target - 7000, target + 12345, target - 23456]):
            table._rows.clear()
            t = time.perf_counter()
            table.jump_to(row)
            while row not in table._rows:
                await asyncio.sleep(0.001)
            jumps.append(time.perf_counter() - t)
            if k == 0:
                out["jump_first_s"] = jumps[0]
        out["jump_median_s"] = statistics.median(jumps)
        out["jump_max_s"] = max(jumps)
        out["checked"] = float(screen.report is not None)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--check", action="store_true", help="exit 1 if a budget is missed")
    args = parser.parse_args()
    target = int(args.rows * 0.9)
    with tempfile.TemporaryDirectory(prefix="tui-ft-bench-") as tmp:
        path = Path(tmp) / "big.jsonl"
        t = time.perf_counter()
        write_rows(path, args.rows)
        size_mb = path.stat().st_size / (1 << 20)
        print(f"wrote {args.rows:,} rows, {size_mb:.0f} MB, in {time.perf_counter() - t:.1f} s")
        lines, scan_s = count_lines(path)
        figures = asyncio.run(browse(path, Path(tmp) / "home", target))

    first, idx = figures["first_rows_s"], figures["indexed_s"]
    rss, rss0 = figures["rss_indexed_mb"], figures["rss_before_mb"]
    jump = figures["jump_first_s"]
    print(f"baseline: counting {lines:,} lines in 1 MB chunks took {scan_s:.3f} s")
    print(
        f"first rows painted      {first:7.3f} s    budget {BUDGET_FIRST_ROWS_S:.1f} s    "
        f"ratio {first / BUDGET_FIRST_ROWS_S:.2f}    {first / scan_s:.2f}x the baseline scan"
    )
    print(f"whole file indexed      {idx:7.3f} s    {idx / scan_s:.2f}x the baseline scan (no budget)")
    print(
        f"RSS once indexed        {rss:7.1f} MB   budget {BUDGET_RSS_MB:.0f} MB   ratio {rss / BUDGET_RSS_MB:.2f}    "
        f"app without a dataset {rss0:.1f} MB (+{rss - rss0:.1f} MB)"
    )
    print(
        f"jump to row {target:,}  {jump * 1000:7.1f} ms   budget {BUDGET_JUMP_S * 1000:.0f} ms   "
        f"ratio {jump / BUDGET_JUMP_S:.2f}    (5 jumps: median {figures['jump_median_s'] * 1000:.1f} ms, "
        f"max {figures['jump_max_s'] * 1000:.1f} ms)"
    )
    ok = first < BUDGET_FIRST_ROWS_S and rss < BUDGET_RSS_MB and figures["jump_max_s"] < BUDGET_JUMP_S
    print(f"within budgets: {'yes' if ok else 'NO'}")
    return 1 if args.check and not ok else 0


if __name__ == "__main__":
    sys.exit(main())
