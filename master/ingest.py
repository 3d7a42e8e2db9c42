"""Telemetry in: the durable JetStream consumer and its unit of work.

Per message: bound its size and decode the Batch (garbage is terminated and counted, never fatal). The
batches of one fetch are then processed in units of work: one batch when the stream is quiet, several
consecutive ones (up to ``master.unit_max_records`` records) when a backlog has built up, because the
per-device cost of a unit (load, decode, score the open windows, encode, commit) is paid once per unit
rather than once per batch. Per unit: skip the batches whose id was already committed (redeliveries after a
crash between commit and ack), run the pipeline over state loaded from the store, decide actions, commit
state + breaches + actions + the processed markers in one transaction, and only then ack. If the store is
down the messages are nak'ed with a delay and the consumer keeps running; it catches up when the store
returns. A unit that fails for another reason is split into its batches so that one poison batch cannot
hold the others back.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter as TallyCounter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from master.analyst.incidents import Analyst
from master.breaches import seconds
from master.catalog import CATALOG, SEVERITIES
from master.door import REASONS, latest_seconds
from master.gcpause import gc_pause
from master.lag import EventTimeLag
from master.pipeline import Extracted, Pipeline
from master.policy import RESPONSE_MODES, SKIP_REASONS, Policy
from master.respond import DELIVERY_OUTCOMES
from master.store import ActionRecord, Commit, Store, StoreUnavailable, WorkingSet
from vigil.action_kinds import ACTION_KIND_NAMES, action_kind_name
from vigil.alert.v1 import alert_pb2
from vigil.bus import MAX_BATCH_BYTES, TELEMETRY_SUBJECTS
from vigil.log import get
from vigil.sensor.v1 import sensor_pb2

log = get("master.ingest")

BREACH_SUBJECT = "vigil.v1.alerts.breach"
DEVICE_SUBJECT = "vigil.v1.alerts.device"
# A batch that keeps failing for a reason other than the store is a poison message: give up after this.
MAX_PROCESSING_ATTEMPTS = 5
UNAVAILABLE_NAK_DELAY_S = 2.0
# Fetches failing this many times in a row make the consumer subscribe again (it may be gone).
RESUBSCRIBE_AFTER_FAILURES = 4


class MasterMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.records = Counter(
            "vigil_master_records_total", "Telemetry records processed, by kind.", ["kind"], registry=registry
        )
        self.batches = Counter(
            "vigil_master_batches_total", "Telemetry batches committed.", registry=registry
        )
        self.duplicates = Counter(
            "vigil_master_batches_duplicate_total",
            "Redelivered batches recognised as already committed.",
            registry=registry,
        )
        self.rejected = Counter(
            "vigil_master_batches_rejected_total",
            "Telemetry messages terminated unprocessed.",
            ["reason"],
            registry=registry,
        )
        self.breaches = Counter(
            "vigil_master_breaches_total",
            "Model breaches, by the catalog's model id and the breach's severity.",
            ["model_id", "severity"],
            registry=registry,
        )
        self.actions = Counter(
            "vigil_master_actions_total",
            "Actions decided, by kind (block_port, ...) and response mode.",
            ["kind", "mode"],
            registry=registry,
        )
        self.actions_skipped = Counter(
            "vigil_master_actions_skipped_total",
            "Breaches that led to no action, by reason.",
            ["reason"],
            registry=registry,
        )
        self.deliveries = Counter(
            "vigil_master_action_deliveries_total",
            "Action delivery attempts to the responder, by outcome.",
            ["outcome"],
            registry=registry,
        )
        self.late_records = Counter(
            "vigil_master_late_records_total",
            "Flows that arrived after their window was closed.",
            registry=registry,
        )
        self.records_rejected = Counter(
            "vigil_master_records_rejected_total",
            "Records turned away at the door (out of physical range), by reason; their batches went on.",
            ["reason"],
            registry=registry,
        )
        for reason in REASONS:
            self.records_rejected.labels(reason=reason)
        # Known label values start at zero so dashboards and alerts see the series before the first event.
        for reason in ("oversized", "undecodable", "missing_batch_id", "processing_error"):
            self.rejected.labels(reason=reason)
        for model in CATALOG:
            for level in SEVERITIES:
                self.breaches.labels(model_id=model.model_id, severity=level)
        for kind in ACTION_KIND_NAMES.values():
            for mode in RESPONSE_MODES:
                self.actions.labels(kind=kind, mode=mode)
        for reason in SKIP_REASONS:
            self.actions_skipped.labels(reason=reason)
        for outcome in DELIVERY_OUTCOMES:
            self.deliveries.labels(outcome=outcome)
        self.fetch_errors = Counter(
            "vigil_master_fetch_errors_total",
            "Fetches from the JetStream consumer that failed (other than an empty wait).",
            registry=registry,
        )
        self.consumer_pending = Gauge(
            "vigil_master_consumer_pending_messages",
            "Telemetry messages in the stream not yet delivered to the master's consumer (JetStream "
            "num_pending): the backlog.",
            registry=registry,
        )
        self.consumer_ack_pending = Gauge(
            "vigil_master_consumer_ack_pending_messages",
            "Telemetry messages delivered to the master and not yet acknowledged.",
            registry=registry,
        )
        self.event_time_lag = EventTimeLag(registry)
        self.devices = Gauge("vigil_master_devices", "Devices in the inventory.", registry=registry)
        self.unit_batches = Histogram(
            "vigil_master_unit_batches",
            "Batches processed together as one unit of work (more than one when a backlog has built up).",
            registry=registry,
            buckets=(1, 2, 4, 8, 16, 32, 64, 128),
        )
        self.commit_duration = Histogram(
            "vigil_master_commit_duration_seconds",
            "Time to commit one unit of work's state.",
            registry=registry,
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0),
        )


@dataclass
class BatchResult:
    # Every batch of the unit had already been committed: nothing was done.
    duplicate: bool
    breaches: list[alert_pb2.ModelBreach] = field(default_factory=list)
    actions: list[ActionRecord] = field(default_factory=list)
    new_devices: list[alert_pb2.DeviceRef] = field(default_factory=list)
    # The batch ids skipped because they had already been committed.
    duplicates: list[str] = field(default_factory=list)
    # Records turned away at the door, by reason.
    rejected: TallyCounter[str] = field(default_factory=TallyCounter)


class Incoming(NamedTuple):
    """A batch as it reaches the processor: its id, its records, and when the sensor made it (None when
    unknown, e.g. offline: the master's clock stands in)."""

    batch_id: str
    records: Sequence[sensor_pb2.Record]
    create_time: float | None = None


def work_units(sizes: Sequence[int], max_records: int) -> list[slice]:
    """Consecutive runs of batches (given their record counts) of at most ``max_records`` records each;
    a batch larger than that on its own is a unit of its own. Order is kept: event time matters per device."""
    units: list[slice] = []
    start, total = 0, 0
    for i, n in enumerate(sizes):
        if i > start and total + n > max_records:
            units.append(slice(start, i))
            start, total = i, 0
        total += n
    if start < len(sizes):
        units.append(slice(start, len(sizes)))
    return units


class BatchProcessor:
    """dedup → the door and extraction → entities → features → models → breaches → policy → one atomic commit.

    ``action_clock`` gives the time an action starts from: wall time for the service, the breach's event
    time for offline analysis (so a replayed week proposes the same actions at the same instants).
    """

    def __init__(
        self,
        pipeline: Pipeline,
        policy: Policy,
        store: Store,
        metrics: MasterMetrics | None = None,
        action_clock: Callable[[alert_pb2.ModelBreach], float] | None = None,
        clock: Callable[[], float] = time.time,
        analyst: Analyst | None = None,
    ) -> None:
        self.pipeline = pipeline
        self.analyst = analyst
        self.policy = policy
        self.store = store
        self.metrics = metrics
        self.action_clock = action_clock or (lambda _breach: time.time())
        self.clock = clock

    async def process(self, batch_id: str, records: Sequence[sensor_pb2.Record]) -> BatchResult:
        return await self.process_unit([(batch_id, records)])

    async def process_unit(
        self, units: Sequence[Incoming | tuple[str, Sequence[sensor_pb2.Record]]]
    ) -> BatchResult:
        """Process consecutive batches as one unit of work, committed atomically with their markers."""
        batches = [Incoming(*b) for b in units]
        skipped: list[str] = []
        # Each pass either commits or finds that another consumer committed one of these batches meanwhile
        # (nothing of ours was written then): start again without it. The bound is for safety only.
        for _ in range(len(batches) + 1):
            done = await self.store.processed([b.batch_id for b in batches])
            if done:
                skipped += [b.batch_id for b in batches if b.batch_id in done]
                batches = [b for b in batches if b.batch_id not in done]
                if self.metrics:
                    self.metrics.duplicates.inc(len(done))
            if not batches:
                return BatchResult(duplicate=True, duplicates=skipped)
            # One pause for the whole unit: the collector would otherwise walk the unit's extracted
            # records and working set between its steps (master/gcpause.py).
            with gc_pause():
                result = await self._attempt(batches)
            if result is not None:
                result.duplicates = skipped
                return result
        raise RuntimeError("the unit's batches kept being committed concurrently")

    async def _attempt(self, batches: Sequence[Incoming]) -> BatchResult | None:
        now = self.clock()
        # Batch by batch: each has its own time to vouch for its records, and its own median (the door).
        door = self.pipeline.door
        parts = [self.pipeline.extract(b.records, latest_seconds(b.create_time, now, door)) for b in batches]
        if len(parts) == 1:
            ex = parts[0]
        else:
            ex = Extracted()
            for part in parts:
                ex.merge(part)
        rejected = ex.rejected
        ws = WorkingSet(await self.store.load(self.pipeline.address_keys(ex)))
        ws.add(await self.store.load(ws.missing(self.pipeline.state_keys(ex, ws))))
        ws.add(await self.store.load(ws.missing(self.pipeline.group_keys(ex, ws))))
        clock = self.pipeline.event_clock(ws, [part.times for part in parts])
        outcome = self.pipeline.run(ex, ws, clock)
        incidents: dict[str, float] = {}
        merged: tuple[str, ...] = ()
        if self.analyst is not None and outcome.breaches:
            incidents, merged = await self._incidents(ws, outcome.breaches)
        actions: list[ActionRecord] = []
        skipped: list[str] = []
        for breach in outcome.breaches:
            decision = self.policy.decide(breach, self.action_clock(breach))
            if decision.record is not None:
                actions.append(decision.record)
            else:
                skipped.append(decision.reason)
        commit = Commit(
            tuple(b.batch_id for b in batches),
            ws.writes(),
            outcome.new_devices,
            outcome.breaches,
            actions,
            due_time=time.time(),
            incidents=incidents,
            merged_incidents=merged,
        )
        started = time.perf_counter()
        committed = await self.store.commit(commit)
        if self.metrics:
            self.metrics.commit_duration.observe(time.perf_counter() - started)
        if not committed:
            return None
        if self.metrics:
            m = self.metrics
            m.batches.inc(len(batches))
            m.unit_batches.observe(len(batches))
            for kind, n in outcome.kinds.items():
                m.records.labels(kind=kind).inc(n)
            for breach in outcome.breaches:
                m.breaches.labels(model_id=breach.model_id, severity=breach.severity).inc()
            for record in actions:
                m.actions.labels(kind=action_kind_name(record.action.kind), mode=record.mode).inc()
            m.event_time_lag.saw(part.times[-1] for part in parts if part.times)
            for reason in skipped:
                m.actions_skipped.labels(reason=reason).inc()
            if outcome.late_records:
                m.late_records.inc(outcome.late_records)
            for reason, n in rejected.items():
                m.records_rejected.labels(reason=reason).inc(n)
            if outcome.new_devices:
                m.devices.set(await self.store.device_count())
        if rejected:
            log.warning("records_rejected", batch_ids=[b.batch_id for b in batches][:8], **dict(rejected))
        return BatchResult(False, outcome.breaches, actions, outcome.new_device_refs, rejected=rejected)

    async def _incidents(
        self, ws: WorkingSet, breaches: Sequence[alert_pb2.ModelBreach]
    ) -> tuple[dict[str, float], tuple[str, ...]]:
        """The unit's breaches join incidents, written to the same working set (committed with them)."""
        analyst = self.analyst
        assert analyst is not None
        ws.add(await self.store.load(ws.missing(analyst.link_keys(breaches))))
        wanted = ws.missing(analyst.incident_keys(ws, breaches))
        # Links may point to incidents merged since: follow the merges (each hop one load, bounded).
        for _ in range(4):
            if not wanted:
                break
            ws.add(await self.store.load(wanted))
            wanted = analyst.merge_keys(ws, wanted)
        changes = analyst.take(ws, breaches)
        return changes.touched, tuple(sorted(changes.merged))


def consumer_config(durable: str, max_ack_pending: int, ack_wait_s: float) -> ConsumerConfig:
    return ConsumerConfig(
        durable_name=durable,
        ack_policy=AckPolicy.EXPLICIT,
        deliver_policy=DeliverPolicy.ALL,
        # Bounded in-flight work: JetStream stops handing out messages while this many are unacked.
        max_ack_pending=max_ack_pending,
        # Long enough for a slow commit; short enough that a dead master's batches move on quickly.
        ack_wait=ack_wait_s,
        # Unlimited: a store outage naks the same batch many times and it must never be dropped for that.
        max_deliver=-1,
        filter_subject=TELEMETRY_SUBJECTS,
    )


Unit = list[tuple[Msg, sensor_pb2.Batch]]


class Consumer:
    """Fetch → decode → handle in units of consecutive batches (event-time order matters per device) → ack."""

    def __init__(
        self,
        nc: NatsClient,
        js: JetStreamContext,
        processor: BatchProcessor,
        metrics: MasterMetrics,
        *,
        stream: str,
        durable: str,
        fetch_batch: int,
        unit_max_records: int = 65536,
        ack_wait_s: float = 30.0,
        on_actions: Callable[[], None] | None = None,
        on_store_health: Callable[[bool], None] | None = None,
        on_breaches: Callable[[list[alert_pb2.ModelBreach]], None] | None = None,
    ) -> None:
        self.nc = nc
        self.js = js
        self.processor = processor
        self.metrics = metrics
        self.stream = stream
        self.durable = durable
        self.fetch_batch = fetch_batch
        self.unit_max_records = unit_max_records
        self.ack_wait_s = ack_wait_s
        self.on_actions = on_actions or (lambda: None)
        self.on_store_health = on_store_health or (lambda _ok: None)
        # The exports (master/exports): handed the committed breaches; must not block (it queues).
        self.on_breaches = on_breaches or (lambda _breaches: None)
        self._sub: Any = None

    async def subscribe(self) -> None:
        config = consumer_config(self.durable, max(4 * self.fetch_batch, 256), self.ack_wait_s)
        self._sub = await self.js.pull_subscribe(
            TELEMETRY_SUBJECTS, durable=self.durable, stream=self.stream, config=config
        )

    async def record_backlog(self) -> None:
        """The consumer's backlog from JetStream (num_pending, num_ack_pending) into the gauges."""
        info = await self.js.consumer_info(self.stream, self.durable)
        self.metrics.consumer_pending.set(info.num_pending or 0)
        self.metrics.consumer_ack_pending.set(info.num_ack_pending or 0)

    async def _resubscribe(self) -> None:
        """Make the durable consumer again: it may have been deleted, or its stream recreated, and fetching
        from a consumer that is gone fails for ever. A failure here is retried after the next failures."""
        with contextlib.suppress(Exception):
            await self._sub.unsubscribe()
        try:
            await self.subscribe()
            log.warning("consumer_resubscribed", durable=self.durable)
        except Exception as exc:
            error = str(exc)[:200] or repr(exc)
            log.warning("resubscribe_failed", error_type=type(exc).__name__, error=error)

    def _reject(self, reason: str) -> None:
        self.metrics.rejected.labels(reason=reason).inc()
        log.warning("batch_rejected", reason=reason)

    async def decode(self, msg: Msg) -> sensor_pb2.Batch | None:
        """The message's batch, or None once a message that cannot be one has been terminated and counted."""
        if len(msg.data) > MAX_BATCH_BYTES:
            await msg.term()
            self._reject("oversized")
            return None
        try:
            batch = sensor_pb2.Batch.FromString(msg.data)
        except Exception:  # untrusted bytes: any decode failure is the message's fault, not ours
            await msg.term()
            self._reject("undecodable")
            return None
        if not batch.batch_id:
            await msg.term()
            self._reject("missing_batch_id")
            return None
        return batch

    async def handle_unit(self, unit: Unit) -> str:
        """Process decoded messages as one unit of work, then ack them all; returns what happened (for logs
        and tests)."""
        ids = [batch.batch_id for _, batch in unit]
        try:
            result = await self.processor.process_unit(
                [
                    Incoming(
                        batch.batch_id,
                        batch.records,
                        seconds(batch.create_time) if batch.HasField("create_time") else None,
                    )
                    for _, batch in unit
                ]
            )
        except StoreUnavailable as exc:
            self.on_store_health(False)
            log.warning("store_unavailable", batch_ids=ids[:8], batches=len(ids), error=str(exc)[:200])
            for msg, _ in unit:
                await msg.nak(delay=UNAVAILABLE_NAK_DELAY_S)
            return "unavailable"
        except Exception:
            if len(unit) > 1:
                # One bad batch must not hold the others back: take them one at a time to find it.
                log.warning("unit_failed_splitting", batch_ids=ids[:8], batches=len(ids))
                for k in range(len(unit)):
                    if await self.handle_unit(unit[k : k + 1]) == "unavailable":
                        for msg, _ in unit[k + 1 :]:
                            await msg.nak(delay=UNAVAILABLE_NAK_DELAY_S)
                        return "unavailable"
                return "processed"
            msg = unit[0][0]
            attempts = msg.metadata.num_delivered if msg.metadata else 1
            log.exception("batch_failed", batch_id=ids[0], attempts=attempts)
            if attempts >= MAX_PROCESSING_ATTEMPTS:
                await msg.term()
                self._reject("processing_error")
                return "rejected"
            await msg.nak(delay=UNAVAILABLE_NAK_DELAY_S)
            return "failed"
        self.on_store_health(True)
        for msg, _ in unit:
            await msg.ack()
        for batch_id in result.duplicates:
            log.info("batch_duplicate", batch_id=batch_id)
        if result.duplicate:
            return "duplicate"
        for breach in result.breaches:
            log.info(
                "breach",
                breach_id=breach.breach_id,
                model=breach.model,
                device_id=breach.device.device_id,
                score=breach.score,
                explanation=breach.explanation,
            )
        # Live view only (plain NATS, best effort): the durable record is the one committed to Redis.
        live = [(DEVICE_SUBJECT, d.SerializeToString()) for d in result.new_devices]
        live += [(BREACH_SUBJECT, b.SerializeToString()) for b in result.breaches]
        for subject, payload in live:
            try:
                await self.nc.publish(subject, payload)
            except Exception as exc:
                log.warning("live_publish_failed", subject=subject, error=str(exc)[:200])
        if result.breaches:
            try:
                self.on_breaches(result.breaches)
            except Exception:
                log.exception("export_submit_failed")
        if result.actions:
            self.on_actions()
        return "processed"

    async def run(self, stop: asyncio.Event) -> None:
        """Fetch and handle until ``stop``; the unit in hand is finished, the rest of a fetch released."""
        if self._sub is None:
            await self.subscribe()
        failures = 0
        while not stop.is_set():
            try:
                msgs = await self._sub.fetch(batch=self.fetch_batch, timeout=1.0)
            except NatsTimeoutError:
                failures = 0
                continue
            except Exception as exc:
                # Disconnected, server restarting: the client reconnects on its own. The type always, and
                # the repr when the text is empty (a bare timeout or cancellation has none).
                failures += 1
                self.metrics.fetch_errors.inc()
                log.warning(
                    "fetch_failed",
                    error_type=type(exc).__name__,
                    error=str(exc)[:200] or repr(exc)[:200],
                    consecutive=failures,
                )
                await asyncio.sleep(0.5)
                if failures % RESUBSCRIBE_AFTER_FAILURES == 0:
                    await self._resubscribe()
                continue
            failures = 0
            # fetch() returns whatever is waiting (up to fetch_batch) without lingering: one message when
            # the stream is quiet, many when the master is behind.
            decoded: Unit = []
            for msg in msgs:
                batch = await self.decode(msg)
                if batch is not None:
                    decoded.append((msg, batch))
            units = [
                decoded[part]
                for part in work_units([len(b.records) for _, b in decoded], self.unit_max_records)
            ]
            unavailable = False
            for i, unit in enumerate(units):
                if stop.is_set() or unavailable:
                    # Hand the rest back now rather than after ack_wait.
                    for rest in units[i:]:
                        for msg, _ in rest:
                            await msg.nak(delay=UNAVAILABLE_NAK_DELAY_S if unavailable else None)
                    break
                unavailable = await self.handle_unit(unit) == "unavailable"
            if unavailable:
                await asyncio.sleep(UNAVAILABLE_NAK_DELAY_S / 2)
