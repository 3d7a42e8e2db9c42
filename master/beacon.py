"""The beacon models (regular contacts from a device to an endpoint few devices reach) and known C2.

The series' statistics (EW mean and variance of intervals and sizes, the beacon score ``b``) are the
belief model in master/models/intervals.py; this module holds the rules that make them breaches.

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

from master.breaches import make_breach
from master.catalog import CATALOG, FLOW_BEACON, HTTP_BEACON, HTTP_C2, KNOWN_C2
from master.endpoints import Rarity
from master.models.intervals import MIN_INTERVAL_S, PairStats
from master.observe import C2Obs, SessionTimer
from vigil.alert.v1 import alert_pb2

# The network's own plumbing, which every workstation polls on timers of its own (name and time service,
# Kerberos, directory, file and print, RPC, DHCP, NetBIOS, SNMP, syslog, multicast discovery): a device's
# regular traffic to these is housekeeping, not a check-in. Internal beacons are looked for elsewhere.
INFRASTRUCTURE_PORTS = frozenset(
    {53, 67, 68, 88, 123, 135, 137, 138, 139, 161, 162, 389, 445, 464, 514, 636, 1900, 3268, 3269, 5353, 5355}
)
# A timer with uniform jitter of ±j around its sleep has interval CV j/sqrt(3): C2 frameworks' largest
# usual jitter, ±50 %, gives 0.29, and ten intervals estimate it within about ±0.06. Random (Poisson)
# arrivals have CV 1 and people's traffic more.
MAX_BEACON_CV = 0.35
# A timer this regular is a beacon whatever its check-ins carry (tasks and their results vary the sizes:
# QuasarRAT's 77 reconnects have interval CV 0.04 and size CV 0.53).
STRICT_TIMER_CV = 0.15


def flow_beacon(stats: PairStats, rarity: Rarity) -> bool:
    cv = stats.cv_interval()
    return (
        rarity.rare
        and stats.intervals >= 10
        and stats.mean_i >= MIN_INTERVAL_S
        and cv <= MAX_BEACON_CV
        and (stats.cv_size() <= 0.5 or cv <= STRICT_TIMER_CV)
    )


def session_beacon(timer: SessionTimer, rarity: Rarity, service_known: bool) -> bool:
    """A timer inside one connection to a rare endpoint, in a protocol the sensor does not know: an
    implant that keeps its session to the controller open and checks in on it (STRRAT). Keep-alives of
    the protocols the sensor names (TLS, SSH-like services it recognises) are left to their own models."""
    return (
        rarity.rare
        and not service_known
        and timer.intervals >= 10
        and timer.mean_s >= MIN_INTERVAL_S
        and timer.cv <= MAX_BEACON_CV
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


def session_beacon_breach(
    device: alert_pb2.DeviceRef, endpoint: str, timer: SessionTimer, rarity: Rarity, start: float, uid: str
) -> alert_pb2.ModelBreach:
    """``Compromise / Beaconing Activity To External Rare`` from the timer inside one connection."""
    span = timer.intervals * timer.mean_s
    regularity = 1.0 - min(1.0, timer.cv / MAX_BEACON_CV)
    score = min(100, round(50 + 30 * regularity + 10 * min(1.0, timer.intervals / 60.0)))
    explanation = (
        f"{device.ip} kept one connection to {endpoint} open and sent {timer.messages} messages in it over "
        f"{span / 60:.1f} min, a new one every {timer.mean_s:.1f} s ± {timer.stdev_s:.2f} s (interval CV "
        f"{timer.cv:.2f}; random arrivals have CV 1), in a protocol the sensor does not recognise; "
        f"{rarity.text()}; score {score}"
    )
    evidence = [
        alert_pb2.Evidence(
            feature="messages_in_one_connection", observed=float(timer.messages), examples=[endpoint]
        ),
        alert_pb2.Evidence(feature="interval_cv", observed=timer.cv, expected=1.0),
        alert_pb2.Evidence(feature="devices_contacting_endpoint", observed=float(rarity.others)),
    ]
    return make_breach(
        FLOW_BEACON,
        device,
        key=int(start),
        score=score,
        when=start + span,
        window=(start, start + span),
        explanation=explanation,
        evidence=evidence,
        techniques=("T1071", "T1095", "T1029"),
        uids=[uid] if uid else [],
        peer=endpoint,
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
