"""How far behind the master is, as gauges computed when Prometheus scrapes (an idle master's lag grows
between events, which a gauge set only on events would hide):

* ``vigil_master_event_time_lag_seconds``: the master's clock minus the newest event time it has committed
  (records past the door only, so one record from the future cannot hide a backlog);
* ``vigil_master_sensor_heartbeat_age_seconds{sensor}``: since the master last heard each sensor's heartbeat
  (``vigil.v1.heartbeat.<sensor>``). Sensor ids come from the bus, so the set is bounded: past
  ``MAX_SENSORS`` the sensor heard least recently is forgotten and counted.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Iterator

from prometheus_client import CollectorRegistry, Counter
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

MAX_SENSORS = 1024


class EventTimeLag(Collector):
    def __init__(self, registry: CollectorRegistry, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock
        self.newest: float | None = None
        registry.register(self)

    def saw(self, times: Iterable[float]) -> None:
        """Event times committed (any order); non-finite values are ignored."""
        newest = max((t for t in times if math.isfinite(t)), default=None)
        if newest is not None and (self.newest is None or newest > self.newest):
            self.newest = newest

    def collect(self) -> Iterator[Metric]:
        lag = GaugeMetricFamily(
            "vigil_master_event_time_lag_seconds",
            "The master's clock minus the newest event time it has committed (NaN before the first record).",
        )
        lag.add_metric([], math.nan if self.newest is None else self.clock() - self.newest)
        yield lag


class HeartbeatAges(Collector):
    def __init__(
        self,
        registry: CollectorRegistry,
        clock: Callable[[], float] = time.time,
        max_sensors: int = MAX_SENSORS,
    ) -> None:
        self.clock = clock
        self.max_sensors = max_sensors
        self.last_heard: dict[str, float] = {}
        self.forgotten = Counter(
            "vigil_master_sensors_forgotten_total",
            "Sensors whose heartbeat age was no longer tracked because more than the bound were heard.",
            registry=registry,
        )
        registry.register(self)

    def heard(self, sensor_id: str) -> None:
        self.last_heard.pop(sensor_id, None)
        self.last_heard[sensor_id] = self.clock()
        if len(self.last_heard) > self.max_sensors:
            # Insertion order is hearing order: the first key is the sensor heard least recently.
            del self.last_heard[next(iter(self.last_heard))]
            self.forgotten.inc()

    def collect(self) -> Iterator[Metric]:
        age = GaugeMetricFamily(
            "vigil_master_sensor_heartbeat_age_seconds",
            "Seconds since the master last heard the sensor's heartbeat.",
            labels=["sensor"],
        )
        now = self.clock()
        for sensor_id, heard in sorted(self.last_heard.items()):
            age.add_metric([sensor_id], max(0.0, now - heard))
        yield age
