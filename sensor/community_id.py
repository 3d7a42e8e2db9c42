"""Community ID v1 (the public spec by Corelight): a tool-independent hash of a flow's 5-tuple."""

from __future__ import annotations

import struct
from binascii import b2a_base64
from hashlib import sha1

# ICMP request/reply pairs (type -> counterpart); messages not listed are one-way.
_ICMP4 = {8: 0, 0: 8, 13: 14, 14: 13, 15: 16, 16: 15, 10: 9, 9: 10, 17: 18, 18: 17}
_ICMP6 = {128: 129, 129: 128, 133: 134, 134: 133, 135: 136, 136: 135, 130: 131, 131: 130, 144: 145, 145: 144}
# Transports whose ports are part of the hash input.
_PORTED = frozenset({1, 6, 17, 58, 132})
_PORTS_TAIL = struct.Struct("!BxHH")
_SEED = struct.Struct("!H")


def community_id(
    src: bytes, dst: bytes, proto: int, sport: int, dport: int, seed: int = 0, icmp_code: int | None = None
) -> str:
    """Community ID of a flow; ``src``/``dst`` are 4- or 16-byte addresses.

    For ICMP/ICMPv6 pass the message type as ``sport`` and the code as ``icmp_code`` (``dport`` is
    then ignored): the spec maps them to (type, counterpart) for request/reply pairs.
    """
    one_way = False
    if proto in (1, 58) and icmp_code is not None:
        table = _ICMP4 if proto == 1 else _ICMP6
        if sport in table:
            dport = table[sport]
        else:
            dport = icmp_code
            one_way = True
    if not one_way and (src, sport) > (dst, dport):
        src, dst, sport, dport = dst, src, dport, sport
    tail = _PORTS_TAIL.pack(proto, sport, dport) if proto in _PORTED else struct.pack("!Bx", proto)
    digest = sha1(b"".join((_SEED.pack(seed), src, dst, tail))).digest()
    # b2a_base64 without the newline is exactly base64.b64encode, minus a Python-level wrapper.
    return "1:" + b2a_base64(digest, newline=False).decode("ascii")
