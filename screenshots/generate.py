"""Regenerate screenshots/*.svg: every screen and mode of tui-ft at 100x30 (Chat also at 80x24 and
160x48), on a fresh demo workspace.

    scripts/screenshots            (or: .venv/bin/python screenshots/generate.py [--out DIR])
    scripts/screenshots --only chat   (the Chat shots alone: no training runs needed)

The demo (model + sample data) is built in a temporary home folder ($HOME points at it while the
shots are taken), at the workspace's default place there, so the header shows
`~/.local/share/tui-ft` whatever the machine; one file with mistakes is added to show the error list. Each shot waits until the screen's workers have reported (dataset checked,
tokens rendered), so the pictures show finished screens, not "loading…".
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

SIZE = (100, 30)
OUT = Path(__file__).resolve().parent


async def _until(pilot, condition: Callable[[], bool], timeout: float = 60.0) -> None:
    for _ in range(int(timeout / 0.05)):
        if condition():
            return
        await pilot.pause(0.05)
    raise TimeoutError("the screen did not finish in time")


async def _shoot(app, pilot, out: Path, name: str) -> None:
    from textual.widgets import Input

    for widget in app.screen.query(Input):
        widget.cursor_blink = False
    await pilot.pause(0.2)
    app.save_screenshot(filename=f"{name}.svg", path=str(out))
    print(f"  {out / (name + '.svg')}")


async def shoot_all(home: Path, out: Path) -> None:
    from tui_ft.ui.app import TuiFtApp
    from tui_ft.ui.widgets.token_view import TokenPanel
    from tui_ft.workspace import Workspace

    ws = Workspace(home)

    async def with_dataset(name: str, ref: str, keys: list[str], ready=None) -> None:
        app = TuiFtApp(ws, open_path=ref)
        async with app.run_test(size=SIZE) as pilot:
            screen = app.screen
            await _until(pilot, lambda: screen.report is not None and "checking" not in app.gpu_summary)
            if keys:
                await pilot.press(*keys)
            if ready is not None:
                await _until(pilot, lambda: ready(screen))
            await _shoot(app, pilot, out, name)

    await with_dataset("datasets-rows", "chat.jsonl", ["down", "down"])
    await with_dataset("datasets-row-chat", "chat.jsonl", ["enter"])
    await with_dataset("datasets-row-preference", "preferences.jsonl", ["enter"])
    await with_dataset(
        "datasets-tokens",
        "chat.jsonl",
        ["t"],
        ready=lambda s: s.query_one(TokenPanel).view is not None and s.query_one(TokenPanel)._lengths,
    )
    await with_dataset("datasets-errors", "with-mistakes.jsonl", ["e"])
    await with_dataset("datasets-search", "chat.jsonl", ["slash", *"capital of", "enter"])
    await shoot_runs(ws, out)
    for mode in ("configure", "annotate"):
        app = TuiFtApp(ws, start_mode=mode)
        async with app.run_test(size=SIZE) as pilot:
            await _until(pilot, lambda app=app: "checking" not in app.gpu_summary)
            await _shoot(app, pilot, out, mode)
    await shoot_chat(ws, out)


CHAT_SIZES = [(80, 24), (100, 30), (160, 48)]


async def shoot_chat(ws, out: Path) -> None:
    """Chat with a reply, and the compare view awaiting a decision (stacked when narrow), at 80x24,
    100x30 (`chat.svg`, `chat-compare.svg`) and 160x48: demo-tiny on the CPU, greedy, 60 tokens."""
    from tui_ft.ui.app import TuiFtApp

    for compare in (False, True):
        for size in CHAT_SIZES:
            app = TuiFtApp(ws, start_mode="chat")
            async with app.run_test(size=size) as pilot:
                screen = app.screen
                screen.settings.update(device="cpu", temperature=0.0, max_new_tokens=60)
                if compare:
                    screen._set_compare(True)
                    screen.load(1, "demo-tiny")
                screen.load(0, "demo-tiny")
                await _until(pilot, lambda s=screen: all(s.info[i] is not None for i in s.sides), 180)
                screen.query_one("#chat-prompt").value = "What is the capital of Korvath?"
                await pilot.press("enter")
                await _until(pilot, lambda s=screen: s.conversation.turns and not s.generating, 120)
                await _until(pilot, lambda a=app: "checking" not in a.gpu_summary)
                name = "chat-compare" if compare else "chat"
                if size != SIZE:
                    name += f"-{size[0]}x{size[1]}"
                await _shoot(app, pilot, out, name)


def train_in_process(ws, recipe: str, overrides: list[str]) -> str:
    """Train a recipe to its end in this process (as the runner does); the run's id."""
    from tui_ft.engine.runner import execute
    from tui_ft.recipe import load_recipe
    from tui_ft.runs.prepare import create_run

    run = create_run(load_recipe(recipe, overrides, cache_dir=ws.cache), ws)
    execute(run.path)
    return run.id


def launch_detached(ws, recipe: str, overrides: list[str]) -> str:
    """Start a run in the background, as `tui-ft train --detach` does; the run's id."""
    from tui_ft.recipe import load_recipe
    from tui_ft.runs.launcher import spawn_runner
    from tui_ft.runs.prepare import create_run

    run = create_run(load_recipe(recipe, overrides, cache_dir=ws.cache), ws)
    spawn_runner(run, detach=True)
    return run.id


def evaluate_run(ws, run_id: str, **request) -> None:
    """`tui-ft eval RUN ...` in this process, its result stored with the run."""
    from tui_ft.evaluation.store import save_result
    from tui_ft.evaluation.suite import EvalRequest, evaluate

    doc = evaluate(EvalRequest(model=run_id, limit=40, **request), ws)
    save_result(ws.runs / run_id, doc)


