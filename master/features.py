"""Per-device scan features over event-time windows, from flow records.

A flow counts in the window of its ``start_time`` (when the attempt happened). Flows are emitted when they
end or idle out, so a failed attempt may arrive long after the device's later, successful ones; a window
therefore stays open for ``allowed_lateness_s`` after its end (measured against the newest flow time seen
from that device) before it is closed and learned. Records for a window already closed are counted as late
and dropped from the features (never from the inventory).
"""

from __future__ import annotations

import ipaddress
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from vigil.flow.v1 import flow_pb2

SCHEMA = 1

# Bounds on what one window remembers. The count stays exact up to MAX_DESTINATIONS and then saturates,
# which is already hundreds of decades past any breach threshold.
MAX_DESTINATIONS = 2048
MAX_EXAMPLES = 5
MAX_UIDS = 20

_CS = flow_pb2.ConnState
# Attempts that never became a conversation (Zeek conn_state semantics).
_FAILED_STATES = frozenset({_CS.CONN_STATE_S0, _CS.CONN_STATE_REJ, _CS.CONN_STATE_RSTOS0, _CS.CONN_STATE_SH})


def is_failed(flow: flow_pb2.Flow) -> bool:
    """True when the originator's attempt got no conversation out of the responder."""
    state = flow.conn_state
    if state in _FAILED_STATES:
        return True
    if state == _CS.CONN_STATE_RSTR:
        # Responder reset without ever sending SYN-ACK ('h'): a rejection, not an aborted session.
        return "h" not in flow.history
    if state == _CS.CONN_STATE_OTH:
        return flow.resp_pkts == 0
    return False


def answered(flow: flow_pb2.Flow) -> bool:
    """The responder exists: it sent something other than a rejection."""
    return flow.resp_pkts > 0 and flow.conn_state not in (_CS.CONN_STATE_REJ, _CS.CONN_STATE_RSTOS0)


def ip_text(raw: bytes) -> str | None:
    if len(raw) == 4:
        return str(ipaddress.IPv4Address(raw))
    if len(raw) == 16:
        return str(ipaddress.IPv6Address(raw))
    return None


def mac_text(raw: bytes) -> str | None:
    if len(raw) != 6:
        return None
    return ":".join(f"{b:02x}" for b in raw)


class Networks:
    """Membership test for the configured internal networks."""

    def __init__(self, cidrs: Iterable[str]) -> None:
        self._nets = [ipaddress.ip_network(c, strict=False) for c in cidrs]

    def __contains__(self, ip: str) -> bool:
        addr = ipaddress.ip_address(ip)
        return any(addr.version == n.version and addr in n for n in self._nets)


@dataclass
class Window:
    """What one device did in one window."""

    index: int
    destinations: set[str] = field(default_factory=set)
    saturated: bool = False
    failed: int = 0
    examples: list[str] = field(default_factory=list)
    uids: list[str] = field(default_factory=list)
    # Already breached: at most one breach per device per window.
    breached: bool = False
    # Changed since it was last scored.
    dirty: bool = False

    def features(self) -> dict[str, float]:
        return {
            "distinct_internal_destinations": float(len(self.destinations)),
            "failed_connections": float(self.failed),
        }

    def to_dict(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "destinations": sorted(self.destinations),
            "saturated": self.saturated,
            "failed": self.failed,
            "examples": self.examples,
            "uids": self.uids,
            "breached": self.breached,
            "dirty": self.dirty,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Window:
        return cls(
            index=int(d["index"]),
            destinations=set(d["destinations"]),
            saturated=bool(d["saturated"]),
            failed=int(d["failed"]),
            examples=list(d["examples"]),
            uids=list(d["uids"]),
            breached=bool(d["breached"]),
            dirty=bool(d["dirty"]),
        )


class DeviceWindows:
    """The open windows of one device and the newest flow time it has produced (its watermark)."""

    def __init__(self, window_s: float, allowed_lateness_s: float) -> None:
        self.window_s = window_s
        self.allowed_lateness_s = allowed_lateness_s
        self.watermark: float | None = None
        # Windows up to and including this index are closed (learned).
        self.closed_through: int | None = None
        self.windows: dict[int, Window] = {}
        self.late_records = 0

    def index_of(self, t: float) -> int:
        return math.floor(t / self.window_s)

    def advance(self, t: float) -> list[Window]:
        """Move the watermark to ``t``; return the windows that closed, oldest first (removed from here)."""
        if self.watermark is not None and t <= self.watermark:
            return []
        self.watermark = t
        # Window i is closed once the watermark passes its end plus the allowed lateness.
        last_closed = math.floor((t - self.allowed_lateness_s) / self.window_s) - 1
        closing = sorted(i for i in self.windows if i <= last_closed)
        if self.closed_through is None or last_closed > self.closed_through:
            self.closed_through = last_closed
        return [self.windows.pop(i) for i in closing]

    def add(self, t: float, destination: str | None, port: int, failed: bool, uid: str) -> Window | None:
        """Count one flow in its window; ``None`` when that window has already been closed."""
        index = self.index_of(t)
        if self.closed_through is not None and index <= self.closed_through:
            self.late_records += 1
            return None
        window = self.windows.get(index)
        if window is None:
            window = self.windows[index] = Window(index)
        changed = False
        if destination is not None and destination not in window.destinations:
            if len(window.destinations) < MAX_DESTINATIONS:
                window.destinations.add(destination)
                changed = True
                if len(window.examples) < MAX_EXAMPLES:
                    window.examples.append(f"{destination}:{port}" if port else destination)
            else:
                window.saturated = True
        if failed:
            window.failed += 1
            changed = True
        if changed and uid and len(window.uids) < MAX_UIDS:
            window.uids.append(uid)
        window.dirty = window.dirty or changed
        return window

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": SCHEMA,
            "watermark": self.watermark,
            "closed_through": self.closed_through,
            "late_records": self.late_records,
            "windows": [w.to_dict() for w in sorted(self.windows.values(), key=lambda w: w.index)],
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any], window_s: float, allowed_lateness_s: float) -> DeviceWindows:
        if d.get("schema") != SCHEMA:
            raise ValueError(f"unsupported scan feature schema {d.get('schema')!r}")
        state = cls(window_s, allowed_lateness_s)
        state.watermark = d["watermark"]
        state.closed_through = d["closed_through"]
        state.late_records = int(d.get("late_records", 0))
        state.windows = {w.index: w for w in (Window.from_dict(x) for x in d["windows"])}
        return state
