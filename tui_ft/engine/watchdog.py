"""A loss watchdog: notices a NaN/infinite loss or a loss that explodes, and says whether to stop.

Pure logic, fed one logged value at a time (`observe(step, loss)`); the trainer callback decides what
to do with an alarm (write a `watchdog` event, stop the run). Importable without torch.

An explosion is a loss far above the running median of the last `window` finite values:
`loss - median > (explode_factor - 1) * max(|median|, min_scale)`. For a positive median this is
`loss > explode_factor * median`; `min_scale` keeps a loss that hovers near zero (GRPO, RLOO) from
alarming on noise. Checks start after `warmup` logged values, and the values that alarmed are kept
out of the median, so a loss that stays high keeps looking exploded instead of becoming the baseline.
"""

from __future__ import annotations

import math
import statistics
from collections import deque
from dataclasses import dataclass
from typing import Any, Literal

Action = Literal["stop", "warn", "off"]
ACTIONS = ("stop", "warn", "off")


@dataclass(frozen=True)
class WatchdogSettings:
    """The recipe's `watchdog:` section (the same names), as plain values."""

    metric: str = "loss"
    on_nan: Action = "stop"
    on_explode: Action = "warn"
    explode_factor: float = 10.0
    window: int = 20
    warmup: int = 10
    patience: int = 1
    min_scale: float = 0.1

    def __post_init__(self) -> None:
        for name in ("on_nan", "on_explode"):
            if getattr(self, name) not in ACTIONS:
                raise ValueError(
                    f"watchdog.{name}: {getattr(self, name)!r} is not one of {', '.join(ACTIONS)}"
                )
        if not self.explode_factor > 1:
            raise ValueError(f"watchdog.explode_factor: {self.explode_factor} must be greater than 1")
        if self.window < 3:
            raise ValueError(f"watchdog.window: {self.window} must be at least 3")
        if self.warmup < 0 or self.patience < 1 or not self.min_scale > 0:
            raise ValueError("watchdog: warmup >= 0, patience >= 1 and min_scale > 0 are required")

    @classmethod
    def from_section(cls, section: Any) -> WatchdogSettings:
        """From the recipe's pydantic section, a dict, or None (the defaults); unknown names are ignored."""
        if section is None:
            return cls()
        if hasattr(section, "model_dump"):
            section = section.model_dump()
        known = {k: v for k, v in dict(section).items() if k in cls.__dataclass_fields__}
        return cls(**known)


@dataclass(frozen=True)
class Alarm:
    """What the watchdog saw and what the recipe asks to do about it."""

    kind: Literal["nan", "explode"]
    action: Action  # "stop" or "warn" ("off" never alarms)
    step: int
    metric: str
    value: float
    median: float | None
    threshold: float | None
    text: str

    @property
    def stop(self) -> bool:
        return self.action == "stop"

    def event_fields(self) -> dict[str, Any]:
        """The fields of a `watchdog` event (docs/events.md), without `type`/`t`."""
        return {
            "step": self.step,
            "problem": self.kind,  # not `kind`: EventWriter.write takes the event type by that name
            "action": self.action,
            "metric": self.metric,
            "value": self.value,
            "median": self.median,
            "threshold": self.threshold,
            "text": self.text,
        }


class LossWatchdog:
    """Watches one logged metric (by default `loss`) for NaN/inf and explosions.

    `observe` returns an `Alarm` the first time a condition is met, and again only after the metric
    recovered in between (a warning is not repeated at every logged step).
    """

    def __init__(self, settings: WatchdogSettings | None = None, **overrides: Any):
        base = settings or WatchdogSettings()
        if overrides:
            base = WatchdogSettings(**{**base.__dict__, **overrides})
        self.settings = base
        self._recent: deque[float] = deque(maxlen=base.window)
        self._seen = 0  # finite values observed
        self._over = 0  # consecutive values above the explosion threshold
        self._nan_reported = False
        self._explode_reported = False

    @property
    def metric(self) -> str:
        return self.settings.metric

    def median(self) -> float | None:
        """The running median of the recent finite values that did not alarm (None before any)."""
        return statistics.median(self._recent) if self._recent else None

    def threshold(self) -> float | None:
        """The value above which the metric counts as exploded, once warm; None before."""
        median = self.median()
        if median is None or self._seen < max(self.settings.warmup, 1):
            return None
        scale = max(abs(median), self.settings.min_scale)
        return median + (self.settings.explode_factor - 1) * scale

    def observe_logs(self, step: int, logs: dict[str, Any]) -> Alarm | None:
        """`observe` with the watched metric taken from a trainer's logs (no alarm when it is absent)."""
        value = logs.get(self.settings.metric)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return None
        return self.observe(step, float(value))

    def observe(self, step: int, value: float) -> Alarm | None:
        """Feed one logged value; an `Alarm` when it is NaN/inf or exploded (per the settings)."""
        s = self.settings
        value = float(value)
        if not math.isfinite(value):
            self._over = 0
            if s.on_nan == "off" or self._nan_reported:
                return None
            self._nan_reported = True
            median = self.median()
            return Alarm(
                "nan",
                s.on_nan,
                step,
                s.metric,
                value,
                median,
                None,
                f"{s.metric} is {value} at step {step}"
                + (f" (running median {median:.4g})" if median is not None else ""),
            )
        self._nan_reported = False
        threshold = self.threshold()
        if threshold is not None and value > threshold:
            self._over += 1
            if s.on_explode == "off" or self._explode_reported or self._over < s.patience:
                return None
            self._explode_reported = True
            median = self.median()
            return Alarm(
                "explode",
                s.on_explode,
                step,
                s.metric,
                value,
                median,
                threshold,
                f"{s.metric} exploded at step {step}: {value:.4g} > {threshold:.4g} "
                f"({s.explode_factor:g}x the running median {median:.4g} of the last {len(self._recent)})",
            )
        self._over = 0
        self._explode_reported = False
        self._recent.append(value)
        self._seen += 1
        return None
