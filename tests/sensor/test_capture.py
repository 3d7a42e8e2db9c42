"""pcap/pcapng reading: byte orders, timestamp resolutions, interfaces, damage."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from prometheus_client import CollectorRegistry

from sensor.capture import CaptureError, read_capture
from sensor.decode import decode
from sensor.pipeline import SensorPipeline
from sensor.sources.pcap import PcapSource
from tests.sensor.packets import MAC_A, MAC_B, TcpConv, ether, ipv4, pcap_bytes, pcapng_bytes, udp
from vigil.config import SensorConfig


def frames(n: int) -> list[tuple[float, bytes]]:
    return [
        (
            1_700_000_000.25 + i,
            ether(MAC_A, MAC_B, ipv4("10.0.0.1", "10.0.0.2", 17, udp(1000 + i, 53, b"x" * i))),
        )
        for i in range(n)
    ]


@pytest.mark.parametrize("nanos", [False, True])
@pytest.mark.parametrize("big", [False, True])
def test_pcap_byte_orders_and_resolutions(tmp_path: Path, nanos: bool, big: bool) -> None:
    path = tmp_path / "a.pcap"
    pkts = frames(10)
    path.write_bytes(pcap_bytes(pkts, nanos=nanos, big=big))
    blocks = list(read_capture(path, block_packets=4))
    assert [len(b) for b in blocks] == [4, 4, 2]
    ts = np.concatenate([b.ts for b in blocks])
    np.testing.assert_allclose(ts, [t for t, _ in pkts], atol=1e-6)
    got = [b.packet(i) for b in blocks for i in range(len(b))]
    assert got == [f for _, f in pkts]
    assert all((b.linktype == 1).all() for b in blocks)


def test_small_chunks_carry_records_across_reads(tmp_path: Path) -> None:
    path = tmp_path / "a.pcap"
    pkts = frames(50)
    path.write_bytes(pcap_bytes(pkts))
    blocks = list(read_capture(path, block_packets=7, chunk_bytes=100))
    assert [b.packet(i) for b in blocks for i in range(len(b))] == [f for _, f in pkts]


def test_truncated_pcap_yields_what_was_parsed_then_errors(tmp_path: Path) -> None:
    c = TcpConv()
    c.handshake()
    c.pkt(True, "PA", b"x" * 100)
    data = pcap_bytes(c.frames)
    path = tmp_path / "cut.pcap"
    path.write_bytes(data[:-30])
    pipe = SensorPipeline(SensorConfig(), metrics_registry=CollectorRegistry(), seed=1)
    seen = 0
    with pytest.raises(CaptureError) as err:
        for block in read_capture(path):
            seen += len(block)
            pipe.feed(block)
    assert seen == 3
    assert err.value.path == str(path)
    assert err.value.offset == len(data) - len(c.frames[-1][1]) - 16
    assert "cut.pcap" in str(err.value) and "offset" in str(err.value)
    flows = [r.flow for r in pipe.flush()]
    assert [f.history for f in flows] == ["ShA"]


def test_garbage_and_corrupt_length(tmp_path: Path) -> None:
    bad = tmp_path / "x.pcap"
    bad.write_bytes(b"not a capture at all")
    with pytest.raises(CaptureError):
        list(read_capture(bad))
    data = bytearray(pcap_bytes(frames(3)))
    first_len = 16 + len(frames(3)[0][1])
    data[24 + first_len + 8 : 24 + first_len + 12] = (10**9).to_bytes(4, "little")
    bad.write_bytes(bytes(data))
    got = 0
    with pytest.raises(CaptureError, match="exceeds"):
        for b in read_capture(bad):
            got += len(b)
    assert got == 1


@pytest.mark.parametrize("big", [False, True])
def test_pcapng_multiple_interfaces_and_tsresol(tmp_path: Path, big: bool) -> None:
    eth = ether(MAC_A, MAC_B, ipv4("10.0.0.1", "10.0.0.2", 17, udp(1, 2, b"abc")))
    raw = ipv4("10.0.0.3", "10.0.0.4", 17, udp(3, 4, b"defg"))
    pkts = [(0, 100.5, eth), (1, 101.25, raw), (0, 102.0, eth)]
    path = tmp_path / "m.pcapng"
    path.write_bytes(pcapng_bytes(pkts, interfaces=[(1, 6), (101, 9)], big=big))
    (block,) = list(read_capture(path))
    assert block.linktype.tolist() == [1, 101, 1]
    np.testing.assert_allclose(block.ts, [100.5, 101.25, 102.0])
    assert block.packet(1) == raw
    dec = decode(block)
    assert dec.reason.tolist() == [0, 0, 0]
    assert dec.payload_len.tolist() == [3, 4, 3]


def test_pcapng_truncated_block(tmp_path: Path) -> None:
    eth = ether(MAC_A, MAC_B, ipv4("10.0.0.1", "10.0.0.2", 17, udp(1, 2, b"abc")))
    data = pcapng_bytes([(0, 1.0, eth), (0, 2.0, eth)], interfaces=[(1, 6)])
    path = tmp_path / "t.pcapng"
    path.write_bytes(data[:-10])
    got = 0
    with pytest.raises(CaptureError, match="truncated"):
        for b in read_capture(path):
            got += len(b)
    assert got == 1


async def test_pcap_source_realtime_paces_by_capture_time(tmp_path: Path) -> None:
    import time

    path = tmp_path / "a.pcap"
    pkts = [(10.0 + i * 0.1, f) for i, (_, f) in enumerate(frames(4))]
    path.write_bytes(pcap_bytes(pkts))
    t0 = time.monotonic()
    n = 0
    async for block in PcapSource([path], realtime=True).ablocks():
        n += len(block)
    assert n == 4
    assert time.monotonic() - t0 >= 0.25
