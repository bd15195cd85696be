"""The generation service: a child process of the UI that loads models and streams replies.

    python -m tui_ft.inference.service        (started by `inference.client.GenerationClient`)

Chat and Annotate never load a model in the UI process: an out-of-memory error or a crash here ends
this process, never the UI. Requests arrive as JSON lines on stdin, replies leave as JSON lines on
stdout (`inference.protocol`). Loads and generations each run on a thread of their own, so a cancel is
read at once and two models can answer side by side. The process ends when stdin closes, which is
when the UI ends (or dies).
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import IO, Any

from tui_ft.errors import UserError, WorkFailed
from tui_ft.inference import protocol
from tui_ft.workspace import Workspace

# A fast model's pieces are sent together, at most one `piece` line per generation in this interval:
# the first at once, the rest joined until the interval has passed (a slow model's pieces, further
# apart than this, go out one by one as they come). One line per word cost the UI a wake-up per word
# of each reply and kept it from drawing keys in time (bench/chat_service.py).
PIECE_INTERVAL_S = 0.05


class Channel:
    """The protocol's output: whole lines, one writer at a time, flushed per message."""

    def __init__(self, out: IO[bytes]) -> None:
        self._out = out
        self._lock = threading.Lock()

    def send(self, message: dict[str, Any]) -> None:
        data = protocol.encode(message)
        with self._lock:
            try:
                self._out.write(data)
                self._out.flush()
            except (BrokenPipeError, ValueError):  # the UI is gone: nobody to tell
                pass


@dataclass
class Job:
    id: str
    cancel: threading.Event = field(default_factory=threading.Event)


def error_message(request_id: str | None, exc: BaseException) -> dict[str, Any]:
    """An `error` reply for people from whatever the stack raised (the traceback goes to stderr)."""
    from tui_ft.engine.errors import translate_exception

    if isinstance(exc, UserError):
        return {
            "type": "error",
            "id": request_id,
            "kind": "bad_input",
            "message": str(exc.message),
            "hint": exc.hint,
            "field": exc.field,
        }
    failure = translate_exception(exc)
    return {
        "type": "error",
        "id": request_id,
        "kind": failure.kind,
        "message": failure.message,
        "hint": failure.hint,
    }