def sweep(ws, recipe: str, grid: list[str], overrides: list[str]) -> list[str]:
    """`tui-ft sweep RECIPE --grid ...` in this process; the trials' run ids, best first."""
    from tui_ft.runs.sweep import create_sweep, parse_grid, run_sweep

    folder = create_sweep(
        ws, recipe, overrides, grid=parse_grid(grid), ranges={}, trials=0, metric="eval_loss", direction=None
    )
    done = run_sweep(ws, folder, lambda *a: None)
    return [t.run_id for t in sorted(done.trials, key=lambda t: (t.value is None, t.value)) if t.run_id]


async def shoot_runs(ws, out: Path) -> None:
    """The run list and the dashboard in each state, on real runs of the demo: finished (SFT, DPO),
    failed (the loss watchdog stopping a run whose loss went NaN), running, and crashed (its runner
    killed). System samples every second, so the short demo runs have a few."""
    import signal

    from tui_ft.runs.registry import refresh
    from tui_ft.runs.rundir import RunDir
    from tui_ft.ui.app import TuiFtApp

    os.environ["TUI_FT_SYSTEM_INTERVAL"] = "1"
    sft = train_in_process(ws, "sft-lora", [])
    dpo = train_in_process(ws, "dpo-lora", [])
    failed = train_in_process(ws, "sft-lora", ["training.learning_rate=1e30", "name=sft-lr-too-high"])

    async def dashboard(name: str, run_id: str | None, keys: list[str], ready=None) -> None:
        app = TuiFtApp(ws, start_mode="runs", start_run=run_id)
        async with app.run_test(size=SIZE) as pilot:
            screen = app.screen
            await _until(
                pilot, lambda: "checking" not in app.gpu_summary and (run_id is None or screen.refreshes)
            )
            if ready is not None:
                await _until(pilot, lambda: ready(screen), timeout=120)
            if keys:
                await pilot.press(*keys)
            await pilot.pause(2.5)  # charts drawn with their data
            await _shoot(app, pilot, out, name)

    def progressed(screen) -> bool:
        snap = screen.snapshot
        return (
            snap is not None
            and snap.status is not None
            and snap.status.state == "running"
            and snap.progress.step >= 30
        )

    async def eval_tab(name: str, run_id: str) -> None:
        from textual.widgets import TabbedContent

        app = TuiFtApp(ws, start_mode="runs", start_run=run_id)
        async with app.run_test(size=SIZE) as pilot:
            screen = app.screen
            await _until(pilot, lambda: "checking" not in app.gpu_summary and screen.refreshes)
            screen.query_one("#dash-tabs", TabbedContent).active = "tab-eval"
            await pilot.pause(2.5)
            await _shoot(app, pilot, out, name)

    evaluate_run(ws, sft, data="chat.jsonl", shots=2)
    await eval_tab("runs-eval", sft)
    classifier = train_in_process(ws, "classify-lora", [])
    evaluate_run(ws, classifier)
    await eval_tab("runs-eval-classifier", classifier)

    trials = sweep(ws, "sft-lora", ["training.learning_rate=1e-3,3e-3,1e-2"], ["training.max_steps=30"])
    await dashboard("runs-sweep", trials[0], ["w"])
    await dashboard("runs-sweep-overlay", trials[0], ["w", "o"])

    # last: a run in the background holds the device, and runs started after it wait in the queue
    running = launch_detached(ws, "sft-lora", ["training.max_steps=3000", "name=sft-long"])
    await dashboard("runs-running", running, [], ready=progressed)
    await dashboard("runs-list", None, [])
    await dashboard("runs-finished", sft, [])
    await dashboard("runs-system", sft, ["y"])
    await dashboard("runs-dpo", dpo, [])
    await dashboard("runs-failed", failed, [])
    status = RunDir(ws.runs / running).read_status()
    os.killpg(status.pid, signal.SIGKILL)  # the runner dies without recording an outcome
    for _ in range(100):
        if refresh(RunDir(ws.runs / running)).state == "crashed":
            break
        await asyncio.sleep(0.1)
    await dashboard("runs-crashed", running, [])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--only", choices=["chat"], help="only these shots (chat: no training needed)")
    args = parser.parse_args()
    from tui_ft.demo import build_demo
    from tui_ft.workspace import Workspace

    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="tui-ft-shots-") as tmp:
        os.environ["HOME"] = tmp  # the header writes paths under the home folder as ~/...
        home = Path(tmp) / ".local" / "share" / "tui-ft"
        ws = Workspace(home).ensure()
        build_demo(ws)
        good = [
            json.loads(line) for line in (ws.data / "prompt_completion.jsonl").read_text().splitlines()[:40]
        ]
        lines = [json.dumps(row) for row in good]
        lines[11] = '{"prompt": "What is the capital of Varnia?", "completion": " Lumen.'  # cut off
        lines[25] = json.dumps({"prompt": "Spell tree backwards."})  # completion missing
        lines[31] = json.dumps({"prompt": "What is 2 plus 2?", "completion": 4})  # not text
        (ws.data / "with-mistakes.jsonl").write_text("\n".join(lines) + "\n")
        if args.only == "chat":
            print("writing the Chat screenshots:")
            asyncio.run(shoot_chat(Workspace(home), args.out))
        else:
            print(f"writing screenshots at {SIZE[0]}x{SIZE[1]} (Chat also at 80x24 and 160x48):")
            asyncio.run(shoot_all(home, args.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
