"""Inter-arrival and size statistics per (device, endpoint): the belief the beacon detectors read.

A beacon is software calling home on a timer: connections (or HTTP requests) to one endpoint at regular
intervals with regular sizes, for long; connections within a second of the previous one are one check-in.
Batch tools score a day of connections at once; here every connection updates, in O(1) state, an
exponentially weighted mean and variance of the inter-arrival time and of the size, so the statistics are
current after each connection and old behaviour fades.

Beacon score ``b`` in [0, 1]: ``0.4 * r_interval + 0.2 * r_size + 0.2 * c + 0.1 * d + 0.1 * h`` where
``r = 1 - min(1, CV)`` (coefficient of variation; exponential, i.e. random, arrivals have CV = 1),
``c = min(1, n / 30)``, ``d = min(1, span / 6 h)`` (how long it has gone on) and ``h`` the share of the 24
hours of the day it has been seen in (a person works some hours; a timer works all of them).

What makes a series a breach (the endpoint's rarity, the thresholds of each model) is the detectors' call:
master/beacon.py.
"""

from __future__ import annotations

import dataclasses
import math
import random
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Self

from master.models.belief import Score

SCHEMA = 1
MAX_PAIRS = 24
# A model fires at most once per device and endpoint in this long.
REFIRE_S = 24 * 3600.0
MIN_INTERVAL_S = 1.0
# Weight of the newest observation never drops below this: the statistics follow a changing timer.
MIN_WEIGHT = 1.0 / 50.0


