"""Per-device behaviour features over event-time windows (the catalog's counts), from telemetry records.

A flow counts in the window of its ``start_time`` (when the attempt happened). Flows are emitted when they
end or idle out, so a failed attempt may arrive long after the device's later, successful ones; a window
therefore stays open for ``allowed_lateness_s`` after its end (measured against the newest flow time seen
from that device) before it is closed and learned. Records for a window already closed are counted as late
and dropped from the features (never from the inventory).
"""

from __future__ import annotations

import functools
import hashlib
import ipaddress
import math
import socket
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from master.catalog import (
    ANSWERED_DESTINATIONS,
    FAILED,
    FEATURE_NAMES,
    INTERNAL_DESTINATIONS,
    NETWORK_SCAN,
    UNANSWERED_DESTINATIONS,
)
from vigil.flow.v1 import flow_pb2

SCHEMA = 3

# Distinct sets are exact up to SKETCH_K members, then estimated (see Window).
SKETCH_K = 64
# Bounds on what one window remembers besides its sets.
MAX_EXAMPLES = 5
MAX_EXAMPLE_CHARS = 256
MAX_UIDS = 20
_MAX_KNOWN_ADDRESSES = 65536

_CS = flow_pb2.ConnState
# Attempts that never became a conversation (Zeek conn_state semantics).
_FAILED_STATES = frozenset({_CS.CONN_STATE_S0, _CS.CONN_STATE_REJ, _CS.CONN_STATE_RSTOS0, _CS.CONN_STATE_SH})
# Read once: every enum attribute read goes through the protobuf wrapper's __getattr__, per flow.
_RSTR, _OTH = _CS.CONN_STATE_RSTR, _CS.CONN_STATE_OTH
_REJECTIONS = frozenset({_CS.CONN_STATE_REJ, _CS.CONN_STATE_RSTOS0})


def is_failed(flow: flow_pb2.Flow) -> bool:
    """True when the originator's attempt got no conversation out of the responder."""
    state = flow.conn_state
    if state in _FAILED_STATES:
        return True
    if state == _RSTR:
        # Responder reset without ever sending SYN-ACK ('h'): a rejection, not an aborted session.
        return "h" not in flow.history
    if state == _OTH:
        return flow.resp_pkts == 0
    return False


def answered(flow: flow_pb2.Flow) -> bool:
    """The responder exists: it sent something other than a rejection."""
    return flow.resp_pkts > 0 and flow.conn_state not in _REJECTIONS


def ip_text(raw: bytes) -> str | None:
    # inet_ntop gives the same canonical text as ipaddress (RFC 5952 for IPv6) at a tenth of the cost.
    if len(raw) == 4:
        return socket.inet_ntop(socket.AF_INET, raw)
    if len(raw) == 16:
        return socket.inet_ntop(socket.AF_INET6, raw)
    return None


def mac_text(raw: bytes) -> str | None:
    if len(raw) != 6:
        return None
    return raw.hex(":")  # "aa:bb:cc:dd:ee:ff", lower case


class Networks:
    """Membership test for the configured internal networks."""

    def __init__(self, cidrs: Iterable[str]) -> None:
        self._nets = [ipaddress.ip_network(c, strict=False) for c in cidrs]
        # Addresses repeat endlessly in telemetry: remember the answer (bounded: cleared when full).
        self._known: dict[str, bool] = {}

    def __contains__(self, ip: str) -> bool:
        known = self._known.get(ip)
        if known is not None:
            return known
        addr = ipaddress.ip_address(ip)
        inside = any(addr.version == n.version and addr in n for n in self._nets)
        if len(self._known) >= _MAX_KNOWN_ADDRESSES:
            self._known.clear()
        self._known[ip] = inside
        return inside


@functools.lru_cache(maxsize=1 << 16)
def member_hash(member: str) -> int:
    """A stable 64-bit hash of a set member (Python's own hash() changes from process to process).

    Cached: the same destinations and targets recur in window after window and batch after batch."""
    return int.from_bytes(hashlib.blake2b(member.encode(), digest_size=8).digest(), "big")


