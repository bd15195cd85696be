"""The Annotate screen driven as a person would (Pilot): every key on a review session (decisions, undo,
undo after a restart, previous/next, rationale, Configure on DPO with the store), the sessions list
behind key 4 and a new session made from it, narrow terminals stacking the candidates, and candidates
generated ahead by the real generation service on the demo model, a killed service failing one pair
while the session goes on."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from tests.conftest import until
from tui_ft.inference.client import GenerationClient
from tui_ft.prefs.session import SessionSpec, default_settings, remember_annotator, save_spec
from tui_ft.prefs.store import PreferenceStore
from tui_ft.ui.app import TuiFtApp
from tui_ft.workspace import Workspace

SAMPLES = Path(__file__).parents[1] / "tui_ft" / "samples"
SIZE = (120, 36)
pytestmark = [pytest.mark.anyio]


class AnnotateApp(TuiFtApp):
    """The real app, optionally on a generation service shared across tests (not closed at the end)."""

    def __init__(self, ws, session: str | None = None, client: GenerationClient | None = None, **kw):
        super().__init__(ws, start_mode=kw.pop("start_mode", "annotate"), annotate_session=session)
        self._generation = client

    def on_unmount(self) -> None:
        self._gpu.close()


def review_ws(tmp_path: Path, name: str = "rev", who: str | None = "ana") -> Workspace:
    ws = Workspace(tmp_path / "ws").ensure()
    save_spec(ws, SessionSpec(name=name, prompts=str(SAMPLES / "preferences.jsonl"), kind="review"))
    if who:
        remember_annotator(ws, who)
    return ws


async def opened(pilot, app) -> None:
    await until(pilot, lambda: getattr(app.screen, "session", None) is not None, timeout=30)


def store_of(ws: Workspace, name: str = "rev") -> PreferenceStore:
    return PreferenceStore(ws.annotations / f"{name}.jsonl")


async def test_every_decision_key_writes_its_label_and_moves_on(tmp_path):
    ws = review_ws(tmp_path)
    app = AnnotateApp(ws, "rev")
    async with app.run_test(size=SIZE) as pilot:
        await opened(pilot, app)
        screen = app.screen
        shown = []
        for key in ("1", "2", "t", "x", "s"):
            shown.append(screen.session.current.responses)
            assert screen.shown_index == len(shown) - 1
            await pilot.press(key)
        assert screen.shown_index == 5
        progress = str(screen.query_one("#annotate-progress").render())
        assert "5/400 done" in progress and "A 20% B 20% tie 20%" in progress
    contents = store_of(ws).read()
    assert [d.label for d in contents.decisions] == ["A", "B", "tie", "both_bad", "skip"]
    for decision, responses in zip(contents.decisions, shown, strict=True):
        assert (
            decision.responses == responses and decision.annotator == "ana" and decision.origin == "annotate"
        )
    first = contents.decisions[0]
    assert first.chosen.side == "A" and first.chosen.source.startswith("file:preferences.jsonl#")


async def test_undo_previous_next_and_undo_after_a_restart(tmp_path):
    ws = review_ws(tmp_path)
    app = AnnotateApp(ws, "rev")
    async with app.run_test(size=SIZE) as pilot:
        await opened(pilot, app)
        screen = app.screen
        for key in ("1", "1", "2"):
            await pilot.press(key)
        await pilot.press("u")
        assert screen.shown_index == 2 and "taken back" not in str(
            screen.query_one("#annotate-verdict").render()
        )
        await pilot.press("left")
        await pilot.press("left_square_bracket")
        assert screen.shown_index == 0 and "Decided: A is better" in str(
            screen.query_one("#annotate-verdict").render()
        )
        await pilot.press("right_square_bracket")
        await pilot.press("right")
        assert screen.shown_index == 2
        await pilot.press("left")
        await pilot.press("t")  # pair 2 judged again: the old decision is retracted
        assert screen.shown_index == 2  # the next pair not decided
    assert [d.label for d in store_of(ws).read().decisions] == ["A", "tie"]
    app = AnnotateApp(ws, "rev")  # a new process: the position and the undo come from the store
    async with app.run_test(size=SIZE) as pilot:
        await opened(pilot, app)
        screen = app.screen
        assert screen.shown_index == 2
        await pilot.press("u")
        assert screen.shown_index == 1  # back at the pair whose decision was taken back
        await pilot.press("u")
        assert screen.shown_index == 0
        await pilot.press("u")  # nothing left to undo: said, nothing written
    contents = store_of(ws).read()
    assert contents.decisions == [] and contents.retracted == 4


async def test_rationale_goes_with_the_decision_and_can_be_added_after(tmp_path):
    ws = review_ws(tmp_path)
    app = AnnotateApp(ws, "rev")
    async with app.run_test(size=SIZE) as pilot:
        await opened(pilot, app)
        await pilot.press("e")
        await pilot.press(*"rude")
        await pilot.press("enter")
        assert "rude" in str(app.screen.query_one("#annotate-verdict").render())
        await pilot.press("2")
        await pilot.press("left")
        await pilot.press("e")
        await pilot.press("backspace", "backspace", "backspace", "backspace", *"wrong")
        await pilot.press("enter")
        assert app.screen.shown_index == 0
    decisions = store_of(ws).read().decisions
    assert [(d.label, d.rationale) for d in decisions] == [("B", "wrong")]


async def test_key_4_lists_sessions_and_starts_a_new_one_asking_the_name_once(tmp_path):
    ws = review_ws(tmp_path, who=None)
    app = AnnotateApp(ws, start_mode="datasets")
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        await pilot.press("4")
        await until(pilot, lambda: app.current_mode == "annotate")
        screen = app.screen
        options = screen.query_one("#annotate-sessions")
        await until(pilot, lambda: options.option_count == 2)
        assert options.get_option_at_index(0).id == "rev"
        await pilot.press("down", "enter")  # the new session
        await until(pilot, lambda: app.screen.id != screen.id)
        app.screen.query_one("#new-prompts").value = str(SAMPLES / "ranking.jsonl")
        app.screen.query_one("#new-name").value = "ranked"
        await pilot.press("ctrl+s")
        await until(pilot, lambda: app.screen.query("#dialog-input"))  # the annotator's name, asked once
        await pilot.press(*"zoe", "enter")
        await opened(pilot, app)
        assert screen.session.spec.name == "ranked" and screen.session.total == 396
        await pilot.press("x")
        await pilot.press("1")  # with a session open, 1 judges (places: 3 4 5, the palette)
        assert app.current_mode == "annotate"
        await pilot.press("o")  # back to the list: 1 switches places again
        await pilot.press("1")
        assert app.current_mode == "datasets"
    assert [d.annotator for d in store_of(ws, "ranked").read().decisions] == ["zoe", "zoe"]
    assert (ws.annotations / "sessions" / "annotator.json").exists()


async def test_a_new_session_with_a_bad_file_says_so_in_the_dialog(tmp_path):
    ws = review_ws(tmp_path)
    app = AnnotateApp(ws)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: app.screen.query("#annotate-sessions"))
        await pilot.press("down", "enter")
        await until(pilot, lambda: app.screen.query("#new-prompts"))
        app.screen.query_one("#new-prompts").value = str(SAMPLES / "prompts.jsonl")  # no model given
        await pilot.press("ctrl+s")
        await until(pilot, lambda: "needs model A" in str(app.screen.query_one("#new-error").render()))


async def test_narrow_terminals_stack_the_candidates(tmp_path):
    ws = review_ws(tmp_path)
    app = AnnotateApp(ws, "rev")
    async with app.run_test(size=(80, 30)) as pilot:
        await opened(pilot, app)
        a, b = app.screen.query_one("#annotate-a"), app.screen.query_one("#annotate-b")
        await until(pilot, lambda: a.region.height > 0 and b.region.height > 0)  # laid out
        assert app.screen.query_one("#annotate-pair").has_class("-narrow")
        assert b.region.y > a.region.y and a.region.x == b.region.x


async def test_d_opens_configure_on_dpo_with_the_store_as_data(demo_ws, tmp_path):
    save_spec(
        demo_ws, SessionSpec(name="to-train", prompts=str(SAMPLES / "preferences.jsonl"), kind="review")
    )
    remember_annotator(demo_ws, "ana")
    app = AnnotateApp(demo_ws, "to-train")
    async with app.run_test(size=SIZE) as pilot:
        await opened(pilot, app)
        await pilot.press("1")
        await pilot.press("d")
        await until(pilot, lambda: app.current_mode == "configure")
        screen = app.screen
        await until(pilot, lambda: screen.source is not None and screen.source.stem == "dpo-lora", timeout=30)
        field = screen.query_one("#f-data--train")
        await until(pilot, lambda: field.value == str(demo_ws.annotations / "to-train.jsonl"), timeout=30)
        await until(pilot, lambda: any("data.train=" in o for o in screen.form.overrides()), timeout=30)


# --- candidates from the demo model -------------------------------------------------------------------


@pytest.fixture(scope="module")
def shared_client(demo_ws):
    client = GenerationClient(demo_ws)
    yield client
    client.close()


def generate_spec(ws: Workspace, name: str, buffer: int = 3) -> None:
    prompts = ws.root / f"{name}.jsonl"
    prompts.write_text(
        "".join(f'{{"prompt": "What is the capital of Amberly, part {i}?"}}\n' for i in range(8))
    )
    save_spec(
        ws,
        SessionSpec(
            name=name,
            prompts=str(prompts),
            a="demo-tiny",
            settings_a=default_settings(max_new_tokens=12, seed=1),
            settings_b=default_settings(temperature=1.2, max_new_tokens=12, seed=100_003),
            buffer=buffer,
        ),
    )
    remember_annotator(ws, "ana")


@pytest.mark.slow
async def test_candidates_are_generated_ahead_and_regenerated(demo_ws, shared_client):
    generate_spec(demo_ws, "gen")
    app = AnnotateApp(demo_ws, "gen", shared_client)
    async with app.run_test(size=SIZE) as pilot:
        await opened(pilot, app)
        screen = app.screen
        session = screen.session
        await until(pilot, lambda: session.buffered() == 3, timeout=180)  # the buffer, ahead of the annotator
        assert screen.shown_pair == session.pairs[0].id
        assert all(p.responses is None for p in session.pairs[3:])
        texts = [r.text for r in session.pairs[0].responses]
        settings = {r.settings["slot"]: r.settings for r in session.pairs[0].responses}
        assert settings["a"]["temperature"] == 0.8 and settings["b"]["temperature"] == 1.2
        assert {r.source for r in session.pairs[0].responses} == {"demo-tiny"}
        old = session.pairs[0].id
        await pilot.press("r")  # the pair is generated again (a new id: decisions name what they judged)
        await until(pilot, lambda: session.pairs[0].ready and session.pairs[0].id != old, timeout=120)
        await until(pilot, lambda: screen.shown_pair == session.pairs[0].id)
        await pilot.press("1")
        await until(pilot, lambda: session.buffered() == 3, timeout=120)  # refilled from the new position
        assert session.pairs[3].ready
    (decision,) = store_of(demo_ws, "gen").read().decisions
    assert decision.pair == session.pairs[0].id and decision.pair != old
    assert sorted(r.text for r in decision.responses) == sorted(r.text for r in session.pairs[0].responses)
    assert texts  # the first candidates stay in the pairs file
    cached = (demo_ws.annotations / "sessions" / "gen" / "pairs.jsonl").read_text().splitlines()
    assert len(cached) >= 5  # four pairs and the regenerated one, appended


@pytest.mark.slow
async def test_a_generation_that_fails_marks_its_pair_and_the_session_goes_on(demo_ws):
    generate_spec(demo_ws, "gen-fail", buffer=2)
    client = GenerationClient(demo_ws)
    try:
        app = AnnotateApp(demo_ws, "gen-fail", client)
        async with app.run_test(size=SIZE) as pilot:
            await opened(pilot, app)
            session = app.screen.session
            await until(pilot, lambda: session.pairs[0].ready, timeout=180)
            await until(
                pilot, lambda: any(p.op == "generate" for p in list(client._pending.values())), timeout=60
            )
            os.kill(client.pid, signal.SIGKILL)  # the service dies mid-generation: that pair fails
            await until(pilot, lambda: any(p.error for p in session.pairs), timeout=60)
            failed = next(p for p in session.pairs if p.error)
            assert "generation service ended" in failed.error
            await pilot.press("1")  # judging pair 0 moves past the failed pair
            assert session.position != failed.index
            await until(pilot, lambda: session.buffered() >= 1 and session.current.ready, timeout=180)
            assert client.starts == 2  # started again, models loaded again
            if failed.index == 1:
                await pilot.press("left")
                assert "Generation failed" in str(app.screen.query_one("#annotate-verdict").render())
    finally:
        client.close()