@dataclass
class PairStats:
    """One (device, endpoint) series: counts, EW mean/variance of intervals and sizes, flags."""

    n: int = 0
    first: float = 0.0
    last: float = 0.0
    mean_i: float = 0.0
    var_i: float = 0.0
    mean_s: float = 0.0
    var_s: float = 0.0
    octet: int = 0
    browser: bool = False
    fired: dict[str, float] | None = None
    # Bit i set: seen in hour i (UTC) of the day.
    hours: int = 0

    @property
    def intervals(self) -> int:
        return max(self.n - 1, 0)

    def cv_interval(self) -> float:
        return math.sqrt(self.var_i) / self.mean_i if self.mean_i > 0 else math.inf

    def cv_size(self) -> float:
        return math.sqrt(self.var_s) / self.mean_s if self.mean_s > 0 else 0.0

    def add(self, t: float, size: float) -> None:
        """One connection/request at event time ``t``; an out-of-order one counts but moves no interval.

        Connections less than MIN_INTERVAL_S after the previous one belong to the same check-in (implants
        often open two or three in a burst: fetch a task, post a result); counting them as intervals would
        make the most regular timer look random."""
        self.hours |= 1 << (int(t // 3600) % 24)
        if self.n and 0 < t - self.last < MIN_INTERVAL_S:
            return
        if self.n == 0:
            self.first = self.last = t
            self.mean_s = size
            self.n = 1
            return
        self.n += 1
        w = max(1.0 / self.n, MIN_WEIGHT)
        ds = size - self.mean_s
        self.mean_s += w * ds
        self.var_s = (1 - w) * (self.var_s + w * ds * ds)
        if t <= self.last:
            return
        interval = t - self.last
        self.last = t
        k = self.intervals
        wi = max(1.0 / k, MIN_WEIGHT)
        if k == 1:
            self.mean_i = interval
            return
        di = interval - self.mean_i
        self.mean_i += wi * di
        self.var_i = (1 - wi) * (self.var_i + wi * di * di)

    def score(self) -> float:
        r_i = 1.0 - min(1.0, self.cv_interval())
        r_s = 1.0 - min(1.0, self.cv_size())
        c = min(1.0, self.intervals / 30.0)
        d = min(1.0, (self.last - self.first) / (6 * 3600.0))
        h = bin(self.hours).count("1") / 24.0
        return 0.4 * r_i + 0.2 * r_s + 0.2 * c + 0.1 * d + 0.1 * h

    def due(self, model: str, t: float) -> bool:
        last = (self.fired or {}).get(model)
        return last is None or t - last >= REFIRE_S

    def mark(self, model: str, t: float) -> None:
        self.fired = {**(self.fired or {}), model: t}

    def to_list(self) -> list[Any]:
        return [
            self.n,
            self.first,
            self.last,
            self.mean_i,
            self.var_i,
            self.mean_s,
            self.var_s,
            self.octet,
            self.browser,
            self.fired or {},
            self.hours,
        ]

    @classmethod
    def from_list(cls, v: list[Any]) -> PairStats:
        return cls(
            int(v[0]), float(v[1]), float(v[2]), float(v[3]), float(v[4]), float(v[5]), float(v[6]),
            int(v[7]), bool(v[8]), dict(v[9]) or None, int(v[10]) if len(v) > 10 else 0,
        )  # fmt: skip


@dataclass(frozen=True)
class Contact:
    """One connection or request from the device: the series it joins (an endpoint) and its size in bytes."""

    endpoint: str
    size: float


@dataclass(frozen=True)
class BeaconScore(Score):
    """The series a contact joins, as it would be with that contact (``probability`` is None: regularity
    is not a probability)."""

    beacon: float
    connections: int
    interval_cv: float
    size_cv: float


class DeviceBeacons:
    """A device's series, bounded to the ``MAX_PAIRS`` most recently active endpoints."""

    def __init__(self, pairs: dict[str, PairStats] | None = None) -> None:
        self.pairs = pairs or {}

    def pair(self, key: str) -> PairStats:
        stats = self.pairs.get(key)
        if stats is None:
            if len(self.pairs) >= MAX_PAIRS:
                # Evict a one-off contact before a series that could be a beacon; the oldest first.
                victim = min(self.pairs, key=lambda k: (self.pairs[k].n >= 3, self.pairs[k].last))
                del self.pairs[victim]
            stats = self.pairs[key] = PairStats()
        return stats

    def learn_one(self, x: Contact, *, at: float) -> PairStats:
        """Add the contact at event time ``at`` to its series, and return the series for the detectors."""
        stats = self.pair(x.endpoint)
        stats.add(at, x.size)
        return stats

    def score_one(self, x: Contact, *, at: float) -> BeaconScore:
        """The series as it would be with this contact. The breach rules (and the endpoint's rarity they
        need) are the detectors': master/beacon.py."""
        known = self.pairs.get(x.endpoint)
        # A copy: scoring must not learn, nor evict another series to make room.
        stats = PairStats() if known is None else dataclasses.replace(known)
        stats.add(at, x.size)
        return BeaconScore(
            probability=None,
            breach=False,
            beacon=stats.score(),
            connections=stats.n,
            interval_cv=stats.cv_interval(),
            size_cv=stats.cv_size(),
        )

    def hyper(self) -> dict[str, Any]:
        return {}

    def to_dict(self) -> dict[str, Any]:
        return {"schema": SCHEMA, "pairs": {k: v.to_list() for k, v in self.pairs.items()}}

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any]) -> Self:
        if doc.get("schema") != SCHEMA:
            raise ValueError(f"unsupported beacon state schema {doc.get('schema')!r}")
        return cls({k: PairStats.from_list(v) for k, v in doc["pairs"].items()})

    @classmethod
    def example(cls) -> Self:
        return cls()

    @classmethod
    def example_stream(cls, seed: int) -> list[tuple[Contact, float]]:
        """Half a day of a workstation: an implant checking in every 300 s ± 10 % (now and then two
        requests in one check-in), and browsing to more sites than the series cap holds."""
        rng = random.Random(seed)
        stream = []
        for i in range(150):
            t = 300.0 * i + rng.uniform(-30.0, 30.0)
            stream.append((Contact("c2:203.0.113.9", 900.0 + rng.randint(0, 50)), t))
            if rng.random() < 0.2:
                stream.append((Contact("c2:203.0.113.9", float(rng.randint(100, 5000))), t + 0.3))
        for _ in range(200):
            site = f"flow:198.51.100.{rng.randint(0, 2 * MAX_PAIRS)}"
            stream.append((Contact(site, float(rng.randint(200, 50_000))), rng.uniform(0.0, 45_000.0)))
        return sorted(stream, key=lambda contact_at: contact_at[1])
