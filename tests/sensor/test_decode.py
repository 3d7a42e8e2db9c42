"""Vectorised decoding: link types, malformed input, bounds."""

from __future__ import annotations

import struct

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from sensor.capture import (
    LINKTYPE_ETHERNET,
    LINKTYPE_IPV4,
    LINKTYPE_LINUX_SLL,
    LINKTYPE_LINUX_SLL2,
    LINKTYPE_NULL,
    LINKTYPE_RAW,
    PacketBlock,
)
from sensor.decode import REASONS, decode
from tests.sensor.packets import MAC_A, MAC_B, ether, icmp, ipv4, ipv6, tcp, udp

UDP4 = ipv4("10.0.0.1", "10.0.0.2", 17, udp(1111, 53, b"hello"))


def one(frame: bytes, linktype: int) -> tuple[int, int, int, int]:
    dec = decode(PacketBlock.from_packets([(1.0, frame)], linktype))
    return int(dec.reason[0]), int(dec.sport[0]), int(dec.dport[0]), int(dec.payload_len[0])


def test_link_types() -> None:
    sll = struct.pack("!HHH8sH", 0, 1, 6, MAC_A + b"\0\0", 0x0800) + UDP4
    sll2 = struct.pack("!HHIHBB8s", 0x0800, 0, 2, 1, 0, 6, MAC_A + b"\0\0") + UDP4
    null_le = struct.pack("<I", 2) + UDP4
    null_be = struct.pack(">I", 30) + ipv6("::1", "::2", 17, udp(1111, 53, b"hello"))
    for frame, lt in [
        (ether(MAC_A, MAC_B, UDP4), LINKTYPE_ETHERNET),
        (UDP4, LINKTYPE_RAW),
        (UDP4, LINKTYPE_IPV4),
        (sll, LINKTYPE_LINUX_SLL),
        (sll2, LINKTYPE_LINUX_SLL2),
        (null_le, LINKTYPE_NULL),
        (null_be, LINKTYPE_NULL),
    ]:
        assert one(frame, lt) == (0, 1111, 53, 5), lt


def test_padding_is_not_payload_and_fields() -> None:
    frame = ether(MAC_A, MAC_B, ipv4("10.0.0.1", "10.0.0.2", 6, tcp(1, 2, 7, 9, "SA")))
    assert len(frame) == 60
    dec = decode(PacketBlock.from_packets([(1.0, frame)]))
    assert (int(dec.payload_len[0]), int(dec.seq[0]), int(dec.ack[0]), int(dec.tcp_flags[0])) == (
        0,
        7,
        9,
        0x12,
    )
    assert int(dec.ip_len[0]) == 40
    assert int(dec.src_mac[0]) == int.from_bytes(MAC_A, "big")
    assert int(dec.src_lo[0]) == (0xFFFF << 32) | 0x0A000001 and int(dec.family[0]) == 4


def test_icmp_keys_and_fragments() -> None:
    echo = ether(MAC_A, MAC_B, ipv4("10.0.0.1", "10.0.0.2", 1, icmp(8, 0, b"x" * 8)))
    unreach = ether(MAC_A, MAC_B, ipv4("10.0.0.1", "10.0.0.2", 1, icmp(3, 1, b"x" * 8)))
    frag = ether(MAC_A, MAC_B, ipv4("10.0.0.1", "10.0.0.2", 17, b"x" * 30, frag=100))
    v6frag = ipv6("::1", "::2", 17, b"y" * 16, ext=bytes([17, 0, 0, 0x10, 0, 0, 0, 1]), ext_nh=44)
    block = PacketBlock.from_packets(
        [(1.0, echo), (1.0, unreach), (1.0, frag), (1.0, ether(MAC_A, MAC_B, v6frag, 0x86DD))]
    )
    dec = decode(block)
    assert dec.sport[:2].tolist() == [8, 3] and dec.dport[:2].tolist() == [0, 1]
    assert [REASONS[r] for r in dec.reason] == ["ok", "ok", "fragment", "fragment"]


def test_malformed_get_reasons() -> None:
    good = ether(MAC_A, MAC_B, UDP4)
    bad_ihl = bytearray(good)
    bad_ihl[14] = 0x41
    bad_doff = ether(
        MAC_A, MAC_B, ipv4("10.0.0.1", "10.0.0.2", 6, tcp(1, 2, 0, 0, "S")[:12] + b"\x10" + b"\0" * 7)
    )
    frames = [good[:10], good[:30], bytes(bad_ihl), good[:38], bad_doff]
    dec = decode(PacketBlock.from_packets([(1.0, f) for f in frames]))
    assert [REASONS[r] for r in dec.reason] == [
        "truncated_link",
        "truncated_ip",
        "bad_ip_header",
        "truncated_l4",
        "bad_l4_header",
    ]
    unknown = PacketBlock.from_packets([(1.0, good)], linktype=9999)
    assert REASONS[decode(unknown).reason[0]] == "unsupported_linktype"


@settings(max_examples=200, deadline=None)
@given(st.lists(st.binary(max_size=120), min_size=1, max_size=20), st.sampled_from([0, 1, 101, 113, 276]))
def test_random_bytes_never_raise(frames: list[bytes], linktype: int) -> None:
    dec = decode(PacketBlock.from_packets([(1.0, f) for f in frames], linktype))
    ok = dec.reason == 0
    caps = np.array([len(f) for f in frames])
    offs = np.concatenate(([0], np.cumsum(caps)[:-1]))
    # A decoded payload never extends past its own packet.
    assert (dec.payload_off[ok] + dec.payload_cap[ok] <= offs[ok] + caps[ok]).all()
