"""Sensor batches -> master (NATS, Redis) -> the real responder (dry-run backend): a scan gets contained."""

from __future__ import annotations

import asyncio

import nats
import pytest
from prometheus_client import CollectorRegistry

from master.analyst.incidents import render
from master.service import MasterService
from master.store import RedisStore
from responder.client import ResponderClient
from responder.service import ResponderService
from tests.master.traffic import T0, batches, office, scan
from vigil import config, embedded
from vigil.bus import ensure_stream, telemetry_subject
from vigil.config import ProtectedConfig, ResponderConfig
from vigil.responder.v1 import responder_pb2

pytestmark = pytest.mark.timeout(90)


async def test_scan_is_blocked_by_the_responder(
    nats_server: embedded.EmbeddedNats, redis_server: embedded.EmbeddedRedis
) -> None:
    responder = ResponderService(
        ResponderConfig(
            listen="127.0.0.1:0", backend="dryrun", protected=ProtectedConfig(networks=["10.0.1.9/32"])
        ),
        CollectorRegistry(),
    )
    responder_stop = asyncio.Event()
    responder_task = asyncio.create_task(responder.run(responder_stop))
    await asyncio.wait_for(responder.started.wait(), 10)
    address = f"127.0.0.1:{responder.port}"
    cfg = config.build(
        {
            "nats": {"url": nats_server.url},
            "redis": {"url": redis_server.url},
            "master": {"responder_address": address, "response_mode": "autonomous", "block_duration_s": 900},
        },
        environ={},
    )
    nc = await nats.connect(nats_server.url)
    js = nc.jetstream()
    await ensure_stream(js, cfg.nats)
    # Two scanners: a workstation, and an asset only the responder knows is protected (it must refuse).
    records = list(office(T0, 30, devices=10)) + scan(T0 + 30 * 60 + 1, "10.0.1.4")
    records += scan(T0 + 30 * 60 + 2, "10.0.1.9")
    records.sort(key=lambda r: r.flow.start_time.ToNanoseconds())
    for b in batches(records, 250, "e2e"):
        await js.publish(
            telemetry_subject("lab", "s1"), b.SerializeToString(), headers={"Nats-Msg-Id": b.batch_id}
        )
    master_stop = asyncio.Event()
    master = MasterService(cfg, CollectorRegistry())
    master_task = asyncio.create_task(master.run(master_stop))
    client = ResponderClient(address)
    try:
        deadline = asyncio.get_running_loop().time() + 30
        active: list[responder_pb2.ActionStatus] = []
        while not active:
            assert asyncio.get_running_loop().time() < deadline, "no action reached the responder"
            await asyncio.sleep(0.1)
            active = [s for s in await client.list() if s.state == responder_pb2.ACTION_STATE_ACTIVE]
        assert [s.action.target_ip for s in active] == ["10.0.1.4"]
        assert active[0].action.kind == responder_pb2.ACTION_KIND_BLOCK_CONNECTION
        assert {s.peer_ip for s in active[0].action.scopes} == {
            "10.0.0.0/8",
            "172.16.0.0/12",
            "192.168.0.0/16",
        }
        assert active[0].action.breach_id.startswith("brc-")
        # The analyst committed the breaches' incidents with them: versioned JSON documents in Redis.
        store = RedisStore(redis_server.url)
        try:
            stored = {b.breach_id: b for b in await store.breaches(1000)}
            docs = await store.incidents()
        finally:
            await store.close()
        incidents = [render(doc) for doc in docs]
        scanner = [i for i in incidents if [d.ip for d in i.devices] == ["10.0.1.4"]]
        assert len(scanner) == 1, [[d.ip for d in i.devices] for i in incidents]
        assert active[0].action.breach_id in scanner[0].breach_ids
        assert set(scanner[0].breach_ids) <= set(stored)
        assert "reconnaissance" in scanner[0].phases and "10.0.1.4 " in scanner[0].summary
        assert all(doc["schema"] == 1 and doc["version"] >= 1 for doc in docs)
    finally:
        await client.close()
        master_stop.set()
        await asyncio.wait_for(master_task, 15)
        responder_stop.set()
        await asyncio.wait_for(responder_task, 15)
        await nc.close()
