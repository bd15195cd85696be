"""Stop latency and resume overhead of a detached run, on the demo model.

In one run of this script:
  1. a detached run starts; its time from launch to the first logged step is the baseline start-up;
  2. once it is past step N, `tui-ft stop` is timed until the run's state is `stopped`
     (stop latency: seconds and optimizer steps between the request and the checkpoint);
  3. `tui-ft resume --detach` is timed from launch to the first step logged after the resume
     (resume overhead), and compared with the baseline start-up as a ratio.

    .venv/bin/python bench/stop_resume.py [--repeats 3]
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

from tui_ft.demo import build_demo
from tui_ft.runs.registry import find_run, refresh
from tui_ft.runs.rundir import read_events
from tui_ft.workspace import Workspace

TUI_FT = [sys.executable, "-m", "tui_ft"]
SETS = [
    "training.max_steps=100000",
    "training.logging_steps=1",
    "training.save_steps=100000",
    "data.eval_split=0",
    "training.eval_strategy=no",
]


def wait(predicate, timeout=600.0, poll=0.02):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(poll)
    raise TimeoutError


def first_train_after(run, t0: float):
    def check():
        events, _ = read_events(run.events_file)
        return next((e for e in events if e["type"] == "train" and e["t"] >= t0), None)

    return check


def one_cycle(env, ws, stop_after: int) -> dict:
    args = [a for s in SETS for a in ("--set", s)]
    t0 = time.time()
    out = subprocess.run(
        [*TUI_FT, "train", "sft-lora", *args, "--detach", "--json"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    run = find_run(ws, json.loads(out.stdout)["id"])
    first = wait(first_train_after(run, t0))
    startup = first["t"] - t0
    wait(lambda: (refresh(run).step or 0) >= stop_after)
    requested_step = refresh(run).step
    t1 = time.time()
    subprocess.run([*TUI_FT, "stop", run.id, "--no-wait"], env=env, check=True, capture_output=True)
    status = wait(lambda: (s := refresh(run)) and s.is_final and s)
    stop_latency = time.time() - t1
    assert status.state == "stopped", status
    t2 = time.time()
    subprocess.run([*TUI_FT, "resume", run.id, "--detach"], env=env, check=True, capture_output=True)
    resumed = wait(first_train_after(run, t2))
    resume_time = resumed["t"] - t2
    subprocess.run([*TUI_FT, "stop", run.id, "--now"], env=env, check=True, capture_output=True)
    return {
        "startup_s": startup,
        "stop_latency_s": stop_latency,
        "stop_steps_after_request": status.step - requested_step,
        "resume_to_first_step_s": resume_time,
        "resumed_at_step": resumed["step"],
        "stopped_at_step": status.step,
    }


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--stop-after", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as home:
        ws = Workspace(Path(home)).ensure()
        build_demo(ws)
        env = dict(os.environ, TUI_FT_HOME=home)
        cycles = [one_cycle(env, ws, args.stop_after) for _ in range(args.repeats)]
    med = {k: statistics.median(c[k] for c in cycles) for k in cycles[0]}
    print(f"cycles: {len(cycles)} (median of each figure)")
    print(f"baseline: launch to first step of a fresh run   {med['startup_s']:.2f} s")
    print(
        f"stop latency: request to `stopped`              {med['stop_latency_s']:.2f} s "
        f"({med['stop_steps_after_request']:.0f} optimizer steps after the request, checkpoint included)"
    )
    print(f"resume: launch to first new step                {med['resume_to_first_step_s']:.2f} s")
    print(
        f"resume overhead ratio (resume / fresh start):   {med['resume_to_first_step_s'] / med['startup_s']:.3f}"
    )
    for c in cycles:
        assert c["resumed_at_step"] == c["stopped_at_step"] + 1, c
    print("every resume continued at the step after the stop: yes")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
