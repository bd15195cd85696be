"""The UI's CPU while its dashboard tails a run that writes 20 events/s, against the same app idling.

Two phases, each a fresh UI process running the real app headless at 160x48 (`App.run(headless=True)`):

- **tail**: the dashboard is open on a live run; a separate writer process (not counted) appends
  `train` events with every metric the dashboard charts and one `system` event each second, 20 events/s
  in all, and rewrites status.json once a second, as the runner does.
- **idle** (the baseline): the same app on the run list, with the same run finished (no live run).

Each UI process measures its own CPU time (`getrusage(RUSAGE_SELF)`: every thread, workers included)
over `--seconds` after a warm-up (counted from when the dashboard has read the run and drawn its charts), and reports it as % of one core, with the dashboard's refreshes, the
bytes its `RunHistory` read from events.jsonl in that window against the bytes appended to it, and how
many times the charts were rebuilt (in all, and of charts not on screen: hidden tabs, scrolled out).
`--pairs N` alternates N tail and idle phases and reports the median of each (a loaded machine's noise).

    .venv/bin/python bench/ui_tail_cpu.py [--seconds 20] [--rate 20] [--pairs 1] [--check]
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

BUDGET_PCT = 2.0  # of one core, for the UI while tailing (DESIGN.md, Budgets)
WARMUP_S = 4.0
SIZE = (160, 48)

UI_CHILD = (
    (
        """
import json, os, resource, sys, time
from pathlib import Path
from tui_ft.ui.app import TuiFtApp
from tui_ft.workspace import Workspace

phase, home, run_id, seconds, warmup = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4]), float(sys.argv[5])
events = Path(home) / "runs" / run_id / "events.jsonl"
started = time.monotonic()

def cpu():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime

class Measured(TuiFtApp):
    def on_ready(self):
        self.set_timer(0.5, self.settled)

    def settled(self):
        # the window opens `warmup` s after the dashboard has read the run and drawn what is in view:
        # it measures tailing, not opening (a loaded machine can take seconds to open a long run)
        screen = self.screen
        charts = [c for c in screen.query("MetricChart") if getattr(c, "plot_on_screen", c.is_on_screen)]
        opened = getattr(screen, "refreshes", 1) >= 1 and all(c.up_to_date for c in charts if c.has_data())
        if opened or time.monotonic() - started > 60:
            self.set_timer(warmup, self.start)
        else:
            self.set_timer(0.5, self.settled)

    def figures(self):
        screen = self.screen
        history = getattr(screen, "history", None)
        charts = list(screen.query("MetricChart")) if hasattr(screen, "history") else []
        return {
            "cpu": cpu(),
            "wall": time.monotonic(),
            "refreshes": getattr(screen, "refreshes", 0),
            "bytes_read": history.bytes_read_total if history is not None else 0,
            "events_size": events.stat().st_size,
            "draws": sum(c.draws for c in charts),
            "charts": len(charts),
            "charts_in_view": sum(1 for c in charts if getattr(c, "plot_on_screen", c.is_on_screen)),
        }

    def start(self):
        self.first = self.figures()
        self.set_timer(seconds, self.stop)

    def stop(self):
        last = self.figures()
        delta = {k: last[k] - self.first[k] for k in last}
        delta["charts"] = last["charts"]
        delta["charts_in_view"] = last["charts_in_view"]
        delta["mode"] = self.current_mode
        delta["dashboard"] = bool(getattr(self.screen, "history", None))
        print("RESULT " + json.dumps(delta), flush=True)
        self.exit()

start = run_id if phase == "tail" else None
Measured(Workspace(Path(home)), start_mode="runs", start_run=start).run(headless=True, size=(WIDTH, HEIGHT))
"""
    )
    .replace("WIDTH", str(SIZE[0]))
    .replace("HEIGHT", str(SIZE[1]))
)

WRITER_CHILD = """
import json, math, os, sys, time
from dataclasses import asdict
from pathlib import Path
from tui_ft.runs.rundir import EventWriter, RunDir, Status, write_json_atomic

