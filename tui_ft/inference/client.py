"""The UI's side of the generation service: starts the child on first use, routes its replies to the
request that asked, and turns the child's death into an error on every open request.

Light (no torch): the UI imports it. Each request is a `Pending` whose replies a UI worker thread reads
in order (`for message in pending: ...`) and posts to the screen. After the child ends (an
out-of-memory kill, a crash, kill -9), every open request gets an `error` of kind `crashed`, no model
counts as loaded, and the next request starts a fresh child.
"""

from __future__ import annotations

import itertools
import os
import queue
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from tui_ft.inference import protocol
from tui_ft.workspace import ENV_VAR, Workspace

CRASH_HINT = (
    "the next request starts the service again (models must be loaded again); if it ran out of memory, "
    "load on the CPU or in 4-bit, or unload the other model"
)


class Pending:
    """The replies to one request, in order, ending with a final one (`protocol.is_final`)."""

    def __init__(self, request_id: str, op: str) -> None:
        self.id = request_id
        self.op = op
        self._queue: queue.Queue[dict[str, Any]] = queue.Queue()
        self.final: dict[str, Any] | None = None
        self.owner: object = None  # the service process it was sent to

    def put(self, message: dict[str, Any]) -> None:
        self._queue.put(message)

    def next(self, timeout: float | None = None) -> dict[str, Any]:
        """The next reply; raises `queue.Empty` after `timeout` seconds without one."""
        message = self._queue.get(timeout=timeout)
        if protocol.is_final(message):
            self.final = message
        return message

    def __iter__(self) -> Iterator[dict[str, Any]]:
        while self.final is None:
            yield self.next()

    def wait(self, timeout: float | None = None) -> dict[str, Any]:
        """Read up to the final reply and return it (the pieces before it are dropped)."""
        while self.final is None:
            self.next(timeout)
        return self.final


def exit_reason(code: int | None) -> str:
    if code is None:
        return "it stopped answering"
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        return f"killed by {name}" + (" (out of memory, or kill -9)" if -code == signal.SIGKILL else "")
    return f"exit status {code}"


class GenerationClient:
    """One generation service process for the UI, started on the first request."""

    def __init__(self, ws: Workspace, *, python: str | None = None) -> None:
        self.ws = ws
        self.python = python or sys.executable
        self.log_path: Path = ws.cache / "generation-service.log"
        self.loaded: set[str] = set()  # keys loaded in the live process
        self.starts = 0
        self._proc: subprocess.Popen[bytes] | None = None
        self._pending: dict[str, Pending] = {}
        self._lock = threading.RLock()
        self._ids = itertools.count(1)

    # --- lifecycle ----------------------------------------------------------------------------------

    @property
    def pid(self) -> int | None:
        proc = self._proc
        return proc.pid if proc is not None and proc.poll() is None else None

    def _ensure_started(self) -> subprocess.Popen[bytes]:
        with self._lock:
            if self._proc is not None and self._proc.poll() is None:
                return self._proc
            self.ws.cache.mkdir(parents=True, exist_ok=True)
            env = dict(os.environ, PYTHONUNBUFFERED="1")
            env[ENV_VAR] = str(self.ws.root)
            log = open(self.log_path, "ab")  # noqa: SIM115 - the child holds it; closed below
            try:
                proc = subprocess.Popen(
                    [self.python, "-m", "tui_ft.inference.service"],
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    stderr=log,
                    env=env,
                    start_new_session=True,  # a Ctrl+C in the terminal is the UI's, not the child's
                )
            finally:
                log.close()
            self._proc = proc
            self.loaded.clear()
            self.starts += 1
            assert proc.stdout is not None
            threading.Thread(
                target=self._read, args=(proc, proc.stdout), name="generation-replies", daemon=True
            ).start()
            return proc

    def close(self, timeout: float = 3.0) -> None:
        """End the service: close its input (it exits), then kill it if it lingers."""
        with self._lock:
            proc, self._proc = self._proc, None
        if proc is None:
            return
        try:
            if proc.stdin is not None:
                proc.stdin.close()
            proc.wait(timeout)
        except (OSError, subprocess.TimeoutExpired):
            proc.kill()
            proc.wait()

    # --- requests -----------------------------------------------------------------------------------

    def request(self, op: str, **fields: Any) -> Pending:
        """Send one request; its replies arrive on the returned `Pending`."""
        request_id = f"{op}-{next(self._ids)}"
        pending = Pending(request_id, op)
        with self._lock:
            proc = self._ensure_started()
            pending.owner = proc
            self._pending[request_id] = pending
            try:
                assert proc.stdin is not None
                proc.stdin.write(protocol.encode({"op": op, "id": request_id, **fields}))
                proc.stdin.flush()
            except (BrokenPipeError, OSError):
                pass  # the reader sees the end of the child and fails this request with the reason
        return pending

    def load(self, key: str, model: str, *, device: str = "auto", quantization: str = "none") -> Pending:
        return self.request("load", key=key, model=model, device=device, quantization=quantization)

    def generate(
        self, key: str, messages: list[dict[str, str]], params: dict[str, Any] | None = None
    ) -> Pending:
        return self.request("generate", key=key, messages=messages, params=params or {})

    def cancel(self, target: Pending | str) -> None:
        """Stop a generation; it still ends with its `done` reply (stopped: true), keeping what came."""
        target_id = target.id if isinstance(target, Pending) else target
        with self._lock:
            if self._proc is None or self._proc.poll() is not None:
                return
            try:
                assert self._proc.stdin is not None
                self._proc.stdin.write(
                    protocol.encode({"op": "cancel", "id": f"cancel-{target_id}", "target": target_id})
                )
                self._proc.stdin.flush()
            except (BrokenPipeError, OSError):
                pass

    def unload(self, key: str) -> Pending:
        return self.request("unload", key=key)

    # --- replies ------------------------------------------------------------------------------------

    def _read(self, proc: subprocess.Popen[bytes], out: IO[bytes]) -> None:
        for line in out:
            message = protocol.decode(line)
            if message is None:
                continue
            with self._lock:
                if message.get("type") == "loaded":
                    self.loaded.add(str(message.get("key")))
                elif message.get("type") == "unloaded":
                    self.loaded.discard(str(message.get("key")))
                pending = self._pending.get(str(message.get("id")))
                if pending is not None and protocol.is_final(message):
                    del self._pending[pending.id]
            if pending is not None:
                pending.put(message)
        code = proc.wait()
        reason = exit_reason(code)
        with self._lock:
            if self._proc is proc:
                self._proc = None
                self.loaded.clear()
            orphans = [p for p in self._pending.values() if p.owner is proc]
            for orphan in orphans:
                del self._pending[orphan.id]
        for pending in orphans:
            pending.put(
                {
                    "type": "error",
                    "id": pending.id,
                    "kind": "crashed",
                    "message": f"the generation service ended ({reason})",
                    "hint": f"{CRASH_HINT}; its log: {self.log_path}",
                }
            )
