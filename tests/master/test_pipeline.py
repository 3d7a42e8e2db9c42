"""The per-batch path (entities, features, models, breaches, policy, commit) on both stores."""

from __future__ import annotations

from master.entities import device_id_for
from master.ingest import BatchProcessor, work_units
from master.models.counts import CountParams
from master.pipeline import Pipeline
from master.policy import Policy
from master.store import Store
from tests.master.traffic import CS, T0, batches, flow, ip, office, scan
from vigil.flow.v1 import dhcp_pb2
from vigil.responder.v1 import responder_pb2
from vigil.sensor.v1 import sensor_pb2

INTERNAL = ["10.0.0.0/8"]


def _processor(store: Store, **policy: object) -> BatchProcessor:
    options: dict[str, object] = {
        "mode": "autonomous",
        "action_min_score": 60,
        "block_duration_s": 600.0,
        "max_actions_per_minute": 10,
        "protected_networks": [],
        "internal_networks": INTERNAL,
        "narrow_scope": True,  # as master.scan_response's default (block_internal) builds it
    }
    options.update(policy)
    return BatchProcessor(
        Pipeline(CountParams(), INTERNAL, store.keys),
        Policy(**options),  # type: ignore[arg-type]
        store,
        action_clock=lambda b: b.time.ToNanoseconds() / 1e9,
    )


async def _run(processor: BatchProcessor, records: list, prefix: str) -> list:  # type: ignore[type-arg]
    out = []
    for batch in batches(records, 300, prefix):
        result = await processor.process(batch.batch_id, batch.records)
        assert not result.duplicate
        out.append(result)
    return out


def _scan_phase() -> list:  # type: ignore[type-arg]
    start = T0 + 120 * 60
    records = list(office(start, 3, seed=9)) + scan(start + 5, "10.0.1.5")
    return sorted(records, key=lambda r: r.flow.start_time.ToNanoseconds())


async def test_baseline_then_scan_breaches_once_with_an_action(store: Store) -> None:
    processor = _processor(store)
    await _run(processor, list(office(T0, 120)), "base")
    results = await _run(processor, _scan_phase(), "scan")
    breaches = [b for r in results for b in r.breaches]
    scanner = [b for b in breaches if b.device.ip == "10.0.1.5"]
    scans = [b for b in scanner if b.model == "Device / Network Scan"]
    assert len(scans) == 1, [b.explanation for b in breaches]
    # The same scan also reads as a range sweep of SMB ports; each model breaches at most once.
    models = [b.model for b in scanner]
    assert len(models) == len(set(models))
    assert {"Device / Suspicious SMB Scanning Activity", "Device / Network Range Scan"} <= set(models)
    breach = scans[0]
    assert breach.model == "Device / Network Scan"
    assert breach.score >= 90
    assert list(breach.mitre_techniques) == ["T1046"]
    assert breach.device.device_id.startswith("dev-")
    dest = {e.feature: e for e in breach.evidence}
    assert dest["distinct_internal_destinations"].observed >= 200
    assert dest["distinct_internal_destinations"].expected < 6
    assert dest["failed_connections"].observed == 200
    assert 0 < len(dest["distinct_internal_destinations"].examples) <= 5
    assert "10.0.1.5 contacted" in breach.explanation and "failed connections" in breach.explanation
    actions = [a for r in results for a in r.actions]
    assert [a.action.target_ip for a in actions] == ["10.0.1.5"]
    action = actions[0].action
    # Cut off from the internal networks only (master.scan_response: block_internal).
    assert action.kind == responder_pb2.ACTION_KIND_BLOCK_CONNECTION
    assert [s.peer_ip for s in action.scopes] == ["10.0.0.0/8"]
    assert action.breach_id == breach.breach_id
    assert action.expire_time.ToSeconds() - action.create_time.ToSeconds() == 600
    assert actions[0].state == "pending"
    stored = await store.breaches()
    assert breach.breach_id in {b.breach_id for b in stored}
    # No benign device crossed the bar for action.
    assert all(b.score < 60 for b in breaches if b.device.ip != "10.0.1.5")


async def test_scan_spanning_batches_breaches_once_per_window(store: Store) -> None:
    processor = _processor(store)
    await _run(processor, list(office(T0, 60)), "base")
    start = T0 + 60 * 60 + 1
    records = scan(start, "10.0.1.7", targets=240, seconds=20)
    results = await _run(processor, records[:60], "s1") + await _run(processor, records[60:], "s2")
    # The breach fires while the window is still open (first batches), and only once.
    breaches = [b for r in results for b in r.breaches if b.device.ip == "10.0.1.7"]
    assert [b.model for b in breaches].count("Device / Network Scan") == 1
    assert len({b.model for b in breaches}) == len(breaches)
    assert results[0].breaches, "caught while happening"


async def test_redelivered_batch_changes_nothing(store: Store) -> None:
    processor = _processor(store)
    records = [flow(T0 + i, "10.0.1.1", "10.0.0.2") for i in range(10)]
    batch = batches(records, 10, "only")[0]
    assert not (await processor.process(batch.batch_id, batch.records)).duplicate
    device_id = device_id_for("ip", "10.0.1.1")
    before = await store.load([store.keys.device(device_id)])
    assert (await processor.process(batch.batch_id, batch.records)).duplicate
    assert await store.load([store.keys.device(device_id)]) == before
    doc = before[store.keys.device(device_id)]
    assert doc is not None and doc["flows"] == 10