run = RunDir(Path(sys.argv[1]))
rate, seconds, step = float(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4])
status = Status.from_dict(json.loads(run.status_file.read_text()))
status.pid = os.getpid()  # this process is the run's runner
start = time.monotonic()
n = 0
last_status = 0.0
with EventWriter(run.events_file) as events:
    while time.monotonic() - start < seconds:
        now = time.monotonic()
        if n % int(rate) == 0:
            events.write("system", step=step, cpu_percent=50.0 + 10 * math.sin(n), cpu_count=16,
                         process_cpu_percent=99.0, ram_used_mb=23000.0 + n, ram_total_mb=64000.0,
                         process_rss_mb=5000.0 + n / 10, load_1m=1.5)
        else:
            step += 1
            events.write("train", step=step, loss=1.0 + 2.0 * math.exp(-step / 500) + 0.05 * math.sin(step),
                         grad_norm=0.5 + math.exp(-step / 300), learning_rate=1e-4 * math.cos(step / 5000),
                         epoch=step / 10000, num_tokens=512.0 * step, tokens_per_s=9000 + 100 * math.sin(step),
                         mean_token_accuracy=0.6, entropy=1.2)
        n += 1
        if now - last_status >= 1.0:  # the runner rewrites status.json at most once a second
            status.step = step
            run.write_status(status)
            last_status = now
        time.sleep(max(0.0, start + n / rate - time.monotonic()))
