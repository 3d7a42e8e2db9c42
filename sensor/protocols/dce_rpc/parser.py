"""Connection-oriented DCE-RPC PDUs (C706 chapter 12, MS-RPCE 2.2.2): the one parser of them in Vigil.

Pure functions: bytes -> dataclasses; only :class:`ParseError` escapes. Every length read from the wire is
checked against the buffer before it is used, and nothing is allocated by a length the peer chose.

The data representation (drep) in byte 4 of the header says whether integers are little- or big-endian;
it applies to the header's own integers as well as the body's, UUIDs included.
"""

from __future__ import annotations

import struct
import uuid
from dataclasses import dataclass

from sensor.protocols.base import ParseError

PROTOCOL = "dce_rpc"

REQUEST = 0
RESPONSE = 2
FAULT = 3
BIND = 11
BIND_ACK = 12
BIND_NAK = 13
ALTER_CONTEXT = 14
ALTER_CONTEXT_RESP = 15
AUTH3 = 16
SHUTDOWN = 17
CO_CANCEL = 18
ORPHANED = 19
# PDU types a connection-oriented peer sends; the connectionless ones (1, 4-10) never ride on TCP or pipes.
CO_TYPES = frozenset(
    (
        REQUEST,
        RESPONSE,
        FAULT,
        BIND,
        BIND_ACK,
        BIND_NAK,
        ALTER_CONTEXT,
        ALTER_CONTEXT_RESP,
        AUTH3,
        SHUTDOWN,
        CO_CANCEL,
        ORPHANED,
    )
)

PFC_FIRST_FRAG = 0x01
PFC_LAST_FRAG = 0x02
PFC_OBJECT_UUID = 0x80

HEADER_SIZE = 16
AUTH_TRAILER_SIZE = 8
# A fragment can not be longer than its 16-bit length field allows; the smallest legal one is a header.
MAX_FRAG_LENGTH = 0xFFFF

# RPC_C_AUTHN_* values (MS-RPCE 2.2.1.1.7) whose token is, or wraps, NTLMSSP.
AUTHN_GSS_NEGOTIATE = 9
AUTHN_WINNT = 10


@dataclass(frozen=True, slots=True)
class Header:
    """The 16-byte common header (C706 12.6.3.1)."""

    ptype: int
    flags: int
    little_endian: bool
    frag_length: int
    auth_length: int
    call_id: int

    @property
    def first_frag(self) -> bool:
        return bool(self.flags & PFC_FIRST_FRAG)

    @property
    def last_frag(self) -> bool:
        return bool(self.flags & PFC_LAST_FRAG)

    @property
    def endian(self) -> str:
        return "<" if self.little_endian else ">"


@dataclass(frozen=True, slots=True)
class AuthVerifier:
    """sec_trailer and the token after it (MS-RPCE 2.2.2.11)."""

    auth_type: int
    auth_level: int
    pad_length: int
    context_id: int
    token: bytes


@dataclass(frozen=True, slots=True)
class Context:
    """One presentation context offered in a bind or alter_context: its id and the interface it names."""

    context_id: int
    interface: str  # abstract syntax UUID, lower-case text
    version_major: int
    version_minor: int


@dataclass(frozen=True, slots=True)
class Bind:
    """bind or alter_context (same layout, C706 12.6.4.3 and 12.6.4.1)."""

    assoc_group: int
    contexts: tuple[Context, ...]


@dataclass(frozen=True, slots=True)
class BindAck:
    """bind_ack or alter_context_resp (C706 12.6.4.4 and 12.6.4.2)."""

    assoc_group: int
    # The server's secondary address ("135", "\\PIPE\\lsass"), without its terminating NUL.
    sec_addr: str
    # p_result_t.result per offered context, in offer order: 0 acceptance, 1 user rejection,
    # 2 provider rejection, 3 negotiate_ack (MS-RPCE bind time feature negotiation).
    results: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class BindNak:
    reason: int


