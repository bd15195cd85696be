"""The Chat screen, driven as a person would (Pilot), against the real generation service on the demo
model: streaming into the last message, Esc stopping a reply, several turns through the template, the
compare flow writing decision lines, a killed service shown and restarted, bad references, settings."""

from __future__ import annotations

import json
import os
import signal

import pytest

from tests.conftest import until
from tui_ft.inference.client import GenerationClient
from tui_ft.prefs.store import PreferenceStore
from tui_ft.ui.app import TuiFtApp
from tui_ft.ui.widgets.chat_log import ChatColumn

SIZE = (120, 36)
pytestmark = [pytest.mark.anyio, pytest.mark.slow]


@pytest.fixture(scope="module")
def shared_client(demo_ws):
    """One service for the tests that do not kill it (its start costs seconds of imports)."""
    client = GenerationClient(demo_ws)
    yield client
    client.close()


class ChatApp(TuiFtApp):
    """The real app on a service shared across tests (not closed when the app ends)."""

    def __init__(self, ws, client: GenerationClient | None, models: list[str]):
        super().__init__(ws, start_mode="chat", chat_models=models)
        self._generation = client

    def on_unmount(self) -> None:
        self._gpu.close()


def replies(app, side: str = "a") -> list:
    return app.screen.query_one(f"#chat-{side}", ChatColumn).replies()


async def loaded(pilot, app, sides: int = 1) -> None:
    await until(pilot, lambda: all(app.screen.info[s] is not None for s in range(sides)), timeout=120)


async def send(pilot, text: str) -> None:
    await pilot.click("#chat-prompt")
    for key in text:
        await pilot.press(key if key != " " else "space")
    await pilot.press("enter")


async def test_reply_streams_into_the_last_message(demo_ws, shared_client, monkeypatch):
    from tui_ft.ui.widgets.chat_log import ReplyMessage

    drawn: list[tuple[str, bool]] = []  # every text the reply box showed, and whether it had ended
    show = ReplyMessage.show

    def record(self, text, stats=None):
        drawn.append((text, stats is not None))
        show(self, text, stats)

    monkeypatch.setattr(ReplyMessage, "show", record)
    app = ChatApp(demo_ws, shared_client, ["demo-tiny"])
    async with app.run_test(size=SIZE) as pilot:
        await loaded(pilot, app)
        screen = app.screen
        assert "demo-tiny" in str(screen.query_one("#chat-model-a").render())
        screen.settings["max_new_tokens"] = 200
        await send(pilot, "What is the capital of Korvath?")
        await until(pilot, lambda: screen.conversation.turns and not screen.generating, timeout=120)
        reply = screen.conversation.turns[0].replies[0]
        partial = [text for text, ended in drawn if not ended and text]
        assert partial, "nothing was shown before the reply ended"
        assert partial[0] != reply.text and all(reply.text.startswith(p) for p in partial)
        assert reply.new_tokens == 200 and not reply.stopped
        box = replies(app)[-1]
        assert box.text == reply.text and "200 tokens" in box.stats and "tok/s" in box.stats


async def test_typing_into_the_prompt_repaints_it_without_a_new_layout(demo_ws, shared_client):
    """A key needs the prompt drawn again, not every widget of the screen placed again (with two long
    replies on screen that reflow was most of a key's latency); a text wider than the prompt still
    scrolls to keep the cursor in view."""
    app = ChatApp(demo_ws, shared_client, [])
    async with app.run_test(size=(60, 20)) as pilot:
        screen = app.screen
        prompt = screen.query_one("#chat-prompt")
        await pilot.click("#chat-prompt")
        await pilot.pause()
        layouts = []
        reflow = screen._refresh_layout
        screen._refresh_layout = lambda *a, **k: (layouts.append(1), reflow(*a, **k))[1]
        typed = "the quick brown fox jumps over the lazy dog and on and on past the edge"
        for key in typed:
            await pilot.press(key if key != " " else "space")
        await pilot.pause()
        assert prompt.value == typed
        assert layouts == []
        assert prompt.scroll_x > 0 and prompt.cursor_position == len(typed)


async def test_a_streaming_reply_waits_while_the_prompt_is_typed(demo_ws, shared_client):
    """The keys come first: while the prompt's text changes, the replies' new text waits for a pause
    in the typing (or, typed on, is drawn just after a key once a second has passed)."""
    from tui_ft.ui.screens.chat import REPLY_DRAW_S, REPLY_DRAW_TYPING_S, TYPING_PAUSE_S

    app = ChatApp(demo_ws, shared_client, [])
    async with app.run_test(size=SIZE) as pilot:
        screen = app.screen
        screen._last_draw = 100.0
        assert screen._draw_due() == 100.0 + REPLY_DRAW_S  # nothing typed
        await pilot.click("#chat-prompt")
        await pilot.press("h")
        typed = screen._last_typed
        assert typed > 100.0 and screen._draw_due() == typed + TYPING_PAUSE_S
        assert TYPING_PAUSE_S > REPLY_DRAW_S and REPLY_DRAW_TYPING_S > TYPING_PAUSE_S


