"""DTLS 1.0/1.2 framing (RFC 6347 4.1, 4.2.2): records with an epoch and sequence number, handshake
messages with a message sequence number that may arrive fragmented, retransmitted or out of order.

Only the framing differs from TLS; the handshake bodies are TLS's, except that a DTLS ClientHello
carries a cookie after its session id (4.2.1), removed here so the TLS parser reads it unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass

from sensor.protocols.base import ParseError

PROTOCOL = "dtls"

RECORD_HEADER = 13  # type, version, epoch, sequence number (48 bits), length
HANDSHAKE_HEADER = 12  # type, length, message_seq, fragment_offset, fragment_length
CONTENT_TYPES = frozenset({20, 21, 22, 23, 24})
CONTENT_HANDSHAKE = 22
HS_CLIENT_HELLO = 1
MAX_RECORD = 18 * 1024  # 2^14 plus expansion, as in TLS


def _fail(reason: str) -> ParseError:
    return ParseError(PROTOCOL, reason)


@dataclass(frozen=True, slots=True)
class Record:
    ctype: int
    version: int
    epoch: int
    body: bytes


@dataclass(frozen=True, slots=True)
class Fragment:
    msg_type: int
    length: int  # of the whole message
    message_seq: int
    offset: int
    data: bytes


def looks_like_dtls(datagram: bytes) -> bool:
    """A DTLS record header (a known content type, a 0xFEnn version) at the start of a datagram."""
    return len(datagram) >= RECORD_HEADER and datagram[0] in CONTENT_TYPES and datagram[1] == 0xFE


def looks_like_client_hello(datagram: bytes) -> bool:
    """The first flight of a DTLS handshake: an epoch-0 handshake record holding a ClientHello."""
    return (
        looks_like_dtls(datagram)
        and datagram[0] == CONTENT_HANDSHAKE
        and datagram[3:5] == b"\x00\x00"
        and len(datagram) > RECORD_HEADER
        and datagram[RECORD_HEADER] == HS_CLIENT_HELLO
    )


def records(datagram: bytes) -> list[Record]:
    """Every record of a datagram (several may share one, RFC 6347 4.1.1)."""
    out: list[Record] = []
    pos = 0
    size = len(datagram)
    while pos < size:
        if size - pos < RECORD_HEADER:
            raise _fail("truncated_record_header")
        ctype, major = datagram[pos], datagram[pos + 1]
        if ctype not in CONTENT_TYPES or major != 0xFE:
            raise _fail("bad_record_header")
        version = (major << 8) | datagram[pos + 2]
        epoch = (datagram[pos + 3] << 8) | datagram[pos + 4]
        length = (datagram[pos + 11] << 8) | datagram[pos + 12]
        if length > MAX_RECORD:
            raise _fail("record_too_long")
        start = pos + RECORD_HEADER
        end = start + length
        if end > size:
            raise _fail("truncated_record")
        out.append(Record(ctype, version, epoch, datagram[start:end]))
        pos = end
    return out


def fragments(body: bytes) -> list[Fragment]:
    """The handshake message fragments of one clear-text handshake record."""
    out: list[Fragment] = []
    pos = 0
    size = len(body)
    while pos < size:
        if size - pos < HANDSHAKE_HEADER:
            raise _fail("truncated_handshake_header")
        msg_type = body[pos]
        length = int.from_bytes(body[pos + 1 : pos + 4], "big")
        message_seq = (body[pos + 4] << 8) | body[pos + 5]
        offset = int.from_bytes(body[pos + 6 : pos + 9], "big")
        frag_len = int.from_bytes(body[pos + 9 : pos + 12], "big")
        start = pos + HANDSHAKE_HEADER
        end = start + frag_len
        if end > size:
            raise _fail("truncated_fragment")
        if offset + frag_len > length:
            raise _fail("fragment_past_message")
        out.append(Fragment(msg_type, length, message_seq, offset, body[start:end]))
        pos = end
    return out


def client_hello_as_tls(body: bytes) -> bytes:
    """A DTLS ClientHello body with its cookie removed: the TLS ClientHello layout."""
    at = 34  # client_version, random
    if len(body) < at + 1:
        raise _fail("client_hello_truncated")
    at += 1 + body[at]  # session id
    if len(body) < at + 1:
        raise _fail("client_hello_truncated")
    cookie_end = at + 1 + body[at]
    if cookie_end > len(body):
        raise _fail("client_hello_truncated")
    return body[:at] + body[cookie_end:]
