"""IP fragment reassembly: the sensor sees the datagram the receiving host will see.

Splitting a packet into fragments (``nmap -f``, ``fragroute``) is the oldest way to walk past a sensor that
reads packets one at a time: the TCP header, an HTTP request line or an SMB negotiate may sit in no single
packet. Fragments are held here, keyed as the receiver keys them (source, destination, identification,
protocol), and a whole datagram is handed back once its pieces cover it without a hole: the first fragment's
link-layer and IP headers, the flags and offset cleared, the length and checksum rewritten, the payload
joined. IPv6 fragments are reassembled whatever extension headers precede the fragment header (the
unfragmentable part, RFC 8200 section 4.5: hop-by-hop, destination options, routing): the datagram is the
first fragment's unfragmentable part, its last next-header field set to the fragment header's, then the
joined fragmentable parts. Putting options in front of the fragment header must not hide a datagram.

Where pieces overlap, the piece that starts earlier wins (BSD's policy; stacks differ, and Linux now drops
such datagrams) and the overlap is counted: a sender that overlaps fragments is usually trying to show the
sensor something else than the host. Bounded: datagrams of at most 65,535 bytes, at most ``max_pending``
waiting and ``max_bytes`` held in all (a flood of first pieces that never complete must not take the
sensor's memory: the oldest waiting datagram goes first), each for at most ``timeout_s`` after its first
piece; whatever is dropped is counted by reason.
"""

from __future__ import annotations

import struct
from collections import Counter
from dataclasses import dataclass, field

MAX_DATAGRAM = 65535
_MF = 0x2000
_DF = 0x4000


@dataclass
class _Piece:
    """What one fragment says: its datagram's key, where its payload goes, and the header to rebuild."""

    key: tuple[bytes, bytes, int, int]
    offset: int
    more: bool
    payload: bytes
    # Link-layer bytes plus the IP header the whole datagram will carry (IPv6: the unfragmentable part).
    head: bytes
    version: int
    next_header: int = 0
    # IPv6: where in ``head`` (from the IP header) the next-header field to rewrite sits.
    next_header_at: int = 6


@dataclass
class _Pending:
    first_ts: float
    last_ts: float
    # Link-layer bytes and IP header of the fragment at offset 0 (None until it arrives).
    head: bytes | None = None
    version: int = 4
    next_header: int = 0
    next_header_at: int = 6
    total: int | None = None  # payload length, known once the last fragment (MF clear) arrives
    pieces: dict[int, bytes] = field(default_factory=dict)  # payload offset -> bytes
    size: int = 0  # bytes held in pieces


def _checksum(header: bytes) -> int:
    total: int = sum(struct.unpack(f"!{len(header) // 2}H", header))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def _coverage(pieces: dict[int, bytes]) -> tuple[int, bool]:
    """Bytes covered from 0 without a hole, and whether any two pieces overlap."""
    end = 0
    overlap = False
    for start in sorted(pieces):
        if start > end:
            break
        if start < end:
            overlap = True
        end = max(end, start + len(pieces[start]))
    return end, overlap


class Reassembler:
    def __init__(self, timeout_s: float = 30.0, max_pending: int = 4096, max_bytes: int = 32 << 20) -> None:
        self.timeout_s = timeout_s
        self.max_pending = max_pending
        self.max_bytes = max_bytes
        self._held = 0
        self._pending: dict[tuple[bytes, bytes, int, int], _Pending] = {}
        # reassembled, overlap, timeout, too_large, table_full, malformed
        self.counts: Counter[str] = Counter()

    def __len__(self) -> int:
        return len(self._pending)

    def add(self, ts: float, packet: bytes, l3: int) -> bytes | None:
        """One fragment (``packet`` from its link-layer header, IP header at ``l3``); the whole packet
        when this fragment completes its datagram, else None."""
        piece = _parse(packet, l3)
        if piece is None:
            self.counts["malformed"] += 1
            return None
        if piece.offset + len(piece.payload) > MAX_DATAGRAM - (len(piece.head) - l3):
            self.counts["too_large"] += 1
            if piece.key in self._pending:
                self._drop(piece.key)
            return None
        entry = self._pending.get(piece.key)
        if entry is None:
            if len(self._pending) >= self.max_pending:
                self.counts["table_full"] += 1
                return None
            entry = self._pending[piece.key] = _Pending(first_ts=ts, last_ts=ts)
        entry.last_ts = ts
        if piece.offset == 0 and entry.head is None:
            entry.head, entry.version, entry.next_header = piece.head, piece.version, piece.next_header
            entry.next_header_at = piece.next_header_at
        if not piece.more:
            entry.total = piece.offset + len(piece.payload)
        held = entry.pieces.get(piece.offset, b"")
        if len(held) < len(piece.payload):
            # A repeat of a piece at the same offset only adds what it has beyond the piece held.
            entry.pieces[piece.offset] = held + piece.payload[len(held) :]
            entry.size += len(piece.payload) - len(held)
            self._held += len(piece.payload) - len(held)
            self._make_room(piece.key)
            if piece.key not in self._pending:
                return None
        covered, overlap = _coverage(entry.pieces)
        if entry.total is None or entry.head is None or covered < entry.total:
            return None
        self._drop(piece.key)
        if overlap:
            self.counts["overlap"] += 1
        self.counts["reassembled"] += 1
        return _datagram(entry, l3)

    def _drop(self, key: tuple[bytes, bytes, int, int]) -> None:
        entry = self._pending.pop(key)
        self._held -= entry.size

    def _make_room(self, keep: tuple[bytes, bytes, int, int]) -> None:
        """Over the byte budget: drop the oldest waiting datagrams (the one being added last of all)."""
        while self._held > self.max_bytes and self._pending:
            oldest = next(iter(self._pending))  # insertion order = order of first pieces
            if oldest == keep and len(self._pending) > 1:
                self._pending[keep] = self._pending.pop(keep)  # move it to the end, drop the next
                continue
            self._drop(oldest)
            self.counts["memory"] += 1

    @property
    def held_bytes(self) -> int:
        return self._held

    def expire(self, now: float) -> int:
        """Drop datagrams whose first piece is older than the timeout; returns how many."""
        old = [k for k, e in self._pending.items() if now - e.first_ts > self.timeout_s]
        for key in old:
            self._drop(key)
        self.counts["timeout"] += len(old)
        return len(old)


