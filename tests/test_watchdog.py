"""The loss watchdog: NaN/inf and explosions against the running median, per the recipe's settings."""

from __future__ import annotations

import math

import pytest

from tui_ft.engine.watchdog import LossWatchdog, WatchdogSettings


def feed(dog: LossWatchdog, values, start: int = 1):
    return [dog.observe(step, value) for step, value in enumerate(values, start=start)]


def test_nan_and_inf_alarm_with_the_recipes_action():
    dog = LossWatchdog(on_nan="stop")
    assert feed(dog, [2.0, 1.9, 1.8]) == [None] * 3
    alarm = dog.observe(4, float("nan"))
    assert alarm is not None and alarm.kind == "nan" and alarm.stop and alarm.step == 4
    assert "loss is nan at step 4" in alarm.text and "1.9" in alarm.text
    assert dog.observe(5, float("nan")) is None  # not repeated at every log
    assert dog.observe(6, 1.7) is None
    again = dog.observe(7, math.inf)  # a new NaN/inf after a recovery alarms again
    assert again is not None and again.kind == "nan"
    warn = LossWatchdog(on_nan="warn").observe(1, float("nan"))
    assert warn is not None and warn.action == "warn" and not warn.stop
    assert LossWatchdog(on_nan="off").observe(1, float("nan")) is None


def test_explosion_against_the_running_median_after_warmup():
    dog = LossWatchdog(explode_factor=5.0, window=10, warmup=5, on_explode="stop")
    assert dog.observe(1, 2.0) is None
    assert dog.observe(2, 50.0) is None  # still warming up: early losses jump around
    feed(dog, [2.0, 2.1, 1.9, 2.0, 2.0, 1.8], start=3)
    assert dog.median() == pytest.approx(2.0)
    assert dog.threshold() == pytest.approx(10.0)
    assert dog.observe(9, 9.5) is None  # high, but under 5x the median
    alarm = dog.observe(10, 40.0)
    assert alarm is not None and alarm.kind == "explode" and alarm.stop
    assert alarm.threshold == pytest.approx(10.0) and alarm.median == pytest.approx(2.0)
    assert "exploded at step 10" in alarm.text
    fields = alarm.event_fields()
    assert fields["problem"] == "explode" and fields["value"] == 40.0 and fields["action"] == "stop"
    # Still exploded: no repeat, and the exploded values do not become the new baseline.
    assert feed(dog, [45.0] * 20, start=11) == [None] * 20
    assert dog.median() == pytest.approx(2.0)
    assert dog.observe(31, 2.0) is None  # recovered: re-armed
    assert dog.observe(32, 100.0) is not None


def test_patience_needs_consecutive_high_values():
    dog = LossWatchdog(explode_factor=3.0, window=5, warmup=3, patience=2)
    feed(dog, [1.0] * 5)
    assert dog.observe(6, 10.0) is None
    assert dog.observe(7, 1.0) is None  # a single spike: forgiven
    assert dog.observe(8, 10.0) is None
    assert dog.observe(9, 10.0) is not None


def test_a_loss_near_zero_uses_min_scale():
    dog = LossWatchdog(explode_factor=10.0, window=10, warmup=3, min_scale=0.1)
    feed(dog, [0.001, -0.002, 0.0005, 0.0, 0.001])  # a GRPO-like loss around zero
    assert dog.observe(6, 0.05) is None  # 50x the median, but noise at this scale
    alarm = dog.observe(7, 5.0)
    assert alarm is not None and alarm.kind == "explode"


def test_settings_from_a_recipe_section_and_their_checks():
    settings = WatchdogSettings.from_section({"on_nan": "warn", "explode_factor": 4, "window": 8, "extra": 1})
    assert settings.on_nan == "warn" and settings.explode_factor == 4 and settings.window == 8
    assert WatchdogSettings.from_section(None) == WatchdogSettings()
    with pytest.raises(ValueError, match="on_nan"):
        WatchdogSettings(on_nan="panic")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="explode_factor"):
        WatchdogSettings(explode_factor=1.0)
    with pytest.raises(ValueError, match="window"):
        WatchdogSettings(window=2)


def test_observe_logs_reads_the_watched_metric():
    dog = LossWatchdog(metric="grad_norm", warmup=2, window=4, explode_factor=10)
    for step in range(1, 5):
        assert dog.observe_logs(step, {"loss": float("nan"), "grad_norm": 1.0}) is None
    assert dog.observe_logs(5, {"loss": 1.0}) is None  # not logged this time
    alarm = dog.observe_logs(6, {"grad_norm": 1e4})
    assert alarm is not None and alarm.metric == "grad_norm"
