"""BER/DER element reader (X.690 section 8).

Every function raises only ``ParseError("asn1", reason)``; callers re-label it with their own
protocol. Limits keep hostile input cheap: nesting depth, tag-number width and length width are
bounded, and no length may point past the bytes actually held.
"""

from __future__ import annotations

import calendar
from dataclasses import dataclass

from sensor.protocols.base import ParseError

CLASS_UNIVERSAL = 0
CLASS_APPLICATION = 1
CLASS_CONTEXT = 2
CLASS_PRIVATE = 3

TAG_BOOLEAN = 1
TAG_INTEGER = 2
TAG_BIT_STRING = 3
TAG_OCTET_STRING = 4
TAG_NULL = 5
TAG_OID = 6
TAG_ENUMERATED = 10
TAG_SEQUENCE = 16
TAG_SET = 17
TAG_GENERALIZED_TIME = 24
TAG_GENERAL_STRING = 27

# Real protocol messages nest well under 20 levels (LDAP filters are the deepest we meet);
# the limit only stops stack exhaustion on crafted input.
MAX_DEPTH = 48
# Tag numbers above 2**28 and lengths above 2**32 never occur in the protocols we read.
_MAX_TAG_OCTETS = 4
_MAX_LENGTH_OCTETS = 4
# Integers wider than this are not meaningful here (message ids, error codes, etypes).
_MAX_INT_OCTETS = 9


def _fail(reason: str) -> ParseError:
    return ParseError("asn1", reason)


@dataclass(frozen=True, slots=True)
class Tlv:
    """One decoded element. ``value`` is the content octets (for indefinite lengths, without the EOC)."""

    cls: int
    constructed: bool
    tag: int
    value: bytes

    def is_(self, cls: int, tag: int) -> bool:
        return self.cls == cls and self.tag == tag


def _header(data: bytes, offset: int) -> tuple[int, bool, int, int, int | None]:
    """Parse identifier and length octets: (class, constructed, tag, content offset, length or None)."""
    end = len(data)
    if offset >= end:
        raise _fail("truncated_tag")
    first = data[offset]
    cls = first >> 6
    constructed = bool(first & 0x20)
    tag = first & 0x1F
    pos = offset + 1
    if tag == 0x1F:
        # High tag number form (8.1.2.4): base-128, most significant group first.
        tag = 0
        for count in range(_MAX_TAG_OCTETS + 1):
            if pos >= end:
                raise _fail("truncated_tag")
            if count == _MAX_TAG_OCTETS:
                raise _fail("tag_too_long")
            octet = data[pos]
            pos += 1
            tag = (tag << 7) | (octet & 0x7F)
            if not octet & 0x80:
                break
    if pos >= end:
        raise _fail("truncated_length")
    octet = data[pos]
    pos += 1
    if octet < 0x80:
        return cls, constructed, tag, pos, octet
    if octet == 0x80:
        # Indefinite form is only legal for constructed encodings (8.1.3.2).
        if not constructed:
            raise _fail("indefinite_primitive")
        return cls, constructed, tag, pos, None
    count = octet & 0x7F
    if count > _MAX_LENGTH_OCTETS:
        raise _fail("length_too_long")
    if pos + count > end:
        raise _fail("truncated_length")
    length = int.from_bytes(data[pos : pos + count], "big")
    return cls, constructed, tag, pos + count, length


def _element_end(data: bytes, offset: int, depth: int) -> tuple[int, bool, int, int, int, int]:
    """Locate an element: (class, constructed, tag, content start, content end, element end)."""
    if depth > MAX_DEPTH:
        raise _fail("too_deep")
    cls, constructed, tag, start, length = _header(data, offset)
    if length is not None:
        stop = start + length
        if stop > len(data):
            raise _fail("truncated_value")
        return cls, constructed, tag, start, stop, stop
    # Indefinite length: walk the nested elements until the end-of-contents octets 00 00.
    pos = start
    while True:
        if pos + 2 > len(data):
            raise _fail("missing_eoc")
        if data[pos] == 0 and data[pos + 1] == 0:
            return cls, constructed, tag, start, pos, pos + 2
        pos = _element_end(data, pos, depth + 1)[5]


