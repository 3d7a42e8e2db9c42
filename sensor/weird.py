"""weird.log: the anomalies the sensor already counts, one row each, sampled so floods stay small.

Rows come from two places: packets the pipeline drops for a bad checksum (Zeek's names
``bad_IP_checksum``, ``bad_TCP_checksum``, ``bad_UDP_checksum``; the packet never reached a connection,
so the row has the packet's addresses and ports but no uid), and protocol analyzers' parse errors, the
``vigil_sensor_parse_errors`` series, on the connection they happened on (named ``<PROTOCOL>_<reason>``,
``source`` the analyzer, as Zeek names an analyzer's weirds).

Sampling follows Zeek's weird sampling, per name: the first ``threshold`` occurrences of a name within
each ``duration_s`` window are logged, then only every ``rate``-th; the rest are counted, not written.
Zeek samples a connection's weirds per connection; here every name is sampled across all connections, so
hostile traffic that opens a new connection per malformed message still writes a bounded number of rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

# Zeek's defaults: weird_sampling_threshold, weird_sampling_rate, weird_sampling_duration.
DEFAULT_THRESHOLD = 25
DEFAULT_RATE = 1000
DEFAULT_DURATION_S = 600.0
# Rows waiting for the log writer; more are dropped (counted) rather than held.
MAX_PENDING = 10_000
# Names are fixed strings of the code (checksum kinds, analyzers' reasons); this caps them all the same.
MAX_NAMES = 4096


@dataclass(frozen=True, slots=True)
class Weird:
    ts: float
    name: str
    source: str
    uid: str = ""
    orig_h: str = ""
    orig_p: int | None = None
    resp_h: str = ""
    resp_p: int | None = None
    addl: str = ""


def weird_row(weird: Weird, peer: str) -> dict[str, Any]:
    """A weird.log row in Zeek's JSON writer conventions (unset columns left out)."""
    row: dict[str, Any] = {"ts": round(weird.ts, 6)}
    if weird.uid:
        row["uid"] = weird.uid
    if weird.orig_h:
        row["id.orig_h"] = weird.orig_h
        if weird.orig_p is not None:
            row["id.orig_p"] = weird.orig_p
        row["id.resp_h"] = weird.resp_h
        if weird.resp_p is not None:
            row["id.resp_p"] = weird.resp_p
    row["name"] = weird.name
    if weird.addl:
        row["addl"] = weird.addl
    row["notice"] = False
    row["peer"] = peer
    row["source"] = weird.source
    return row


class WeirdSampler:
    """Which occurrences of a name to log (Zeek's weird sampling, see the module docstring)."""

    def __init__(
        self,
        threshold: int = DEFAULT_THRESHOLD,
        rate: int = DEFAULT_RATE,
        duration_s: float = DEFAULT_DURATION_S,
    ) -> None:
        self.threshold = threshold
        self.rate = rate
        self.duration_s = duration_s
        # name -> (window start, occurrences in the window)
        self._seen: dict[str, tuple[float, int]] = {}
        self.sampled_out = 0

    def take(self, name: str, count: int, now: float) -> list[int]:
        """Of ``count`` occurrences of ``name`` at ``now``, the indices (0-based) to log."""
        if count <= 0:
            return []
        start, seen = self._seen.get(name, (now, 0))
        if now - start >= self.duration_s or now < start:
            start, seen = now, 0
        elif name not in self._seen and len(self._seen) >= MAX_NAMES:
            self.sampled_out += count
            return []
        picked = [i for i in range(min(count, max(0, self.threshold - seen)))]
        # Past the threshold: every rate-th occurrence of the window (occurrence numbers seen+1 ...).
        first = seen + 1 + len(picked)
        last = seen + count
        step = self.rate
        multiple = -(-max(first, self.threshold + 1) // step) * step
        while multiple <= last:
            picked.append(multiple - seen - 1)
            multiple += step
        self._seen[name] = (start, seen + count)
        self.sampled_out += count - len(picked)
        return picked


class WeirdLog:
    """Collects sampled weirds for the log writer, which drains them after every block."""

    def __init__(self, sampler: WeirdSampler | None = None) -> None:
        self.sampler = sampler or WeirdSampler()
        self.pending: list[Weird] = []
        self.overflow = 0

    def add(self, weird: Weird) -> None:
        if len(self.pending) >= MAX_PENDING:
            self.overflow += 1
            return
        self.pending.append(weird)

    def drain(self) -> list[Weird]:
        out, self.pending = self.pending, []
        return out
