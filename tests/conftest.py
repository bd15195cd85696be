"""Shared fixtures and helpers.

One demo workspace per test session (the demo model is built once, in seconds); a home folder per test
for screens that show paths; the environment and a runner for the real `tui-ft` command; stand-in
runner processes; and the pollers tests wait with (deadlines only, never timings)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tui_ft.monitor.system import GpuStatus
from tui_ft.runs.rundir import read_events
from tui_ft.workspace import Workspace

# Tests never reach a hub: a hub lookup would wait for network time-outs instead of failing fast.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

#: Sample and broken data files the data tests read (`bad/` holds the broken ones).
DATA_FIXTURES = Path(__file__).parent / "fixtures" / "data"

#: Whether this machine lacks the NVIDIA driver's command (the "no GPU" paths can be checked for real).
NO_NVIDIA = shutil.which("nvidia-smi") is None

#: What a machine without an NVIDIA driver reports; tests fix the GPU line to it.
NO_GPU = GpuStatus(False, "no NVIDIA driver found", None, None, ())


# ------------------------------------------------------------------------------------------------
# workspaces


@pytest.fixture(scope="session")
def demo_ws(tmp_path_factory) -> Workspace:
    """A workspace with the demo model and sample data built."""
    from tui_ft.demo import build_demo

    ws = Workspace(tmp_path_factory.mktemp("home")).ensure()
    build_demo(ws)
    return ws


@pytest.fixture()
def home(tmp_path, monkeypatch) -> Path:
    """A home folder of this test's own, with $HOME pointing at it.

    The UI writes paths under the home folder as `~/...`, so a workspace placed in it (see
    `workspace_in`) reads the same on every machine, whatever TMPDIR is and however many test runs go
    at once: what snapshot tests need."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    return home


def workspace_in(home: Path) -> Path:
    """Where a workspace goes in `home`: the default place on Linux, so screens read as a user's do."""
    return home / ".local" / "share" / "tui-ft"


# ------------------------------------------------------------------------------------------------
# the real command


@pytest.fixture()
def cli_env(demo_ws) -> dict[str, str]:
    """Environment for running the real `tui-ft` command against the demo workspace."""
    env = dict(os.environ)
    env["TUI_FT_HOME"] = str(demo_ws.root)
    env["PYTHONUNBUFFERED"] = "1"
    return env


def tui_ft_command() -> list[str]:
    """The installed console script when present, else the module (same code)."""
    script = Path(sys.executable).parent / "tui-ft"
    return [str(script)] if script.exists() else [sys.executable, "-m", "tui_ft"]


def run_tui_ft(
    env: dict[str, str], *args: str, timeout: float = 300, cwd=None
) -> subprocess.CompletedProcess:
    """Run `tui-ft ARGS` to its end; its output as text."""
    return subprocess.run(
        [*tui_ft_command(), *args], env=env, capture_output=True, text=True, timeout=timeout, cwd=cwd
    )


def train_losses(run) -> dict[int, float]:
    """Loss per step; after a resume, the later segment's events replace the earlier ones."""
    losses: dict[int, float] = {}
    for event in read_events(run.events_file)[0]:
        if event["type"] == "resume":
            losses = {s: v for s, v in losses.items() if s <= event["step"]}
        if event["type"] == "train" and "loss" in event:
            losses[event["step"]] = event["loss"]
    return losses


def train_recipe(ws: Workspace, name: str, *overrides: str, expect: int = 0):
    """Create a run of the recipe (`--set` style overrides, a log line every step) and train it in this
    process, as the runner does; (run, status). With `expect=0` the run must complete."""
    from tui_ft.engine.runner import execute
    from tui_ft.recipe import load_recipe
    from tui_ft.runs.prepare import create_run

    loaded = load_recipe(name, ["training.logging_steps=1", *overrides], cache_dir=ws.cache)
    run = create_run(loaded, ws)
    code = execute(run.path)
    status = run.read_status()
    if expect == 0:
        assert code == 0, (status.error, run.log_file.read_text()[-3000:])
        assert status.state == "completed"
    return run, status


# ------------------------------------------------------------------------------------------------
# runner processes


@pytest.fixture()
def stand_in_runners() -> Iterator[Callable[[], subprocess.Popen]]:
    """Start live processes whose command line names the runner, so a run's pid counts as alive;
    each is killed when the test ends."""
    procs: list[subprocess.Popen] = []

    def start() -> subprocess.Popen:
        procs.append(
            subprocess.Popen(
                [sys.executable, "-c", "import time; time.sleep(300)", "tui_ft.engine.runner"],
                stdin=subprocess.DEVNULL,
            )
        )
        return procs[-1]

    yield start
    for proc in procs:
        proc.kill()
        proc.wait()


def dead_pid() -> int:
    """The pid of a process that has already exited."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


# ------------------------------------------------------------------------------------------------
# waiting


def wait_for_status(run, predicate, timeout: float = 300, poll: float = 0.2):
    """Poll the run's status (refreshed as the registry does) until `predicate(status)` holds."""
    from tui_ft.runs.registry import refresh

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = refresh(run)
        if status is not None and predicate(status):
            return status
        time.sleep(poll)
    raise AssertionError(f"timed out; last status {refresh(run)}; log:\n{run.log_file.read_text()[-2000:]}")


async def until(pilot, condition: Callable[[], object], timeout: float = 20.0) -> None:
    """Let the app run until `condition()` holds (workers report through messages)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting for the screen")
        await pilot.pause(0.05)


@pytest.fixture()
def anyio_backend() -> str:
    """Pilot tests (`pytest.mark.anyio`) run on asyncio, Textual's loop."""
    return "asyncio"
