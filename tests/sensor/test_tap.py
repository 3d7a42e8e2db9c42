"""Live AF_PACKET capture on loopback (needs root; skipped otherwise)."""

from __future__ import annotations

import asyncio
import os
import socket

import pytest
from prometheus_client import CollectorRegistry

from sensor.pipeline import SensorPipeline
from sensor.sources.tap import TapSource
from vigil.config import SensorConfig

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="AF_PACKET capture needs root")


async def test_tap_on_loopback_yields_blocks_that_become_flows() -> None:
    tap = TapSource("lo", block_interval_s=0.05)
    tap.open()
    pipe = SensorPipeline(SensorConfig(), metrics_registry=CollectorRegistry(), seed=1)
    rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    rx.bind(("127.0.0.1", 0))
    port = rx.getsockname()[1]
    tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    got = 0

    async def send() -> None:
        await asyncio.sleep(0.05)
        for _ in range(5):
            tx.sendto(b"vigil-tap-test", ("127.0.0.1", port))

    sender = asyncio.create_task(send())
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 0.5
    try:
        # Loopback is shared with other tests: capture for a fixed time, then look for our flow.
        async for block in tap.blocks():
            got += len(block)
            pipe.feed(block)
            if loop.time() > deadline:
                break
    finally:
        await sender
        tap.close()
        rx.close()
        tx.close()
    flows = [r.flow for r in pipe.flush() if r.HasField("flow") and r.flow.resp.port == port]
    assert len(flows) == 1
    assert flows[0].orig_pkts == 5 and flows[0].orig_bytes == 5 * len(b"vigil-tap-test")
    packets, drops = tap.read_stats()
    assert packets >= 5 and drops >= 0
