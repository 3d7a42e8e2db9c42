"""What every protocol analyzer shares: the connection it runs on, its error type, its session interface.

A protocol lives in ``sensor/protocols/<name>/``:
  ``parser.py``  pure functions, bytes -> typed dataclasses; raise only :class:`ParseError`.
  ``session.py`` per-connection state (requests <-> replies), turns parsed messages into protobuf records.
  ``zeek.py``    protobuf record -> Zeek log row (dict with Zeek's field names), for ``--format zeek-json``.
The flow table creates one session per connection the registry assigns to a protocol and feeds it
payload in order; sessions never see bulk data they said they no longer need (``done``, or the
optional ``skip_hint``/``skipped`` pair described below ``Session``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from google.protobuf.timestamp_pb2 import Timestamp

from vigil.sensor.v1 import sensor_pb2


def set_time(msg: Timestamp, ts: float) -> None:
    """Fill a Timestamp from float epoch seconds, rounding the nanoseconds rather than truncating them."""
    seconds = int(ts)
    nanos = round((ts - seconds) * 1e9)
    if nanos >= 1_000_000_000:
        seconds, nanos = seconds + 1, nanos - 1_000_000_000
    msg.seconds = seconds
    msg.nanos = nanos


class ParseError(Exception):
    """Malformed or unsupported input. ``reason`` is a short, bounded label used as a metric label."""

    def __init__(self, protocol: str, reason: str, detail: str = "") -> None:
        self.protocol = protocol
        self.reason = reason
        super().__init__(f"{protocol}: {reason}" + (f" ({detail})" if detail else ""))


@dataclass(frozen=True, slots=True)
class ConnContext:
    """The connection a session runs on, as the flow table knows it."""

    uid: str
    orig_ip: str
    orig_port: int
    resp_ip: str
    resp_port: int
    # "tcp" or "udp"
    transport: str
    orig_mac: str = ""
    resp_mac: str = ""


Emit = Callable[[sensor_pb2.Record], None]
ErrorCounter = Callable[[str, str], None]  # (protocol, reason)


class Session(Protocol):
    """Per-connection analyzer state.

    TCP: ``data`` gets each direction's stream in order (reassembled); ``gap`` reports missing bytes.
    UDP: ``data`` gets one datagram per call.
    """

    protocol: str

    def data(self, is_orig: bool, ts: float, payload: bytes) -> None: ...

    def gap(self, is_orig: bool, ts: float, length: int) -> None: ...

    def finish(self, ts: float) -> None:
        """The connection ended (or the sensor shuts down): flush pending records."""
        ...

    @property
    def done(self) -> bool:
        """True once the session has all it wants; the flow table then stops feeding it."""
        ...


# Optional Session methods, looked up with getattr so sessions without them keep working unchanged:
#
#   skip_hint(is_orig: bool) -> int
#       Asked (TCP only) after each data() call: how many of the next in-order bytes of this direction
#       the session will not read (the rest of an HTTP body of known length, say). The reassembler
#       then drops those bytes without calling data(); holes are still reported with gap().
#   skipped(is_orig: bool, ts: float, length: int) -> None
#       Reports skipped bytes, once the skip is complete (ts of the segment that completed it), before
#       a gap, or at the end of the stream, so the session's byte accounting stays exact.
#
# Both must be defined for either to be used.
#
#   confirmed -> bool   (attribute or property)
#       For analyzers found by a payload heuristic that a single packet cannot prove (OpenVPN,
#       WireGuard): the connection's service names the analyzer only once the session has seen the
#       peer answer in kind. Sessions without it are named as soon as they start.
#
#   rejected -> bool   (attribute or property)
#       Read once, after the first payload of a connection the session got by its port: True when
#       that payload was not this protocol at all; the payload heuristics then get the connection.
#
#   inner_services -> tuple[str, ...]   (attribute or property)
#       Analyzers the session handed the connection to (LDAP after StartTLS hands it to TLS): read when
#       the connection ends and added to its service list, as Zeek's conn.log names "ldap_tcp,ssl".


SessionFactory = Callable[[ConnContext, Emit, ErrorCounter], Session]


class HandshakeWatch:
    """Base of sessions that only watch a connection's opening to confirm what it is (VPNs): they emit
    no records, set ``confirmed`` when the peer answers in kind, and stop after a few packets."""

    protocol = ""
    max_packets = 16

    def __init__(self, ctx: ConnContext, emit: Emit, count_error: ErrorCounter) -> None:
        self.ctx = ctx
        self._confirmed = False
        self._done = False
        self._seen = 0

    @property
    def confirmed(self) -> bool:
        return self._confirmed

    @property
    def done(self) -> bool:
        return self._done

    def data(self, is_orig: bool, ts: float, payload: bytes) -> None:
        self._seen += 1
        if self._done or self._seen > self.max_packets:
            self._done = True
            return
        self.watch(is_orig, payload)

    def watch(self, is_orig: bool, payload: bytes) -> None:
        """One packet (UDP) or stream chunk (TCP); set ``_confirmed`` / ``_done`` as it decides."""
        raise NotImplementedError

    def gap(self, is_orig: bool, ts: float, length: int) -> None:
        self._done = True

    def finish(self, ts: float) -> None:
        pass


# A key a zeek.py mapper may put in its row (never written as a column): the row's originator is the
# flow's responder, as when Zeek flips a connection's roles from what its analyzer saw (a DNS response
# seen first). sensor.logwriter swaps the row's id.* accordingly.
FLIP_ROLES = "_flip_roles"
