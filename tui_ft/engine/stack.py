"""Kept so that callers outside the engine's layer that still import it from here keep working; the
settings live in `tui_ft.library_noise`, where light modules (training_fields) can reach them."""

from __future__ import annotations

from tui_ft.library_noise import quiet_library_noise

__all__ = ["quiet_library_noise"]
