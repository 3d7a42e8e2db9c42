"""The master's lag gauges as Prometheus reads them: computed at scrape time, bounded in sensors."""

from __future__ import annotations

import math

from prometheus_client import CollectorRegistry

from master.lag import EventTimeLag, HeartbeatAges


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_event_time_lag_grows_while_idle_and_follows_the_newest_event() -> None:
    registry, clock = CollectorRegistry(), Clock(1000.0)
    lag = EventTimeLag(registry, clock)
    assert math.isnan(registry.get_sample_value("vigil_master_event_time_lag_seconds") or 0.0)
    lag.saw([900.0, 950.0, float("inf"), float("nan")])
    assert registry.get_sample_value("vigil_master_event_time_lag_seconds") == 50.0
    clock.now = 1030.0
    assert registry.get_sample_value("vigil_master_event_time_lag_seconds") == 80.0
    lag.saw([940.0])  # older than what was seen: the newest stays
    assert registry.get_sample_value("vigil_master_event_time_lag_seconds") == 80.0


def test_heartbeat_ages_forget_the_sensor_heard_least_recently_past_the_bound() -> None:
    registry, clock = CollectorRegistry(), Clock(0.0)
    ages = HeartbeatAges(registry, clock, max_sensors=3)
    for i, sensor in enumerate(["a", "b", "c"]):
        clock.now = float(i)
        ages.heard(sensor)
    clock.now = 10.0
    ages.heard("a")  # heard again: now the most recent
    ages.heard("d")  # one too many: "b" goes
    name = "vigil_master_sensor_heartbeat_age_seconds"
    got = {s: registry.get_sample_value(name, {"sensor": s}) for s in "abcd"}
    assert got == {"a": 0.0, "b": None, "c": 8.0, "d": 0.0}
    assert registry.get_sample_value("vigil_master_sensors_forgotten_total") == 1
