"""The master's door: absurd records are dropped alone and counted, and forged times age nothing.

The end-to-end test replays the shipped lab capture through a real nats-server into a real master on real
Valkey twice, once clean and once with hostile records mixed into its batches, and compares what the master
concluded.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import nats
import pytest
import redis.asyncio as aioredis
from prometheus_client import CollectorRegistry

from master.door import REASONS, advance_clock, latest_seconds
from master.pipeline import Extracted
from master.service import MasterService, build_pipeline
from master.store import Keys, RedisStore
from sensor.logwriter import pipeline_records
from tests.master.traffic import T0, flow, ip
from vigil import config, embedded
from vigil.bus import ensure_stream, telemetry_subject
from vigil.flow.v1 import dns_pb2, http_pb2
from vigil.sensor.v1 import sensor_pb2

pytestmark = pytest.mark.timeout(180)
LAB = Path("tests/data/lab-scan.pcap")
SCANNER = "10.231.1.12"
NOW = T0 + 3600.0
YEAR_1 = -62_135_596_800  # 0001-01-01T00:00:00Z
PAST_9999 = 253_402_300_800 + 86_400  # 10000-01-02


def _flow(t: float = T0, **changes: object) -> sensor_pb2.Record:
    record = flow(t, SCANNER, "10.231.2.1", 445)
    for name, value in changes.items():
        target: object = record.flow
        *path, last = name.split("__")
        for part in path:
            target = getattr(target, part)
        setattr(target, last, value)
    return record


def _at(record: sensor_pb2.Record, seconds: int) -> sensor_pb2.Record:
    record.flow.start_time.seconds = seconds
    record.flow.ClearField("end_time")
    return record


def _hostile() -> dict[str, sensor_pb2.Record]:
    """One record per reason the door knows (each otherwise well-formed), keyed by the reason it earns."""
    # Application records from an internal device (the master reads no other).
    dns_unset = sensor_pb2.Record(dns=dns_pb2.DnsRecord(uid="Cx", query="a.example"))
    dns_unset.orig.ip = ip(SCANNER)
    http_port = sensor_pb2.Record(http=http_pb2.HttpRecord(uid="Cy", uri="/"))
    http_port.http.time.FromSeconds(int(T0))
    http_port.orig.ip = ip(SCANNER)
    http_port.resp.ip = ip("93.184.216.34")
    http_port.resp.port = 99_999
    short_ip = _flow()
    short_ip.flow.orig.ip = b"\x0a\x00\x01"
    return {
        "no_kind": sensor_pb2.Record(),
        "time_unset": dns_unset,
        "time_before_floor": _at(_flow(), YEAR_1),
        "time_in_future": _at(_flow(), PAST_9999),
        "port_out_of_range": http_port,
        "bad_address": short_ip,
        "bad_mac": _flow(orig__mac=b"\x02\x00\x00\x00\x01"),
        "ip_proto_out_of_range": _flow(ip_proto=300),
        "size_out_of_range": _flow(orig_bytes=2**60),
    }


def _door(records: list[sensor_pb2.Record], create_time: float = NOW, now: float = NOW) -> Extracted:
    """The records through the master's door, as the processor sends one batch through it."""
    pipeline = build_pipeline(config.MasterConfig(), Keys())
    return pipeline.extract(records, latest_seconds(create_time, now, pipeline.door))


def _let_in(ex: Extracted) -> list[str]:
    return [f.uid for f in ex.flows]


def test_every_reason_has_a_record_that_earns_it() -> None:
    hostile = _hostile()
    assert set(hostile) | {"time_outlier"} == set(REASONS)
    for reason, record in hostile.items():
        assert _door([record]).rejected == {reason: 1}, reason
    assert _door([_flow()]).rejected == {}


def test_a_forged_record_is_dropped_alone_never_its_batch() -> None:
    good = [_flow(T0 + i) for i in range(20)]
    bad = _hostile()
    out = _door([*good[:10], *bad.values(), *good[10:]])
    assert _let_in(out) == [r.flow.uid for r in good]
    assert out.rejected == dict.fromkeys(bad, 1)


def test_records_far_before_their_batch_are_outliers() -> None:
    """Valid on their own (after 1990), but nothing a sensor emits together lies years apart."""
    batch = [_flow(T0 + i) for i in range(9)] + [_at(_flow(), int(T0) - 3 * 365 * 86_400)]
    out = _door(batch)
    assert out.rejected == {"time_outlier": 1} and len(out.flows) == 9 and len(out.times) == 9


def test_the_batch_time_is_the_senders_but_never_past_the_masters_clock() -> None:
    """Skew 300 s: a record may be 300 s past its batch, the batch 300 s past the master's clock."""
    ahead = _at(_flow(), int(NOW) + 500)
    assert _door([ahead], create_time=NOW + 250).rejected == {}
    assert _door([ahead], create_time=NOW).rejected == {"time_in_future": 1}
    year = _at(_flow(), int(NOW) + 365 * 86_400)
    assert _door([year], create_time=NOW + 365 * 86_400).rejected == {"time_in_future": 1}


