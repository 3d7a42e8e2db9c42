"""IP fragments are reassembled before analysis: a scan or a request split into 8-byte pieces (as
``nmap -f`` sends them) is seen as the receiving host sees it."""

from __future__ import annotations

import random
import struct
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry

from sensor.fragments import Reassembler
from sensor.logwriter import pipeline_records
from sensor.tunnels import geneve_inner, vxlan_inner
from tests.sensor.packets import MAC_A, MAC_B, ether, ipv4, ipv6, pcap_bytes, tcp
from vigil.config import SensorConfig
from vigil.flow.v1 import flow_pb2

A, B = "10.1.0.5", "10.1.0.9"
MF = 0x2000


def fragments(src: str, dst: str, proto: int, payload: bytes, size: int, ident: int) -> list[bytes]:
    """The frames a sender emits for ``payload`` cut into ``size``-byte pieces (size a multiple of 8)."""
    out = []
    for off in range(0, len(payload), size):
        piece = payload[off : off + size]
        more = MF if off + size < len(payload) else 0
        out.append(ether(MAC_A if src == A else MAC_B, MAC_B if src == A else MAC_A,
                         ipv4(src, dst, proto, piece, ident=ident, frag=more | (off // 8))))  # fmt: skip
    return out


def _l3(frame: bytes) -> int:
    return 14


def test_in_any_order_the_datagram_comes_back_whole() -> None:
    segment = tcp(40000, 80, 1000, 0, "S", b"x" * 37)
    whole = ether(MAC_A, MAC_B, ipv4(A, B, 6, segment, ident=7))
    frames = fragments(A, B, 6, segment, 8, ident=7)
    random.Random(3).shuffle(frames)
    r = Reassembler()
    results = [r.add(float(i), f, 14) for i, f in enumerate(frames)]
    assert results[:-1] == [None] * (len(frames) - 1)
    assert results[-1] == whole[: 14 + 20 + len(segment)]
    assert r.counts == {"reassembled": 1} and len(r) == 0


def test_overlaps_are_counted_and_the_earlier_piece_wins() -> None:
    payload = bytes(range(32))
    r = Reassembler()
    first = ether(MAC_A, MAC_B, ipv4(A, B, 17, payload[:16], ident=9, frag=MF))
    forged = ether(MAC_A, MAC_B, ipv4(A, B, 17, b"\xff" * 16, ident=9, frag=MF | 1))  # offset 8, overlaps
    last = ether(MAC_A, MAC_B, ipv4(A, B, 17, payload[16:], ident=9, frag=2))
    assert r.add(0.0, first, 14) is None and r.add(0.1, forged, 14) is None
    done = r.add(0.2, last, 14)
    # BSD's policy: bytes 16..23 come from the piece starting at 8 (the forged one), not the one at 16.
    assert done is not None and done[34:] == payload[:16] + b"\xff" * 8 + payload[24:]
    assert r.counts["overlap"] == 1


def test_incomplete_oversized_and_malformed_datagrams_are_dropped_and_counted() -> None:
    r = Reassembler(timeout_s=5.0, max_pending=2)
    frames = fragments(A, B, 6, b"y" * 64, 8, ident=1)
    assert r.add(0.0, frames[0], 14) is None  # the rest never comes
    assert r.add(0.0, fragments(A, B, 6, b"z" * 16, 8, ident=2)[0], 14) is None
    assert r.add(0.0, fragments(A, B, 6, b"w" * 16, 8, ident=3)[0], 14) is None  # table full
    assert r.counts["table_full"] == 1
    assert r.expire(4.0) == 0 and r.expire(6.0) == 2 and r.counts["timeout"] == 2
    huge = ether(MAC_A, MAC_B, ipv4(A, B, 6, b"q" * 16, ident=4, frag=MF | 8190))
    assert r.add(7.0, huge, 14) is None and r.counts["too_large"] == 1
    assert r.add(7.0, b"\x00" * 20, 14) is None and r.counts["malformed"] == 1


def _capture(tmp_path: Path, frames: list[bytes]) -> Path:
    path = tmp_path / "frag.pcap"
    path.write_bytes(pcap_bytes([(1_700_000_000.0 + i * 0.001, f) for i, f in enumerate(frames)]))
    return path


def test_a_fragmented_handshake_and_request_are_analysed(tmp_path: Path) -> None:
    request = b"GET /admin HTTP/1.1\r\nHost: b\r\nUser-Agent: frag-test\r\n\r\n"
    response = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"
    n, m = len(request), len(response)

    def a_to_b(seq: int, ack: int, flags: str, ident: int) -> bytes:
        return ether(MAC_A, MAC_B, ipv4(A, B, 6, tcp(40000, 80, seq, ack, flags), ident=ident))

    def b_to_a(seq: int, ack: int, flags: str, ident: int, data: bytes = b"") -> bytes:
        return ether(MAC_B, MAC_A, ipv4(B, A, 6, tcp(80, 40000, seq, ack, flags, data), ident=ident))

    frames = [
        *fragments(A, B, 6, tcp(40000, 80, 100, 0, "S"), 8, ident=1),  # the TCP header in three pieces
        b_to_a(500, 101, "SA", 50),
        a_to_b(101, 501, "A", 2),
        *fragments(A, B, 6, tcp(40000, 80, 101, 501, "PA", request), 16, ident=3),
        b_to_a(501, 101 + n, "PA", 51, response),
        a_to_b(101 + n, 501 + m, "FA", 4),
        b_to_a(501 + m, 102 + n, "FA", 52),
    ]
    registry = CollectorRegistry()
    records = list(pipeline_records(SensorConfig(), [_capture(tmp_path, frames)], metrics_registry=registry))
    flows = [r.flow for r in records if r.WhichOneof("kind") == "flow"]
    assert len(flows) == 1
    assert (flows[0].orig.port, flows[0].resp.port) == (40000, 80)
    assert flows[0].history == "ShADdFf" and flows[0].conn_state == flow_pb2.CONN_STATE_SF
    https = [r.http for r in records if r.WhichOneof("kind") == "http"]
    assert [(h.uri, h.user_agent, h.status_code) for h in https] == [("/admin", "frag-test", 200)]
    assert registry.get_sample_value("vigil_sensor_ip_fragments_total", {"outcome": "reassembled"}) == 2
    assert not registry.get_sample_value("vigil_sensor_decode_errors_total", {"reason": "fragment"})


def test_without_reassembly_the_fragmented_syn_is_invisible(tmp_path: Path) -> None:
    """What reassembly buys: the same three pieces give no connection at all when it is off."""
    frames = fragments(A, B, 6, tcp(40000, 80, 100, 0, "S"), 8, ident=1)
    registry = CollectorRegistry()
    config = SensorConfig(reassemble_fragments=False)
    records = list(pipeline_records(config, [_capture(tmp_path, frames)], metrics_registry=registry))
    assert [r for r in records if r.WhichOneof("kind") == "flow"] == []

    def errors(reason: str) -> float | None:
        return registry.get_sample_value("vigil_sensor_decode_errors_total", {"reason": reason})

    assert errors("fragment") == 2 and errors("truncated_l4") == 1


def fragments6(
    src: str, dst: str, proto: int, payload: bytes, size: int, ident: int, before: list[int] | None = None
) -> list[bytes]:
    """IPv6 fragments of ``payload``: a fragment header right after the fixed header, as senders emit, or
    after the ``before`` extension headers (8-byte option headers of those types: hop-by-hop 0,
    destination options 60), as an evader would put them."""
    chain = [*(before or []), 44]
    out = []
    for off in range(0, len(payload), size):
        piece = payload[off : off + size]
        more = 1 if off + size < len(payload) else 0
        ext = b"".join(struct.pack("!BB6x", nxt, 0) for nxt in chain[1:])  # each names the next header
        ext += struct.pack("!BBHI", proto, 0, off | more, ident)
        frame = ether(MAC_A, MAC_B, ipv6(src, dst, proto, piece, ext=ext, ext_nh=chain[0]), ethertype=0x86DD)
        out.append(frame)
    return out


@pytest.mark.parametrize("before", [[], [0], [0, 60]], ids=["plain", "hop-by-hop", "hop-by-hop+dstopts"])
def test_ipv6_fragments_are_reassembled_too(tmp_path: Path, before: list[int]) -> None:
    """Also with extension headers in front of the fragment header: options must not hide a datagram."""
    a6, b6 = "fd00::5", "fd00::9"
    syn = tcp(40000, 445, 100, 0, "S")
    frames = fragments6(a6, b6, 6, syn, 8, ident=77, before=before)
    frames.append(ether(MAC_B, MAC_A, ipv6(b6, a6, 6, tcp(445, 40000, 500, 101, "R", b"")), ethertype=0x86DD))
    registry = CollectorRegistry()
    records = list(pipeline_records(SensorConfig(), [_capture(tmp_path, frames)], metrics_registry=registry))
    flows = [r.flow for r in records if r.WhichOneof("kind") == "flow"]
    assert [(f.orig.port, f.resp.port, f.history) for f in flows] == [(40000, 445, "Sr")]
    assert registry.get_sample_value("vigil_sensor_ip_fragments_total", {"outcome": "reassembled"}) == 1


def test_reassembled_ipv6_datagram_keeps_its_unfragmentable_part() -> None:
    """RFC 8200 4.5: the first fragment's headers before the fragment header, the last of them now naming
    the transport, the payload length covering them and the joined data."""
    syn = tcp(40000, 445, 100, 0, "S", b"x" * 20)
    frames = fragments6("fd00::5", "fd00::9", 6, syn, 16, ident=5, before=[0, 60])
    r = Reassembler()
    whole = [r.add(1.0, frame, 14) for frame in frames]
    assert whole[:-1] == [None] * (len(frames) - 1)
    datagram = whole[-1]
    assert datagram is not None
    ip = datagram[14:]
    assert struct.unpack_from("!H", ip, 4)[0] == 16 + len(syn)  # two option headers, then the segment
    assert (ip[6], ip[40], ip[48]) == (0, 60, 6)  # hop-by-hop -> destination options -> TCP
    assert ip[56:] == syn


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.binary(min_size=0, max_size=120), st.integers(0, 40)), max_size=30))
def test_random_bytes_as_fragments_never_raise(pieces: list[tuple[bytes, int]]) -> None:
    r = Reassembler(timeout_s=1.0, max_pending=8)
    for i, (raw, l3) in enumerate(pieces):
        out = r.add(float(i), raw, l3)
        assert out is None or isinstance(out, bytes)
    r.expire(1e9)
    assert len(r) == 0


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_random_tunnel_payloads_never_raise(payload: bytes) -> None:
    for inner in (vxlan_inner(payload), geneve_inner(payload)):
        assert inner is None or len(inner) >= 14


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(0, 8191), st.booleans(), st.binary(max_size=64), st.integers(0, 3)),
        max_size=40,
    )
)
def test_hostile_fragment_sequences_are_bounded(spec: list[tuple[int, bool, bytes, int]]) -> None:
    """Offsets anywhere, overlapping, oversized, repeated: reassembly never raises, and what it returns
    is a well-formed datagram of at most 65,535 bytes."""
    r = Reassembler(max_pending=4)
    for i, (offset, more, data, ident) in enumerate(spec):
        frame = ether(MAC_A, MAC_B, ipv4(A, B, 17, data, ident=ident, frag=(MF if more else 0) | offset))
        out = r.add(float(i), frame, 14)
        if out is not None:
            total = struct.unpack_from("!H", out, 16)[0]
            assert total == len(out) - 14 <= 65535
    assert len(r) <= 4


def test_a_flood_of_first_pieces_cannot_take_the_memory() -> None:
    """Thousands of datagrams that never complete: the bytes held stay under the budget, the oldest go."""
    r = Reassembler(max_pending=100_000, max_bytes=64 * 1024)
    for ident in range(2000):
        frame = ether(MAC_A, MAC_B, ipv4(A, B, 17, b"p" * 1400, ident=ident % 65536, frag=MF))
        assert r.add(float(ident), frame, 14) is None
        assert r.held_bytes <= 64 * 1024
    assert r.counts["memory"] >= 1900 and len(r) <= 47
    # A datagram that does complete still comes back whole.
    frames = fragments(A, B, 6, tcp(1, 2, 3, 4, "S", b"k" * 100), 64, ident=60000)
    assert [r.add(1e4, f, 14) is not None for f in frames][-1]
