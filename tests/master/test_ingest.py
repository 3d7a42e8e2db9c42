"""The master against real nats-server and Valkey: exactly-once effect, garbage, outages, crashes."""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any, BinaryIO

import nats
import pytest
import redis.asyncio as aioredis
from nats.js import JetStreamContext
from prometheus_client import CollectorRegistry

from master.ingest import BREACH_SUBJECT, DEVICE_SUBJECT, Consumer
from master.pipeline import Pipeline
from master.service import MasterService
from tests.conftest import REPO
from tests.master.traffic import T0, batches, flow, office, scan
from vigil import config, embedded
from vigil.alert.v1 import alert_pb2
from vigil.bus import ensure_stream, heartbeat_subject, telemetry_subject
from vigil.config import VigilConfig
from vigil.sensor.v1 import sensor_pb2

pytestmark = pytest.mark.timeout(120)
SUBJECT = telemetry_subject("lab", "s1")


def _cfg(nats_url: str, redis_url: str, **master: Any) -> VigilConfig:
    return config.build(
        {
            "nats": {"url": nats_url},
            "redis": {"url": redis_url},
            "master": {"responder_address": None, "fetch_batch": 16, "response_mode": "confirm", **master},
        },
        environ={},
    )


async def _publish(js: JetStreamContext, items: list[sensor_pb2.Batch]) -> None:
    for b in items:
        await js.publish(SUBJECT, b.SerializeToString(), headers={"Nats-Msg-Id": b.batch_id})


async def _until(predicate: Callable[[], Any], timeout_s: float = 30.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while True:
        if await predicate():
            return
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.05)


async def _json(r: aioredis.Redis, key: Any) -> Any:
    raw = await r.get(key)
    assert raw is not None
    return json.loads(raw)


async def _markers(r: aioredis.Redis) -> int:
    return len([k async for k in r.scan_iter("vigil:v1:batch:*", count=1000)])


async def _total_flows(r: aioredis.Redis) -> int:
    total = 0
    async for key in r.scan_iter("vigil:v1:device:*", count=1000):
        total += (await _json(r, key))["flows"]
    return total


def _metric(registry: CollectorRegistry, name: str, **labels: str) -> float:
    value = registry.get_sample_value(name, labels)
    return 0.0 if value is None else value


@pytest.fixture
async def env(
    nats_server: embedded.EmbeddedNats, redis_server: embedded.EmbeddedRedis
) -> AsyncIterator[tuple[VigilConfig, JetStreamContext, aioredis.Redis]]:
    cfg = _cfg(nats_server.url, redis_server.url)
    nc = await nats.connect(nats_server.url)
    js = nc.jetstream()
    await ensure_stream(js, cfg.nats)
    r = aioredis.Redis.from_url(redis_server.url)
    yield cfg, js, r
    await r.aclose()
    await nc.close()


class Running:
    def __init__(self, service: MasterService) -> None:
        self.service = service
        self.stop = asyncio.Event()
        self.task = asyncio.create_task(service.run(self.stop))

    async def close(self) -> None:
        self.stop.set()
        await asyncio.wait_for(self.task, 15)


def _external_flows(n_batches: int, per_batch: int, prefix: str) -> list[sensor_pb2.Batch]:
    """Flows from 10 internal devices to the internet: each flow counts once in one device's inventory."""
    records = [
        flow(T0 + i * 0.5, f"10.0.1.{i % 10 + 1}", "93.184.216.34", 443) for i in range(n_batches * per_batch)
    ]
    return batches(records, per_batch, prefix)


async def test_every_batch_processed_exactly_once(
    env: tuple[VigilConfig, JetStreamContext, aioredis.Redis],
) -> None:
    cfg, js, r = env
    items = _external_flows(40, 25, "x")
    await _publish(js, items)
    registry = CollectorRegistry()
    running = Running(MasterService(cfg, registry))
    await _until(lambda: _aeq(_markers(r), 40))
    # The same batch id published again under another message id gets past NATS dedup; the master skips it.
    await js.publish(SUBJECT, items[3].SerializeToString(), headers={"Nats-Msg-Id": "replay-3"})
    await _until(lambda: _ready(lambda: _metric(registry, "vigil_master_batches_duplicate_total") >= 1))
    ready, checks = running.service.health.readiness()
    assert ready and checks == {"nats": True, "redis": True}
    await running.close()
    assert await _markers(r) == 40
    assert await _total_flows(r) == 40 * 25
    assert _metric(registry, "vigil_master_batches_total") == 40
    # All 40 were waiting when the master started: they went through in fewer, larger units of work.
    assert _metric(registry, "vigil_master_unit_batches_sum") == 40
    assert _metric(registry, "vigil_master_unit_batches_count") < 40
    assert _metric(registry, "vigil_master_records_total", kind="flow") == 1000
    assert _metric(registry, "vigil_master_devices") == 10
    info = await js.consumer_info(cfg.nats.stream, cfg.master.consumer)
    assert info.num_ack_pending == 0 and info.num_pending == 0