class Service:
    """The models loaded in this process (by the caller's key) and the generations under way."""

    def __init__(self, channel: Channel, ws: Workspace) -> None:
        self.channel = channel
        self.ws = ws
        self.models: dict[str, Any] = {}  # key -> inference.generate.LoadedModel
        self.jobs: dict[str, Job] = {}
        self._lock = threading.Lock()
        # One load at a time: the libraries' lazy imports are not safe from two threads at once (two
        # models picked together raced in `from transformers import ...`), and two loads would need
        # memory for both at their peak. Generations run side by side.
        self._load_lock = threading.Lock()

    # --- dispatch -----------------------------------------------------------------------------------

    def handle(self, message: dict[str, Any]) -> None:
        """Answer one request; long work goes to a thread so the next line is read at once."""
        op = message.get("op")
        request_id = message.get("id")
        if not isinstance(request_id, str) or not request_id:
            self.channel.send(
                {
                    "type": "error",
                    "id": None,
                    "kind": "bad_input",
                    "message": "a request needs an `id` (a string)",
                    "hint": None,
                }
            )
            return
        if op == "ping":
            self.channel.send(
                {"type": "pong", "id": request_id, "pid": os.getpid(), "loaded": sorted(self.models)}
            )
        elif op == "cancel":
            job = self.jobs.get(str(message.get("target")))
            if job is not None:
                job.cancel.set()
        elif op == "unload":
            self._unload(request_id, str(message.get("key")))
        elif op == "load":
            self._spawn(request_id, self._load, message)
        elif op == "generate":
            self._spawn(request_id, self._generate, message)
        else:
            self.channel.send(
                {
                    "type": "error",
                    "id": request_id,
                    "kind": "bad_input",
                    "message": f"unknown op {op!r}",
                    "hint": "load, generate, cancel, unload, ping",
                }
            )

    def _spawn(
        self, request_id: str, target: Callable[[Job, dict[str, Any]], None], message: dict[str, Any]
    ) -> None:
        job = Job(request_id)
        self.jobs[request_id] = job

        def run() -> None:
            try:
                target(job, message)
            except BaseException as exc:  # noqa: BLE001 - every failure is reported, never fatal
                traceback.print_exc(file=sys.stderr)
                self.channel.send(error_message(request_id, exc))
                _release_cuda_cache()
            finally:
                self.jobs.pop(request_id, None)

        threading.Thread(target=run, name=f"job-{request_id}", daemon=True).start()

    # --- requests -----------------------------------------------------------------------------------

    def _load(self, job: Job, message: dict[str, Any]) -> None:
        from tui_ft.inference.generate import load_for_generation, model_info, piece_streamer

        key = str(message.get("key") or message.get("model"))
        ref = message.get("model")
        if not isinstance(ref, str) or not ref:
            raise UserError("a load request needs `model` (a model reference)", field="model")

        def progress(stage: str, fraction: float) -> None:
            self.channel.send({"type": "progress", "id": job.id, "stage": stage, "fraction": fraction})

        with self._load_lock:
            try:
                loaded = load_for_generation(
                    ref,
                    self.ws,
                    device=str(message.get("device") or "auto"),
                    quantization=str(message.get("quantization") or "none"),
                    progress=progress,
                )
                # what generating needs, imported now, under the lock (see `_load_lock`)
                from transformers import StoppingCriteria, StoppingCriteriaList  # noqa: F401

                piece_streamer(loaded.tokenizer, lambda text: None)
            except UserError:
                raise
            except Exception as exc:  # named here: the UI may be loading two models at once
                from tui_ft.engine.errors import translate_exception

                failure = translate_exception(exc)
                raise WorkFailed(f"{ref}: {failure.message}", kind=failure.kind, hint=failure.hint) from exc
        with self._lock:
            old = self.models.pop(key, None)
            self.models[key] = loaded
        del old
        self.channel.send({"type": "loaded", "id": job.id, "key": key, "info": model_info(loaded)})

    def _generate(self, job: Job, message: dict[str, Any]) -> None:
        from tui_ft.inference.generate import stream_messages

        key = str(message.get("key"))
        loaded = self.models.get(key)
        if loaded is None:
            raise UserError(f"no model is loaded as {key!r}", field="key", hint="send a load request first")
        messages = message.get("messages")
        if not isinstance(messages, list) or not messages:
            raise UserError("a generate request needs `messages` (a list of turns)", field="messages")
        params = message.get("params") or {}
        if not isinstance(params, dict):
            raise UserError("`params` must be an object", field="params")
        unknown = sorted(set(params) - set(protocol.SAMPLING_KEYS))
        if unknown:
            raise UserError(
                f"unknown sampling setting {unknown[0]!r}",
                field="params",
                hint=", ".join(protocol.SAMPLING_KEYS),
            )
        held: list[str] = []  # pieces not sent yet
        last_sent = [-PIECE_INTERVAL_S]

        def on_piece(text: str) -> None:
            held.append(text)
            now = time.monotonic()
            if now - last_sent[0] >= PIECE_INTERVAL_S:
                last_sent[0] = now
                self.channel.send({"type": "piece", "id": job.id, "text": "".join(held)})
                held.clear()

        result = stream_messages(loaded, messages, on_piece=on_piece, stop=job.cancel.is_set, **params)
        if held:
            self.channel.send({"type": "piece", "id": job.id, "text": "".join(held)})
        self.channel.send({"type": "done", "id": job.id, **result.to_json()})

    def _unload(self, request_id: str, key: str) -> None:
        with self._lock:
            loaded = self.models.pop(key, None)
        del loaded
        _release_cuda_cache()
        self.channel.send({"type": "unloaded", "id": request_id, "key": key})


def _release_cuda_cache() -> None:
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        torch.cuda.empty_cache()


def serve(requests: IO[bytes], out: IO[bytes], ws: Workspace) -> None:
    """Answer requests from `requests` until it closes."""
    service = Service(Channel(out), ws)
    for line in requests:
        if not line.strip():
            continue
        message = protocol.decode(line)
        if message is None:
            service.channel.send(
                {
                    "type": "error",
                    "id": None,
                    "kind": "bad_input",
                    "message": f"not a JSON object: {line[:80]!r}",
                    "hint": None,
                }
            )
            continue
        service.handle(message)


# The service's CPU priority below the UI's: where generation runs on the CPU (no GPU, or a model loaded
# there), its threads would otherwise take the cores the UI needs to draw a key within a frame.
# Nothing is lost: the cores the UI leaves idle still go to the service. On a GPU, generation barely
# uses the CPU, and the niceness changes nothing.
SERVICE_NICENESS = 10


def _yield_to_the_ui() -> None:
    # (a platform or sandbox that refuses it: the service runs as it would have)
    with contextlib.suppress(OSError):
        os.nice(SERVICE_NICENESS)


def main() -> int:
    # The protocol owns the real stdout; anything a library prints goes to stderr (the service log).
    protocol_out = os.fdopen(os.dup(sys.stdout.fileno()), "wb", buffering=0)
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    from tui_ft.library_noise import quiet_library_noise

    quiet_library_noise()
    _yield_to_the_ui()
    print(f"tui-ft generation service pid {os.getpid()} started {time.ctime()}", file=sys.stderr, flush=True)
    serve(sys.stdin.buffer, protocol_out, Workspace.default())
    return 0


if __name__ == "__main__":
    sys.exit(main())
