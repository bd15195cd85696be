"""Records GPU and system samples into a run's events, from inside the runner.

A daemon thread takes one snapshot every `interval_s` (GPUs through NVML, CPU and RAM through psutil)
and hands it to `writer_fn("system", **fields)`, the signature of `EventWriter.write`. Because the
runner records them, the history is in events.jsonl even when no UI was attached. The schema of the
`system` event is in docs/events.md.

The recorder never raises into training: a failed sample or write is counted and skipped. A machine
without a usable NVML records `gpu_error: "no GPU: <reason>"` once (again only if the reason changes).
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable
from typing import Any

from tui_ft.monitor.system import GpuSampler, GpuStatus, sample_system

DEFAULT_INTERVAL_S = 5.0

WriterFn = Callable[..., Any]


def gpu_fields(status: GpuStatus) -> list[dict[str, Any]]:
    """Per-GPU numbers as they go into a `system` event (rounded: the event is a chart point)."""
    out = []
    for gpu in status.gpus:
        out.append(
            {
                "index": gpu.index,
                "name": gpu.name,
                "memory_used_mb": _round(gpu.memory_used_mb, 1),
                "memory_total_mb": _round(gpu.memory_total_mb, 1),
                "utilization_pct": _round(gpu.utilization_pct, 1),
                "temperature_c": _round(gpu.temperature_c, 1),
                "power_w": _round(gpu.power_w, 1),
            }
        )
    return out


def _round(value: float | None, digits: int) -> float | None:
    return None if value is None else round(float(value), digits)


class SystemRecorder:
    """A daemon thread writing one `system` event per interval through `writer_fn`.

    `step_fn` gives the optimizer step to stamp on each event (e.g. `lambda: status.step`); `pid` is the
    process whose CPU and RSS are reported (default: this one, the rank-0 training process).
    `start()` writes the first sample at once; `stop()` wakes the thread and joins it (it returns within
    one sample's time, not one interval).
    """

    def __init__(
        self,
        writer_fn: WriterFn,
        interval_s: float = DEFAULT_INTERVAL_S,
        *,
        step_fn: Callable[[], int] | None = None,
        pid: int | None = None,
        gpu_sampler: GpuSampler | None = None,
    ):
        if not interval_s > 0:
            raise ValueError(f"interval_s must be positive, got {interval_s}")
        self.writer_fn = writer_fn
        self.interval_s = float(interval_s)
        self.step_fn = step_fn
        self.pid = pid if pid is not None else os.getpid()
        self._own_sampler = gpu_sampler is None
        self._gpu = gpu_sampler or GpuSampler()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._process: Any = None  # psutil.Process, created on the thread
        self._last_gpu_error: str | None = None
        self.samples_written = 0
        self.failures = 0
        self.last_failure: str | None = None

    # -- lifecycle ----------------------------------------------------------------------------------
    def start(self) -> SystemRecorder:
        """Start sampling (idempotent)."""
        if self._thread is not None and self._thread.is_alive():
            return self
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="tui-ft-system-recorder", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float | None = None) -> None:
        """Stop sampling and wait for the thread (at most `timeout` seconds, default one interval + 5 s)."""
        self._stop.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(self.interval_s + 5.0 if timeout is None else timeout)
        self._thread = None
        if self._own_sampler:
            with contextlib.suppress(Exception):
                self._gpu.close()

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def __enter__(self) -> SystemRecorder:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # -- sampling -----------------------------------------------------------------------------------
    def _loop(self) -> None:
        self._prime()
        # A short first wait lets psutil's CPU counters cover a real interval for the first event.
        wait = min(0.5, self.interval_s)
        while not self._stop.wait(wait):
            self.record_once()
            wait = self.interval_s

    def _prime(self) -> None:
        """psutil's cpu_percent measures since the previous call: make the first call now."""
        try:
            import psutil

            psutil.cpu_percent(None)
            self._process = psutil.Process(self.pid)
            self._process.cpu_percent(None)
        except Exception as exc:  # a missing psutil or a gone process must not stop training
            self._failed(exc)

    def snapshot(self) -> dict[str, Any]:
        """One `system` event's fields (without `t`/`type`), sampled now."""
        fields: dict[str, Any] = {}
        if self.step_fn is not None:
            try:
                fields["step"] = int(self.step_fn())
            except Exception:
                fields["step"] = None
        system = sample_system(self.pid)
        fields["cpu_percent"] = round(system.cpu_percent, 1)
        fields["cpu_count"] = system.cpu_count
        if self._process is not None:
            with contextlib.suppress(Exception):
                fields["process_cpu_percent"] = round(self._process.cpu_percent(None), 1)
        fields["ram_used_mb"] = round(system.ram_used_mb, 1)
        fields["ram_total_mb"] = round(system.ram_total_mb, 1)
        if system.process_rss_mb is not None:
            fields["process_rss_mb"] = round(system.process_rss_mb, 1)
        if system.load_avg is not None:
            fields["load_1m"] = round(system.load_avg[0], 2)
        gpu = self._gpu.sample()
        if gpu.gpus:
            fields["gpus"] = gpu_fields(gpu)
        error = None if gpu.available else f"no GPU: {gpu.reason or 'unknown reason'}"
        if error != self._last_gpu_error:
            if error is not None:
                fields["gpu_error"] = error  # once, and again only when the reason changes
            elif self._last_gpu_error is not None:
                fields["gpu_error"] = None  # the GPUs came back
            self._last_gpu_error = error
        return fields

    def record_once(self) -> bool:
        """Sample and write one event now; False (counted, never raised) when that failed."""
        try:
            fields = self.snapshot()
            if "step" not in fields:
                fields["step"] = None
            self.writer_fn("system", **fields)
        except Exception as exc:  # the training matters more than one chart point
            self._failed(exc)
            return False
        self.samples_written += 1
        return True

    def _failed(self, exc: BaseException) -> None:
        self.failures += 1
        self.last_failure = f"{type(exc).__name__}: {exc}"
