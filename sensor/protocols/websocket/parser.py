"""RFC 6455 pieces: frame headers, unmasking, the Sec-WebSocket-Accept derivation, header lists.

Pure functions over bytes; only :class:`ParseError` escapes.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterable
from dataclasses import dataclass

from sensor.protocols.base import ParseError

PROTOCOL = "websocket"
# RFC 6455 section 1.3: the server proves it read the handshake by hashing the client's key with this.
_ACCEPT_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

OP_CONTINUATION = 0x0
OP_TEXT = 0x1
OP_BINARY = 0x2
OP_CLOSE = 0x8
OP_PING = 0x9
OP_PONG = 0xA
_OPCODES = frozenset({OP_CONTINUATION, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG})
# Control frames carry at most 125 payload bytes and are never fragmented (section 5.5).
MAX_CONTROL_PAYLOAD = 125
# The longest header: 2 bytes, a 64-bit extended length, a 4-byte mask key.
MAX_HEADER = 14
# The three RSV bits as they sit in the first byte, shifted down: RSV1 is 4 (permessage-deflate's flag).
RSV1 = 4


@dataclass(frozen=True, slots=True)
class FrameHeader:
    fin: bool
    # RSV1..RSV3 as a number from 0 to 7 (RSV1 = 4).
    rsv: int
    opcode: int
    # The masking key (client-to-server frames), None when the frame is not masked.
    mask: bytes | None
    # Payload length in bytes.
    length: int
    # Header length in bytes: where the payload starts.
    size: int

    @property
    def is_control(self) -> bool:
        return self.opcode >= OP_CLOSE


def _fail(reason: str) -> ParseError:
    return ParseError(PROTOCOL, reason)


def frame_header(buf: bytes | bytearray) -> FrameHeader | None:
    """The header at the start of ``buf``; None while it is incomplete. Reads at most 14 bytes.

    A header no endpoint may send (reserved opcode, fragmented or oversized control frame, a 64-bit length
    with its top bit set) raises ParseError as soon as its first bytes show it.
    """
    if len(buf) < 2:
        return None
    first, second = buf[0], buf[1]
    fin, rsv, opcode = bool(first & 0x80), (first >> 4) & 0x7, first & 0x0F
    if opcode not in _OPCODES:
        raise _fail("bad_opcode")
    masked, length = bool(second & 0x80), second & 0x7F
    control = opcode >= OP_CLOSE
    if control and not fin:
        raise _fail("fragmented_control_frame")
    if control and length > MAX_CONTROL_PAYLOAD:
        raise _fail("control_frame_too_long")
    size = 2
    if length == 126:
        size = 4
    elif length == 127:
        size = 10
    if len(buf) < size:
        return None
    if length == 126:
        length = int.from_bytes(buf[2:4], "big")
    elif length == 127:
        length = int.from_bytes(buf[2:10], "big")
        if length >> 63:
            raise _fail("bad_length")
    mask = None
    if masked:
        if len(buf) < size + 4:
            return None
        mask = bytes(buf[size : size + 4])
        size += 4
    return FrameHeader(fin, rsv, opcode, mask, length, size)


def unmask(data: bytes | bytearray, mask: bytes, offset: int) -> bytes:
    """``data`` unmasked with ``mask``, ``data`` starting ``offset`` bytes into the frame's payload
    (section 5.3: byte i of the payload is XORed with mask[i % 4])."""
    size = len(data)
    if not size:
        return b""
    turn = offset % 4
    key = mask[turn:] + mask[:turn]
    # One XOR of two big integers does the whole chunk at C speed.
    pad = (key * (size // 4 + 1))[:size]
    return (int.from_bytes(data, "big") ^ int.from_bytes(pad, "big")).to_bytes(size, "big")


def accept_for(key: str) -> str:
    """The Sec-WebSocket-Accept a server derives from the client's Sec-WebSocket-Key (section 4.2.2)."""
    digest = hashlib.sha1(key.strip().encode("latin-1", errors="replace") + _ACCEPT_GUID).digest()
    return base64.b64encode(digest).decode("ascii")


def split_list(values: Iterable[str]) -> list[str]:
    """Header values that are comma-separated lists (Sec-WebSocket-Protocol, -Extensions), one item per
    entry, in order, whitespace around each trimmed; an extension keeps its parameters ("x; a=1")."""
    return [item.strip() for value in values for item in value.split(",") if item.strip()]
