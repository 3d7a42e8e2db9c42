"""The master's door: every record is checked before it can teach or move anything.

The sensor sees traffic an attacker controls, and a capture or a flow log can hold any bytes; what reaches
the master is therefore checked against physical ranges, one record at a time, and a bad record is dropped
alone and counted by reason, never its batch:

* times (a flow's start, an application record's time: what the master files it under): after
  ``master.min_event_time`` (1990 by default), no later than the batch's own creation time plus
  ``master.max_clock_skew_s`` (the batch's time itself no later than the master's clock plus that skew), and
  no earlier than ``master.max_batch_span_s`` before the batch's median time (nothing a sensor emits together
  lies further apart: a record from years before its batch is forged, or a clock that jumped);
* ports in 0-65535, IP protocol numbers in 0-255;
* addresses of 4 or 16 bytes (empty only where a record may lack one), MACs of 6 bytes;
* byte counts up to 2^48 (256 TiB), packet counts up to 2^40.

What is checked is what the master reads; a field it ignores (a flow's end, its originator's port, VLANs,
header bytes) can mislead nothing, and reading it on every record would cost more than the rest.

The checks are pure functions over values the extraction (``Pipeline.extract``) reads from each record anyway,
so the door costs comparisons, not protobuf reads; a record is judged where it is read. (An application
record that counts for no internal device is not read beyond the address that says so: it can teach
nothing, so it is not judged either.)

The batch's accepted times also give the event clock its steps (:class:`EventClock`): the network's learned
span and every device's watermark may move forward by at most ``master.max_event_step_s`` per batch, so one
forged timestamp that passes these checks still cannot age the whole network or close a device's windows.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

MAX_BYTES = 2**48
MAX_PACKETS = 2**40
MAX_PORT = 65535
MAX_IP_PROTO = 255
DEFAULT_MIN_EVENT_TIME = datetime(1990, 1, 1, tzinfo=UTC).timestamp()
_IP_LENGTHS = (4, 16)
_MAC_LENGTHS = (0, 6)

# Every reason a record is turned away, so the counter's series exist from the start.
REASONS = (
    "no_kind",
    "time_unset",
    "time_before_floor",
    "time_in_future",
    "time_outlier",
    "port_out_of_range",
    "bad_address",
    "bad_mac",
    "ip_proto_out_of_range",
    "size_out_of_range",
)


@dataclass(frozen=True)
class DoorLimits:
    min_event_time: float = DEFAULT_MIN_EVENT_TIME
    max_clock_skew_s: float = 300.0
    max_batch_span_s: float = 30 * 24 * 3600.0
    max_event_step_s: float = 3600.0


# The checks are pure comparisons on values the extraction (master/pipeline.py) reads from each record
# anyway: every protobuf attribute read builds a wrapper, and this runs on every record the master takes in.
# Times are compared in whole seconds.
NO_LATEST = 2**62


def time_problem(seconds: int, nanos: int, floor: int, latest: int) -> str | None:
    if seconds < floor:
        return "time_unset" if seconds == 0 and nanos == 0 else "time_before_floor"
    if seconds > latest:
        return "time_in_future"
    return None


def endpoint_problem(port: int, ip: bytes, mac: bytes, need_ip: bool) -> str | None:
    if port > MAX_PORT:
        return "port_out_of_range"
    if len(ip) not in _IP_LENGTHS and (need_ip or ip):
        return "bad_address"
    if len(mac) not in _MAC_LENGTHS:
        return "bad_mac"
    return None


def flow_problem(
    start_s: int,
    start_ns: int,
    orig_ip: bytes,
    orig_mac: bytes,
    resp_ip: bytes,
    resp_mac: bytes,
    resp_port: int,
    ip_proto: int,
    orig_bytes: int,
    resp_bytes: int,
    resp_pkts: int,
    floor: int,
    latest: int,
) -> str | None:
    """Why a flow is turned away, from the fields the master reads (it reads no others, and those it
    ignores cannot mislead it); None for the ordinary flow, found by one comparison chain."""
    if (
        floor <= start_s <= latest
        and resp_port <= MAX_PORT
        and len(orig_ip) in _IP_LENGTHS
        and len(resp_ip) in _IP_LENGTHS
        and len(orig_mac) in _MAC_LENGTHS
        and len(resp_mac) in _MAC_LENGTHS
        and ip_proto <= MAX_IP_PROTO
        and orig_bytes <= MAX_BYTES
        and resp_bytes <= MAX_BYTES
        and resp_pkts <= MAX_PACKETS
    ):
        return None
    return (
        time_problem(start_s, start_ns, floor, latest)
        or endpoint_problem(0, orig_ip, orig_mac, True)
        or endpoint_problem(resp_port, resp_ip, resp_mac, True)
        or ("ip_proto_out_of_range" if ip_proto > MAX_IP_PROTO else None)
        or "size_out_of_range"
    )


def floor_seconds(limits: DoorLimits) -> int:
    return math.ceil(limits.min_event_time)


def latest_seconds(create_time: float | None, now: float, limits: DoorLimits) -> int:
    """The newest event time (whole seconds) a batch can vouch for: when the sensor made it (unset: the
    master's clock), never later than the master's own clock plus the skew, plus the skew."""
    made = create_time if create_time is not None and math.isfinite(create_time) and create_time > 0 else now
    return math.floor(min(made, now + limits.max_clock_skew_s) + limits.max_clock_skew_s)


def outlier_floor(times: Sequence[float], limits: DoorLimits) -> float | None:
    """The time before which a batch's records are outliers (more than max_batch_span_s before the
    batch's median), or None when none is. ``times`` sorted."""
    if not times:
        return None
    earliest = times[len(times) // 2] - limits.max_batch_span_s
    return earliest if times[0] < earliest else None


@dataclass(frozen=True)
class EventClock:
    """The network's event clock over one unit of work, moved batch by batch in bounded steps.

    ``clock`` is the newest event time the network has reached; ``learned_s`` how long it has been learned.
    Each batch moves the clock to its newest accepted time, but no further than one step
    (``max_event_step_s``) beyond the clock or beyond the batch's median time, whichever is later: half a
    batch agreeing on a time is evidence, one record is not. The learned span grows by at most one step per
    batch (a quiet night or a capture resumed a year later counts as one step). A network's first batch
    starts the clock at its median, and the span at the distance back to its earliest time (one step at
    most). For ordinary traffic this is exactly "newest time minus first time"; a forged time moves either
    by one step at most, and device watermarks never pass the clock (:meth:`ceiling`).
    """

    start_clock: float | None
    start_learned: float
    end_clock: float | None
    end_learned: float

    @property
    def first(self) -> float | None:
        """The instant the network's learning is reckoned from (its first time, for ordinary traffic)."""
        if self.start_clock is None:
            return None
        return self.start_clock - self.start_learned

    def learned(self, t: float) -> float:
        """How long the network has been learned at event time ``t`` within this unit."""
        first = self.first
        if first is None:
            return 0.0
        return min(max(0.0, t - first), self.end_learned)

    def ceiling(self, t: float) -> float:
        """``t`` as far as a device's watermark may follow it: no further than the network clock."""
        return t if self.end_clock is None else min(t, self.end_clock)


def advance_clock(
    clock: float | None, learned: float, batches: Sequence[Sequence[float]], max_step_s: float
) -> EventClock:
    """The clock before and after the unit's batches (each its accepted record times, sorted)."""
    start_clock, start_learned = clock, learned
    for ordered in batches:
        if not ordered:
            continue
        median, newest = ordered[len(ordered) // 2], ordered[-1]
        if clock is None:
            clock = median
            learned = median - max(ordered[0], median - max_step_s)
            start_clock, start_learned = clock, learned
        target = min(newest, max(clock + max_step_s, median))
        if target > clock:
            learned += min(target - clock, max_step_s)
            clock = target
    return EventClock(start_clock, start_learned, clock, learned)
