"""QUIC version 1 Initial packets (RFC 9000 17.2.2, RFC 9001 5): find them in a datagram, remove their
protection and return the CRYPTO frames, which carry the TLS ClientHello and ServerHello in clear.

Initial packets are protected with keys anyone can derive from the client's first destination
connection id (RFC 9001 5.2), precisely so that middleboxes can read the handshake's first flight;
everything after them (Handshake, 1-RTT) needs the TLS secrets and stays opaque here.
"""

from __future__ import annotations

import hashlib
import hmac
import struct
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from sensor.protocols.base import ParseError

PROTOCOL = "quic"

VERSION_1 = 0x00000001
# RFC 9001 5.2.
INITIAL_SALT_V1 = bytes.fromhex("38762cf7f55934b34d179ae6a4c80cadccbb7f0a")
MAX_CID = 20  # RFC 9000 17.2: connection ids of version 1 are at most 20 bytes
MIN_CLIENT_INITIAL = 1200  # RFC 9000 14.1: a client's Initial datagram is padded to at least this

# Long-header packet types of version 1 (RFC 9000 17.2).
TYPE_INITIAL, TYPE_0RTT, TYPE_HANDSHAKE, TYPE_RETRY = 0, 1, 2, 3

# Frame types allowed in Initial packets (RFC 9000 12.4 table 3).
FRAME_PADDING, FRAME_PING, FRAME_ACK, FRAME_ACK_ECN, FRAME_CRYPTO = 0x00, 0x01, 0x02, 0x03, 0x06
FRAME_CLOSE_QUIC, FRAME_CLOSE_APP = 0x1C, 0x1D


def _fail(reason: str) -> ParseError:
    return ParseError(PROTOCOL, reason)


def read_varint(data: bytes, pos: int) -> tuple[int, int]:
    """RFC 9000 16: a variable-length integer at ``pos``; returns it and the position after it."""
    if pos >= len(data):
        raise _fail("truncated_varint")
    first = data[pos]
    size = 1 << (first >> 6)
    end = pos + size
    if end > len(data):
        raise _fail("truncated_varint")
    value = first & 0x3F
    for b in data[pos + 1 : end]:
        value = (value << 8) | b
    return value, end


# --- keys ------------------------------------------------------------------------------------------


def _expand_label(secret: bytes, label: str, length: int) -> bytes:
    """TLS 1.3 HKDF-Expand-Label (RFC 8446 7.1) with an empty context; every output here is one
    SHA-256 block or less."""
    full = b"tls13 " + label.encode()
    info = struct.pack("!HB", length, len(full)) + full + b"\x00"
    return hmac.new(secret, info + b"\x01", hashlib.sha256).digest()[:length]


@dataclass(frozen=True, slots=True)
class InitialKeys:
    key: bytes
    iv: bytes
    hp: bytes


def initial_keys(client_dcid: bytes) -> tuple[InitialKeys, InitialKeys]:
    """The (client, server) Initial keys of a version 1 connection whose client chose ``client_dcid``."""
    initial_secret = hmac.new(INITIAL_SALT_V1, client_dcid, hashlib.sha256).digest()
    out = []
    for side in ("client in", "server in"):
        secret = _expand_label(initial_secret, side, 32)
        out.append(
            InitialKeys(
                _expand_label(secret, "quic key", 16),
                _expand_label(secret, "quic iv", 12),
                _expand_label(secret, "quic hp", 16),
            )
        )
    return out[0], out[1]


# --- packets ---------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class InitialPacket:
    version: int
    dcid: bytes
    scid: bytes
    # The whole packet (header and protected payload) and where its packet number starts.
    raw: bytes
    pn_offset: int


def _is_long_header(b0: int) -> bool:
    return b0 & 0x80 != 0


def looks_like_client_initial(datagram: bytes) -> bool:
    """A version 1 long-header Initial in a datagram of the size clients must pad it to."""
    return (
        len(datagram) >= MIN_CLIENT_INITIAL
        and datagram[0] & 0xF0 == 0xC0
        and datagram[1:5] == b"\x00\x00\x00\x01"
    )


