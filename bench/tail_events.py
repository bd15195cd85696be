"""The dashboard's cost of tailing a live run: CPU of the reader and bytes read per refresh.

In one invocation, on a run directory in a temporary folder:
  - the run already holds `--history` events (a long run the UI attaches to late);
  - a writer process appends `--rate` realistic events per second for `--seconds` (train events with
    the metrics SFT logs, an eval every 100 steps, a `system` event every 5 s, status.json rewritten
    once a second and a line of output.log per second, as the runner does), with the runner's own
    EventWriter;
  - two reader processes tail it at the same time, refreshing every `--interval` seconds as the UI will,
    and each drawing six charts of `--width` columns, the progress and a 20-line log tail per refresh:
      A. RunHistory (incremental: only the new bytes, incremental downsampling);
      B. the baseline: re-read the whole events.jsonl and recompute each chart from every point.
Each reader reports the CPU time it spent tailing (its own process time, after its first read) as a
percentage of one core, and the bytes it read from events.jsonl over the bytes appended meanwhile.

    .venv/bin/python bench/tail_events.py [--seconds 20] [--rate 20] [--history 20000] [--check]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tui_ft.runs.rundir import EventWriter, RunDir, Status, read_events

CHARTS = ("loss", "learning_rate", "grad_norm", "tokens_per_s", "eval_loss", "system/cpu_percent")
# The registry treats a run as alive only when its process's command line names tui-ft; the writer
# carries this marker so the readers do not mark the benchmark's run crashed.
WRITER_MARK = "tui_ft-bench-writer"


# ------------------------------------------------------------------------------------------------
# writer


def train_fields(step: int) -> dict:
    return {
        "step": step,
        "loss": 2.5 * math.exp(-step / 4000) + 0.05 * math.sin(step / 7.0),
        "grad_norm": 0.8 + 0.1 * math.cos(step / 13.0),
        "learning_rate": 2e-4 * max(0.0, 1 - step / 200_000),
        "num_tokens": 2048.0 * step,
        "mean_token_accuracy": 0.4 + 0.5 * (1 - math.exp(-step / 5000)),
        "entropy": 1.2,
        "epoch": step / 50_000,
        "tokens_per_s": 40960.0 + (step % 17),
    }


def system_fields(step: int) -> dict:
    return {
        "step": step,
        "cpu_percent": 87.5,
        "cpu_count": 16,
        "process_cpu_percent": 101.2,
        "ram_used_mb": 23011.4,
        "ram_total_mb": 64000.0,
        "process_rss_mb": 5120.7,
        "load_1m": 1.9,
        "gpus": [
            {
                "index": i,
                "name": "NVIDIA A100-SXM4-80GB",
                "memory_used_mb": 61234.0 + step % 100,
                "memory_total_mb": 81920.0,
                "utilization_pct": 97.0,
                "temperature_c": 64.0,
                "power_w": 312.5,
            }
            for i in range(2)
        ],
    }


def write_history(events: EventWriter, start: int, count: int, t0: float, rate: float) -> int:
    """`count` events as the writer would have logged them before the UI attached."""
    step = start
    for k in range(count):
        step += 1
        t = t0 + k / rate
        events.write("train", t=round(t, 3), **train_fields(step))
        if step % 100 == 0:
            events.write("eval", t=round(t, 3), step=step, eval_loss=train_fields(step)["loss"] + 0.1)
        if step % 100 == 50:
            events.write("system", t=round(t, 3), **system_fields(step))
    return step


def writer_main(run_path: Path, rate: float, seconds: float, first_step: int) -> None:
    run = RunDir(run_path)
    status = run.read_status()
    assert status is not None
    status.pid = os.getpid()
    step = first_step
    next_status = next_log = next_system = 0.0
    started = time.monotonic()
    with EventWriter(run.events_file) as events, open(run.log_file, "a") as log:
        k = 0
        while True:
            due = started + k / rate
            now = time.monotonic()
            if due - started >= seconds:
                break
            if due > now:
                time.sleep(due - now)
            now = time.monotonic()
            step += 1
            k += 1
            fields = train_fields(step)
            events.write("train", **fields)
            if step % 100 == 0:
                events.write("eval", step=step, eval_loss=fields["loss"] + 0.1, eval_runtime=1.2)
            if now >= next_system:
                events.write("system", **system_fields(step))
                next_system = now + 5.0
            if now >= next_status:
                status.step, status.loss = step, fields["loss"]
                run.write_status(status)
                next_status = now + 1.0
            if now >= next_log:
                log.write(f"step {step} loss {fields['loss']:.4f}\n")
                log.flush()
                next_log = now + 1.0


# ------------------------------------------------------------------------------------------------
# readers


def downsample_full(steps: list, values: list, width: int) -> list:
    """The baseline's chart: min/max per column, recomputed from every point."""
    n = len(values)
    if n <= 2 * width:
        return list(zip(steps, values, strict=True))
    keep = {0, n - 1}
    for b in range(width):
        lo, hi = b * n // width, (b + 1) * n // width
        chunk = range(lo, hi)
        finite = [i for i in chunk if values[i] == values[i]]
        if finite:
            keep.add(min(finite, key=values.__getitem__))
            keep.add(max(finite, key=values.__getitem__))
    return [(steps[i], values[i]) for i in sorted(keep)]


