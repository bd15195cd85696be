"""The generation service: a real child process over pipes, loading the demo model, streaming,
cancelling, two models at once, bad requests, and the child's death (kill -9) seen and recovered from."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time

import pytest

from tui_ft.inference import protocol
from tui_ft.inference.client import GenerationClient

PROMPT = [{"role": "user", "content": "What is the capital of Korvath?"}]


@pytest.fixture(scope="module")
def client(demo_ws):
    """One service process for the module (starting one costs seconds of imports)."""
    c = GenerationClient(demo_ws)
    loaded = c.load("base", "demo-tiny").wait(timeout=120)
    assert loaded["type"] == "loaded", loaded
    yield c
    c.close()


def collect(pending, timeout: float = 120.0) -> tuple[list[str], dict]:
    pieces = []
    deadline = time.monotonic() + timeout
    while pending.final is None:
        message = pending.next(timeout=max(0.1, deadline - time.monotonic()))
        if message["type"] == "piece":
            pieces.append(message["text"])
    return pieces, pending.final


def test_protocol_lines_round_trip():
    message = {"op": "generate", "id": "g-1", "messages": [{"role": "user", "content": "a\nb \u00e9"}]}
    line = protocol.encode(message)
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    assert protocol.decode(line) == message
    assert protocol.decode(b'{"torn": ') is None and protocol.decode(b"[1, 2]") is None
    assert protocol.is_final({"type": "done"}) and not protocol.is_final({"type": "piece"})


def test_load_reports_progress_then_the_model(demo_ws):
    c = GenerationClient(demo_ws)
    try:
        pending = c.load("m", "demo-tiny")
        messages = list(pending)
    finally:
        c.close()
    stages = [m["stage"] for m in messages if m["type"] == "progress"]
    assert stages[0] == "resolving" and stages[-1] == "ready" and "weights" in stages
    fractions = [m["fraction"] for m in messages if m["type"] == "progress"]
    assert fractions == sorted(fractions)
    info = messages[-1]["info"]
    assert messages[-1]["type"] == "loaded" and messages[-1]["key"] == "m"
    assert info["path"] == str(demo_ws.models / "demo-tiny") and info["chat_template"] is True
    assert info["device"] == "cpu" and info["parameters"] > 0
    assert set(info["defaults"]) == {"temperature", "top_p", "top_k", "max_new_tokens", "repetition_penalty"}


def test_the_service_runs_below_the_uis_cpu_priority(client):
    """Generating on the CPU, the service leaves the cores to the UI first (it has answered a load, so
    its start-up, which lowers its priority, is over)."""
    from tui_ft.inference.service import SERVICE_NICENESS

    mine = os.getpriority(os.PRIO_PROCESS, 0)
    assert os.getpriority(os.PRIO_PROCESS, client.pid) == min(19, mine + SERVICE_NICENESS)


def test_streamed_reply_is_the_in_process_greedy_reply(client, demo_ws):
    from tui_ft.inference.generate import generate, load_for_generation

    pieces, done = collect(client.generate("base", PROMPT, {"max_new_tokens": 24, "temperature": 0}))
    assert done["type"] == "done" and not done["stopped"]
    assert len(pieces) > 1, "the reply arrived in one piece, not streamed"
    assert "".join(pieces) == done["text"]
    assert done["new_tokens"] == 24 and done["prompt_tokens"] > 0 and done["first_token_s"] is not None
    local = generate(load_for_generation("demo-tiny", demo_ws), PROMPT[0]["content"], max_new_tokens=24)
    assert done["text"] == local.text and done["new_tokens"] == local.new_tokens


def test_cancel_stops_mid_reply_and_keeps_what_came(client):
    pending = client.generate("base", PROMPT, {"max_new_tokens": 2000})
    first = pending.next(timeout=120)
    assert first["type"] == "piece"
    client.cancel(pending)
    pieces, done = collect(pending)
    assert done["type"] == "done" and done["stopped"] is True
    assert done["text"] == first["text"] + "".join(pieces)
    assert 0 < done["new_tokens"] < 2000


def test_two_models_answer_side_by_side(client):
    assert client.load("other", "demo-tiny").wait(timeout=120)["type"] == "loaded"
    a = client.generate("base", PROMPT, {"max_new_tokens": 300})
    b = client.generate("other", PROMPT, {"max_new_tokens": 300, "temperature": 0.9, "seed": 3})
    order: list[str] = []

    def read(name, pending):
        for message in pending:
            if message["type"] == "piece":
                order.append(name)

    threads = [threading.Thread(target=read, args=(n, p)) for n, p in (("a", a), ("b", b))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(180)
    assert a.final["type"] == b.final["type"] == "done"
    # Interleaved: neither stream waited for the other to finish.
    last_a = max(i for i, n in enumerate(order) if n == "a")
    last_b = max(i for i, n in enumerate(order) if n == "b")
    assert order.index("b") < last_a and order.index("a") < last_b
    assert client.unload("other").wait(timeout=30)["type"] == "unloaded"
    assert "other" not in client.loaded and "base" in client.loaded


def test_bad_requests_are_answered_not_fatal(client):
    cases = [
        (client.generate("nope", PROMPT), "no model is loaded as 'nope'"),
        (client.generate("base", PROMPT, {"temprature": 1}), "unknown sampling setting 'temprature'"),
        (client.generate("base", PROMPT, {"max_new_tokens": 0}), "max_new_tokens must be at least 1"),
        (client.generate("base", [], {}), "needs `messages`"),
        (client.request("bogus"), "unknown op 'bogus'"),
    ]
    for pending, text in cases:
        reply = pending.wait(timeout=60)
        assert reply["type"] == "error" and reply["kind"] == "bad_input" and text in reply["message"], reply
    started = time.monotonic()
    reply = client.load("x", "no-such-model").wait(timeout=60)
    assert reply["type"] == "error" and "no-such-model" in reply["message"]
    assert time.monotonic() - started < 30, "an unknown model must fail fast offline"
    pong = client.request("ping").wait(timeout=30)
    assert pong["type"] == "pong" and pong["loaded"] == ["base"]


def test_a_checkpoint_cut_short_and_a_model_without_template(client, demo_ws, tmp_path):
    cut = tmp_path / "cut"
    cut.mkdir()
    shutil.copy(demo_ws.models / "demo-tiny" / "config.json", cut / "config.json")
    reply = client.load("cut", str(cut)).wait(timeout=60)
    assert reply["type"] == "error" and reply["message"] and "Traceback" not in reply["message"]

    plain = tmp_path / "plain"
    shutil.copytree(demo_ws.models / "demo-tiny", plain)
    config = json.loads((plain / "tokenizer_config.json").read_text())
    config.pop("chat_template", None)
    (plain / "tokenizer_config.json").write_text(json.dumps(config))
    for extra in plain.glob("chat_template.*"):
        extra.unlink()
    loaded = client.load("plain", str(plain)).wait(timeout=60)
    assert loaded["type"] == "loaded" and loaded["info"]["chat_template"] is False
    _, done = collect(client.generate("plain", PROMPT, {"max_new_tokens": 5}))
    assert done["type"] == "done" and done["new_tokens"] == 5
    client.unload("plain").wait(timeout=30)


def test_killed_service_is_reported_and_restarted(demo_ws):
    c = GenerationClient(demo_ws)
    try:
        assert c.load("m", "demo-tiny").wait(timeout=120)["type"] == "loaded"
        pending = c.generate("m", PROMPT, {"max_new_tokens": 2000})
        assert pending.next(timeout=120)["type"] == "piece"
        os.kill(c.pid, signal.SIGKILL)
        error = pending.wait(timeout=30)
        assert error["type"] == "error" and error["kind"] == "crashed"
        assert "SIGKILL" in error["message"] and str(c.log_path) in error["hint"]
        assert c.loaded == set() and c.pid is None
        again = c.load("m", "demo-tiny").wait(timeout=120)
        assert again["type"] == "loaded" and c.starts == 2
        _, done = collect(c.generate("m", PROMPT, {"max_new_tokens": 4}))
        assert done["type"] == "done"
    finally:
        c.close()


def test_service_ends_when_its_parent_dies(demo_ws):
    """The UI killed with kill -9: the service sees its input close and exits."""
    parent = subprocess.Popen(
        [
            sys.executable,
            "-c",
            (
                "import sys, time\n"
                "from tui_ft.inference.client import GenerationClient\n"
                "from tui_ft.workspace import Workspace\n"
                "from pathlib import Path\n"
                f"c = GenerationClient(Workspace(Path({str(demo_ws.root)!r})))\n"
                "assert c.request('ping').wait(120)['type'] == 'pong'\n"
                "print(c.pid, flush=True)\n"
                "time.sleep(600)\n"
            ),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        child = int(parent.stdout.readline())
        os.kill(child, 0)  # alive
        parent.kill()
        parent.wait()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                os.kill(child, 0)
            except ProcessLookupError:
                break
            if _is_zombie(child):
                break
            time.sleep(0.1)
        else:
            pytest.fail(f"generation service {child} outlived its parent")
    finally:
        parent.kill()


def _is_zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(")")[-1].split()[0] == "Z"
    except OSError:
        return True
