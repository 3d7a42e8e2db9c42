"""OpenVPN's control channel opening (its protocol's packet layout): the client's hard-reset packet
carries its 8-byte session id; the server's hard reset acknowledges it, naming that session id back
("remote session id" after the acked packet ids). Over TCP each packet has a 2-byte length in front.

Only the opening is read: it is what tells OpenVPN apart from anything else on any port.
"""

from __future__ import annotations

# Opcodes (high 5 bits of the first byte; the low 3 are the key id, 0 for the first negotiation).
HARD_RESET_CLIENT = frozenset({1, 7, 10})  # V1, V2, V3 (tls-crypt-v2)
HARD_RESET_SERVER = frozenset({2, 8})  # V1, V2
SESSION_ID = 8
# opcode + session id + ack array length + message packet id: the shortest hard reset there is.
MIN_RESET = 1 + SESSION_ID + 1 + 4
MAX_RESET = 1500  # a hard reset is one small control packet (a tls-crypt-v2 key included)


def first_packet(data: bytes, tcp: bool) -> bytes | None:
    """The first OpenVPN packet of a direction's bytes: the datagram itself, or over TCP the packet
    its length prefix frames (None until that many bytes have arrived)."""
    if not tcp:
        return data
    if len(data) < 2:
        return None
    size = (data[0] << 8) | data[1]
    if len(data) < 2 + size:
        return None
    return data[2 : 2 + size]


def client_session_id(packet: bytes) -> bytes | None:
    """The client's session id if ``packet`` is a client hard reset with key id 0."""
    if not MIN_RESET <= len(packet) <= MAX_RESET:
        return None
    if packet[0] & 0x07 or packet[0] >> 3 not in HARD_RESET_CLIENT:
        return None
    return packet[1 : 1 + SESSION_ID]


def acknowledges(packet: bytes, client_reset: bytes) -> bool:
    """Whether ``packet`` is a server hard reset (key id 0) answering the client's ``client_reset``:
    it names the client's session id back in its ack (plain or tls-auth), or, with tls-crypt, where
    the ack is encrypted, both resets carry packet id 1 and clocks a few minutes apart at most."""
    if not MIN_RESET <= len(packet) <= MAX_RESET:
        return False
    if packet[0] & 0x07 or packet[0] >> 3 not in HARD_RESET_SERVER:
        return False
    # Where the remote session id sits depends on the tls-auth HMAC size; it follows the server's own.
    if client_reset[1 : 1 + SESSION_ID] in packet[1 + SESSION_ID :]:
        return True
    return _tls_crypt_pair(client_reset, packet)


_TLS_CRYPT_HEAD = 1 + SESSION_ID + 4 + 4  # opcode, session id, packet id, net time; then the HMAC
_FIRST_PACKET_ID = b"\x00\x00\x00\x01"
_CLOCK_SKEW_S = 300


def _tls_crypt_pair(client: bytes, server: bytes) -> bool:
    if len(client) < _TLS_CRYPT_HEAD or len(server) < _TLS_CRYPT_HEAD:
        return False
    if client[9:13] != _FIRST_PACKET_ID or server[9:13] != _FIRST_PACKET_ID:
        return False
    return abs(int.from_bytes(client[13:17], "big") - int.from_bytes(server[13:17], "big")) <= _CLOCK_SKEW_S


def looks_like_client_reset(payload: bytes) -> bool:
    """Registry heuristic (UDP datagram or TCP stream start)."""
    if client_session_id(payload) is not None:
        return True
    packet = first_packet(payload, tcp=True)
    return packet is not None and client_session_id(packet) is not None
