"""QUIC per-connection state: decrypt each side's Initial packets, reassemble their CRYPTO streams and
hand the handshake messages to a TLS session, which writes the connection's ssl record (as Zeek's
ssl.log has one for QUIC: version, cipher, curve, SNI, JA3/JA4 with the "q" prefix, history "Cs").

Stops once both hellos are read, or after a bounded number of datagrams: the rest is opaque.
"""

from __future__ import annotations

from sensor.protocols.base import ConnContext, Emit, ErrorCounter, ParseError
from sensor.protocols.quic import parser
from sensor.protocols.tls.carrier import TlsCarrier
from sensor.protocols.tls.parser import CONTENT_HANDSHAKE

PROTOCOL = parser.PROTOCOL
# Hellos come in the first few datagrams; a connection that has not shown both by then never will here.
MAX_DATAGRAMS = 32
# A ClientHello with post-quantum key shares spans two or three Initials; far more is not a handshake.
MAX_CRYPTO_BYTES = 64 * 1024


class _CryptoStream:
    """One direction's Initial CRYPTO stream: frames arrive by offset, possibly out of order and
    retransmitted; bytes are released in order, once."""

    __slots__ = ("_pending", "next")

    def __init__(self) -> None:
        self.next = 0
        self._pending: dict[int, bytes] = {}

    def add(self, offset: int, data: bytes) -> bytes:
        if offset + len(data) > MAX_CRYPTO_BYTES:
            raise ParseError(PROTOCOL, "crypto_stream_too_long")
        if offset + len(data) <= self.next:
            return b""  # a retransmission of what was already released
        if offset > self.next:
            held = self._pending.get(offset, b"")
            if len(data) > len(held):
                if sum(map(len, self._pending.values())) - len(held) + len(data) > MAX_CRYPTO_BYTES:
                    raise ParseError(PROTOCOL, "crypto_stream_too_long")
                self._pending[offset] = data
            return b""
        out = bytearray(data[self.next - offset :])
        self.next += len(out)
        while self._pending:
            ready = [o for o in self._pending if o <= self.next]
            if not ready:
                break
            for o in sorted(ready):
                chunk = self._pending.pop(o)
                if o + len(chunk) > self.next:
                    out += chunk[self.next - o :]
                    self.next = o + len(chunk)
        return bytes(out)


class QuicSession(TlsCarrier):
    protocol = PROTOCOL
    carrier = "q"
    max_datagrams = MAX_DATAGRAMS

    def __init__(self, ctx: ConnContext, emit: Emit, count_error: ErrorCounter) -> None:
        super().__init__(ctx, emit, count_error)
        self._client_dcid: bytes | None = None
        self._keys: dict[bool, parser.InitialKeys] = {}
        self._crypto = {True: _CryptoStream(), False: _CryptoStream()}

    @property
    def done(self) -> bool:
        # Only the hellos are readable: once both are in, the rest of the connection is opaque.
        return self._done or self._tls.hellos_seen

    @property
    def inner_services(self) -> tuple[str, ...]:
        return ("ssl",) if self._client_dcid is not None else ()

    def datagram(self, is_orig: bool, ts: float, payload: bytes) -> None:
        if self._client_dcid is None and not (payload and payload[0] & 0xC0 == 0xC0):
            # Not a QUIC handshake: DTLS on 443/udp (VPN clients, WebRTC) or QUIC joined mid-flow,
            # where only short-header packets pass. Nothing to read, and nothing malformed either.
            self._done = True
            return
        for packet in parser.initial_packets(payload):
            if is_orig and self._client_dcid is None:
                self._use_keys_of(packet.dcid)  # the client's first Initial names the keys' connection id
            keys = self._keys.get(is_orig)
            if keys is None:
                continue  # a server Initial before any client one: nothing to derive keys from
            try:
                _, frames = parser.decrypt(packet, keys)
            except ParseError:
                if not is_orig or packet.dcid == self._client_dcid:
                    raise
                # After a Retry the client starts over with the connection id the server chose, and
                # both sides' Initial keys come from that one (RFC 9001 5.2). (Later client Initials
                # also carry the server's id but keep the first keys: those decrypt above.)
                self._use_keys_of(packet.dcid)
                _, frames = parser.decrypt(packet, self._keys[True])
            for offset, data in parser.crypto_frames(frames):
                ready = self._crypto[is_orig].add(offset, data)
                if ready:
                    self._tls.plain_record(is_orig, ts, CONTENT_HANDSHAKE, ready)

    def _use_keys_of(self, dcid: bytes) -> None:
        self._client_dcid = dcid
        client, server = parser.initial_keys(dcid)
        self._keys = {True: client, False: server}


def new_session(ctx: ConnContext, emit: Emit, count_error: ErrorCounter) -> QuicSession:
    return QuicSession(ctx, emit, count_error)