async def test_backlog_in_units_catches_the_scan_like_batch_by_batch(store: Store) -> None:
    """The consumer's backlog mode: consecutive batches as units of work. The same scan is caught once,
    with its action, and every record is counted once."""
    processor = _processor(store)
    todo = batches(list(office(T0, 120)), 300, "base") + batches(_scan_phase(), 300, "scan")
    results = []
    for part in work_units([len(b.records) for b in todo], 3000):
        unit = todo[part]
        assert len(unit) > 1 or part.stop == len(todo)
        results.append(await processor.process_unit([(b.batch_id, b.records) for b in unit]))
    breaches = [b for r in results for b in r.breaches]
    scans = [b for b in breaches if b.device.ip == "10.0.1.5" and b.model == "Device / Network Scan"]
    assert len(scans) == 1, [b.explanation for b in breaches]
    assert [a.action.target_ip for r in results for a in r.actions] == ["10.0.1.5"]
    assert await store.processed([b.batch_id for b in todo]) == {b.batch_id for b in todo}


async def test_unit_with_a_redelivered_batch_processes_only_the_new_one(store: Store) -> None:
    processor = _processor(store)
    first, second = batches([flow(T0 + i, "10.0.1.1", "10.0.0.2") for i in range(20)], 10, "u")
    assert not (await processor.process(first.batch_id, first.records)).duplicate
    result = await processor.process_unit(
        [(first.batch_id, first.records), (second.batch_id, second.records)]
    )
    assert not result.duplicate and result.duplicates == [first.batch_id]
    device_id = device_id_for("ip", "10.0.1.1")
    doc = (await store.load([store.keys.device(device_id)]))[store.keys.device(device_id)]
    assert doc is not None and doc["flows"] == 20


def test_work_units_keep_order_and_bound_records() -> None:
    assert work_units([], 10) == []
    assert work_units([4, 4, 4, 12, 1], 10) == [slice(0, 2), slice(2, 3), slice(3, 4), slice(4, 5)]
    assert work_units([5, 5, 5], 10) == [slice(0, 2), slice(2, 3)]
    sizes = [3, 7, 1, 9, 2, 2, 2, 20, 4]
    units = work_units(sizes, 10)
    assert [i for u in units for i in range(len(sizes))[u]] == list(range(len(sizes)))
    assert all(sum(sizes[u]) <= 10 or u.stop - u.start == 1 for u in units)


async def test_protected_and_rate_limited_devices_are_not_acted_on(store: Store) -> None:
    processor = _processor(store, protected_networks=["10.0.1.5/32"], max_actions_per_minute=1)
    await _run(processor, list(office(T0, 30)), "base")
    start = T0 + 30 * 60 + 1
    records = scan(start, "10.0.1.5") + scan(start, "10.0.1.6") + scan(start, "10.0.1.7")
    results = await _run(processor, sorted(records, key=lambda r: r.flow.start_time.ToNanoseconds()), "scan")
    breaches = {b.device.ip for r in results for b in r.breaches}
    assert {"10.0.1.5", "10.0.1.6", "10.0.1.7"} <= breaches
    targets = [a.action.target_ip for r in results for a in r.actions]
    assert "10.0.1.5" not in targets
    assert len(targets) == 1


async def test_responder_reset_and_answering_hosts_become_devices(store: Store) -> None:
    processor = _processor(store)
    records = [
        flow(T0, "10.0.1.1", "10.0.0.2"),  # answered: 10.0.0.2 exists
        flow(T0 + 1, "10.0.1.1", "10.0.9.9", state=CS.CONN_STATE_S0),  # nobody there: no phantom device
    ]
    result = await processor.process("b", records)
    assert not result.duplicate
    assert await store.device_count() == 2


async def test_dhcp_moves_an_address_to_its_macs_device_within_a_batch(store: Store) -> None:
    processor = _processor(store)
    laptop_mac = bytes.fromhex("02aabbccdd01")

    def dhcp(t: float, addr: str) -> sensor_pb2.Record:
        rec = dhcp_pb2.DhcpRecord(mac=laptop_mac, host_name="laptop-7", assigned_addr=ip(addr))
        rec.time.FromNanoseconds(int(t * 1e9))
        return sensor_pb2.Record(dhcp=rec)

    first = [dhcp(T0, "10.0.1.50"), flow(T0 + 1, "10.0.1.50", "10.0.0.2")]
    assert not (await processor.process("d1", first)).duplicate
    # Renumbered: the same laptop now holds .51; its flows must land on the same device and model.
    second = [dhcp(T0 + 100, "10.0.1.51"), flow(T0 + 101, "10.0.1.51", "10.0.0.2")]
    assert not (await processor.process("d2", second)).duplicate
    device_id = device_id_for("mac", "02:aa:bb:cc:dd:01")
    doc = (await store.load([store.keys.device(device_id)]))[store.keys.device(device_id)]
    assert doc is not None
    assert doc["hostname"] == "laptop-7"
    assert set(doc["ips"]) == {"10.0.1.50", "10.0.1.51"}
    assert doc["flows"] == 2
    assert (await store.load([store.keys.count_windows(device_id)]))[store.keys.count_windows(device_id)]