async def _aeq(coro: Any, expected: int) -> bool:
    return bool(await coro == expected)


async def _ready(check: Callable[[], bool]) -> bool:
    return check()


async def test_garbage_is_terminated_and_counted(
    env: tuple[VigilConfig, JetStreamContext, aioredis.Redis],
) -> None:
    cfg, js, r = env
    rng = random.Random(3)
    for i in range(20):
        await js.publish(SUBJECT, rng.randbytes(rng.randint(1, 2000)), headers={"Nats-Msg-Id": f"junk-{i}"})
    # Valid protobuf, but no batch id: cannot be deduplicated, so it is refused too.
    await js.publish(SUBJECT, sensor_pb2.Batch(sensor_id="s1").SerializeToString())
    good = _external_flows(2, 5, "good")
    await _publish(js, good)
    registry = CollectorRegistry()
    running = Running(MasterService(cfg, registry))
    await _until(lambda: _aeq(_markers(r), 2))
    await running.close()
    rejected = sum(
        _metric(registry, "vigil_master_batches_rejected_total", reason=reason)
        for reason in ("undecodable", "missing_batch_id", "oversized")
    )
    # Random bytes occasionally decode as an (empty) protobuf; either way every one is refused.
    assert rejected == 21
    assert _metric(registry, "vigil_master_batches_total") == 2
    info = await js.consumer_info(cfg.nats.stream, cfg.master.consumer)
    assert info.num_ack_pending == 0 and info.num_pending == 0


