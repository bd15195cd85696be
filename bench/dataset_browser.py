"""The Datasets screen on 1,000,000-row JSON Lines and Parquet files: first rows, memory, jumping far.

In one run of this script:
  1. the data files are written to a temporary directory (not timed): a 1,000,000-row chat JSONL, the
     same rows as Parquet in row groups of 100,000 rows, and the worst case for a row table, 300,000
     rows of Parquet in one row group;
  2. baselines: the JSONL's lines are counted by reading it in 1 MB chunks (what `wc -l` does); pyarrow
     decodes one row group of each Parquet file (the floor for a Parquet row: a row group is the
     smallest unit pyarrow reads, and before the rows were read off the event loop it was also how
     long the UI froze);
  3. each file is browsed in a fresh Python process (so one case's memory does not count in the next),
     the app headless (`run_test`, 100x30), and a task on the event loop ticks every 5 ms; the gaps
     between ticks say how long the loop was blocked. With no dataset open, the idle gaps are taken
     as the baseline for the loop; then the file is opened. Timed: from `open()` to the first rows
     painted in the table (budget 1 s), and to the end of indexing;
  4. RSS of the process once indexed (budget 300 MB), next to its RSS with no dataset open;
  5. the cursor jumps to row 90 % of the way down and four rows around it; before each jump the
     table's rows and the source's decoded row groups are dropped, so every jump reads cold (budget
     200 ms for each, median and max printed); also, without a budget, until every row on the page is
     read (the cursor's row is read first: rows above it may sit at the end of the previous row group);
  6. the largest gap between event-loop ticks from `open()` to the last jump (for the one-row-group
     file: no budget in the design, but it must stay far below the row group's decode time).

    .venv/bin/python bench/dataset_browser.py [--rows 1000000] [--check]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

BUDGET_FIRST_ROWS_S = 1.0
BUDGET_RSS_MB = 300.0
BUDGET_JUMP_S = 0.2
GROUP_ROWS = 100_000
ONE_GROUP_ROWS = 300_000
TICK_S = 0.005


def rss_mb() -> float:
    import psutil

    return psutil.Process(os.getpid()).memory_info().rss / (1 << 20)


def chat_rows(n: int) -> Iterator[dict]:
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
    for i in range(n):
        question = " ".join(rng.choice(words) for _ in range(rng.randint(4, 12)))
        answer = " ".join(rng.choice(words) for _ in range(rng.randint(4, 20)))
        yield {
            "messages": [
                {"role": "user", "content": f"{question} #{i}?"},
                {"role": "assistant", "content": f"{answer}."},
            ]
        }


def write_rows(path: Path, n: int) -> None:
    with path.open("w", encoding="utf-8") as f:
        for row in chat_rows(n):
            f.write(json.dumps(row) + "\n")


def write_parquet(path: Path, n: int, group_rows: int) -> None:
    """`n` chat rows as Parquet, one row group per `group_rows` rows, written a group at a time."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = chat_rows(n)
    writer = None
    for start in range(0, n, group_rows):
        table = pa.Table.from_pylist([next(rows) for _ in range(min(group_rows, n - start))])
        if writer is None:
            writer = pq.ParquetWriter(path, table.schema)
        writer.write_table(table, row_group_size=group_rows)
    assert writer is not None
    writer.close()


