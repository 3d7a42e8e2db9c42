"""Streaming beacon scores per (device, external endpoint), and the models built on them.

A beacon is software calling home on a timer: connections (or HTTP requests) to one endpoint at regular
intervals with regular sizes, for long; connections within a second of the previous one are one check-in.
Batch tools score a day of connections at once; here every connection updates, in O(1) state, an
exponentially weighted mean and variance of the inter-arrival time and of the size, so the score is current
after each connection and old behaviour fades.

Beacon score ``b`` in [0, 1]: ``0.4 * r_interval + 0.2 * r_size + 0.2 * c + 0.1 * d + 0.1 * h`` where
``r = 1 - min(1, CV)`` (coefficient of variation; exponential, i.e. random, arrivals have CV = 1),
``c = min(1, n / 30)``, ``d = min(1, span / 6 h)`` (how long it has gone on) and ``h`` the share of the 24
hours of the day it has been seen in (a person works some hours; a timer works all of them).

Models (once per device and endpoint per ``REFIRE_S``):

* ``Compromise / Beaconing Activity To External Rare``: any protocol (flows), ``n >= 10`` intervals of at
  least 1 s, interval CV ``<= 0.35`` (uniform jitter up to ±50 %) and size CV ``<= 0.5`` (any size CV once
  the interval CV is ``<= 0.15``), to an endpoint rare for the network.
* ``Compromise / HTTP Beaconing to Rare Destination``: the same on HTTP requests to one host.
* ``Compromise / Possible HTTP Command and Control``: HTTP requests by a non-browser user agent to a rare
  host, interval CV ``<= 0.35`` over ``n >= 5`` intervals, with ``>= 3`` application/octet-stream responses.
* ``Compromise / Beaconing to Internal Endpoint``: the beacon rule on connections (except to the network's
  own plumbing: INFRASTRUCTURE_PORTS) or HTTP requests to an internal endpoint that few other devices reach —
  an implant calling a C2 server or a pivot inside the network (a red team's teamserver, a compromised
  host relaying). Rarity is the same test as for external endpoints.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from master.breaches import make_breach
from master.catalog import CATALOG, HTTP_BEACON, HTTP_C2, KNOWN_C2
from master.endpoints import Rarity
from master.observe import C2Obs
from vigil.alert.v1 import alert_pb2

SCHEMA = 1
# The network's own plumbing, which every workstation polls on timers of its own (name and time service,
# Kerberos, directory, file and print, RPC, DHCP, NetBIOS, SNMP, syslog, multicast discovery): a device's
# regular traffic to these is housekeeping, not a check-in. Internal beacons are looked for elsewhere.
INFRASTRUCTURE_PORTS = frozenset(
    {53, 67, 68, 88, 123, 135, 137, 138, 139, 161, 162, 389, 445, 464, 514, 636, 1900, 3268, 3269, 5353, 5355}
)
MAX_PAIRS = 24
REFIRE_S = 24 * 3600.0
MIN_INTERVAL_S = 1.0
# Weight of the newest observation never drops below this: the statistics follow a changing timer.
MIN_WEIGHT = 1.0 / 50.0
# A timer with uniform jitter of ±j around its sleep has interval CV j/sqrt(3): C2 frameworks' largest
# usual jitter, ±50 %, gives 0.29, and ten intervals estimate it within about ±0.06. Random (Poisson)
# arrivals have CV 1 and people's traffic more.
MAX_BEACON_CV = 0.35
# A timer this regular is a beacon whatever its check-ins carry (tasks and their results vary the sizes:
# QuasarRAT's 77 reconnects have interval CV 0.04 and size CV 0.53).
STRICT_TIMER_CV = 0.15


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

    def to_dict(self) -> dict[str, Any]:
        return {"schema": SCHEMA, "pairs": {k: v.to_list() for k, v in self.pairs.items()}}

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> DeviceBeacons:
        if doc.get("schema") != SCHEMA:
            raise ValueError(f"unsupported beacon state schema {doc.get('schema')!r}")
        return cls({k: PairStats.from_list(v) for k, v in doc["pairs"].items()})


def flow_beacon(stats: PairStats, rarity: Rarity) -> bool:
    cv = stats.cv_interval()
    return (
        rarity.rare
        and stats.intervals >= 10
        and stats.mean_i >= MIN_INTERVAL_S
        and cv <= MAX_BEACON_CV
        and (stats.cv_size() <= 0.5 or cv <= STRICT_TIMER_CV)
    )


def http_c2(stats: PairStats, rarity: Rarity) -> bool:
    return (
        rarity.rare
        and not stats.browser
        and stats.intervals >= 5
        and stats.mean_i >= MIN_INTERVAL_S
        and stats.cv_interval() <= 0.35
        and stats.octet >= 3
    )


def beacon_breach(
    model: str,
    device: alert_pb2.DeviceRef,
    endpoint: str,
    stats: PairStats,
    rarity: Rarity,
    t: float,
    uid: str,
    extra: str = "",
    peer: str = "",
) -> alert_pb2.ModelBreach:
    b = stats.score()
    score = min(100, round(45 + 50 * b)) if model != HTTP_C2 else min(100, round(60 + 35 * b))
    explanation = (
        f"{device.ip} reached {endpoint} {stats.n} times over {(t - stats.first) / 60:.1f} min, every "
        f"{stats.mean_i:.1f} s ± {math.sqrt(stats.var_i):.2f} s (interval CV {stats.cv_interval():.2f}; "
        f"random arrivals have CV 1), {stats.mean_s:.0f} ± {math.sqrt(stats.var_s):.0f} B each "
        f"(size CV {stats.cv_size():.2f}){extra}, in {bin(stats.hours).count('1')} hours of the day; "
        f"{rarity.text()}; beacon score {b:.2f}; score {score}"
    )
    evidence = [
        alert_pb2.Evidence(feature="connections", observed=float(stats.n), examples=[endpoint]),
        alert_pb2.Evidence(feature="interval_cv", observed=stats.cv_interval(), expected=1.0),
        alert_pb2.Evidence(feature="size_cv", observed=stats.cv_size(), expected=1.0),
        alert_pb2.Evidence(feature="devices_contacting_endpoint", observed=float(rarity.others)),
    ]
    return make_breach(
        model,
        device,
        key=int(stats.first),
        score=score,
        when=t,
        window=(stats.first, t),
        explanation=explanation,
        evidence=evidence,
        techniques=("T1071.001", "T1573") if model in (HTTP_BEACON, HTTP_C2) else ("T1071", "T1029"),
        uids=[uid] if uid else [],
        peer=peer,
    )


def known_c2_breach(
    device: alert_pb2.DeviceRef, c2: C2Obs, checkins: int, first: float, t: float, uid: str
) -> alert_pb2.ModelBreach:
    """A C2 framework's default fingerprint: 75 for a certificate or a stager, 65 for two profile
    check-ins, up to 85 as they repeat."""
    fp = c2.fingerprint
    score = 75 if fp.conclusive else min(85, 65 + 5 * (checkins - 2))
    explanation = (
        f"{device.ip} -> {c2.host} ({c2.peer}): {fp.evidence}; the default fingerprint of {fp.framework}, "
        f"{checkins} check-in{'s' if checkins != 1 else ''} over {(t - first) / 60:.1f} min; score {score}"
    )
    evidence = [
        alert_pb2.Evidence(feature="c2_fingerprint", observed=float(checkins), examples=[fp.evidence[:200]]),
    ]
    return make_breach(
        KNOWN_C2,
        device,
        key=int(first),
        score=score,
        when=t,
        window=(first, t),
        explanation=explanation,
        evidence=evidence,
        techniques=CATALOG[KNOWN_C2].techniques,
        uids=[uid] if uid else [],
        peer=c2.peer,
    )
