"""Launch to first step of a second run on a large chat file, with and without the tokenization cache.

    .venv/bin/python bench/token_cache.py [--rows 100000] [--pairs 2]

Builds the demo in a temporary workspace ($TUI_FT_HOME) and a chat file of `--rows` rows (the demo's chats,
varied), trains `sft-lora` on it once to fill the cache (one step), then, alternating the order in each
pair, launches the same run again (`tui-ft train sft-lora`, one step, in a fresh process):
  - with the cache: the tokenized data is loaded from `cache/tokenized/`;
  - without it: `TUI_FT_TOKEN_CACHE_LIMIT=0` turns the cache off, so the run tokenizes as before the cache.
It prints, for each run, the seconds from launching the command to its first `train` event (the end of
step 1), the ratio without / with (median of the pairs), and the load average. Exit status 0 (a
benchmark), 1 when a run fails.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def write_rows(source: Path, out: Path, rows: int) -> None:
    """`rows` chats: the demo's, each with a numbered question so that no two rows are the same."""
    base = [json.loads(line) for line in source.read_text().splitlines() if line.strip()]
    rng = random.Random(0)
    with out.open("w") as fh:
        for i in range(rows):
            row = json.loads(json.dumps(rng.choice(base)))
            row["messages"][-2]["content"] += f" (question {i})"
            fh.write(json.dumps(row) + "\n")


def launch(ws_root: Path, data: Path, env: dict[str, str]) -> tuple[float, list[str]]:
    """Seconds from launch to the first train event, and the run's cache lines."""
    runs = ws_root / "runs"
    before = set(os.listdir(runs))
    args = [sys.executable, "-m", "tui_ft", "train", "sft-lora"]
    for o in (
        f"data.train={data}",
        "data.eval_split=0",
        'training.eval_strategy="no"',
        "training.max_steps=1",
        "training.logging_steps=1",
        "training.save_steps=1000",
    ):
        args += ["--set", o]
    started = time.time()
    proc = subprocess.run(args, env=env, capture_output=True, text=True, cwd=ROOT)
    new = sorted(set(os.listdir(runs)) - before)
    if proc.returncode != 0 or not new:
        raise SystemExit(f"run failed ({proc.returncode}):\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    events = [json.loads(line) for line in (runs / new[-1] / "events.jsonl").read_text().splitlines() if line]
    first = next(e["t"] for e in events if e["type"] == "train")
    lines = [e["text"] for e in events if e["type"] == "message" and "tokenized" in e["text"]]
    return first - started, lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--pairs", type=int, default=2)
    args = parser.parse_args()

    from tui_ft.demo import build_demo
    from tui_ft.workspace import Workspace

    with tempfile.TemporaryDirectory(prefix="tui-ft-token-cache-") as tmp:
        ws = Workspace(Path(tmp) / "home").ensure()
        build_demo(ws)
        data = Path(tmp) / "big.jsonl"
        write_rows(ws.data / "chat.jsonl", data, args.rows)
        env = {**os.environ, "TUI_FT_HOME": str(ws.root), "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"}
        off = {**env, "TUI_FT_TOKEN_CACHE_LIMIT": "0"}
        print(
            f"{args.rows} rows, {data.stat().st_size / 1e6:.1f} MB; load {os.getloadavg()[0]:.2f}", flush=True
        )
        seconds, lines = launch(ws.root, data, env)
        print(f"first run (fills the cache): {seconds:.1f} s to step 1; {'; '.join(lines)}", flush=True)
        timings: dict[str, list[float]] = {"cached": [], "uncached": []}
        for pair in range(args.pairs):
            order = ("cached", "uncached") if pair % 2 == 0 else ("uncached", "cached")
            for side in order:
                seconds, lines = launch(ws.root, data, env if side == "cached" else off)
                timings[side].append(seconds)
                print(
                    f"pair {pair + 1} {side:>8}: {seconds:.1f} s launch to step 1 (load {os.getloadavg()[0]:.2f}); "
                    + "; ".join(lines),
                    flush=True,
                )
        ratios = [u / c for u, c in zip(timings["uncached"], timings["cached"], strict=True)]
        print(
            f"RESULT launch to first step, second run on {args.rows} rows: without the cache "
            f"{statistics.median(timings['uncached']):.1f} s, with it {statistics.median(timings['cached']):.1f} s: "
            f"{statistics.median(ratios):.2f}x (pairs: {', '.join(f'{r:.2f}' for r in ratios)}); "
            f"load {' '.join(f'{x:.2f}' for x in os.getloadavg())}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