def _parse(packet: bytes, l3: int) -> _Piece | None:
    if len(packet) < l3 + 20:
        return None
    version = packet[l3] >> 4
    if version == 4:
        ihl = (packet[l3] & 0x0F) * 4
        total_len, ident, frag, proto = struct.unpack_from("!H H H x B", packet, l3 + 2)
        if ihl < 20 or total_len < ihl or len(packet) < l3 + total_len:
            return None
        key = (packet[l3 + 12 : l3 + 16], packet[l3 + 16 : l3 + 20], ident, proto)
        payload = packet[l3 + ihl : l3 + total_len]
        return _Piece(key, (frag & 0x1FFF) * 8, bool(frag & _MF), payload, packet[: l3 + ihl], 4)
    if version == 6 and len(packet) >= l3 + 48:
        payload_len = struct.unpack_from("!H", packet, l3 + 4)[0]
        end = l3 + 40 + payload_len
        frag = _fragment_header6(packet, l3, end)
        if frag is None:
            return None
        at, nh_at = frag
        next_header = packet[at]
        field_, ident = struct.unpack_from("!H I", packet, at + 2)
        # Keyed apart from IPv4 (the protocol slot holds 256 + next header).
        key = (packet[l3 + 8 : l3 + 24], packet[l3 + 24 : l3 + 40], ident, 256 + next_header)
        payload = packet[at + 8 : end]
        head = packet[:at]
        return _Piece(key, field_ & 0xFFF8, bool(field_ & 1), payload, head, 6, next_header, nh_at - l3)
    return None


# Extension headers that may precede a fragment header (RFC 8200 section 4.1), and how many we walk.
_UNFRAGMENTABLE6 = frozenset({0, 43, 60})
_MAX_EXTENSIONS = 8


def _fragment_header6(packet: bytes, l3: int, end: int) -> tuple[int, int] | None:
    """Where the fragment header of an IPv6 packet starts, and where the next-header field that names
    it sits (to be rewritten in the reassembled datagram); None if it has none or is malformed."""
    if len(packet) < end:
        return None
    nh_at = l3 + 6
    at = l3 + 40
    for _ in range(_MAX_EXTENSIONS):
        nh = packet[nh_at]
        if nh == 44:
            return (at, nh_at) if at + 8 <= end else None
        if nh not in _UNFRAGMENTABLE6 or at + 8 > end:
            return None
        nh_at = at
        at += (packet[at + 1] + 1) * 8
    return None


def _datagram(entry: _Pending, l3: int) -> bytes:
    assert entry.head is not None and entry.total is not None
    data = bytearray(entry.total)
    for start in sorted(entry.pieces, reverse=True):  # pieces that start earlier are written last: they win
        piece = entry.pieces[start][: max(entry.total - start, 0)]
        data[start : start + len(piece)] = piece
    header = bytearray(entry.head[l3:])
    if entry.version == 6:
        struct.pack_into("!H", header, 4, len(header) - 40 + entry.total)
        header[entry.next_header_at] = entry.next_header
        return entry.head[:l3] + bytes(header) + bytes(data)
    struct.pack_into("!H", header, 2, len(header) + entry.total)
    flags = struct.unpack_from("!H", header, 6)[0]
    struct.pack_into("!H", header, 6, flags & _DF)
    struct.pack_into("!H", header, 10, 0)
    struct.pack_into("!H", header, 10, _checksum(bytes(header)))
    return entry.head[:l3] + bytes(header) + bytes(data)