async def test_escape_stops_a_reply_and_keeps_what_came(demo_ws, shared_client):
    app = ChatApp(demo_ws, shared_client, ["demo-tiny"])
    async with app.run_test(size=SIZE) as pilot:
        await loaded(pilot, app)
        screen = app.screen
        screen.settings["max_new_tokens"] = 2000
        await send(pilot, "Tell me everything.")
        await until(pilot, lambda: replies(app) and replies(app)[-1].text, timeout=60)
        await pilot.press("escape")
        await until(pilot, lambda: not screen.generating, timeout=60)
        reply = screen.conversation.turns[0].replies[0]
        assert reply.stopped and 0 < reply.new_tokens < 2000 and reply.text
        assert "stopped" in replies(app)[-1].stats and replies(app)[-1].text == reply.text


async def test_turns_build_on_each_other_through_the_chat_template(demo_ws, shared_client):
    from transformers import AutoTokenizer

    app = ChatApp(demo_ws, shared_client, ["demo-tiny"])
    async with app.run_test(size=SIZE) as pilot:
        await loaded(pilot, app)
        screen = app.screen
        screen.settings["max_new_tokens"] = 12
        await send(pilot, "What is 2 times 6?")
        await until(pilot, lambda: len(screen.conversation.turns) == 1 and not screen.generating, timeout=60)
        await send(pilot, "And 3 times 6?")
        await until(pilot, lambda: len(screen.conversation.turns) == 2 and not screen.generating, timeout=60)
        first, second = screen.conversation.turns
        history = screen.conversation.prompt_for(1)
        assert history == [
            {"role": "user", "content": "What is 2 times 6?"},
            {"role": "assistant", "content": first.replies[0].text},
            {"role": "user", "content": "And 3 times 6?"},
        ]
        tok = AutoTokenizer.from_pretrained(demo_ws.models / "demo-tiny")
        ids = tok.apply_chat_template(history, add_generation_prompt=True, return_dict=True)["input_ids"]
        assert second.replies[0].prompt_tokens == len(ids)
        # edit and resend the last turn: its replies go, its text comes back to the prompt
        await pilot.press("ctrl+e")
        await until(pilot, lambda: len(screen.conversation.turns) == 1 and len(replies(app)) == 1)
        assert screen.query_one("#chat-prompt").value == "And 3 times 6?"
        assert len(replies(app)) == 1
        await pilot.press("enter")
        await until(pilot, lambda: len(screen.conversation.turns) == 2 and not screen.generating, timeout=60)
        await pilot.press("ctrl+r")  # regenerate the last reply
        await until(pilot, lambda: not screen.generating and len(replies(app)) == 2, timeout=60)
        assert len(screen.conversation.turns) == 2


async def test_compare_streams_both_and_records_a_decision(demo_ws, shared_client):
    store = PreferenceStore(demo_ws.annotations / "chat-compare.jsonl")
    before = len(store.read().decisions)
    app = ChatApp(demo_ws, shared_client, ["demo-tiny", "demo-tiny"])
    async with app.run_test(size=SIZE) as pilot:
        await loaded(pilot, app, sides=2)
        screen = app.screen
        assert screen.compare and screen.query_one("#chat-b").display
        screen.settings.update(max_new_tokens=16, temperature=0.0)
        await send(pilot, "What colour is a fenwick?")
        await until(pilot, lambda: screen.awaiting_decision == 0, timeout=120)
        assert screen.query_one("#chat-verdict").display
        a_text, b_text = (r.text for r in screen.conversation.turns[0].replies)
        await pilot.press("1")
        await until(pilot, lambda: len(store.read().decisions) == before + 1)
        decision = store.read().decisions[-1]
        assert decision.label == "A" and decision.origin == "chat"
        assert decision.chosen.text == a_text and decision.rejected.text == b_text
        assert decision.prompt == [{"role": "user", "content": "What colour is a fenwick?"}]
        assert [r.source for r in decision.responses] == ["demo-tiny", "demo-tiny"]
        assert screen.conversation.turns[0].preferred == 0
        await pilot.press("escape")  # out of the prompt, onto the replies
        await pilot.press("u")  # undo: a retraction is appended, nothing rewritten
        await until(pilot, lambda: len(store.read().decisions) == before)
        assert store.read().retracted >= 1 and screen.awaiting_decision == 0
        lines = store.path.read_text().splitlines()
        assert json.loads(lines[-1])["type"] == "retract"


