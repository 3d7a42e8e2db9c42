"""Batches always fit the bus, whatever the traffic: against real nats-servers with their real limits.

The attack these guard against: traffic anyone can send (40 HTTP requests with 60 KB URIs) used to make a
batch larger than the server's 1 MiB max_payload, which then sat at the head of the in-order spool for ever
while every later batch queued behind it.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import nats
from prometheus_client import CollectorRegistry

from sensor.publisher import HEADER_ROOM_BYTES, BatchPublisher
from sensor.service import SensorService
from tests.sensor.packets import pcap_bytes, tcp_conversation
from vigil import bus, embedded
from vigil.config import NatsConfig, SensorConfig, VigilConfig
from vigil.exitcodes import Exit
from vigil.flow.v1 import dns_pb2, http_pb2
from vigil.sensor.v1 import sensor_pb2

URI = "/" + "a" * 60_000


def _long_uri_capture(path: Path, requests: int = 40) -> Path:
    frames = []
    for i in range(requests):
        request = f"GET {URI}?{i} HTTP/1.1\r\nHost: victim.example\r\n\r\n".encode()
        response = b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n"
        frames += tcp_conversation(
            "10.0.0.66", "10.0.0.80", 40000 + i, 80, 1_764_000_000.0 + i, request, response
        )
    path.write_bytes(pcap_bytes(frames))
    return path


async def _stream_messages(url: str, cfg: NatsConfig) -> list[tuple[int, sensor_pb2.Batch]]:
    """(payload size, batch) of every message in the telemetry stream, in order."""
    nc = await nats.connect(url)
    try:
        js = nc.jetstream()
        info = await js.stream_info(cfg.stream)
        out = []
        for seq in range(info.state.first_seq, info.state.last_seq + 1):
            msg = await js.get_msg(cfg.stream, seq)
            assert msg.data is not None
            out.append((len(msg.data), sensor_pb2.Batch.FromString(msg.data)))
        return out
    finally:
        await nc.close()


async def _wait(predicate: object, limit_s: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + limit_s
    while not predicate():  # type: ignore[operator]
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.05)


def _sensor_config(nats: dict[str, object], capture: Path, spool: Path, **sensor: object) -> VigilConfig:
    return VigilConfig.model_validate(
        {"nats": nats, "sensor": {"pcap_files": [str(capture)], "spool_dir": str(spool), **sensor}}
    )


def _value(registry: CollectorRegistry, name: str, **labels: str) -> float:
    return registry.get_sample_value(name, labels) or 0.0


async def test_long_uris_cannot_blind_the_sensor(nats_server: embedded.EmbeddedNats, short_tmp: Path) -> None:
    """The sensor service on the attack capture, against nats-server's default 1 MiB max_payload: every
    record arrives exactly once, each message within the limit, nothing is left in the spool."""
    capture = _long_uri_capture(short_tmp / "uris.pcap")
    cfg = _sensor_config({"url": nats_server.url}, capture, short_tmp / "spool")
    service = SensorService(cfg)
    await asyncio.wait_for(service.run(asyncio.Event()), 60)
    assert service.exit_code == Exit.OK
    assert service.publisher.spooled_batches == 0
    messages = await _stream_messages(nats_server.url, cfg.nats)
    limit = 1024 * 1024
    assert all(size <= limit - HEADER_ROOM_BYTES for size, _ in messages), [s for s, _ in messages]
    records = [r for _, b in messages for r in b.records]
    uris = sorted(r.http.uri for r in records if r.WhichOneof("kind") == "http")
    assert uris == sorted(f"{URI}?{i}" for i in range(40)), "every request once, whole"
    assert sum(r.WhichOneof("kind") == "flow" for r in records) == 40
    ids = [b.batch_id for _, b in messages]
    assert len(ids) == len(set(ids)) and any(i.endswith(".1") for i in ids), ids
    assert _value(service.registry, "vigil_sensor_batches_split_total") > 0


async def test_a_record_too_large_alone_is_cut_to_the_field_limits_and_counted(short_tmp: Path) -> None:
    server = embedded.start_nats(short_tmp / "nats", max_payload=32 * 1024)
    try:
        ncfg = NatsConfig(url=server.url)
        registry = CollectorRegistry()
        pub = BatchPublisher(SensorConfig(spool_dir=short_tmp / "spool"), ncfg, registry)
        await pub.start()
        await _wait(lambda: pub.connected)
        assert pub.max_batch_bytes == 32 * 1024 - HEADER_ROOM_BYTES
        huge = http_pb2.HttpRecord(uid="Cbig", uri=URI, user_agent="U" * 100_000, host="h.example")
        small = http_pb2.HttpRecord(uid="Csmall", uri="/ok", user_agent="curl/8")
        await pub.add([sensor_pb2.Record(http=huge), sensor_pb2.Record(http=small)])
        await pub.close()
        messages = await _stream_messages(server.url, ncfg)
    finally:
        server.stop()
    by_uid = {r.http.uid: r.http for _, b in messages for r in b.records}
    assert set(by_uid) == {"Cbig", "Csmall"}
    assert by_uid["Csmall"].uri == "/ok" and by_uid["Csmall"].user_agent == "curl/8", (
        "a record that fits is whole"
    )
    cut = by_uid["Cbig"]
    assert cut.uri == URI[:8192] and cut.user_agent == "U" * 1024 and cut.host == "h.example"
    assert _value(registry, "vigil_sensor_records_truncated_total", field="http.uri") == 1
    assert _value(registry, "vigil_sensor_records_truncated_total", field="http.user_agent") == 1
    assert _value(registry, "vigil_sensor_dropped_records_total", reason="record_too_large") == 0


async def test_a_record_that_cannot_fit_is_dropped_and_counted_never_stuck(short_tmp: Path) -> None:
    server = embedded.start_nats(short_tmp / "nats", max_payload=2048)
    try:
        ncfg = NatsConfig(url=server.url)
        registry = CollectorRegistry()
        pub = BatchPublisher(SensorConfig(spool_dir=short_tmp / "spool"), ncfg, registry)
        await pub.start()
        await _wait(lambda: pub.connected)
        answers = [dns_pb2.DnsAnswer(name="n" * 200, value="v" * 200) for _ in range(64)]
        monster = sensor_pb2.Record(dns=dns_pb2.DnsRecord(uid="Cdns", query="q.example", answers=answers))
        after = sensor_pb2.Record(dns=dns_pb2.DnsRecord(uid="Cnext", query="next.example"))
        await pub.add([monster])
        await pub.flush()
        await pub.add([after])
        await pub.close()
        messages = await _stream_messages(server.url, ncfg)
    finally:
        server.stop()
    assert [r.dns.uid for _, b in messages for r in b.records] == ["Cnext"], "the next batch is not held back"
    assert _value(registry, "vigil_sensor_dropped_records_total", reason="record_too_large") == 1
    assert messages[0][1].dropped_records_count == 1, "the master hears of the drop too"
    assert pub.spooled_batches == 0


async def test_a_batch_the_stream_refuses_for_its_size_is_split_and_retried(
    nats_server: embedded.EmbeddedNats, short_tmp: Path
) -> None:
    ncfg = NatsConfig(url=nats_server.url)
    registry = CollectorRegistry()
    pub = BatchPublisher(SensorConfig(spool_dir=short_tmp / "spool"), ncfg, registry)
    await pub.start()
    await _wait(lambda: pub.connected)
    # An operator (or another version) narrows the stream under the running sensor.
    nc = await nats.connect(nats_server.url)
    js = nc.jetstream()
    narrow = bus.stream_config(ncfg)
    narrow.max_msg_size = 20_000
    await js.update_stream(narrow)
    await nc.close()
    records = [
        sensor_pb2.Record(http=http_pb2.HttpRecord(uid=f"C{i}", uri="/" + "x" * 5000)) for i in range(10)
    ]
    await pub.add(records)
    await pub.close()
    messages = await _stream_messages(nats_server.url, ncfg)
    assert [r.http.uid for _, b in messages for r in b.records] == [f"C{i}" for i in range(10)]
    assert all(size <= 20_000 for size, _ in messages)
    assert pub.max_batch_bytes < 1024 * 1024 - HEADER_ROOM_BYTES, "the refusal lowered the limit"
    assert pub.spooled_batches == 0


async def test_an_oversized_spooled_batch_is_split_as_it_drains(short_tmp: Path) -> None:
    """Spooled before the first connection (when the server's limit is not known yet), drained after."""
    port_probe = embedded.start_nats(short_tmp / "probe")
    port = int(port_probe.url.rsplit(":", 1)[1])
    port_probe.stop()
    ncfg = NatsConfig(url=f"nats://127.0.0.1:{port}", connect_timeout_s=0.3)
    registry = CollectorRegistry()
    pub = BatchPublisher(SensorConfig(spool_dir=short_tmp / "spool", batch_max_records=1000), ncfg, registry)
    await pub.start()
    records = [sensor_pb2.Record(http=http_pb2.HttpRecord(uid=f"C{i}", uri=URI)) for i in range(40)]
    await pub.add(records)
    await pub.flush()
    assert pub.spooled_batches == 1, "one 2.4 MB batch waiting"
    server = embedded.start_nats(short_tmp / "nats", port=port)
    try:
        await _wait(lambda: pub.spooled_batches == 0, limit_s=20)
        await pub.close()
        messages = await _stream_messages(server.url, ncfg)
    finally:
        server.stop()
    assert [r.http.uid for _, b in messages for r in b.records] == [f"C{i}" for i in range(40)]
    assert len(messages) > 2


async def test_spooled_batches_older_than_the_age_bound_are_dropped_and_counted(short_tmp: Path) -> None:
    ncfg = NatsConfig(url="nats://127.0.0.1:1", connect_timeout_s=0.2)
    registry = CollectorRegistry()
    scfg = SensorConfig(spool_dir=short_tmp / "spool", batch_max_records=5, spool_max_age_s=0.5)
    pub = BatchPublisher(scfg, ncfg, registry)
    await pub.start()
    await pub.add([sensor_pb2.Record(http=http_pb2.HttpRecord(uid=f"C{i}")) for i in range(10)])
    assert pub.spooled_batches == 2
    await _wait(lambda: pub.spooled_batches == 0, limit_s=5)
    assert _value(registry, "vigil_sensor_dropped_records_total", reason="spool_expired") == 10
    await pub.close(drain_timeout_s=0)


async def test_a_sensor_that_ends_with_telemetry_undelivered_exits_4(short_tmp: Path) -> None:
    capture = _long_uri_capture(short_tmp / "uris.pcap", requests=3)
    nats = {"url": "nats://127.0.0.1:1", "connect_timeout_s": 0.2}
    cfg = _sensor_config(nats, capture, short_tmp / "spool", drain_timeout_s=0.5)
    service = SensorService(cfg)
    await asyncio.wait_for(service.run(asyncio.Event()), 30)
    assert service.exit_code == Exit.UNDELIVERED
    assert list((short_tmp / "spool").glob("*.batch")), "kept for the next run"


async def test_a_replay_started_again_republishes_the_same_batches(
    nats_server: embedded.EmbeddedNats, short_tmp: Path
) -> None:
    """Same files, same sensor: same batch ids and contents, so the bus stores nothing twice."""
    capture = Path("tests/data/lab-scan.pcap")
    cfg = _sensor_config({"url": nats_server.url}, capture, short_tmp / "spool", batch_max_records=50)
    first = SensorService(cfg)
    await asyncio.wait_for(first.run(asyncio.Event()), 60)
    before = await _stream_messages(nats_server.url, cfg.nats)
    again = SensorService(cfg)
    await asyncio.wait_for(again.run(asyncio.Event()), 60)
    after = await _stream_messages(nats_server.url, cfg.nats)
    assert len(before) == len(after) == 15
    assert again.publisher.duplicate_batches == 15 and again.publisher.published_batches == 0
    assert [b.batch_id for _, b in before] == [b.batch_id for _, b in after]