def test_one_forged_time_moves_the_clock_one_step_at_most() -> None:
    step = 3600.0
    day = [T0 + i * 10.0 for i in range(300)]  # 50 minutes of traffic in one batch
    clean = advance_clock(None, 0.0, [day], step)
    assert clean.first == T0 and clean.end_clock == day[-1]
    assert clean.learned(day[-1]) == pytest.approx(day[-1] - T0), "ordinary traffic: newest minus first"
    forged = advance_clock(None, 0.0, [[*day, T0 + 2000 * 365 * 86_400.0]], step)
    assert forged.first == T0 and forged.end_clock == pytest.approx(day[150] + step)
    assert forged.end_learned <= clean.end_learned + step
    assert forged.ceiling(T0 + 2000 * 365 * 86_400.0) == forged.end_clock, "a device's watermark waits"
    # A later batch agreeing on a new time (a capture resumed a year later) moves the clock there at once,
    # but counts one step of learning, not a year.
    year_later = [T0 + 365 * 86_400.0 + i for i in range(100)]
    resumed = advance_clock(clean.end_clock, clean.end_learned, [year_later], step)
    assert resumed.end_clock == pytest.approx(year_later[-1])
    assert resumed.end_learned == pytest.approx(clean.end_learned + step)


# -- end to end -----------------------------------------------------------------------------------------


async def _until(check: Callable[[], object], timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not await check():  # type: ignore[misc]
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.05)


async def _master_on(
    tmp: Path, batches: list[sensor_pb2.Batch]
) -> tuple[list[tuple[str, str, int, int]], CollectorRegistry, dict[str, Any]]:
    """Publish ``batches`` through a real nats-server, let a real master on real Valkey take them all;
    returns its breaches (model, device, score, time), its metrics and the network's document."""
    nats_srv = embedded.start_nats(tmp / "nats")
    redis_srv = embedded.start_redis(tmp / "redis")
    try:
        cfg = config.build(
            {
                "nats": {"url": nats_srv.url},
                "redis": {"url": redis_srv.url},
                "master": {"responder_address": None, "response_mode": "observe"},
            },
            environ={},
        )
        nc = await nats.connect(nats_srv.url)
        js = nc.jetstream()
        await ensure_stream(js, cfg.nats)
        subject = telemetry_subject("lab", "s1")
        for batch in batches:
            await js.publish(subject, batch.SerializeToString(), headers={"Nats-Msg-Id": batch.batch_id})
        await nc.close()
        registry = CollectorRegistry()
        stop = asyncio.Event()
        task = asyncio.create_task(MasterService(cfg, registry).run(stop))
        store = RedisStore(redis_srv.url)
        raw = aioredis.Redis.from_url(redis_srv.url)
        try:

            async def all_committed() -> bool:
                return (await store.totals())["batches"] == len(batches)

            await _until(all_committed)
            breaches = await store.breaches(limit=1000)
            network = await store.load([store.keys.network])
        finally:
            stop.set()
            await asyncio.wait_for(task, 20)
            await store.close()
            await raw.aclose()
    finally:
        nats_srv.stop()
        redis_srv.stop()
    found = sorted((b.model, b.device.ip, b.score, b.time.seconds) for b in breaches)
    return found, registry, dict(network[store.keys.network] or {})


def _batches(records: list[sensor_pb2.Record], size: int, prefix: str) -> list[sensor_pb2.Batch]:
    out = []
    for i in range(0, len(records), size):
        batch = sensor_pb2.Batch(
            sensor_id="s1", site="lab", batch_id=f"{prefix}-{i // size}", sequence=i // size + 1
        )
        batch.create_time.FromSeconds(int(time.time()))
        batch.records.extend(records[i : i + size])
        out.append(batch)
    return out


async def test_hostile_records_through_the_bus_leave_the_masters_conclusions_unchanged(
    short_tmp: Path,
) -> None:
    records = list(pipeline_records(config.SensorConfig(), [LAB], seed=11))
    clean, _, clean_network = await _master_on(short_tmp / "clean", _batches(records, 100, "lab"))
    assert any(model == "Device / Network Scan" and ip == SCANNER for model, ip, _, _ in clean)

    hostile = list(_hostile().items())
    # An old but physically possible time for a device the capture knows: only its batch can tell.
    first_flow = next(r.flow for r in records if r.WhichOneof("kind") == "flow")
    old = _at(_flow(), int(first_flow.start_time.seconds) - 3 * 365 * 86_400)
    hostile.append(("time_outlier", old))
    # The same records, every batch carrying hostile ones among its valid ones.
    mixed: list[sensor_pb2.Record] = []
    for i in range(0, len(records), 100):
        mixed += records[i : i + 50] + [r for _, r in hostile] + records[i + 50 : i + 100]
    batches = _batches(mixed, 100 + len(hostile), "lab")
    seen, registry, network = await _master_on(short_tmp / "hostile", batches)

    assert seen == clean, "the same breaches, scores and times as without the hostile records"
    per_reason = {
        reason: registry.get_sample_value("vigil_master_records_rejected_total", {"reason": reason})
        for reason, _ in hostile
    }
    assert per_reason == {reason: float(len(batches)) for reason, _ in hostile}
    assert registry.get_sample_value("vigil_master_batches_total") == len(batches), "no batch lost"
    for key in ("clock", "learned_s", "first_seen"):
        assert network[key] == clean_network[key], key
    assert float(network["learned_s"]) < 3600, (
        "a three-minute capture is three minutes learned, not 2000 years"
    )