@dataclass(frozen=True, slots=True)
class Request:
    context_id: int
    opnum: int
    # The object UUID of the call when PFC_OBJECT_UUID is set (DCOM's IPID), lower-case text; else "".
    object_uuid: str
    stub_length: int
    # The first bytes of the stub as far as the PDU was kept, and only when they are the call's own
    # arguments in clear: the request's first fragment, without an auth verifier (a sealed stub is
    # ciphertext and a later fragment starts mid-argument).
    stub_head: bytes = b""


@dataclass(frozen=True, slots=True)
class Response:
    context_id: int
    stub_length: int
    # As for a request: the stub's first bytes, when they are the first fragment's and in clear.
    stub_head: bytes = b""


@dataclass(frozen=True, slots=True)
class Fault:
    context_id: int
    status: int


Body = Bind | BindAck | BindNak | Request | Response | Fault | None


@dataclass(frozen=True, slots=True)
class Pdu:
    header: Header
    body: Body
    auth: AuthVerifier | None


def parse_header(data: bytes) -> Header:
    """The common header of the PDU starting at ``data[0]``; only the first 16 bytes need to be there."""
    if len(data) < HEADER_SIZE:
        raise ParseError(PROTOCOL, "truncated_header")
    if data[0] != 5 or data[1] > 1:
        raise ParseError(PROTOCOL, "bad_version")
    ptype = data[2]
    if ptype not in CO_TYPES:
        raise ParseError(PROTOCOL, "bad_ptype")
    little = bool(data[4] & 0x10)
    frag_length, auth_length, call_id = struct.unpack_from("<HHI" if little else ">HHI", data, 8)
    if frag_length < HEADER_SIZE:
        raise ParseError(PROTOCOL, "bad_frag_length")
    if auth_length and auth_length + AUTH_TRAILER_SIZE + HEADER_SIZE > frag_length:
        raise ParseError(PROTOCOL, "bad_auth_length")
    return Header(ptype, data[3], little, frag_length, auth_length, call_id)


def looks_like_pdu(data: bytes) -> bool:
    """A cheap, strict test of a stream's first bytes: a v5.0/5.1 header of a connection-oriented type
    with a sane data representation. For deciding whether a connection carries DCE-RPC at all."""
    if len(data) < HEADER_SIZE or data[0] != 5 or data[1] > 1 or data[2] not in CO_TYPES:
        return False
    # drep: integer format nibble is 0 or 1, character set 0 or 1, floating point 0..3, then zeros.
    if data[4] & 0xEE or data[5] > 3 or data[6] or data[7]:
        return False
    try:
        parse_header(data)
    except ParseError:
        return False
    return True


def uuid_text(raw: bytes, little_endian: bool) -> str:
    """A 16-byte NDR UUID as lower-case text; its first three fields follow the data representation."""
    if len(raw) != 16:
        raise ParseError(PROTOCOL, "truncated_uuid")
    return str(uuid.UUID(bytes_le=raw) if little_endian else uuid.UUID(bytes=raw))


def _u16(data: bytes, at: int, endian: str) -> int:
    if at + 2 > len(data):
        raise ParseError(PROTOCOL, "truncated_body")
    return int(struct.unpack_from(endian + "H", data, at)[0])


def _u32(data: bytes, at: int, endian: str) -> int:
    if at + 4 > len(data):
        raise ParseError(PROTOCOL, "truncated_body")
    return int(struct.unpack_from(endian + "I", data, at)[0])


def _bind(body: bytes, h: Header) -> Bind:
    # max_xmit_frag, max_recv_frag, assoc_group_id, then p_cont_list_t: n_context_elem (u8) + 3 reserved.
    e = h.endian
    assoc = _u32(body, 4, e)
    if len(body) < 12:
        raise ParseError(PROTOCOL, "truncated_bind")
    count = body[8]
    at = 12
    contexts: list[Context] = []
    for _ in range(count):
        # p_cont_elem_t: p_cont_id u16, n_transfer_syn u8, reserved u8, abstract syntax (20 bytes),
        # then n_transfer_syn transfer syntaxes of 20 bytes each.
        if at + 24 > len(body):
            raise ParseError(PROTOCOL, "truncated_bind_context")
        context_id = _u16(body, at, e)
        transfers = body[at + 2]
        interface = uuid_text(body[at + 4 : at + 20], h.little_endian)
        major, minor = _u16(body, at + 20, e), _u16(body, at + 22, e)
        contexts.append(Context(context_id, interface, major, minor))
        at += 24 + 20 * transfers
    return Bind(assoc, tuple(contexts))