def initial_packets(datagram: bytes) -> list[InitialPacket]:
    """The Initial packets of a datagram (RFC 9000 12.2: long-header packets may be coalesced; what
    follows the last one, a short-header packet, is opaque). Other long-header packets are skipped."""
    out: list[InitialPacket] = []
    pos = 0
    size = len(datagram)
    while pos < size:
        b0 = datagram[pos]
        if not _is_long_header(b0):
            if pos == 0:
                raise _fail("short_header_first")
            break
        if size - pos < 7:
            raise _fail("truncated_header")
        (version,) = struct.unpack_from("!I", datagram, pos + 1)
        if version == 0:
            break  # version negotiation: no protected payload to read
        if version != VERSION_1:
            raise _fail("unsupported_version")
        at = pos + 5
        dcid_len = datagram[at]
        if dcid_len > MAX_CID:
            raise _fail("bad_cid_length")
        dcid = datagram[at + 1 : at + 1 + dcid_len]
        at += 1 + dcid_len
        if at >= size:
            raise _fail("truncated_header")
        scid_len = datagram[at]
        if scid_len > MAX_CID:
            raise _fail("bad_cid_length")
        scid = datagram[at + 1 : at + 1 + scid_len]
        at += 1 + scid_len
        if len(dcid) != dcid_len or len(scid) != scid_len:
            raise _fail("truncated_header")
        ptype = (b0 >> 4) & 0x3
        if ptype == TYPE_RETRY:
            break  # a Retry fills the rest of the datagram and carries no frames
        if ptype == TYPE_INITIAL:
            token_len, at = read_varint(datagram, at)
            at += token_len
        length, at = read_varint(datagram, at)
        end = at + length
        if end > size:
            raise _fail("truncated_packet")
        if ptype == TYPE_INITIAL:
            out.append(InitialPacket(version, dcid, scid, datagram[pos:end], at - pos))
        pos = end
    return out


def decrypt(packet: InitialPacket, keys: InitialKeys) -> tuple[int, bytes]:
    """Remove header protection (RFC 9001 5.4) and the AEAD (5.3): (packet number, frames).

    The packet number is the truncated one on the wire: Initial packets count from 0 and a sensor
    sees the first few, which is exactly what a 1-4 byte encoding holds."""
    raw = packet.raw
    pn_offset = packet.pn_offset
    sample = raw[pn_offset + 4 : pn_offset + 20]
    if len(sample) < 16:
        raise _fail("too_short_for_sample")
    # RFC 9001 5.4.3: the mask is AES-ECB of one sample block, not a confidentiality mode.
    encryptor = Cipher(algorithms.AES(keys.hp), modes.ECB()).encryptor()
    mask = encryptor.update(sample) + encryptor.finalize()
    first = raw[0] ^ (mask[0] & 0x0F)
    pn_len = (first & 0x03) + 1
    masked = raw[pn_offset : pn_offset + pn_len]
    pn_bytes = bytes(b ^ m for b, m in zip(masked, mask[1 : 1 + pn_len], strict=True))
    pn = int.from_bytes(pn_bytes, "big")
    header = bytes([first]) + raw[1:pn_offset] + pn_bytes
    nonce = (int.from_bytes(keys.iv, "big") ^ pn).to_bytes(12, "big")
    try:
        frames = AESGCM(keys.key).decrypt(nonce, raw[pn_offset + pn_len :], header)
    except InvalidTag:
        raise _fail("decrypt_failed") from None
    return pn, frames


def crypto_frames(frames: bytes) -> list[tuple[int, bytes]]:
    """The (offset, data) of each CRYPTO frame of an Initial packet's payload, walking the frame types
    an Initial may carry (RFC 9000 17.2.2); any other type is a protocol violation."""
    out: list[tuple[int, bytes]] = []
    pos = 0
    size = len(frames)
    while pos < size:
        ftype, pos = read_varint(frames, pos)
        if ftype in (FRAME_PADDING, FRAME_PING):
            continue
        if ftype in (FRAME_ACK, FRAME_ACK_ECN):
            _, pos = read_varint(frames, pos)  # largest acknowledged
            _, pos = read_varint(frames, pos)  # ack delay
            ranges, pos = read_varint(frames, pos)
            if ranges > size - pos:  # each range is at least two bytes: a count this large is garbage
                raise _fail("bad_ack_frame")
            _, pos = read_varint(frames, pos)  # first range
            for _ in range(2 * ranges + (3 if ftype == FRAME_ACK_ECN else 0)):
                _, pos = read_varint(frames, pos)
        elif ftype == FRAME_CRYPTO:
            offset, pos = read_varint(frames, pos)
            length, pos = read_varint(frames, pos)
            if pos + length > size:
                raise _fail("truncated_crypto_frame")
            out.append((offset, frames[pos : pos + length]))
            pos += length
        elif ftype in (FRAME_CLOSE_QUIC, FRAME_CLOSE_APP):
            break  # the connection is closing; nothing after it matters
        else:
            raise _fail("bad_initial_frame")
    return out
