"""BER reader unit tests (X.690): tags, lengths, limits."""

from __future__ import annotations

import pytest

from sensor.protocols import asn1
from sensor.protocols.base import ParseError


def tlv(tag: int, content: bytes) -> bytes:
    n = len(content)
    if n < 0x80:
        return bytes([tag, n]) + content
    raw = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([tag, 0x80 | len(raw)]) + raw + content


def test_short_and_long_lengths() -> None:
    small = asn1.read_all(tlv(0x04, b"abc"))
    assert (small.cls, small.constructed, small.tag, small.value) == (0, False, 4, b"abc")
    big = asn1.read_all(tlv(0x04, b"x" * 300))
    assert len(big.value) == 300


def test_high_tag_number() -> None:
    # [APPLICATION 200] constructed: 0x7F then base-128 200 = 0x81 0x48.
    element = asn1.read_all(bytes([0x7F, 0x81, 0x48, 0x00]))
    assert (element.cls, element.tag, element.constructed) == (asn1.CLASS_APPLICATION, 200, True)


def test_indefinite_length() -> None:
    inner = tlv(0x02, b"\x05")
    element = asn1.read_all(bytes([0x30, 0x80]) + inner + b"\x00\x00")
    assert [asn1.as_int(c) for c in asn1.children(element)] == [5]


def test_values() -> None:
    assert asn1.as_int(asn1.read_all(tlv(0x02, b"\xff"))) == -1
    assert asn1.as_oid(asn1.read_all(tlv(0x06, bytes.fromhex("2b0601050502")))) == "1.3.6.1.5.5.2"
    assert asn1.as_time(asn1.read_all(tlv(0x18, b"19700101000100Z"))) == 60.0
    assert asn1.as_bitstring(asn1.read_all(tlv(0x03, b"\x00\x40\x81"))) == b"\x40\x81"


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "truncated_tag"),
        (b"\x04\x05ab", "truncated_value"),
        (b"\x04\x85\x00\x00\x00\x00\x01", "length_too_long"),
        (b"\x04\x80", "indefinite_primitive"),
        (b"\x30\x80\x02\x01\x01", "missing_eoc"),
        (b"\x04\x01a\x00", "trailing_bytes"),
    ],
)
def test_malformed(data: bytes, reason: str) -> None:
    with pytest.raises(ParseError) as info:
        asn1.read_all(data)
    assert info.value.reason == reason


def test_depth_limit() -> None:
    data = b"\x00\x00"
    for _ in range(asn1.MAX_DEPTH + 5):
        data = b"\x30\x80" + data + b"\x00\x00"
    with pytest.raises(ParseError):
        asn1.read_all(data)


def test_frame_length() -> None:
    assert asn1.definite_frame_length(b"\x30") is None
    assert asn1.definite_frame_length(b"\x30\x82\x01") is None
    assert asn1.definite_frame_length(b"\x30\x82\x01\x00") == 260
