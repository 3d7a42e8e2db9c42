"""In-order delivery of one direction of a TCP stream to an analyzer session.

Segments arrive as (sequence number, payload); the stream hands the session contiguous bytes in
sequence order. Out-of-order segments wait in a bounded buffer; retransmitted or overlapping bytes
are skipped (first copy wins, as in most IDS reassembly policies); when the peer acknowledges bytes
past the hole, the buffer is full or the stream ends, the hole is reported through ``gap()`` and
delivery resumes after it.

A session may say it does not need the next N bytes of a direction (the rest of an HTTP body):
``hint()`` is asked after each delivery; those bytes are then counted instead of delivered, and
``skipped(ts, n)`` reports them once the skip is complete (or before a gap, or at close), so the
session's own accounting stays exact without a ``data()`` call per bulk segment. Holes are still
reported through ``gap()``.
"""

from __future__ import annotations

from collections.abc import Callable

M32 = 0xFFFFFFFF

Deliver = Callable[[float, bytes], None]
Gap = Callable[[float, int], None]
Hint = Callable[[], int]
Skipped = Callable[[float, int], None]


def seq_diff(a: int, b: int) -> int:
    """a - b in 32-bit sequence space, as a signed value."""
    d = (a - b) & M32
    return d - (1 << 32) if d >= 1 << 31 else d


class StreamReassembler:
    __slots__ = (
        "_buffer",
        "_buffered",
        "_skip",
        "_skipped",
        "deliver",
        "gap",
        "hint",
        "max_buffer",
        "max_segments",
        "next_seq",
        "skipped",
    )

    def __init__(
        self,
        deliver: Deliver,
        gap: Gap,
        max_buffer: int = 256 * 1024,
        max_segments: int = 512,
        hint: Hint | None = None,
        skipped: Skipped | None = None,
    ):
        self.deliver = deliver
        self.gap = gap
        # Bulk skipping (both or neither): bytes still to skip, and skipped bytes not yet reported.
        self.hint = hint if skipped is not None else None
        self.skipped = skipped
        self._skip = 0
        self._skipped = 0
        self.next_seq: int | None = None
        self._buffer: dict[int, tuple[float, bytes]] = {}
        self._buffered = 0
        self.max_buffer = max_buffer
        self.max_segments = max_segments

    def syn(self, seq: int) -> None:
        """A SYN fixes the stream start: data begins one past its sequence number."""
        if self.next_seq is None:
            self.next_seq = (seq + 1) & M32

    def segment(self, ts: float, seq: int, payload: bytes) -> None:
        if seq == self.next_seq and not self._buffer:
            # The common case, in order with nothing waiting: hand it straight through.
            if payload:
                self.next_seq = (seq + len(payload)) & M32
                if self.hint is None:
                    self.deliver(ts, payload)
                else:
                    self._pass(ts, payload)
            return
        if not payload:
            return
        if self.next_seq is None:
            # Mid-stream start: the first data we see defines the stream origin.
            self.next_seq = seq
        delta = seq_diff(seq, self.next_seq)
        if delta < 0:
            # Retransmission or overlap: keep only bytes past what was already delivered.
            if -delta >= len(payload):
                return
            payload = payload[-delta:]
            seq = self.next_seq
            delta = 0
        if delta == 0:
            self._emit(ts, payload)
            self._drain()
            return
        if seq in self._buffer and len(self._buffer[seq][1]) >= len(payload):
            return
        self._buffer[seq] = (ts, payload)
        self._buffered += len(payload)
        if self._buffered > self.max_buffer or len(self._buffer) > self.max_segments:
            # Memory bound reached: give up on the hole and move on to what we have.
            self._skip_to_buffered(ts)

    @property
    def waiting(self) -> bool:
        """Bytes wait behind a hole."""
        return bool(self._buffer)

    def acked(self, ts: float, ack: int) -> None:
        """The peer acknowledged the stream up to ``ack``. An acknowledged hole will not be filled by a
        retransmission (the receiver has those bytes; the capture missed them), so it is reported now and
        what waits after it delivered, in step with the peer's answers, instead of when the buffer fills
        or the stream ends."""
        if not self._buffer or self.next_seq is None:
            return
        ahead = seq_diff(ack, self.next_seq)
        if 0 < ahead < 1 << 30:
            self._skip_to_buffered(ts)

    def _emit(self, ts: float, payload: bytes) -> None:
        assert self.next_seq is not None
        self.next_seq = (self.next_seq + len(payload)) & M32
        if self.hint is None:
            self.deliver(ts, payload)
        else:
            self._pass(ts, payload)

    def _pass(self, ts: float, payload: bytes) -> None:
        """Deliver in-order bytes, minus those the session said it will not read."""
        if self._skip:
            n = min(self._skip, len(payload))
            self._skip -= n
            self._skipped += n
            if self._skip:
                return
            self._report(ts)
            payload = payload[n:]
            if not payload:
                return
        self.deliver(ts, payload)
        assert self.hint is not None
        self._skip = max(self.hint(), 0)

    def _report(self, ts: float) -> None:
        if self._skipped:
            n, self._skipped = self._skipped, 0
            assert self.skipped is not None
            self.skipped(ts, n)

    def _hole(self, ts: float, length: int) -> None:
        """A hole in the stream: report what was skipped before it, then the gap itself (the session
        decides what a hole means, e.g. HTTP tolerates one inside a Content-Length body); then ask
        again how much to skip, since the gap may have changed the session's state."""
        if self.skipped is not None:
            self._skip = 0
            self._report(ts)
        self.gap(ts, length)
        if self.hint is not None:
            self._skip = max(self.hint(), 0)

    def _drain(self) -> None:
        while self._buffer:
            assert self.next_seq is not None
            progressed = False
            for seq in list(self._buffer):
                delta = seq_diff(seq, self.next_seq)
                if delta > 0:
                    continue
                ts, payload = self._buffer.pop(seq)
                self._buffered -= len(payload)
                if -delta < len(payload):
                    self._emit(ts, payload[-delta:] if delta else payload)
                progressed = True
            if not progressed:
                return

    def _skip_to_buffered(self, ts: float) -> None:
        if not self._buffer or self.next_seq is None:
            return
        base = self.next_seq
        first = min(self._buffer, key=lambda s: seq_diff(s, base))
        hole = seq_diff(first, base)
        if hole > 0:
            self._hole(ts, hole)
            self.next_seq = first
        self._drain()

    def close(self, ts: float) -> None:
        """End of stream: report holes before buffered data and deliver what remains."""
        while self._buffer:
            self._skip_to_buffered(ts)
        if self.skipped is not None:
            self._report(ts)
