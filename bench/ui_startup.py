"""Time from process start to the first screen painted, for tui-ft and for an empty Textual app.

Each measurement is a fresh Python process started by this script: the clock starts just before the
process is spawned and stops when the process reports Textual's `Ready` event (sent once the first
frame has been displayed). The app runs headless, so no terminal's drawing speed is counted. The
baseline is an empty Textual app (one Static) measured the same way, alternating with tui-ft, so the
interpreter's and Textual's own start-up are visible apart from what tui-ft adds. The ratio is the
median over the rounds of each round's ratio (the two processes back to back, in alternating order): on
a shared machine the same process takes anywhere from 0.34 to 0.58 s in spells that last seconds, which
a round's two processes share. Both sides start with their compiled modules written, and tui-ft with
the parsed CSS it keeps in the workspace's cache (`tui_ft/ui/css_cache.py`), as they would after
their first start. The tui-ft process also reports which of the training stack's modules it had
imported by then (the budget says none).

    .venv/bin/python bench/ui_startup.py [--repeats 15] [--check] [--check-absolute]

`--check` exits 1 when tui-ft takes more than 1.5x the empty app of the same run or had imported any of
the training stack; `--check-absolute` also holds the 1.0 s budget (meaningful on a quiet machine only).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BUDGET_S = 1.0
RATIO_GOAL = 1.5  # tui-ft's start to first screen, at most this many times an empty Textual app's
HEAVY = ["torch", "transformers", "trl", "peft", "datasets", "bitsandbytes", "accelerate"]

CHILD = f"""
import json, sys, time
from textual.app import App
from textual.widgets import Static

kind, home = sys.argv[1], sys.argv[2]
HEAVY = {HEAVY!r}

def report(app):
    heavy = [m for m in HEAVY if m in sys.modules]
    print(json.dumps({{"heavy": heavy, "cpu": time.process_time()}}), flush=True)
    app.exit()

if kind == "tui-ft":
    from pathlib import Path
    from tui_ft.ui.app import TuiFtApp
    from tui_ft.workspace import Workspace

    class Timed(TuiFtApp):
        def on_ready(self):
            report(self)

    app = Timed(Workspace(Path(home)))
else:
    class Timed(App):
        def compose(self):
            yield Static("hello")

        def on_ready(self):
            report(self)

    app = Timed()
app.run(headless=True, size=(100, 30))
"""


def child_env(home: Path) -> dict[str, str]:
    """The children's environment: compiled modules (.pyc) kept in a folder of this run's own, written by
    the warm-up runs and read by the measured ones, as an installed package's are, even where the
    caller's environment says not to write them (PYTHONDONTWRITEBYTECODE would have every measured
    tui-ft process compile its own modules from source, a cost no installed tui-ft pays)."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env["PYTHONPYCACHEPREFIX"] = str(home / "pycache")
    return env


def measure(kind: str, home: Path) -> tuple[float, float, list[str]]:
    """Wall seconds from spawn to the first frame, the process's own CPU seconds by then (every thread;
    less swayed by other processes on a shared machine), and the training-stack modules it imported."""
    env = child_env(home)
    start = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-c", CHILD, kind, str(home)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert proc.stdout is not None
    report = None
    for line in proc.stdout:  # the clock stops at the report, not when the process has ended
        if line.startswith("{"):
            took = time.perf_counter() - start
            report = json.loads(line)
            break
    _, err = proc.communicate(timeout=60)
    if report is None or proc.returncode:
        raise RuntimeError(f"the {kind} app did not report its first frame (exit {proc.returncode}):\n{err}")
    return took, report["cpu"], report["heavy"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument(
        "--check",
        action="store_true",
        help=f"exit 1 if tui-ft takes more than {RATIO_GOAL}x the empty app or imports the training stack",
    )
    parser.add_argument(
        "--check-absolute", action="store_true", help=f"with --check, also exit 1 above {BUDGET_S} s"
    )
    args = parser.parse_args()

    from tui_ft.demo import build_demo
    from tui_ft.workspace import Workspace

    with tempfile.TemporaryDirectory(prefix="tui-ft-bench-") as tmp:
        home = Path(tmp)
        ws = Workspace(home).ensure()
        build_demo(ws)
        measure("tui-ft", home)  # warm the file cache and write the .pyc files once, not counted
        measure("empty", home)
        tui, empty, heavy_seen = [], [], set()
        cpu: dict[str, list[float]] = {"tui-ft": [], "empty": []}
        for round_ in range(args.repeats):
            sides = (("tui-ft", tui), ("empty", empty))
            for kind, into in sides if round_ % 2 == 0 else sides[::-1]:
                took, used, heavy = measure(kind, home)
                into.append(took)
                cpu[kind].append(used)
                if kind == "tui-ft":
                    heavy_seen.update(heavy)

    t, e = statistics.median(tui), statistics.median(empty)
    print(f"process start to first screen painted (headless), median of {args.repeats}:")
    print(
        f"  tui-ft (Datasets screen)   {t:6.3f} s   budget {BUDGET_S:.1f} s   ratio to budget {t / BUDGET_S:.2f}"
    )
    print(f"  empty Textual app          {e:6.3f} s   (baseline, same run)")
    per_round = statistics.median(a / b for a, b in zip(tui, empty, strict=True))
    print(
        f"  tui-ft / empty app         {per_round:6.2f}x   (goal <= {RATIO_GOAL}x, per round; of the medians "
        f"{t / e:.2f}x; tui-ft's own cost: {t - e:+.3f} s)"
    )
    tc, ec = statistics.median(cpu["tui-ft"]), statistics.median(cpu["empty"])
    print(f"  cross-check, CPU seconds   tui-ft {tc:.3f} s, empty {ec:.3f} s: {tc / ec:.2f}x")
    print(f"  spread tui-ft              {min(tui):.3f} - {max(tui):.3f} s")
    print(f"  training stack imported    {', '.join(sorted(heavy_seen)) or 'none'}")
    ok = t < BUDGET_S and not heavy_seen
    print(f"  within budget: {'yes' if ok else 'NO'}")
    ratio_ok = per_round <= RATIO_GOAL and not heavy_seen
    print(f"  within {RATIO_GOAL}x the empty app: {'yes' if ratio_ok else 'NO'}")
    if args.check and not (ratio_ok and (ok or not args.check_absolute)):
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