print(n, flush=True)
"""


def record_run(home: Path, run_id: str, steps: int, state: str, pid: int | None) -> Path:
    """A run directory with `steps` steps of history, as the runner writes it."""
    from tui_ft.runs.rundir import EventWriter, RunDir, Status, write_json_atomic

    run = RunDir(home / "runs" / run_id)
    run.path.mkdir(parents=True, exist_ok=True)
    t0 = time.time() - steps / 10
    with EventWriter(run.events_file) as events:
        events.write("state", t=t0, step=0, state="starting", pid=pid or 1)
        events.write("start", t=t0, step=0, max_steps=1_000_000, num_train_epochs=1, world_size=1)
        for step in range(1, steps + 1):
            t = t0 + step / 10
            events.write(
                "train",
                t=t,
                step=step,
                loss=1 + 2 * math.exp(-step / 500),
                grad_norm=1.0,
                learning_rate=1e-4,
                tokens_per_s=9000.0,
                num_tokens=512.0 * step,
            )
            if step % 50 == 0:
                events.write(
                    "system",
                    t=t,
                    step=step,
                    cpu_percent=50.0,
                    process_cpu_percent=99.0,
                    ram_used_mb=23000.0,
                    ram_total_mb=64000.0,
                    process_rss_mb=5000.0,
                    gpu_error="no GPU: none in this benchmark",
                )
    run.log_file.write_text("training\n")
    status = Status(
        id=run_id,
        name="bench",
        method="sft",
        state=state,
        pid=pid,
        step=steps,
        max_steps=1_000_000,
        started=t0,
        ended=None if state == "running" else time.time(),
        device="cpu",
        model="demo-tiny",
        adapter="lora",
    )
    write_json_atomic(run.status_file, asdict(status))
    return run.path


def run_ui(phase: str, home: Path, run_id: str, seconds: float) -> dict:
    out = subprocess.run(
        [sys.executable, "-c", UI_CHILD, phase, str(home), run_id, str(seconds), str(WARMUP_S)],
        capture_output=True,
        text=True,
        timeout=seconds + 120,
    )
    for line in out.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[7:])
    raise SystemExit(f"the UI process reported nothing:\n{out.stdout[-2000:]}\n{out.stderr[-4000:]}")


def pct(result: dict) -> float:
    return 100.0 * result["cpu"] / result["wall"]


def tail_phase(home: Path, run_id: str, args: argparse.Namespace) -> dict:
    """The dashboard on the run while a writer appends to it (the run marked running again)."""
    status_file = home / "runs" / run_id / "status.json"
    status = json.loads(status_file.read_text())
    status["state"], status["ended"] = "running", None
    status_file.write_text(json.dumps(status))
    writer_seconds = WARMUP_S + args.seconds + 15  # outlives the UI's start-up and window
    writer = subprocess.Popen(
        [
            sys.executable,
            "-c",
            WRITER_CHILD,
            str(home / "runs" / run_id),
            str(args.rate),
            str(writer_seconds),
            str(status.get("step") or args.history),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    time.sleep(1.0)  # its first status.json (running, its pid) is written before the UI reads it
    try:
        return run_ui("tail", home, run_id, args.seconds)
    finally:
        writer.kill()
        writer.wait()


def idle_phase(home: Path, run_id: str, args: argparse.Namespace) -> dict:
    """The app on the run list with the run finished."""
    status_file = home / "runs" / run_id / "status.json"
    status = json.loads(status_file.read_text())
    status["state"], status["ended"] = "completed", time.time()
    status_file.write_text(json.dumps(status))
    return run_ui("idle", home, run_id, args.seconds)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=20.0, help="measured window per phase")
    parser.add_argument("--rate", type=float, default=20.0, help="events per second the writer appends")
    parser.add_argument(
        "--history", type=int, default=20000, help="steps already in the run when the UI opens it"
    )
    parser.add_argument("--pairs", type=int, default=1, help="tail/idle phases, alternating (median)")
    parser.add_argument("--check", action="store_true", help="exit 1 when the budget is missed")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="tui-ft-bench-") as tmp:  # the name makes the writer a runner
        home = Path(tmp) / "home"
        from tui_ft.workspace import Workspace

        Workspace(home).ensure()
        run_id = "20261122-120000-sft-lora"
        record_run(home, run_id, args.history, "running", None)
        print(
            f"tail: the dashboard on a run with {args.history:,} steps, +{args.rate:g} events/s "
            f"({args.seconds:g} s window after {WARMUP_S:g} s warm-up, {SIZE[0]}x{SIZE[1]})"
        )
        print("idle (the baseline): the same app on the run list, the run finished (no live run)")
        tails, idles = [], []
        for pair in range(args.pairs):
            tails.append(tail_phase(home, run_id, args))
            idles.append(idle_phase(home, run_id, args))
            print(
                f"  pair {pair + 1}: tail {pct(tails[-1]):.2f}%  idle {pct(idles[-1]):.2f}%  "
                f"(rebuilds {tails[-1]['draws']})",
                flush=True,
            )
        tail = sorted(tails, key=pct)[len(tails) // 2]
        idle = sorted(idles, key=pct)[len(idles) // 2]

    tail_pct, idle_pct = pct(tail), pct(idle)
    appended = tail["events_size"]
    per_refresh_read = tail["bytes_read"] / max(1, tail["refreshes"])
    per_refresh_new = appended / max(1, tail["refreshes"])
    print()
    print(f"{'':28}{'tail':>12}{'idle':>12}")
    print(f"{'UI CPU, % of one core':28}{tail_pct:12.2f}{idle_pct:12.2f}")
    print(f"{'CPU seconds':28}{tail['cpu']:12.3f}{idle['cpu']:12.3f}")
    print(f"{'dashboard refreshes':28}{tail['refreshes']:12d}{idle['refreshes']:12d}")
    print(f"{'chart rebuilds (plotext)':28}{tail['draws']:12d}{idle['draws']:12d}")
    print(f"{'charts on the dashboard':28}{tail['charts']:12d}{idle['charts']:12d}")
    print(f"{'  of which in view':28}{tail['charts_in_view']:12d}{idle['charts_in_view']:12d}")
    print()
    print(
        f"events.jsonl appended in the window: {appended:,} bytes; read by the dashboard: "
        f"{tail['bytes_read']:,} bytes (ratio {tail['bytes_read'] / max(1, appended):.3f}; 1.000 = each new "
        f"byte once, nothing re-read)"
    )
    print(f"per refresh: {per_refresh_read:,.0f} bytes read for {per_refresh_new:,.0f} new bytes")
    print()
    ok = tail_pct < BUDGET_PCT
    print(
        f"UI CPU while tailing: {tail_pct:.2f}% of one core (budget < {BUDGET_PCT:g}%: "
        f"{'met' if ok else 'MISSED'}); {tail_pct / BUDGET_PCT:.2f} of the budget; "
        f"{tail_pct - idle_pct:+.2f} points over idling on the run list"
    )
    return 1 if args.check and not ok else 0


if __name__ == "__main__":
    sys.exit(main())