async def test_poison_batch_in_a_unit_does_not_hold_back_the_others(
    env: tuple[VigilConfig, JetStreamContext, aioredis.Redis], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A batch the pipeline fails on (a bug, simulated here: our own code raising on one record) is split
    out of its unit: every other batch of the backlog is committed once, the poison one is retried and then
    terminated and counted."""
    cfg, js, r = env
    extract = Pipeline.extract

    def failing_extract(self: Pipeline, records: Any, latest: int) -> Any:
        if any(rec.flow.resp.port == 6666 for rec in records):
            raise ValueError("simulated pipeline bug")
        return extract(self, records, latest)

    monkeypatch.setattr(Pipeline, "extract", failing_extract)
    good = _external_flows(10, 5, "ok")
    poison = batches([flow(T0, "10.0.1.1", "93.184.216.34", 6666)], 1, "poison")
    await _publish(js, good[:5] + poison + good[5:])
    registry = CollectorRegistry()
    running = Running(MasterService(cfg, registry))
    await _until(
        lambda: _ready(
            lambda: _metric(registry, "vigil_master_batches_rejected_total", reason="processing_error") == 1
        )
    )
    await running.close()
    assert await _markers(r) == 10
    assert await r.exists("vigil:v1:batch:poison-1") == 0
    assert await _total_flows(r) == 50
    assert _metric(registry, "vigil_master_batches_total") == 10
    info = await js.consumer_info(cfg.nats.stream, cfg.master.consumer)
    assert info.num_ack_pending == 0 and info.num_pending == 0


async def test_breaches_are_published_live_and_stored(
    env: tuple[VigilConfig, JetStreamContext, aioredis.Redis], nats_server: embedded.EmbeddedNats
) -> None:
    cfg, js, r = env
    nc = await nats.connect(nats_server.url)
    seen: list[alert_pb2.ModelBreach] = []
    devices: list[alert_pb2.DeviceRef] = []

    async def on_breach(msg: Any) -> None:
        seen.append(alert_pb2.ModelBreach.FromString(msg.data))

    async def on_device(msg: Any) -> None:
        devices.append(alert_pb2.DeviceRef.FromString(msg.data))

    await nc.subscribe(BREACH_SUBJECT, cb=on_breach)
    await nc.subscribe(DEVICE_SUBJECT, cb=on_device)
    records = list(office(T0, 30, devices=5)) + scan(T0 + 30 * 60 + 1, "10.0.1.3")
    await _publish(js, batches(records, 200, "live"))
    registry = CollectorRegistry()
    running = Running(MasterService(cfg, registry))
    await _until(lambda: _ready(lambda: any(b.device.ip == "10.0.1.3" for b in seen)))
    await running.close()
    await nc.close()
    entries: Any = await r.xrange("vigil:v1:breaches")
    stored = [alert_pb2.ModelBreach.FromString(f[b"pb"]) for _, f in entries]
    ids = {b.breach_id for b in stored}
    assert {b.breach_id for b in seen} <= ids
    # Every device was announced once, with its address (5 workstations and the servers that answered).
    assert len(devices) == len({d.device_id for d in devices}) > 5
    assert {f"10.0.1.{i}" for i in range(1, 6)} <= {d.ip for d in devices}
    scans = [b for b in stored if b.model_id == "device-network-scan"]
    assert len(scans) == 1
    assert _metric(
        registry, "vigil_master_breaches_total", model_id=scans[0].model_id, severity=scans[0].severity
    )
    for key in {(b.model_id, b.severity) for b in stored}:
        assert _metric(registry, "vigil_master_breaches_total", model_id=key[0], severity=key[1]) == sum(
            (b.model_id, b.severity) == key for b in stored
        )
    # confirm mode: the action is recorded as proposed, not sent; its kind spelt as everywhere else.
    assert _metric(registry, "vigil_master_actions_total", kind="block_connection", mode="confirm") == 1
    # Event-time lag: the master's clock minus the newest record it committed (the scan's last flow).
    newest = max(rec.flow.end_time.ToNanoseconds() / 1e9 for rec in records if rec.HasField("flow"))
    lag = _metric(registry, "vigil_master_event_time_lag_seconds")
    assert abs(lag - (time.time() - newest)) < 60, (lag, time.time() - newest)
    keys = [k async for k in r.scan_iter("vigil:v1:action:*")]
    assert len(keys) == 1
    assert (await _json(r, keys[0]))["state"] == "proposed"
    assert await r.zcard("vigil:v1:actions:pending") == 0


async def test_backlog_heartbeats_and_fetch_errors_are_measured(
    env: tuple[VigilConfig, JetStreamContext, aioredis.Redis],
    nats_server: embedded.EmbeddedNats,
    capsys: pytest.CaptureFixture[str],
) -> None:
    cfg, js, _ = env
    nc = await nats.connect(nats_server.url)
    registry = CollectorRegistry()
    service = MasterService(cfg, registry)
    # Backlog: a second durable consumer that nobody fetches from sees every message pending.
    idle = Consumer(
        nc, js, service.processor, service.metrics, stream=cfg.nats.stream, durable="idle", fetch_batch=16
    )
    await idle.subscribe()
    await _publish(js, _external_flows(30, 10, "lag"))
    await idle.record_backlog()
    assert _metric(registry, "vigil_master_consumer_pending_messages") == 30
    await js.delete_consumer(cfg.nats.stream, "idle")
    running = Running(service)
    await _until(lambda: _ready(lambda: _metric(registry, "vigil_master_batches_total") == 30))
    # The running master's own consumer drains to nothing pending (the gauge is refreshed every 2 s).
    await _until(lambda: _ready(lambda: _metric(registry, "vigil_master_consumer_pending_messages") == 0))
    # Heartbeats: the age of each sensor's last one, as the master heard it, growing between beats.
    await nc.publish(
        heartbeat_subject("sensor-7"), sensor_pb2.Heartbeat(sensor_id="sensor-7").SerializeToString()
    )
    age = "vigil_master_sensor_heartbeat_age_seconds"
    await _until(lambda: _ready(lambda: registry.get_sample_value(age, {"sensor": "sensor-7"}) is not None))
    first = _metric(registry, age, sensor="sensor-7")
    await asyncio.sleep(1.2)
    assert 0 <= first < 5 and _metric(registry, age, sensor="sensor-7") >= first + 1
    # A deleted consumer: fetches fail, are counted and logged with their type; the master makes the
    # consumer again and goes on with what is published next.
    await js.delete_consumer(cfg.nats.stream, cfg.master.consumer)
    await _until(lambda: _ready(lambda: _metric(registry, "vigil_master_fetch_errors_total") >= 1))
    await _publish(js, _external_flows(1, 10, "after"))
    await _until(lambda: _ready(lambda: _metric(registry, "vigil_master_batches_total") == 31))
    await running.close()
    await nc.close()
    out = capsys.readouterr()
    failures = [line for line in (out.out + out.err).splitlines() if "fetch_failed" in line]
    # The console renderer writes error_type=X, the JSON one "error_type": "X" (whichever an earlier test
    # configured): the type is named and the message is never empty either way.
    named = ("error_type=ServiceUnavailableError", '"error_type": "ServiceUnavailableError"')
    assert failures and all(any(n in line for n in named) for line in failures), failures
    assert all('error=""' not in line and '"error": ""' not in line for line in failures)


async def test_redis_outage_naks_and_recovers(nats_server: embedded.EmbeddedNats, short_tmp: Path) -> None:
    valkey = embedded.start_redis(short_tmp / "outage")
    cfg = _cfg(nats_server.url, valkey.url)
    nc = await nats.connect(nats_server.url)
    js = nc.jetstream()
    await ensure_stream(js, cfg.nats)
    registry = CollectorRegistry()
    running = Running(MasterService(cfg, registry))
    try:
        await _publish(js, _external_flows(3, 5, "pre"))
        r = aioredis.Redis.from_url(valkey.url)
        await _until(lambda: _aeq(_markers(r), 3))
        await r.aclose()
        valkey.stop()
        await _publish(js, _external_flows(3, 5, "during"))
        await _until(lambda: _ready(lambda: not running.service.health.readiness()[0]))
        assert not running.task.done()
        valkey = embedded.start_redis(short_tmp / "outage")  # same socket and AOF: state survives
        r = aioredis.Redis.from_url(valkey.url)
        await _until(lambda: _aeq(_markers(r), 6), timeout_s=40)
        await _until(lambda: _ready(lambda: running.service.health.readiness()[0]))
        # Same record times ("pre" and "during" replay the same flows) but different batch ids: both count.
        assert await _total_flows(r) == 30
        await r.aclose()
    finally:
        await running.close()
        await nc.close()
        valkey.stop()


@pytest.mark.slow
async def test_killed_master_resumes_without_loss_or_double_count(
    env: tuple[VigilConfig, JetStreamContext, aioredis.Redis],
    nats_server: embedded.EmbeddedNats,
    redis_server: embedded.EmbeddedRedis,
    short_tmp: Path,
) -> None:
    cfg, js, r = env
    n_batches, per_batch = 400, 50
    items = _external_flows(n_batches, per_batch, "crash")
    await _publish(js, items)
    tree = {
        "nats": {"url": nats_server.url},
        "redis": {"url": redis_server.url},
        "master": {"responder_address": None, "fetch_batch": 8},
        "log": {"level": "warning"},
        "_ack_wait_s": 2.0,
    }
    cfg_file = short_tmp / "master.json"
    cfg_file.write_text(json.dumps(tree))
    log = _log_file(short_tmp / "master.log")

    def start() -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            [sys.executable, "-m", "tests.master.run_master", str(cfg_file)],
            cwd=REPO,
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONPATH": str(REPO)},
        )

    first = start()
    try:
        await _until(lambda: _ready_async(_markers(r), lambda n: n >= 40))
        first.send_signal(signal.SIGKILL)
        first.wait(10)
        at_kill = await _markers(r)
        assert at_kill < n_batches, "the kill must land mid-stream"
        # Let the killed consumer's unacked deliveries come back after ack_wait.
        second = start()
        try:
            await _until(lambda: _aeq(_markers(r), n_batches), timeout_s=90)
            # Batches the killed master committed but had not acked come back only after ack_wait, and the
            # second master may have caught up on everything else before that: wait until it has seen them
            # (as duplicates) too, so that nothing is left unacknowledged when it stops.
            await _until(lambda: _settled(js, cfg), timeout_s=30)
            second.send_signal(signal.SIGTERM)
            assert second.wait(15) == 0
        finally:
            if second.poll() is None:
                second.kill()
    finally:
        if first.poll() is None:
            first.kill()
        log.close()
    assert await _markers(r) == n_batches
    assert await _total_flows(r) == n_batches * per_batch
    # Learned state survived the crash: every device has a model and features, the network has a belief.
    models = [k async for k in r.scan_iter("vigil:v1:model:count:*")]
    groups = [m for m in models if m.startswith(b"vigil:v1:model:count:group:")]
    assert len(models) - len(groups) == 11  # ten devices and the population
    assert groups, "peer groups (subnet, then behaviour) were learned"
    population = await _json(r, "vigil:v1:model:count:population")
    assert population["schema"] == 1
    assert population["counts"]["distinct_internal_destinations"]["beta"] > 0
    info = await js.consumer_info(cfg.nats.stream, cfg.master.consumer)
    assert info.num_ack_pending == 0 and info.num_pending == 0


async def _settled(js: JetStreamContext, cfg: VigilConfig) -> bool:
    info = await js.consumer_info(cfg.nats.stream, cfg.master.consumer)
    return bool(info.num_ack_pending == 0 and info.num_pending == 0)


def _log_file(path: Path) -> BinaryIO:
    # Handed to the child processes as stdout; the test closes it.
    return open(path, "ab")


async def _ready_async(coro: Any, check: Callable[[int], bool]) -> bool:
    return check(await coro)