class FullReader:
    """The naive dashboard: every refresh re-reads events.jsonl and rebuilds every series."""

    def __init__(self, run: RunDir, width: int):
        self.run, self.width = run, width
        self.bytes_read = 0

    def refresh(self) -> None:
        events, offset = read_events(self.run.events_file, 0)
        self.bytes_read += offset
        series: dict[str, tuple[list, list]] = {}
        resume_at = None
        for event in events:
            kind = event.get("type")
            if kind == "resume":
                resume_at = event.get("step", 0)
            if kind in ("train", "eval"):
                for key, value in event.items():
                    if key not in ("t", "type", "step") and isinstance(value, (int, float)):
                        steps, values = series.setdefault(key, ([], []))
                        steps.append(event.get("step"))
                        values.append(float(value))
            elif kind == "system" and isinstance(event.get("cpu_percent"), (int, float)):
                steps, values = series.setdefault("system/cpu_percent", ([], []))
                steps.append(event.get("step"))
                values.append(float(event["cpu_percent"]))
        del resume_at  # (no resume in this benchmark; a real reader would apply it here)
        for name in CHARTS:
            if name in series:
                downsample_full(*series[name], self.width)
        self.run.read_status()
        lines = self.run.log_file.read_text(errors="replace").splitlines()[-20:]
        del lines


def reader_main(kind: str, run_path: Path, seconds: float, interval: float, width: int) -> dict:
    from tui_ft.runs.history import RunHistory

    run = RunDir(run_path)
    if kind == "incremental":
        history = RunHistory(run)

        def refresh() -> None:
            history.refresh()
            for name in CHARTS:
                if history.has_series(name):
                    history.downsample(name, width)
            history.progress()
            history.log_tail(20)

        def bytes_read() -> int:
            return history.bytes_read_total
    else:
        reader = FullReader(run, width)

        def refresh() -> None:
            reader.refresh()

        def bytes_read() -> int:
            return reader.bytes_read

    cpu0, wall0 = time.process_time(), time.perf_counter()
    refresh()  # attach: the whole history once
    first_cpu, first_wall = time.process_time() - cpu0, time.perf_counter() - wall0
    size0 = run.events_file.stat().st_size  # the writer starts only once every reader is ready
    print("ready", flush=True)
    sys.stdin.readline()  # "go"
    read0 = bytes_read()
    per_refresh = []
    cpu0, wall0 = time.process_time(), time.perf_counter()
    deadline = time.monotonic() + seconds
    refreshes = 0
    while time.monotonic() < deadline:
        time.sleep(interval)  # the UI's poller: the next refresh is scheduled when the last one ended
        before = bytes_read()
        size_before = run.events_file.stat().st_size
        refresh()
        refreshes += 1
        per_refresh.append((bytes_read() - before, size_before))
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    size1 = run.events_file.stat().st_size
    return {
        "reader": kind,
        "first_read_cpu_s": round(first_cpu, 3),
        "first_read_wall_s": round(first_wall, 3),
        "refreshes": refreshes,
        "cpu_s": round(cpu, 3),
        "wall_s": round(wall, 3),
        "cpu_pct_of_core": round(100 * cpu / wall, 2),
        "bytes_read": bytes_read() - read0,
        "bytes_appended": size1 - size0,
        "max_bytes_per_refresh": max((b for b, _ in per_refresh), default=0),
        "final_size": size1,
    }