def groups_of(rows: int) -> int:
    return -(-rows // GROUP_ROWS)


def count_lines(path: Path) -> tuple[int, float]:
    start = time.perf_counter()
    n = 0
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            n += chunk.count(b"\n")
    return n, time.perf_counter() - start


def decode_group(path: Path, group: int) -> tuple[int, float]:
    """(row groups in the file, seconds pyarrow takes to decode row group `group`)."""
    import pyarrow.parquet as pq

    with pq.ParquetFile(path) as f:
        start = time.perf_counter()
        f.read_row_group(group)
        return f.metadata.num_row_groups, time.perf_counter() - start


class Ticks:
    """A task on the event loop that wakes every TICK_S; the gaps between wake-ups show blocking."""

    def __init__(self) -> None:
        self.times: list[float] = []
        self._task: asyncio.Task | None = None

    async def _run(self) -> None:
        while True:
            self.times.append(time.perf_counter())
            await asyncio.sleep(TICK_S)

    def start(self) -> None:
        self.times = []
        self._task = asyncio.get_running_loop().create_task(self._run())

    def stop(self) -> list[float]:
        assert self._task is not None
        self._task.cancel()
        return [b - a for a, b in zip(self.times, self.times[1:], strict=False)]


async def browse(path: Path, home: Path, target: int) -> dict[str, float]:
    from tui_ft.ui.app import TuiFtApp
    from tui_ft.ui.widgets.row_table import RowTable
    from tui_ft.workspace import Workspace

    app = TuiFtApp(Workspace(home).ensure())
    out: dict[str, float] = {}
    ticks = Ticks()
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.pause(0.2)
        out["rss_before_mb"] = rss_mb()
        ticks.start()
        await asyncio.sleep(1.0)
        idle = ticks.stop()
        out["idle_gap_max_s"] = max(idle)
        screen = app.screen
        table = screen.query_one(RowTable)
        ticks.start()
        start = time.perf_counter()
        screen.open(str(path))
        while not (table.row_count and 0 in table._rows):  # row 0 read (by render_line or a worker): painted
            await asyncio.sleep(0.002)
        out["first_rows_s"] = time.perf_counter() - start
        while not (screen.source is not None and screen.source.indexed and table.row_count >= target):
            await asyncio.sleep(0.01)
        out["indexed_s"] = time.perf_counter() - start
        out["rows"] = table.row_count
        await pilot.pause(0.1)
        out["rss_indexed_mb"] = rss_mb()
        jumps, pages = [], []
        cache = getattr(screen.source, "cache", None)
        for k, row in enumerate([target, target + 5000, target - 7000, target + 12345, target - 23456]):
            row = min(max(row, 0), table.row_count - 1)
            table._rows.clear()
            table._lines.clear()  # painted lines too: each row on the page is read again
            if cache is not None:
                cache.clear()  # every jump decodes its row group again: the cold case
            t = time.perf_counter()
            table.jump_to(row)
            while row not in table._rows:
                await asyncio.sleep(0.001)
            jumps.append(time.perf_counter() - t)
            top = round(table.scroll_y)
            on_page = range(top, min(top + table.page_height, table.row_count))
            while not all(k in table._rows for k in on_page):
                if time.perf_counter() - t > 60:
                    sys.exit(f"rows {on_page.start:,}-{on_page.stop:,} were not all read after a jump")
                await asyncio.sleep(0.001)
            pages.append(time.perf_counter() - t)
            if k == 0:
                out["jump_first_s"] = jumps[0]
        gaps = ticks.stop()
        out["rss_end_mb"] = rss_mb()
        out["jump_median_s"] = statistics.median(jumps)
        out["jump_max_s"] = max(jumps)
        out["page_median_s"] = statistics.median(pages)
        out["page_max_s"] = max(pages)
        out["gap_max_s"] = max(gaps)
        out["gap_p99_s"] = statistics.quantiles(gaps, n=100)[98]
        out["checked"] = float(screen.report is not None)
    return out


def browse_in_child(path: Path, home: Path, target: int) -> dict[str, float]:
    """`browse` in a fresh interpreter: RSS figures are this file's alone."""
    cmd = [sys.executable, __file__, "--browse", str(path), "--home", str(home), "--target", str(target)]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        sys.exit(f"browsing {path.name} failed:\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def report(
    name: str, figures: dict[str, float], target: int, baseline: str, baseline_s: float, budgeted: bool
) -> bool:
    """Print one case's figures; True if it is within the budgets (always True for a case without)."""
    first, idx = figures["first_rows_s"], figures["indexed_s"]
    rss, rss0 = figures["rss_indexed_mb"], figures["rss_before_mb"]
    jump, gap, idle = figures["jump_first_s"], figures["gap_max_s"], figures["idle_gap_max_s"]
    print(f"--- {name}: {int(figures['rows']):,} rows")
    print(f"baseline: {baseline} took {baseline_s:.3f} s")
    print(
        f"first rows painted      {first:7.3f} s    budget {BUDGET_FIRST_ROWS_S:.1f} s    "
        f"ratio {first / BUDGET_FIRST_ROWS_S:.2f}    {first / baseline_s:.2f}x the baseline"
    )
    print(f"whole file indexed      {idx:7.3f} s    {idx / baseline_s:.2f}x the baseline (no budget)")
    print(
        f"RSS once indexed        {rss:7.1f} MB   budget {BUDGET_RSS_MB:.0f} MB   ratio {rss / BUDGET_RSS_MB:.2f}    "
        f"app without a dataset {rss0:.1f} MB (+{rss - rss0:.1f} MB; {figures['rss_end_mb']:.1f} MB after the jumps)"
    )
    print(
        f"jump to row {target:,}  {jump * 1000:7.1f} ms   budget {BUDGET_JUMP_S * 1000:.0f} ms   "
        f"ratio {jump / BUDGET_JUMP_S:.2f}    (5 cold jumps: median {figures['jump_median_s'] * 1000:.1f} ms, "
        f"max {figures['jump_max_s'] * 1000:.1f} ms)"
    )
    print(
        f"  the whole page read   median {figures['page_median_s'] * 1000:.1f} ms, max "
        f"{figures['page_max_s'] * 1000:.1f} ms (no budget)"
    )
    print(
        f"event loop, longest gap {gap * 1000:7.1f} ms   (ticks every {TICK_S * 1000:.0f} ms; p99 "
        f"{figures['gap_p99_s'] * 1000:.1f} ms; idle app before opening: longest {idle * 1000:.1f} ms)"
    )
    if not budgeted:
        print(
            f"(no budget: the loop was blocked at most {gap / baseline_s:.2f}x the row group's decode time)"
        )
        return True
    return first < BUDGET_FIRST_ROWS_S and rss < BUDGET_RSS_MB and figures["jump_max_s"] < BUDGET_JUMP_S


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--check", action="store_true", help="exit 1 if a budget is missed")
    parser.add_argument("--browse", type=Path, help=argparse.SUPPRESS)  # the child: browse one file
    parser.add_argument("--home", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--target", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.browse is not None:
        print(json.dumps(asyncio.run(browse(args.browse, args.home, args.target))))
        return 0
    target = int(args.rows * 0.9)
    one_group_rows = min(ONE_GROUP_ROWS, args.rows)
    with tempfile.TemporaryDirectory(prefix="tui-ft-bench-") as tmp:
        jsonl, parquet, one_group = (
            Path(tmp) / "big.jsonl",
            Path(tmp) / "big.parquet",
            Path(tmp) / "one.parquet",
        )
        t = time.perf_counter()
        write_rows(jsonl, args.rows)
        write_parquet(parquet, args.rows, GROUP_ROWS)
        write_parquet(one_group, one_group_rows, one_group_rows)
        sizes = ", ".join(
            f"{p.name} {p.stat().st_size / (1 << 20):.0f} MB" for p in (jsonl, parquet, one_group)
        )
        print(f"wrote {args.rows:,} rows ({sizes}) in {time.perf_counter() - t:.1f} s")
        lines, scan_s = count_lines(jsonl)
        groups, group_s = decode_group(parquet, groups_of(args.rows) * 9 // 10)
        _, one_group_s = decode_group(one_group, 0)
        home = Path(tmp) / "home"
        cases = [
            (
                "JSON Lines",
                browse_in_child(jsonl, home, target),
                target,
                f"counting {lines:,} lines in 1 MB chunks",
                scan_s,
                True,
            ),
            (
                f"Parquet, {groups} row groups of {GROUP_ROWS:,} rows",
                browse_in_child(parquet, home, target),
                target,
                f"pyarrow decoding one row group of {GROUP_ROWS:,} rows",
                group_s,
                True,
            ),
            (
                f"Parquet, one row group of {one_group_rows:,} rows (the worst case)",
                browse_in_child(one_group, home, int(one_group_rows * 0.9)),
                int(one_group_rows * 0.9),
                "pyarrow decoding the row group (the loop used to wait this long on a row's first paint)",
                one_group_s,
                False,
            ),
        ]
    ok = all([report(*case) for case in cases])
    print(f"within budgets: {'yes' if ok else 'NO'}")
    return 1 if args.check and not ok else 0


if __name__ == "__main__":
    sys.exit(main())
