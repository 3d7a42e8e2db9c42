"""DTLS per-connection state: reassemble each side's handshake messages from their fragments, in
message sequence order, and hand them (ClientHello cookies removed), with the change-cipher-spec,
alert and application-data records, to a TLS session, which writes the connection's ssl record
("DTLSv12", JA4 with the "d" prefix, Zeek's ssl_history letters, e.g. "CvCsxknGIi").
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sensor.protocols.base import ConnContext, Emit, ErrorCounter, ParseError
from sensor.protocols.dtls import parser
from sensor.protocols.tls.carrier import TlsCarrier
from sensor.protocols.tls.parser import CONTENT_APPDATA, CONTENT_HANDSHAKE

PROTOCOL = parser.PROTOCOL
MAX_DATAGRAMS = 64  # a handshake with retransmissions fits; then the session is only opaque records
MAX_MESSAGE = 64 * 1024  # certificate chains included; also what one direction may hold pending
MAX_PENDING = 16  # messages waiting for an earlier message_seq


@dataclass(slots=True)
class _Message:
    msg_type: int
    length: int
    data: bytearray
    have: set[tuple[int, int]] = field(default_factory=set)  # (offset, end) of fragments received

    def complete(self) -> bool:
        covered = 0
        for start, end in sorted(self.have):
            if start > covered:
                return False
            covered = max(covered, end)
        return covered >= self.length


class _Handshake:
    """One direction's handshake messages, released whole and in message_seq order, once each."""

    __slots__ = ("_buffered", "_next", "_pending")

    def __init__(self) -> None:
        self._next = 0
        self._pending: dict[int, _Message] = {}
        self._buffered = 0  # bytes held for pending messages: bounded, whatever the peer claims

    def add(self, frag: parser.Fragment) -> list[tuple[int, bytes]]:
        if frag.message_seq < self._next:
            return []  # a retransmission of a message already released
        if frag.length > MAX_MESSAGE:
            raise ParseError(PROTOCOL, "message_too_long")
        msg = self._pending.get(frag.message_seq)
        if msg is None:
            if len(self._pending) >= MAX_PENDING:
                raise ParseError(PROTOCOL, "too_many_pending_messages")
            if self._buffered + frag.length > MAX_MESSAGE:
                raise ParseError(PROTOCOL, "handshake_too_large")
            msg = _Message(frag.msg_type, frag.length, bytearray(frag.length))
            self._pending[frag.message_seq] = msg
            self._buffered += frag.length
        elif (msg.msg_type, msg.length) != (frag.msg_type, frag.length):
            raise ParseError(PROTOCOL, "inconsistent_fragments")
        end = frag.offset + len(frag.data)
        msg.data[frag.offset : end] = frag.data
        msg.have.add((frag.offset, end))
        out: list[tuple[int, bytes]] = []
        while (ready := self._pending.get(self._next)) is not None and ready.complete():
            del self._pending[self._next]
            self._buffered -= ready.length
            self._next += 1
            out.append((ready.msg_type, bytes(ready.data)))
        return out


class DtlsSession(TlsCarrier):
    protocol = PROTOCOL
    carrier = "d"
    max_datagrams = MAX_DATAGRAMS

    def __init__(self, ctx: ConnContext, emit: Emit, count_error: ErrorCounter) -> None:
        super().__init__(ctx, emit, count_error)
        self._handshake = {True: _Handshake(), False: _Handshake()}

    def datagram(self, is_orig: bool, ts: float, payload: bytes) -> None:
        for record in parser.records(payload):
            self._record(is_orig, ts, record)

    def _record(self, is_orig: bool, ts: float, record: parser.Record) -> None:
        if record.epoch > 0:
            # Protected under the negotiated keys: only application data says something (by its type).
            if record.ctype == CONTENT_APPDATA:
                self._tls.plain_record(is_orig, ts, CONTENT_APPDATA, b"")
            return
        if record.ctype != CONTENT_HANDSHAKE:
            self._tls.plain_record(is_orig, ts, record.ctype, record.body)
            return
        for frag in parser.fragments(record.body):
            for msg_type, raw in self._handshake[is_orig].add(frag):
                body = parser.client_hello_as_tls(raw) if msg_type == parser.HS_CLIENT_HELLO else raw
                message = bytes([msg_type]) + len(body).to_bytes(3, "big") + body
                self._tls.plain_record(is_orig, ts, CONTENT_HANDSHAKE, message)


def new_session(ctx: ConnContext, emit: Emit, count_error: ErrorCounter) -> DtlsSession:
    return DtlsSession(ctx, emit, count_error)