def read_tlv(data: bytes, offset: int = 0, depth: int = 0) -> tuple[Tlv, int]:
    """Read the element at ``offset``; return it and the offset just past it."""
    cls, constructed, tag, start, stop, after = _element_end(data, offset, depth)
    return Tlv(cls, constructed, tag, bytes(data[start:stop])), after


def read_all(data: bytes) -> Tlv:
    """Read exactly one element that must fill ``data``."""
    tlv, after = read_tlv(data)
    if after != len(data):
        raise _fail("trailing_bytes")
    return tlv


def children(tlv: Tlv, limit: int = 100_000) -> list[Tlv]:
    """The elements inside a constructed element, in order."""
    if not tlv.constructed:
        raise _fail("not_constructed")
    out: list[Tlv] = []
    pos = 0
    data = tlv.value
    while pos < len(data):
        if len(out) >= limit:
            raise _fail("too_many_elements")
        child, pos = read_tlv(data, pos)
        out.append(child)
    return out


def definite_frame_length(data: bytes) -> int | None:
    """Total size of the element starting ``data`` (for stream framing), or None if more bytes are needed.

    Stream protocols framed by BER (LDAP) require the definite form, so indefinite is an error here.
    """
    try:
        _cls, _constructed, _tag, start, length = _header(data, 0)
    except ParseError as exc:
        if exc.reason.startswith("truncated"):
            return None
        raise
    if length is None:
        raise _fail("indefinite_frame")
    return start + length


def as_int(tlv: Tlv) -> int:
    """INTEGER or ENUMERATED content, two's complement (8.3)."""
    if tlv.constructed or not tlv.value:
        raise _fail("bad_integer")
    if len(tlv.value) > _MAX_INT_OCTETS:
        raise _fail("integer_too_long")
    return int.from_bytes(tlv.value, "big", signed=True)


def as_bool(tlv: Tlv) -> bool:
    if tlv.constructed or len(tlv.value) != 1:
        raise _fail("bad_boolean")
    return tlv.value[0] != 0


def as_bytes(tlv: Tlv) -> bytes:
    """OCTET STRING content; a constructed (segmented, BER-only) string is joined."""
    if not tlv.constructed:
        return tlv.value
    return b"".join(as_bytes(part) for part in children(tlv))


def as_str(tlv: Tlv) -> str:
    """A character string. Undecodable bytes are replaced rather than failing the whole message."""
    return as_bytes(tlv).decode("utf-8", "replace")


def as_bitstring(tlv: Tlv) -> bytes:
    """BIT STRING content without the leading unused-bits octet (8.6.2)."""
    if tlv.constructed or not tlv.value or tlv.value[0] > 7:
        raise _fail("bad_bitstring")
    return tlv.value[1:]


def as_oid(tlv: Tlv) -> str:
    """OBJECT IDENTIFIER in dotted form (8.19)."""
    if tlv.constructed or not tlv.value or len(tlv.value) > 64:
        raise _fail("bad_oid")
    arcs: list[int] = []
    value = 0
    for octet in tlv.value:
        value = (value << 7) | (octet & 0x7F)
        if not octet & 0x80:
            arcs.append(value)
            value = 0
    if tlv.value[-1] & 0x80:
        raise _fail("bad_oid")
    first = arcs[0]
    head = [0, first] if first < 40 else [1, first - 40] if first < 80 else [2, first - 80]
    return ".".join(str(arc) for arc in head + arcs[1:])


def as_time(tlv: Tlv) -> float:
    """GeneralizedTime as used by Kerberos ("YYYYMMDDHHMMSSZ", optional fraction) -> Unix seconds."""
    text = as_bytes(tlv).decode("ascii", "replace")
    if len(text) < 15 or not text.endswith("Z") or not text[:14].isdigit():
        raise _fail("bad_time")
    try:
        year, month, day = int(text[0:4]), int(text[4:6]), int(text[6:8])
        hour, minute, second = int(text[8:10]), int(text[10:12]), int(text[12:14])
        if not (1 <= month <= 12 and 1 <= day <= 31 and hour < 24 and minute < 60 and second < 61):
            raise _fail("bad_time")
        whole = calendar.timegm((year, month, day, hour, minute, second, 0, 0, 0))
    except (ValueError, OverflowError) as exc:
        raise _fail("bad_time") from exc
    fraction = 0.0
    if len(text) > 15 and text[14] == ".":
        digits = text[15:-1]
        if digits.isdigit():
            fraction = float("0." + digits)
    return whole + fraction
