"""Regenerate screenshots/*.svg: every screen and mode of tui-ft at 100x30, on a fresh demo workspace.

    scripts/screenshots            (or: .venv/bin/python screenshots/generate.py [--out DIR])

The demo (model + sample data) is built in a temporary $TUI_FT_HOME; one file with mistakes is added
to show the error list. Each shot waits until the screen's workers have reported (dataset checked,
tokens rendered), so the pictures show finished screens, not "loading…".
"""

from __future__ import annotations

import argparse
import asyncio
import json
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
    for mode in ("configure", "runs", "annotate", "chat"):
        app = TuiFtApp(ws, start_mode=mode)
        async with app.run_test(size=SIZE) as pilot:
            await _until(pilot, lambda app=app: "checking" not in app.gpu_summary)
            await _shoot(app, pilot, out, mode)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    from tui_ft.demo import build_demo
    from tui_ft.workspace import Workspace

    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="tui-ft-shots-") as tmp:
        home = Path(tmp) / "tui-ft-home"
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
        print(f"writing screenshots at {SIZE[0]}x{SIZE[1]}:")
        asyncio.run(shoot_all(home, args.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
