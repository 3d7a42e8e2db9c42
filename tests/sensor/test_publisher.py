"""The publisher against a real nats-server: batching, dedup ids, spooling through an outage, drain."""

from __future__ import annotations

import asyncio
from pathlib import Path
from urllib.parse import urlparse

import nats
from prometheus_client import CollectorRegistry

from sensor.publisher import BatchPublisher
from sensor.spool import Spool
from vigil import bus, embedded
from vigil.config import NatsConfig, SensorConfig
from vigil.flow.v1 import flow_pb2
from vigil.sensor.v1 import sensor_pb2


def _records(start: int, count: int) -> list[sensor_pb2.Record]:
    return [sensor_pb2.Record(flow=flow_pb2.Flow(uid=f"C{i}")) for i in range(start, start + count)]


async def _read_all(url: str, cfg: NatsConfig) -> list[sensor_pb2.Batch]:
    nc = await nats.connect(url)
    js = nc.jetstream()
    info = await js.stream_info(cfg.stream)
    out = []
    for seq in range(1, info.state.last_seq + 1):
        msg = await js.get_msg(cfg.stream, seq)
        assert msg.data is not None
        out.append(sensor_pb2.Batch.FromString(msg.data))
    await nc.close()
    return out


async def _wait(predicate: object, limit_s: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + limit_s
    while not predicate():  # type: ignore[operator]
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.05)


async def test_batches_by_size_and_flush(nats_server: embedded.EmbeddedNats, short_tmp: Path) -> None:
    ncfg = NatsConfig(url=nats_server.url)
    scfg = SensorConfig(spool_dir=short_tmp / "spool", batch_max_records=10)
    pub = BatchPublisher(scfg, ncfg, CollectorRegistry())
    await pub.start()
    await _wait(lambda: pub.connected)
    await pub.add(_records(0, 25))
    await pub.close()
    batches = await _read_all(nats_server.url, ncfg)
    assert [len(b.records) for b in batches] == [10, 10, 5]
    assert [b.sequence for b in batches] == [1, 2, 3]
    assert len({b.batch_id for b in batches}) == 3
    uids = [r.flow.uid for b in batches for r in b.records]
    assert uids == [f"C{i}" for i in range(25)]


async def test_time_based_flush(nats_server: embedded.EmbeddedNats, short_tmp: Path) -> None:
    ncfg = NatsConfig(url=nats_server.url)
    scfg = SensorConfig(spool_dir=short_tmp / "spool", batch_max_records=1000, batch_max_delay_s=0.2)
    pub = BatchPublisher(scfg, ncfg, CollectorRegistry())
    await pub.start()
    await _wait(lambda: pub.connected)
    await pub.add(_records(0, 3))
    await _wait(lambda: pub.published_batches == 1, limit_s=5)
    await pub.close()


async def test_spools_while_nats_down_and_drains_in_order(short_tmp: Path) -> None:
    servers = [embedded.start_nats(short_tmp / "nats")]
    try:
        port = urlparse(servers[0].url).port
        assert port is not None
        ncfg = NatsConfig(url=servers[0].url, connect_timeout_s=0.5)
        scfg = SensorConfig(spool_dir=short_tmp / "spool", batch_max_records=5)
        pub = BatchPublisher(scfg, ncfg, CollectorRegistry())
        await pub.start()
        try:
            await _wait(lambda: pub.connected)
            await pub.add(_records(0, 5))
            assert pub.published_batches == 1
            servers[0].kill()
            await _wait(lambda: not pub.connected)
            await pub.add(_records(5, 20))  # 4 batches while the server is down
            assert pub.spooled_batches == 4
            # Same port, same JetStream store: what was acknowledged before is still there.
            servers.append(embedded.start_nats(short_tmp / "nats", port=port))
            await _wait(lambda: pub.spooled_batches == 0, limit_s=20)
        finally:
            await pub.close()
        batches = await _read_all(servers[-1].url, ncfg)
    finally:
        # Stopped whatever happened above: a failing assertion must not leak a server.
        for server in servers:
            server.stop()
    uids = [r.flow.uid for b in batches for r in b.records]
    assert uids == [f"C{i}" for i in range(25)], "every record once, in order"


async def test_duplicate_batch_id_stored_once(nats_server: embedded.EmbeddedNats) -> None:
    ncfg = NatsConfig(url=nats_server.url)
    nc = await bus.connect(ncfg, "t")
    js = nc.jetstream()
    await bus.ensure_stream(js, ncfg)
    subject = bus.telemetry_subject("site", "s1")
    first = await js.publish(subject, b"x", headers={"Nats-Msg-Id": "s1-a-1"})
    again = await js.publish(subject, b"x", headers={"Nats-Msg-Id": "s1-a-1"})
    await nc.close()
    assert again.duplicate and again.seq == first.seq


def test_spool_bounded_drops_oldest_and_counts(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_bytes=250)
    dropped = [spool.put(f"{i:04d}", b"x" * 100, records=7) for i in range(4)]
    assert dropped == [0, 0, 7, 7]
    assert len(spool) == 2 and spool.size_bytes == 200
    item = spool.peek()
    assert item is not None and item[0].path.name.startswith("0002")
    # A new Spool over the same directory sees what survived (a sensor restart).
    again = Spool(tmp_path, max_bytes=250)
    assert len(again) == 2
    assert [e.records for e in again._entries] == [7, 7]