def _bind_ack(body: bytes, h: Header) -> BindAck:
    e = h.endian
    assoc = _u32(body, 4, e)
    sec_len = _u16(body, 8, e)
    if 10 + sec_len > len(body):
        raise ParseError(PROTOCOL, "truncated_sec_addr")
    raw = body[10 : 10 + sec_len]
    sec_addr = raw[:-1] if raw.endswith(b"\x00") else raw
    # The result list is 4-byte aligned relative to the PDU, whose header is 16 bytes long.
    at = 10 + sec_len
    at += -(HEADER_SIZE + at) % 4
    results: list[int] = []
    if at + 4 <= len(body):
        count = body[at]
        at += 4
        for _ in range(count):
            if at + 24 > len(body):
                raise ParseError(PROTOCOL, "truncated_bind_ack_result")
            results.append(_u16(body, at, e))
            at += 24
    return BindAck(assoc, sec_addr.decode("latin-1"), tuple(results))


def _request(body: bytes, h: Header) -> Request:
    e = h.endian
    context_id, opnum = _u16(body, 4, e), _u16(body, 6, e)
    at = 8
    object_uuid = ""
    if h.flags & PFC_OBJECT_UUID:
        object_uuid = uuid_text(body[8:24], h.little_endian)
        at = 24
    head = body[at:] if h.first_frag and not h.auth_length else b""
    return Request(context_id, opnum, object_uuid, max(0, len(body) - at), head)


def parse_body(h: Header, body: bytes) -> Body:
    """The type-specific part of a PDU (after the common header, before the auth verifier)."""
    if h.ptype == REQUEST:
        return _request(body, h)
    if h.ptype == RESPONSE:
        head = body[8:] if h.first_frag and not h.auth_length else b""
        return Response(_u16(body, 4, h.endian), max(0, len(body) - 8), head)
    if h.ptype == FAULT:
        return Fault(_u16(body, 4, h.endian), _u32(body, 8, h.endian))
    if h.ptype in (BIND, ALTER_CONTEXT):
        return _bind(body, h)
    if h.ptype in (BIND_ACK, ALTER_CONTEXT_RESP):
        return _bind_ack(body, h)
    if h.ptype == BIND_NAK:
        return BindNak(_u16(body, 0, h.endian))
    return None


def auth_verifier(h: Header, pdu: bytes) -> AuthVerifier | None:
    """The sec_trailer and token at the end of a whole PDU, when the header announces one."""
    if not h.auth_length or len(pdu) < h.frag_length:
        return None
    at = h.frag_length - h.auth_length - AUTH_TRAILER_SIZE
    auth_type, level, pad, _reserved = pdu[at], pdu[at + 1], pdu[at + 2], pdu[at + 3]
    context_id = _u32(pdu, at + 4, h.endian)
    return AuthVerifier(auth_type, level, pad, context_id, bytes(pdu[at + AUTH_TRAILER_SIZE : h.frag_length]))


def parse_pdu(pdu: bytes) -> Pdu:
    """One PDU. ``pdu`` may be cut short after the part that identifies a call (requests and responses
    are read for their header only); bodies that are cut are parsed as far as they go."""
    h = parse_header(pdu)
    end = min(len(pdu), h.frag_length)
    if h.auth_length and len(pdu) >= h.frag_length:
        end = h.frag_length - h.auth_length - AUTH_TRAILER_SIZE
    body = parse_body(h, bytes(pdu[HEADER_SIZE:end]))
    return Pdu(h, body, auth_verifier(h, pdu))
