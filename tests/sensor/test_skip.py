"""Bulk skipping: sessions that offer ``skip_hint``/``skipped`` get the same records with fewer deliveries."""

from __future__ import annotations

import random

import pytest
from prometheus_client import CollectorRegistry

from sensor.capture import PacketBlock
from sensor.pipeline import SensorPipeline
from sensor.protocols.base import ConnContext, Emit, ErrorCounter, Session
from sensor.protocols.http.session import HttpSession
from sensor.reassembly import StreamReassembler
from sensor.registry import Registry
from tests.sensor.packets import TcpConv
from vigil.config import SensorConfig
from vigil.sensor.v1 import sensor_pb2


class _Counting(HttpSession):
    """The HTTP session, counting data() calls (what skipping is meant to save)."""

    calls = 0

    def data(self, is_orig: bool, ts: float, payload: bytes) -> None:
        type(self).calls += 1
        super().data(is_orig, ts, payload)


class _NoSkip(_Counting):
    """The same session as one written before skipping existed (getattr finds no hint)."""

    skip_hint = None  # type: ignore[assignment]


def _records(cls: type[_Counting], frames: list[tuple[float, bytes]]) -> list[sensor_pb2.Record]:
    def factory(ctx: ConnContext, emit: Emit, count_error: ErrorCounter) -> Session:
        return cls(ctx, emit, count_error)

    registry = Registry()
    registry.register("http", ("tcp",), (80,), factory)
    pipe = SensorPipeline(SensorConfig(), registry, metrics_registry=CollectorRegistry(), seed=1)
    out = pipe.feed(PacketBlock.from_packets(frames)) + pipe.flush()
    return [r for r in out if r.WhichOneof("kind") == "http"]


def _http_frames(chunked: bool, lose_segment: bool) -> list[tuple[float, bytes]]:
    body = b"<html>" + b"x" * 6000
    c = TcpConv()
    c.handshake()
    c.pkt(True, "PA", b"GET /a HTTP/1.1\r\nHost: h\r\n\r\n")
    if chunked:
        stream = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        stream += b"%x\r\n" % len(body) + body + b"\r\n0\r\n\r\n"
    else:
        stream = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body) + body
    for i in range(0, len(stream), 1400):
        if lose_segment and i == 2800:
            c.sseq += 1400  # a segment the sensor never saw, inside the body
            continue
        c.pkt(False, "PA", stream[i : i + 1400])
    c.pkt(True, "PA", b"GET /b HTTP/1.1\r\nHost: h\r\n\r\n")
    c.pkt(False, "PA", b"HTTP/1.1 204 No Content\r\n\r\n")
    c.close()
    return c.frames


@pytest.mark.parametrize("chunked", [False, True])
@pytest.mark.parametrize("lose_segment", [False, True])
def test_http_body_skipping_keeps_records_and_saves_deliveries(chunked: bool, lose_segment: bool) -> None:
    frames = _http_frames(chunked, lose_segment)
    _Counting.calls = _NoSkip.calls = 0
    skipped = _records(_Counting, frames)
    plain = _records(_NoSkip, frames)
    assert skipped == plain
    assert [r.http.uri for r in skipped] == ["/a", "/b"]
    assert _Counting.calls < _NoSkip.calls


def _replay_with_skips(seed: int) -> None:
    rng = random.Random(seed)
    size = rng.randrange(1, 3000)
    segs = []
    pos = 0
    while pos < size:
        n = rng.randrange(1, 400)
        segs.append((pos, bytes(min(n, size - pos))))
        pos += n
    if rng.random() < 0.3:
        rng.shuffle(segs)
    totals = {"data": 0, "gap": 0, "skipped": 0}

    def add(kind: str, n: int) -> None:
        totals[kind] += n

    r = StreamReassembler(
        lambda ts, p: add("data", len(p)),
        lambda ts, n: add("gap", n),
        max_segments=4,
        hint=lambda: rng.randrange(0, 500),
        skipped=lambda ts, n: add("skipped", n),
    )
    r.syn(99)
    for i, (off, payload) in enumerate(segs):
        if rng.random() >= 0.1:
            r.segment(float(i), 100 + off, payload)
    r.close(1e9)
    assert r.next_seq is not None
    assert totals["data"] + totals["gap"] + totals["skipped"] == (r.next_seq - 100) & 0xFFFFFFFF


def test_reassembler_skipping_accounts_for_every_byte() -> None:
    # Random segment orders, losses and hints: delivered + skipped + gap bytes always cover the stream.
    for seed in range(300):
        _replay_with_skips(seed)
