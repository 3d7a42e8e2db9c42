"""The master's door: every record is checked before it can teach or move anything.

The sensor sees traffic an attacker controls, and a capture or a flow log can hold any bytes; what reaches
the master is therefore checked against physical ranges, one record at a time, and a bad record is dropped
alone and counted by reason, never its batch:

* times: after ``master.min_event_time`` (1990 by default), and no later than the batch's own creation time
  plus ``master.max_clock_skew_s`` (the batch's time itself no later than the master's clock plus that skew);
  a flow ends no earlier than it starts and lasts at most ``master.max_flow_duration_s``, and no record
  precedes the batch's median time by more than that either (nothing a sensor emits together lies further
  apart: a record from years before its batch is forged, or a clock that jumped);
* ports in 0-65535, IP protocol numbers in 0-255, VLAN ids in 0-4095;
* addresses of 4 or 16 bytes (empty only where a record may lack one), MACs of 6 bytes;
* byte counts up to 2^48 (256 TiB), packet counts up to 2^40.

The batch's accepted times also give the event clock its steps (:class:`EventClock`): the network's learned
span and every device's watermark may move forward by at most ``master.max_event_step_s`` per batch, so one
forged timestamp that passes these checks still cannot age the whole network or close a device's windows.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from google.protobuf.timestamp_pb2 import Timestamp

from vigil.flow.v1 import flow_pb2
from vigil.sensor.v1 import sensor_pb2

MAX_BYTES = 2**48
MAX_PACKETS = 2**40
MAX_PORT = 65535
MAX_IP_PROTO = 255
MAX_VLAN = 4095
DEFAULT_MIN_EVENT_TIME = datetime(1990, 1, 1, tzinfo=UTC).timestamp()

# Every reason a record is turned away, so the counter's series exist from the start.
REASONS = (
    "no_kind",
    "time_unset",
    "time_before_floor",
    "time_in_future",
    "time_outlier",
    "end_before_start",
    "duration_too_long",
    "port_out_of_range",
    "bad_address",
    "bad_mac",
    "ip_proto_out_of_range",
    "vlan_out_of_range",
    "size_out_of_range",
)


@dataclass(frozen=True)
class DoorLimits:
    min_event_time: float = DEFAULT_MIN_EVENT_TIME
    max_clock_skew_s: float = 300.0
    max_flow_duration_s: float = 30 * 24 * 3600.0
    max_event_step_s: float = 24 * 3600.0


@dataclass
class Screened:
    """One batch after the door: the records let in, why the others were not, and the times let in."""

    records: list[sensor_pb2.Record]
    rejected: Counter[str] = field(default_factory=Counter)
    times: list[float] = field(default_factory=list)


def _seconds(ts: Timestamp) -> float:
    return float(ts.seconds) + float(ts.nanos) / 1e9


def _time_problem(ts: Timestamp, latest: float, limits: DoorLimits) -> str | None:
    if ts.seconds == 0 and ts.nanos == 0:
        return "time_unset"
    t = _seconds(ts)
    if t < limits.min_event_time:
        return "time_before_floor"
    if t > latest:
        return "time_in_future"
    return None


def _endpoint_problem(ep: flow_pb2.Endpoint, need_ip: bool) -> str | None:
    if ep.port > MAX_PORT:
        return "port_out_of_range"
    if len(ep.ip) not in (4, 16) and (need_ip or ep.ip):
        return "bad_address"
    if ep.mac and len(ep.mac) != 6:
        return "bad_mac"
    return None


def _flow_problem(flow: flow_pb2.Flow, latest: float, limits: DoorLimits) -> str | None:
    problem = _time_problem(flow.start_time, latest, limits)
    if problem is not None:
        return problem
    if flow.HasField("end_time"):
        end = _seconds(flow.end_time)
        start = _seconds(flow.start_time)
        if end < start:
            return "end_before_start"
        if end - start > limits.max_flow_duration_s:
            return "duration_too_long"
        if end > latest:
            return "time_in_future"
    problem = _endpoint_problem(flow.orig, True) or _endpoint_problem(flow.resp, True)
    if problem is not None:
        return problem
    if flow.ip_proto > MAX_IP_PROTO:
        return "ip_proto_out_of_range"
    if flow.vlan > MAX_VLAN or flow.inner_vlan > MAX_VLAN:
        return "vlan_out_of_range"
    byte_counts = (
        flow.orig_bytes,
        flow.resp_bytes,
        flow.orig_ip_bytes,
        flow.resp_ip_bytes,
        flow.missed_bytes,
    )
    if max(byte_counts) > MAX_BYTES or max(flow.orig_pkts, flow.resp_pkts) > MAX_PACKETS:
        return "size_out_of_range"
    return None


def record_time(record: sensor_pb2.Record, kind: str) -> float:
    """The event time the master files a record under (a flow's start, an application record's time)."""
    if kind == "flow":
        return _seconds(record.flow.start_time)
    return _seconds(getattr(record, kind).time)


def record_problem(record: sensor_pb2.Record, latest: float, limits: DoorLimits) -> str | None:
    """Why ``record`` cannot be let in (a reason from REASONS), or None. ``latest``: the newest event time
    the record's batch can vouch for."""
    kind = record.WhichOneof("kind")
    if kind is None:
        return "no_kind"
    if kind == "flow":
        return _flow_problem(record.flow, latest, limits)
    body = getattr(record, kind)
    problem = _time_problem(body.time, latest, limits)
    if problem is not None:
        return problem
    for side in ("orig", "resp"):
        if record.HasField(side):
            problem = _endpoint_problem(getattr(record, side), False)
            if problem is not None:
                return problem
    if kind == "http" and max(body.request_body_len, body.response_body_len) > MAX_BYTES:
        return "size_out_of_range"
    if kind == "smb_file" and body.size_bytes > MAX_BYTES:
        return "size_out_of_range"
    if kind == "dhcp" and body.mac and len(body.mac) != 6:
        return "bad_mac"
    return None


def batch_time(create_time: float | None, now: float, limits: DoorLimits) -> float:
    """The newest event time a batch can vouch for: when the sensor made it (unset: the master's clock),
    never later than the master's own clock plus the skew, plus the skew."""
    made = create_time if create_time is not None and math.isfinite(create_time) and create_time > 0 else now
    return min(made, now + limits.max_clock_skew_s) + limits.max_clock_skew_s


def screen(
    records: Iterable[sensor_pb2.Record], create_time: float | None, now: float, limits: DoorLimits
) -> Screened:
    latest = batch_time(create_time, now, limits)
    out = Screened([])
    for record in records:
        problem = record_problem(record, latest, limits)
        if problem is not None:
            out.rejected[problem] += 1
            continue
        out.records.append(record)
        out.times.append(record_time(record, record.WhichOneof("kind") or ""))
    if out.times:
        earliest = sorted(out.times)[len(out.times) // 2] - limits.max_flow_duration_s
        if min(out.times) < earliest:
            kept = [(r, t) for r, t in zip(out.records, out.times, strict=True) if t >= earliest]
            out.rejected["time_outlier"] += len(out.records) - len(kept)
            out.records = [r for r, _ in kept]
            out.times = [t for _, t in kept]
    return out


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
    """The clock before and after the unit's batches (each a list of accepted record times)."""
    start_clock, start_learned = clock, learned
    for times in batches:
        if not times:
            continue
        ordered = sorted(times)
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
