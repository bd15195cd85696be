"""The generation service's wire format: one JSON object per line, each way.

Requests (UI -> service), each with a caller-chosen `id`:
  {"op": "load", "id", "key", "model", "device": "auto|cpu|cuda", "quantization": "none|4bit|8bit"}
  {"op": "generate", "id", "key", "messages": [{"role", "content"}...], "params": {...}}
  {"op": "cancel", "id", "target"}        stop generation `target`; it ends with "done", stopped: true
  {"op": "unload", "id", "key"}
  {"op": "ping", "id"}

Replies (service -> UI), each naming the request `id` it answers:
  {"type": "progress", "id", "stage", "fraction"}           while loading
  {"type": "loaded", "id", "key", "info": {...}}            see `ModelInfo`
  {"type": "piece", "id", "text"}                           streamed reply text, in order
  {"type": "done", "id", "text", "prompt_tokens", "new_tokens", "seconds", "first_token_s", "stopped"}
  {"type": "unloaded", "id", "key"}
  {"type": "pong", "id", "pid", "loaded": [keys]}
  {"type": "error", "id", "kind", "message", "hint"}        the request failed; the service goes on

`kind` is one of engine.errors.KINDS, `bad_input` for a request or reference that is wrong, or (made up
by the client, never sent) `crashed` when the service process itself ended. Readers ignore unknown keys.
This module is light: the UI imports it.
"""

from __future__ import annotations

import json
from typing import Any

FINAL_TYPES = frozenset({"loaded", "done", "unloaded", "pong", "error"})
SAMPLING_KEYS = ("temperature", "top_p", "top_k", "max_new_tokens", "repetition_penalty", "seed")


def encode(message: dict[str, Any]) -> bytes:
    """One message as one line of UTF-8 JSON (no raw newlines inside)."""
    return (json.dumps(message, ensure_ascii=False, separators=(",", ":")) + "\n").encode()


def decode(line: bytes | str) -> dict[str, Any] | None:
    """A message from one line, or None for a blank or garbled line (never raises)."""
    try:
        value = json.loads(line)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def is_final(message: dict[str, Any]) -> bool:
    """Whether `message` is the last one its request gets."""
    return message.get("type") in FINAL_TYPES
