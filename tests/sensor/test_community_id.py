"""Community ID v1 against the spec's published vectors."""

from __future__ import annotations

import ipaddress

import pytest

from sensor.community_id import community_id


def a(text: str) -> bytes:
    return ipaddress.ip_address(text).packed


@pytest.mark.parametrize(
    ("src", "dst", "proto", "sport", "dport", "expected"),
    [
        ("128.232.110.120", "66.35.250.204", 6, 34855, 80, "1:LQU9qZlK+B5F3KDmev6m5PMibrg="),
        ("66.35.250.204", "128.232.110.120", 6, 80, 34855, "1:LQU9qZlK+B5F3KDmev6m5PMibrg="),
        ("192.168.1.52", "8.8.8.8", 17, 54585, 53, "1:d/FP5EW3wiY1vCndhwleRRKHowQ="),
    ],
)
def test_vectors(src: str, dst: str, proto: int, sport: int, dport: int, expected: str) -> None:
    assert community_id(a(src), a(dst), proto, sport, dport) == expected


def test_icmp_vector() -> None:
    assert community_id(a("192.168.0.89"), a("192.168.0.1"), 1, 8, 0, icmp_code=0) == (
        "1:X0snYXpgwiv9TZtqg64sgzUn6Dk="
    )