_HASH_SPACE = float(1 << 64)


def _remember(kept: dict[str, list[str]], feature: str, value: str, limit: int) -> None:
    """Keep ``value`` among the first ``limit`` distinct ones of ``feature`` (the list exists once the
    feature has been observed, empty if nothing was worth keeping). Examples quote what the traffic
    carried (names, filters, principals): each is cut to MAX_EXAMPLE_CHARS so that state stays small
    whatever a sender puts there."""
    value = value[:MAX_EXAMPLE_CHARS]
    values = kept.get(feature)
    if values is None:
        kept[feature] = [value] if value else []
    elif value and len(values) < limit and value not in values:
        values.append(value)


@dataclass
class Window:
    """What one device did in one window: a count or a set of distinct members per feature.

    Sets hold 64-bit hashes of their members: exact up to ``SKETCH_K`` members; beyond that a set keeps
    only its ``SKETCH_K`` smallest hashes (a k-minimum-values sketch) and its size is estimated as
    ``(k - 1) / (largest kept hash / 2^64)`` (relative error about 1/sqrt(k)), so a window stays small
    however much a device scans.
    """

    index: int
    counts: dict[str, int] = field(default_factory=dict)
    distinct: dict[str, set[int]] = field(default_factory=dict)
    # Set features past SKETCH_K members: their value is an estimate from there on.
    sketched: set[str] = field(default_factory=set)
    examples: dict[str, list[str]] = field(default_factory=dict)
    uids: dict[str, list[str]] = field(default_factory=dict)
    # Detectors that already breached on this window: at most one breach per model, device and window.
    breached: set[str] = field(default_factory=set)
    # Per count feature, the remote endpoint that contributed most: [amount, "ip:port"].
    top: dict[str, list[Any]] = field(default_factory=dict)
    # Changed since it was last scored.
    dirty: bool = False
    # Largest kept hash of each sketched set (derived, not stored): most members a sketch sees are larger
    # and rejected, and finding that out must not scan the k kept ones each time.
    _largest: dict[str, int] = field(default_factory=dict, repr=False, compare=False)

    def _size(self, feature: str, members: set[int]) -> int:
        if feature not in self.sketched:
            return len(members)
        return round((SKETCH_K - 1) / (self._sketch_max(feature, members) / _HASH_SPACE))

    def _sketch_max(self, feature: str, members: set[int]) -> int:
        largest = self._largest.get(feature)
        if largest is None:
            largest = self._largest[feature] = max(members)
        return largest

    def value(self, feature: str) -> int:
        members = self.distinct.get(feature)
        if members is None:
            return self.counts.get(feature, 0)
        if feature == UNANSWERED_DESTINATIONS:
            # Addresses none of whose attempts were answered in this window (a dead range, not a closed
            # port): the share of the kept unanswered hashes that were never answered, scaled to the size.
            answered = self.distinct.get(ANSWERED_DESTINATIONS, set())
            if feature not in self.sketched:
                return len(members - answered)
            never = sum(1 for h in members if h not in answered) / len(members)
            return round(self._size(feature, members) * never)
        return self._size(feature, members)

    @property
    def destinations(self) -> set[int]:
        return self.distinct.get(INTERNAL_DESTINATIONS, set())

    @property
    def failed(self) -> int:
        return self.counts.get(FAILED, 0)

    def features(self) -> dict[str, float]:
        """Every catalog feature, zero where the device did none of it (an active window teaches zeros)."""
        # Most features are zero in any one window: fill in only those the window has.
        x = dict.fromkeys(FEATURE_NAMES, 0.0)
        for name, count in self.counts.items():
            if name in x:
                x[name] = float(count)
        # A set feature's value comes from its set even if it somehow also has a count (as value() does).
        for name in self.distinct:
            if name in x:
                x[name] = float(self.value(name))
        return x

    def observe(
        self, feature: str, member: str | None, example: str, uid: str, amount: int = 1, peer: str = ""
    ) -> bool:
        """Count ``amount`` events (``member`` None) or one member of a set feature; True if it changed."""
        # Runs for every feature item of every record: no throwaway containers (setdefault's default
        # argument would build one per call).
        if member is None:
            if amount <= 0:
                return False
            counts = self.counts
            counts[feature] = counts.get(feature, 0) + amount
            if peer:
                top = self.top.get(feature)
                if top is None or amount > top[0]:
                    self.top[feature] = [amount, peer]
        else:
            members = self.distinct.get(feature)
            if members is None:
                members = self.distinct[feature] = set()
            h = member_hash(member)
            if h in members:
                return False
            if feature in self.sketched:
                largest = self._sketch_max(feature, members)
                if h > largest:
                    return False  # not among the k smallest: the estimate does not move
                members.discard(largest)
                members.add(h)
                self._largest[feature] = max(members)
            else:
                members.add(h)
                if len(members) > SKETCH_K:
                    self.sketched.add(feature)
                    members.discard(max(members))
                    self._largest[feature] = max(members)
            if peer and feature not in self.top:
                self.top[feature] = [1, peer]
        _remember(self.examples, feature, example, MAX_EXAMPLES)
        _remember(self.uids, feature, uid, MAX_UIDS)
        self.dirty = True
        return True

    def to_dict(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "counts": self.counts,
            "distinct": {k: sorted(v) for k, v in self.distinct.items()},
            "sketched": sorted(self.sketched),
            "examples": self.examples,
            "uids": self.uids,
            "breached": sorted(self.breached),
            "dirty": self.dirty,
            "top": self.top,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Window:
        return cls(
            index=int(d["index"]),
            counts={k: int(v) for k, v in d["counts"].items()},
            distinct={k: set(map(int, v)) for k, v in d["distinct"].items()},
            sketched=set(d["sketched"]),
            examples={k: list(v) for k, v in d["examples"].items()},
            uids={k: list(v) for k, v in d["uids"].items()},
            breached=set(d["breached"]),
            dirty=bool(d["dirty"]),
            top={k: list(v) for k, v in d.get("top", {}).items()},
        )

    @classmethod
    def from_v2(cls, d: dict[str, Any]) -> Window:
        """A window stored by schema 2 (member strings): converted to hashes, sketched where large."""
        window = cls(
            index=int(d["index"]),
            counts={k: int(v) for k, v in d["counts"].items()},
            examples={k: list(v) for k, v in d["examples"].items()},
            uids={k: list(v) for k, v in d["uids"].items()},
            breached=set(d["breached"]),
            dirty=bool(d["dirty"]),
            top={k: list(v) for k, v in d.get("top", {}).items()},
        )
        for feature, members in d["distinct"].items():
            window.distinct[feature] = set()
            for member in members:
                window.observe(feature, str(member), "", "")
        window.dirty = bool(d["dirty"])
        return window

    @classmethod
    def from_v1(cls, d: dict[str, Any]) -> Window:
        """A window stored by schema 1 (scan features only)."""
        window = cls.from_v2(
            {
                "index": d["index"],
                "counts": {FAILED: int(d["failed"])} if d["failed"] else {},
                "distinct": {INTERNAL_DESTINATIONS: d["destinations"]},
                "examples": {INTERNAL_DESTINATIONS: list(d["examples"])},
                "uids": {INTERNAL_DESTINATIONS: list(d["uids"])},
                "breached": [NETWORK_SCAN] if d["breached"] else [],
                "dirty": d["dirty"],
            }
        )
        return window


class DeviceWindows:
    """The open windows of one device and the newest flow time it has produced (its watermark).

    A batch usually touches one or two of a device's open windows, so windows loaded by :meth:`from_dict`
    stay in their stored (JSON-shaped) form until used: decoding and re-encoding the others would cost
    more than everything the batch does with them. Stored windows are never dirty (every dirty window is
    scored before the state is written), so leaving them undecoded changes nothing.
    """

    def __init__(self, window_s: float, allowed_lateness_s: float) -> None:
        self.window_s = window_s
        self.allowed_lateness_s = allowed_lateness_s
        self.watermark: float | None = None
        # Windows up to and including this index are closed (learned).
        self.closed_through: int | None = None
        # Decoded windows, and stored ones not decoded yet (each index in exactly one of the two).
        self._live: dict[int, Window] = {}
        self._stored: dict[int, dict[str, Any]] = {}
        self.late_records = 0

    @property
    def windows(self) -> dict[int, Window]:
        """Every open window by index (decodes any still in stored form)."""
        for index in list(self._stored):
            self._decode(index)
        return self._live

    @windows.setter
    def windows(self, windows: dict[int, Window]) -> None:
        self._live = windows
        self._stored = {}

    def _decode(self, index: int) -> Window:
        window = self._live[index] = Window.from_dict(self._stored.pop(index))
        return window

    def dirty_windows(self) -> list[Window]:
        """The decoded windows changed since they were last scored, oldest first (stored ones never are)."""
        return [w for _, w in sorted(self._live.items()) if w.dirty]

    def index_of(self, t: float) -> int:
        return math.floor(t / self.window_s)

    def advance(self, t: float) -> list[Window]:
        """Move the watermark to ``t``; return the windows that closed, oldest first (removed from here)."""
        if self.watermark is not None and t <= self.watermark:
            return []
        self.watermark = t
        # Window i is closed once the watermark passes its end plus the allowed lateness.
        last_closed = math.floor((t - self.allowed_lateness_s) / self.window_s) - 1
        if self.closed_through is None or last_closed > self.closed_through:
            self.closed_through = last_closed
        if not self._live and not self._stored:
            return []
        closing = sorted(i for i in (*self._live, *self._stored) if i <= last_closed)
        return [self._live.pop(i) if i in self._live else self._decode_closed(i) for i in closing]

    def _decode_closed(self, index: int) -> Window:
        return Window.from_dict(self._stored.pop(index))

    def window_for(self, t: float) -> Window | None:
        """The open window of event time ``t`` (created if new); None when it has already been closed."""
        index = self.index_of(t)
        if self.closed_through is not None and index <= self.closed_through:
            self.late_records += 1
            return None
        window = self._live.get(index)
        if window is None:
            window = self._decode(index) if index in self._stored else Window(index)
            self._live[index] = window
        return window

    def to_dict(self) -> dict[str, Any]:
        # Windows still in stored form go back as they came: Window.from_dict(d).to_dict() == d for every
        # document to_dict wrote (see _keep_stored).
        windows = [(i, w.to_dict()) for i, w in self._live.items()] + list(self._stored.items())
        windows.sort(key=lambda iw: iw[0])
        return {
            "schema": SCHEMA,
            "watermark": self.watermark,
            "closed_through": self.closed_through,
            "late_records": self.late_records,
            "windows": [w for _, w in windows],
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any], window_s: float, allowed_lateness_s: float) -> DeviceWindows:
        schema = d.get("schema")
        if schema not in (1, 2, SCHEMA):
            raise ValueError(f"unsupported feature window schema {schema!r}")
        state = cls(window_s, allowed_lateness_s)
        state.watermark = d["watermark"]
        state.closed_through = d["closed_through"]
        state.late_records = int(d.get("late_records", 0))
        if schema != SCHEMA:
            load = {1: Window.from_v1, 2: Window.from_v2}[schema]
            state._live = {w.index: w for w in (load(x) for x in d["windows"])}
            return state
        for x in d["windows"]:
            if _keep_stored(x):
                state._stored[int(x["index"])] = x
            else:
                window = Window.from_dict(x)
                state._live[window.index] = window
        return state


_WINDOW_KEYS = frozenset(
    {"index", "counts", "distinct", "sketched", "examples", "uids", "breached", "dirty", "top"}
)


def _keep_stored(d: dict[str, Any]) -> bool:
    """A stored window that may stay undecoded: clean and with exactly the fields Window.to_dict writes
    (anything else is decoded now, so that it is written back normalised as before)."""
    return d.keys() == _WINDOW_KEYS and d["dirty"] is False and type(d["index"]) is int
