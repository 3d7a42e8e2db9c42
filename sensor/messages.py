"""The originator's messages inside one connection, and the time between them.

A *message* is a run of the originator's payload packets with less than ``MESSAGE_GAP_S`` of its own
silence inside (a request, a check-in, a burst of keystrokes). An implant that keeps one long session to
its controller shows a timer in the starts of its messages even though the connection never closes
(STRRAT's "ping" every few seconds); the flow record carries how many messages there were and the mean
and spread of the time between their starts, and the master judges the timer as it judges one between
connections.

The per-packet work is vectorised over a block's packets (:func:`record_messages`); a connection's
:class:`MessageClock` carries what one block leaves to the next.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

MESSAGE_GAP_S = 1.0
_NEVER = -math.inf

Floats = npt.NDArray[np.float64]
Ints = npt.NDArray[np.int64]
Bools = npt.NDArray[np.bool_]


@dataclass(slots=True)
class MessageClock:
    """One connection's originator messages: the carry between blocks and this record's totals."""

    # Time of the originator's latest payload packet, and of the start of its latest message.
    last_data: float = _NEVER
    last_start: float = _NEVER
    messages: int = 0
    intervals: int = 0
    interval_sum: float = 0.0
    interval_sumsq: float = 0.0

    def reset(self) -> None:
        """A record was written (active timeout): totals start again, the carry stays."""
        self.messages = self.intervals = 0
        self.interval_sum = self.interval_sumsq = 0.0

    def mean_and_stdev(self) -> tuple[float, float]:
        if not self.intervals:
            return 0.0, 0.0
        mean = self.interval_sum / self.intervals
        var = max(self.interval_sumsq / self.intervals - mean * mean, 0.0)
        return mean, math.sqrt(var)


def group_firsts(groups: Ints) -> Bools:
    """True where a run of equal (sorted) group numbers begins."""
    firsts = np.ones(groups.size, dtype=np.bool_)
    firsts[1:] = groups[1:] != groups[:-1]
    return firsts


def previous_in_group(times: Floats, firsts: Bools, carried: Floats) -> Floats:
    """Each element's predecessor in its group; a group's first gets what its connection carried."""
    prev = np.empty_like(times)
    prev[1:] = times[:-1]
    prev[firsts] = carried
    return prev


def message_starts(times: Floats, firsts: Bools, carried_last: Floats) -> Bools:
    """Which payload packets begin a message (``times`` grouped by segment, in time order)."""
    gap = times - previous_in_group(times, firsts, carried_last)
    return np.asarray(gap >= MESSAGE_GAP_S, dtype=np.bool_)


def record_messages(seg_of_data: Ints, times: Floats, clocks: Sequence[MessageClock]) -> None:
    """Fold one block's originator payload packets into their connections' clocks: ``seg_of_data`` and
    ``times`` are those packets' segments and times, grouped by segment in time order; ``clocks[s]`` is
    segment ``s``'s connection clock."""
    firsts = group_firsts(seg_of_data)
    segments = seg_of_data[firsts]
    seg_list = segments.tolist()
    carried_last = np.array([clocks[s].last_data for s in seg_list], dtype=np.float64)
    starts = message_starts(times, firsts, carried_last)
    seg_m, t_m = seg_of_data[starts], times[starts]
    n = segments.size
    index_of = np.searchsorted(segments, seg_m)
    messages = np.bincount(index_of, minlength=n)
    last_start = np.full(n, _NEVER)
    iv_n = np.zeros(n, dtype=np.int64)
    iv_sum = np.zeros(n)
    iv_sumsq = np.zeros(n)
    if t_m.size:
        m_firsts = group_firsts(seg_m)
        carried = np.array([clocks[s].last_start for s in seg_m[m_firsts].tolist()], dtype=np.float64)
        intervals = t_m - previous_in_group(t_m, m_firsts, carried)
        # A capture slightly out of order can put a start before the previous one: not an interval.
        known = np.isfinite(intervals) & (intervals >= 0)
        iv_n = np.bincount(index_of[known], minlength=n)
        iv_sum = np.bincount(index_of[known], weights=intervals[known], minlength=n).astype(np.float64)
        iv_sumsq = np.bincount(index_of[known], weights=intervals[known] ** 2, minlength=n).astype(np.float64)
        m_lasts = np.flatnonzero(np.append(m_firsts[1:], True))
        last_start[index_of[m_lasts]] = t_m[m_lasts]
    last_data = times[np.flatnonzero(np.append(firsts[1:], True))]
    for s, last, start, count, ivn, ivs, ivq in zip(
        seg_list,
        last_data.tolist(),
        last_start.tolist(),
        messages.tolist(),
        iv_n.tolist(),
        iv_sum.tolist(),
        iv_sumsq.tolist(),
        strict=True,
    ):
        clock = clocks[s]
        clock.last_data = max(clock.last_data, last)
        clock.last_start = max(clock.last_start, start)
        clock.messages += count
        clock.intervals += ivn
        clock.interval_sum += ivs
        clock.interval_sumsq += ivq
