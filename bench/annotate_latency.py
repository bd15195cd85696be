"""The Annotate screen: time from a decision key to the next pair on screen, and whether the annotator
ever waits for candidates while the generator is ahead.

Both sides run in this process, on the real app driven headless by Textual's Pilot, in a temporary
workspace with the demo model (built first; deleted afterwards):

- **baseline**: a review session of the sample preference pairs: every candidate is there from the
  start, nothing is generated. It measures the screen alone (the decision fsynced to the store, the next
  pair drawn).
- **buffered**: a session whose candidates the demo model generates (two samples, through the
  generation service), `--buffer` pairs ahead. The annotator first waits for the buffer to fill, then
  "reads" each pair for `--think` times the measured time the generator needs per pair, so the
  generator keeps ahead, and presses a key: the time from the key to the next pair drawn, with the
  service generating in the background, is the figure; a pair shown as still generating is a wait.

A key's latency: from the key event posted to the app (as a terminal's key arrives) to the end of the
refresh that shows the next pair (the key handled, the store line fsynced, the next pair's text
replaced, the screen composed and painted headless).

    .venv/bin/python bench/annotate_latency.py [--keys 200] [--buffered-keys 30] [--buffer 4] [--check]

Budget (DESIGN.md): the next pair after a key < 50 ms at the 99th percentile while buffered, and no
wait while the buffer is ahead.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

from textual import events

BUDGET_MS = 50.0
SIZE = (120, 36)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    k = max(0, min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1))))
    return ordered[k]


async def until(pilot, condition, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise RuntimeError("timed out")
        await pilot.pause(0.02)


async def measure(ws, name: str, keys: int, think_s: float = 0.0, fill_timeout: float = 300) -> dict:
    from tui_ft.ui.app import TuiFtApp

    app = TuiFtApp(ws, start_mode="annotate", annotate_session=name)
    latencies: list[float] = []
    waits = 0
    per_pair_s = None
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: getattr(app.screen, "session", None) is not None, 60)
        screen = app.screen
        session = screen.session
        if session.spec.kind == "generate":
            started = time.monotonic()
            await until(pilot, lambda: session.buffered() >= session.spec.buffer, fill_timeout)
            per_pair_s = (time.monotonic() - started) / session.spec.buffer  # load included: an upper bound
            # the pace of the generator alone, once loaded: one more pair
            started = time.monotonic()
            await pilot.press("1")
            await until(pilot, lambda: session.buffered() >= session.spec.buffer, fill_timeout)
            per_pair_s = time.monotonic() - started
        for i in range(keys):
            if think_s:
                await asyncio.sleep(think_s)
            before = screen.shown_index
            key = "1" if i % 2 else "2"
            painted = asyncio.Event()
            t0 = time.perf_counter()
            app.post_message(events.Key(key, key))  # as a terminal's key arrives
            while screen.shown_index == before:
                await asyncio.sleep(0)
            app.call_after_refresh(painted.set)  # the frame with the next pair
            await painted.wait()
            latencies.append((time.perf_counter() - t0) * 1000)
            assert screen.shown_index != before
            if (
                screen.shown_pair is None
                and screen.shown_index is not None
                and screen.shown_index < session.total
            ):
                waits += 1
    return {
        "keys": len(latencies),
        "p50_ms": statistics.median(latencies) if latencies else 0.0,
        "p99_ms": percentile(latencies, 99) if latencies else 0.0,
        "max_ms": max(latencies, default=0.0),
        "waits": waits,
        "per_pair_s": per_pair_s,
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--keys", type=int, default=200, help="keys on the baseline (review) session")
    p.add_argument("--buffered-keys", type=int, default=30, help="keys on the generated session")
    p.add_argument("--buffer", type=int, default=4)
    p.add_argument("--max-new-tokens", type=int, default=16)
    p.add_argument("--think", type=float, default=1.5, help="reading time, in generator-times per pair")
    p.add_argument("--json", metavar="FILE")
    p.add_argument("--keep", action="store_true")
    p.add_argument("--check", action="store_true", help="exit 1 if a budget is missed")
    args = p.parse_args()

    home = Path(tempfile.mkdtemp(prefix="tui-ft-bench-annotate-"))
    os.environ["TUI_FT_HOME"] = str(home)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from tui_ft.demo import build_demo
    from tui_ft.prefs.session import SessionSpec, default_settings, remember_annotator, save_spec
    from tui_ft.workspace import Workspace

    ws = Workspace(home).ensure()
    try:
        build_demo(ws)
        remember_annotator(ws, "bench")
        save_spec(ws, SessionSpec(name="baseline", prompts=str(ws.data / "preferences.jsonl"), kind="review"))
        save_spec(
            ws,
            SessionSpec(
                name="buffered",
                prompts=str(ws.data / "prompts.jsonl"),
                a="demo-tiny",
                settings_a=default_settings(max_new_tokens=args.max_new_tokens, seed=1),
                settings_b=default_settings(max_new_tokens=args.max_new_tokens, seed=100_003),
                buffer=args.buffer,
            ),
        )
        baseline = asyncio.run(measure(ws, "baseline", args.keys))
        # the generator's pace, from a short first look at the buffered session
        probe = asyncio.run(measure(ws, "buffered", 0))
        think_s = args.think * (probe["per_pair_s"] or 1.0)
        buffered = asyncio.run(measure(ws, "buffered", args.buffered_keys, think_s=think_s))
    finally:
        if not args.keep:
            shutil.rmtree(home, ignore_errors=True)

    ratio = buffered["p99_ms"] / baseline["p99_ms"] if baseline["p99_ms"] else float("nan")
    print(f"{'session':<10} {'keys':>5} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8} {'waits':>6}")
    for label, r in (("baseline", baseline), ("buffered", buffered)):
        print(
            f"{label:<10} {r['keys']:>5} {r['p50_ms']:>8.1f} {r['p99_ms']:>8.1f} {r['max_ms']:>8.1f} {r['waits']:>6}"
        )
    print(f"generator: {probe['per_pair_s']:.2f} s per pair; the annotator read each pair {think_s:.2f} s")
    print(f"p99 ratio (buffered / baseline): {ratio:.2f}")
    ok_latency = buffered["p99_ms"] < BUDGET_MS
    ok_waits = buffered["waits"] == 0
    print(
        f"next pair after a key, p99 while buffered: {buffered['p99_ms']:.1f} ms (budget < {BUDGET_MS:.0f} ms): "
        f"{'met' if ok_latency else 'MISSED'}"
    )
    print(
        f"waits while the buffer was ahead: {buffered['waits']} (goal 0): {'met' if ok_waits else 'MISSED'}"
    )
    if args.json:
        Path(args.json).write_text(
            json.dumps(
                {"baseline": baseline, "buffered": buffered, "think_s": think_s, "p99_ratio": ratio}, indent=2
            )
        )
    return 1 if args.check and not (ok_latency and ok_waits) else 0


if __name__ == "__main__":
    sys.exit(main())