async def test_killed_service_is_shown_and_the_next_prompt_restarts_it(demo_ws):
    app = ChatApp(demo_ws, None, ["demo-tiny"])
    app._generation = None  # its own service, which the test kills
    async with app.run_test(size=SIZE) as pilot:
        try:
            await loaded(pilot, app)
            screen = app.screen
            screen.settings["max_new_tokens"] = 2000
            await send(pilot, "Tell me everything.")
            await until(pilot, lambda: replies(app) and replies(app)[-1].text, timeout=60)
            os.kill(app.generation.pid, signal.SIGKILL)
            await until(pilot, lambda: not screen.generating, timeout=30)
            told = [n for n in app._notifications if "failed" in str(n.title)]
            assert told and "SIGKILL" in told[-1].message
            assert replies(app)[-1].stats.startswith("failed") and screen.info[0] is None
            screen.settings["max_new_tokens"] = 4
            await send(pilot, "Hello?")
            await until(
                pilot,
                lambda: (
                    len(screen.conversation.turns) == 2
                    and not screen.generating
                    and screen.conversation.turns[1].replies
                    and screen.conversation.turns[1].replies[0].new_tokens
                ),
                timeout=120,
            )
            assert app.generation.starts == 2
        finally:
            app.generation.close()


async def test_a_reference_that_does_not_resolve_is_told_and_the_screen_goes_on(demo_ws, shared_client):
    app = ChatApp(demo_ws, shared_client, ["no-such-model"])
    async with app.run_test(size=SIZE) as pilot:
        screen = app.screen
        await until(
            pilot, lambda: any("Could not load" in str(n.title) for n in app._notifications), timeout=60
        )
        assert screen.models[0] is None and "did not load" in screen.status_text[0]
        told = [n for n in app._notifications if "Could not load" in str(n.title)][-1]
        assert "no-such-model" in told.message and "Traceback" not in told.message
        screen.load(0, "demo-tiny")
        await loaded(pilot, app)


async def test_settings_refuse_what_a_field_cannot_take_and_keep_the_last_value(demo_ws, shared_client):
    app = ChatApp(demo_ws, shared_client, ["demo-tiny"])
    async with app.run_test(size=SIZE) as pilot:
        await loaded(pilot, app)
        screen = app.screen
        screen.settings["temperature"] = 0.7
        await pilot.press("ctrl+t")
        await until(pilot, lambda: app.screen.query("#set-temperature"))
        field = app.screen.query_one("#set-temperature")
        field.value = ""
        await pilot.click("#set-temperature")
        await pilot.press("a", "b", "c")
        await until(pilot, lambda: "not a number" in str(app.screen.query_one("#hint-temperature").render()))
        await pilot.press("ctrl+s")
        await until(pilot, lambda: app.screen is screen)
        assert screen.settings["temperature"] == 0.7


async def test_conversation_saved_and_opened_again(demo_ws, shared_client):
    app = ChatApp(demo_ws, shared_client, ["demo-tiny"])
    async with app.run_test(size=SIZE) as pilot:
        await loaded(pilot, app)
        screen = app.screen
        screen.settings["max_new_tokens"] = 6
        await send(pilot, "What is 2 times 6?")
        await until(pilot, lambda: screen.conversation.turns and not screen.generating, timeout=60)
        text = screen.conversation.turns[0].replies[0].text
        await pilot.press("ctrl+s")
        await until(pilot, lambda: app.screen.query("#name-input"))
        app.screen.query_one("#name-input").value = "pilot-chat"
        await pilot.press("enter")
        await until(pilot, lambda: (demo_ws.root / "chats" / "pilot-chat.json").exists())
        await pilot.press("ctrl+n")
        assert not screen.conversation.turns and not replies(app)
        screen.open_conversation("pilot-chat")
        await until(pilot, lambda: len(replies(app)) == 1)
        assert replies(app)[0].text == text and screen.conversation.turns[0].user == "What is 2 times 6?"


async def test_a_model_that_would_not_fit_asks_before_loading(demo_ws, shared_client, monkeypatch):
    """A GPU that is nearly full (a recorded NVML sample: 80 GB card, all but half a MB in use by a
    training run): Chat says so before loading and offers the CPU; the model then loads there."""
    from tui_ft.monitor.system import GpuSample, GpuSampler, GpuStatus

    full = GpuStatus(
        True, None, "560.35", "12.6", (GpuSample(0, "NVIDIA H100", 81_558.5, 81_559, 99, 70, 600, "GPU-1"),)
    )
    monkeypatch.setattr(GpuSampler, "sample", lambda self: full)
    app = ChatApp(demo_ws, shared_client, [])
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: app.gpu_status is full)
        screen = app.screen
        screen.load(0, "demo-tiny")
        await until(pilot, lambda: app.screen.query("#fit-options"))
        dialog = app.screen
        problem = " ".join(str(s.render()) for s in dialog.query("Static"))
        assert "demo-tiny needs about" in problem and "GPU 0 has" in problem
        options = dialog.query_one("#fit-options")
        assert [options.get_option_at_index(i).id for i in range(options.option_count)][0] == "cpu"
        await pilot.press("enter")  # the first choice: the CPU
        await loaded(pilot, app)
        assert screen.info[0]["device"] == "cpu"
