"""Trainer callbacks: record every logged metric as an event, keep status.json current, honour stops."""

from __future__ import annotations

import math
import signal
import threading
import time
from typing import Any

from transformers import TrainerCallback

from tui_ft.runs.rundir import EventWriter, RunDir, Status


class StopRequest:
    """A stop asked for by `tui-ft stop` (a stop-request file, then SIGTERM) or Ctrl-C (SIGINT).

    Graceful: the trainer saves a checkpoint after the current optimizer step and the run ends
    `stopped`. At once (`--now`, or a second request): training is interrupted where it is.
    """

    def __init__(self, run: RunDir | None = None):
        self.run = run
        self.graceful = threading.Event()
        self.now = False

    def install(self) -> None:
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._on_signal)

    def _read_file(self) -> str | None:
        if self.run is None:
            return None
        try:
            return self.run.stop_file.read_text().strip()
        except OSError:
            return None

    def _on_signal(self, signum, frame) -> None:  # noqa: ARG002 - signal handler signature
        if self.graceful.is_set() or self._read_file() == "now":
            self.now = True
            raise KeyboardInterrupt
        self.graceful.set()

    def requested(self) -> bool:
        """True once a graceful stop was asked for (checked after every optimizer step)."""
        if not self.graceful.is_set():
            request = self._read_file()
            if request is not None:
                self.graceful.set()
                if request == "now":
                    self.now = True
                    raise KeyboardInterrupt
        return self.graceful.is_set()


def agree_across_ranks(flag: bool, device) -> bool:
    """Every rank must stop at the same step, or the next collective hangs: take the max."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return flag
    import torch

    tensor = torch.tensor([1 if flag else 0], device=device)
    dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
    return bool(tensor.item())


def _clean(value: Any) -> Any:
    """Plain Python numbers (tensors and numpy scalars unwrapped); NaN stays NaN for the watchdog."""
    return value.item() if hasattr(value, "item") else value


class RunRecorder(TrainerCallback):
    """Writes events.jsonl and status.json for one run (rank 0 only)."""

    STATUS_INTERVAL = 1.0  # seconds between status.json rewrites on plain steps

    def __init__(
        self, run: RunDir, status: Status, events: EventWriter | None, stop: StopRequest, watchdog=None
    ):
        self.run = run
        self.status = status
        self.events = events
        self.stop = stop
        self.watchdog = watchdog  # a LossWatchdog, or None
        self.alarm = None  # the watchdog's alarm that stopped the run, if one did
        self._last_status = 0.0
        self._last_tokens: tuple[float, float] | None = None  # (time, num_tokens)
        self._train_start = time.time()

    # -- helpers ----------------------------------------------------------------------------------
    def _emit(self, kind: str, **fields: Any) -> None:
        if self.events is not None:
            self.events.write(kind, **fields)

    def _save_status(self, force: bool = False) -> None:
        if self.events is None:
            return
        now = time.time()
        if force or now - self._last_status >= self.STATUS_INTERVAL:
            self.run.write_status(self.status)
            self._last_status = now

    # -- trainer hooks ----------------------------------------------------------------------------
    def on_train_begin(self, args, state, control, **kwargs):
        if not state.is_world_process_zero:
            return
        self._train_start = time.time()
        self._last_tokens = (self._train_start, float(state.num_input_tokens_seen or 0))
        self.status.state = "running"
        self.status.max_steps = state.max_steps
        self.status.step = state.global_step
        self.status.started = self.status.started or self._train_start
        self._save_status(force=True)
        self._emit(
            "start",
            step=state.global_step,
            max_steps=state.max_steps,
            num_train_epochs=args.num_train_epochs,
            world_size=args.world_size,
        )

    def on_step_end(self, args, state, control, **kwargs):
        if agree_across_ranks(self.stop.requested(), args.device):
            self.stop.graceful.set()
            control.should_save = True
            control.should_training_stop = True
            if state.is_world_process_zero and self.status.state != "stopping":
                self.status.state = "stopping"
                self._save_status(force=True)
                self._emit("state", step=state.global_step, state="stopping")
        if state.is_world_process_zero:
            self.status.step = state.global_step
            self.status.epoch = state.epoch
            self._save_status()
        return control

    def on_log(self, args, state, control, logs=None, **kwargs):
        # The watchdog runs on every rank: the logged loss is gathered, so all ranks stop at one step.
        alarm = self.watchdog.observe_logs(state.global_step, logs or {}) if self.watchdog else None
        if alarm is not None:
            if state.is_world_process_zero:
                self._emit("watchdog", **alarm.event_fields())
                print(f"tui-ft: watchdog: {alarm.text}", flush=True)
            if alarm.stop:
                self.alarm = alarm
                control.should_training_stop = True
                control.should_save = False  # the weights may already be NaN; earlier checkpoints stay
        if not state.is_world_process_zero or not logs:
            return control
        metrics = {k: _clean(v) for k, v in logs.items()}
        step = state.global_step
        if "train_runtime" in metrics:
            self._emit("summary", step=step, **metrics)
            return control
        if any(k.startswith("eval_") for k in metrics):
            loss = metrics.get("eval_loss")
            if isinstance(loss, (int, float)):
                self.status.eval_loss = loss
                if self.status.method == "sft":  # perplexity only means something for a language-model loss
                    metrics["eval_perplexity"] = math.exp(min(loss, 50.0))
            self._emit("eval", step=step, **metrics)
        else:
            now = time.time()
            tokens = metrics.get("num_tokens")
            if isinstance(tokens, (int, float)) and self._last_tokens is not None:
                t0, n0 = self._last_tokens
                if now > t0 and tokens >= n0:
                    metrics["tokens_per_s"] = round((tokens - n0) / (now - t0), 1)
                self._last_tokens = (now, float(tokens))
            if isinstance(metrics.get("loss"), (int, float)):
                self.status.loss = metrics["loss"]
            self._emit("train", step=step, **metrics)
        self.status.step = step
        self.status.epoch = state.epoch
        self._save_status(force="loss" not in metrics)  # plain train logs: at most once a second
        return control

    def on_save(self, args, state, control, **kwargs):
        if not state.is_world_process_zero:
            return
        path = f"{args.output_dir}/checkpoint-{state.global_step}"
        self.status.last_checkpoint = path
        self._emit("checkpoint", step=state.global_step, path=path)
        self._save_status(force=True)
