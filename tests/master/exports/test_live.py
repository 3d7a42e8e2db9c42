"""The master's breach output, live: telemetry through NATS into a real master, breaches out to a webhook
receiver that is down while the master works (the master's loop never waits for it)."""

from __future__ import annotations

import asyncio

import nats
import pytest
from prometheus_client import CollectorRegistry

from master.catalog import SEVERITIES
from master.service import MasterService
from tests.master.exports.receivers import HttpReceiver, free_port
from tests.master.traffic import T0, batches, office, scan
from vigil import config, embedded
from vigil.bus import ensure_stream, telemetry_subject

pytestmark = pytest.mark.timeout(90)


async def test_breaches_committed_by_the_master_reach_the_webhook_after_an_outage(
    nats_server: embedded.EmbeddedNats, redis_server: embedded.EmbeddedRedis
) -> None:
    receiver = HttpReceiver(free_port())
    cfg = config.build(
        {
            "nats": {"url": nats_server.url},
            "redis": {"url": redis_server.url},
            "master": {
                "responder_address": None,
                "response_mode": "observe",
                "exports": {
                    "webhook": {"url": receiver.url, "secret": "k"},
                    "retry_initial_s": 0.05,
                    "retry_max_s": 0.3,
                },
            },
        },
        environ={},
    )
    nc = await nats.connect(nats_server.url)
    js = nc.jetstream()
    await ensure_stream(js, cfg.nats)
    records = list(office(T0, 30, devices=10)) + scan(T0 + 30 * 60 + 1, "10.0.1.4")
    records.sort(key=lambda r: r.flow.start_time.ToNanoseconds())
    for b in batches(records, 250, "exp"):
        await js.publish(
            telemetry_subject("lab", "s1"), b.SerializeToString(), headers={"Nats-Msg-Id": b.batch_id}
        )
    registry = CollectorRegistry()
    master = MasterService(cfg, registry)
    stop = asyncio.Event()
    task = asyncio.create_task(master.run(stop))
    try:
        # The receiver is down: the master still commits every batch and its breaches queue up.
        for _ in range(300):
            counts = [
                registry.get_sample_value(
                    "vigil_master_breaches_total", {"model_id": "device-network-scan", "severity": level}
                )
                for level in SEVERITIES
            ]
            if sum(n or 0 for n in counts) > 0:
                break
            await asyncio.sleep(0.1)
        committed = await master.store.breaches(100)
        scans = [b for b in committed if b.model == "Device / Network Scan" and b.device.ip == "10.0.1.4"]
        assert scans, [b.model for b in committed]
        queued = registry.get_sample_value("vigil_master_export_queue_breaches", {"sink": "webhook"})
        assert queued == len(committed)
        receiver.start()
        got = await receiver.wait_for(len(committed), timeout_s=20)
    finally:
        stop.set()
        await asyncio.wait_for(task, 20)
        receiver.stop()
        await nc.close()
    assert sorted(r.json()["breach_id"] for r in got) == sorted(b.breach_id for b in committed)
    assert (
        registry.get_sample_value(
            "vigil_master_export_dropped_total", {"sink": "webhook", "reason": "queue_full"}
        )
        == 0
    )