# ------------------------------------------------------------------------------------------------
# orchestration


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=20.0, help="how long the writer appends")
    parser.add_argument("--rate", type=float, default=20.0, help="events per second")
    parser.add_argument("--history", type=int, default=20_000, help="events already in the run")
    parser.add_argument("--interval", type=float, default=0.5, help="seconds between refreshes")
    parser.add_argument("--width", type=int, default=120, help="chart width in columns")
    parser.add_argument("--check", action="store_true", help="exit 1 when a goal below is missed")
    parser.add_argument("--writer", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--reader", choices=("incremental", "full"), help=argparse.SUPPRESS)
    parser.add_argument("--run", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--first-step", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("mark", nargs="?", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.writer:
        writer_main(args.writer, args.rate, args.seconds, args.first_step)
        return 0
    if args.reader:
        print(json.dumps(reader_main(args.reader, args.run, args.seconds, args.interval, args.width)))
        return 0

    with tempfile.TemporaryDirectory(prefix="tui-ft-bench-") as tmp:
        run = RunDir(Path(tmp) / "runs" / "20260101-000000-sft-bench")
        run.path.mkdir(parents=True)
        run.write_status(
            Status(id=run.id, name="sft-bench", method="sft", state="running", max_steps=1_000_000)
        )
        with EventWriter(run.events_file) as events:
            events.write("start", step=0, max_steps=1_000_000, num_train_epochs=1, world_size=1)
            last_step = write_history(
                events, 0, args.history, time.time() - args.history / args.rate, args.rate
            )
        run.log_file.write_text("".join(f"step {s}\n" for s in range(1, args.history + 1, 20)))
        history_bytes = run.events_file.stat().st_size
        print(
            f"run with {args.history} events ({history_bytes / 1e6:.1f} MB) already recorded; "
            f"appending {args.rate:g} events/s for {args.seconds:g} s; refresh every {args.interval:g} s, "
            f"{len(CHARTS)} charts x {args.width} columns",
            flush=True,
        )
        me = [sys.executable, str(Path(__file__).resolve())]
        common = ["--run", str(run.path), "--interval", str(args.interval), "--width", str(args.width)]
        # The readers attach first (their first read is reported apart), then the writer starts and both
        # readers tail it for its whole life (plus 2 s, so their last refresh sees its last event).
        readers = {
            kind: subprocess.Popen(
                [*me, "--reader", kind, "--seconds", str(args.seconds + 2.0), *common],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
            )
            for kind in ("incremental", "full")
        }
        for proc in readers.values():
            assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        for proc in readers.values():
            assert proc.stdin is not None
            proc.stdin.write("go\n")
            proc.stdin.flush()
        writer = subprocess.run(
            [
                *me,
                "--writer",
                str(run.path),
                "--rate",
                str(args.rate),
                "--seconds",
                str(args.seconds),
                "--first-step",
                str(last_step),
                WRITER_MARK,
            ],
            check=True,
        )
        del writer
        results = {}
        for kind, proc in readers.items():
            out, _ = proc.communicate(timeout=args.seconds + 300)
            results[kind] = json.loads(out.strip().splitlines()[-1])
        appended = results["incremental"]["bytes_appended"]
        print(f"writer appended {appended / 1e3:.1f} kB while the readers tailed\n")
        print(f"{'reader':<34}{'first read':>12}{'CPU % of a core':>18}{'bytes read / appended':>24}")
        for kind, label in (
            ("incremental", "A. RunHistory (incremental)"),
            ("full", "B. baseline: re-read all"),
        ):
            r = results[kind]
            ratio = r["bytes_read"] / r["bytes_appended"] if r["bytes_appended"] else float("nan")
            r["bytes_ratio"] = round(ratio, 4)
            print(f"{label:<34}{r['first_read_cpu_s']:>10.2f} s{r['cpu_pct_of_core']:>17.2f}%{ratio:>24.3f}")
        a, b = results["incremental"], results["full"]
        print(
            f"\nA's refreshes: {a['refreshes']}, at most {a['max_bytes_per_refresh']} bytes each; "
            f"CPU ratio B/A: {b['cpu_s'] / a['cpu_s'] if a['cpu_s'] else float('inf'):.1f}x"
        )
        ok_cpu = a["cpu_pct_of_core"] < 3.0
        ok_bytes = 0.99 <= a["bytes_ratio"] <= 1.05
        print(
            f"goal: A < 3% of a core: {'yes' if ok_cpu else 'NO'}; A bytes ratio ~1.0: {'yes' if ok_bytes else 'NO'}"
        )
        if args.check and not (ok_cpu and ok_bytes):
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
