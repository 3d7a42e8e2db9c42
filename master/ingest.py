"""Telemetry in: the durable JetStream consumer and the per-batch unit of work.

Per message: bound its size, decode the Batch (garbage is terminated and counted, never fatal), skip it if
its batch id was already committed (a redelivery after a crash between commit and ack), run the pipeline
over state loaded from the store, decide actions, commit state + breaches + actions + the processed marker
in one transaction, and only then ack. If the store is down the message is nak'ed with a delay and the
consumer keeps running; it catches up when the store returns.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from master.pipeline import Pipeline
from master.policy import Policy
from master.store import ActionRecord, Commit, Store, StoreUnavailable, WorkingSet
from vigil.alert.v1 import alert_pb2
from vigil.bus import MAX_BATCH_BYTES, TELEMETRY_SUBJECTS
from vigil.log import get
from vigil.responder.v1 import responder_pb2
from vigil.sensor.v1 import sensor_pb2

log = get("master.ingest")

BREACH_SUBJECT = "vigil.v1.alerts.breach"
DEVICE_SUBJECT = "vigil.v1.alerts.device"
# A batch that keeps failing for a reason other than the store is a poison message: give up after this.
MAX_PROCESSING_ATTEMPTS = 5
UNAVAILABLE_NAK_DELAY_S = 2.0


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
            "vigil_master_breaches_total", "Model breaches.", ["model"], registry=registry
        )
        self.actions = Counter(
            "vigil_master_actions_total", "Actions decided.", ["kind", "mode"], registry=registry
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
        # Known label values start at zero so dashboards and alerts see the series before the first event.
        for reason in ("oversized", "undecodable", "missing_batch_id", "processing_error"):
            self.rejected.labels(reason=reason)
        self.devices = Gauge("vigil_master_devices", "Devices in the inventory.", registry=registry)
        self.commit_duration = Histogram(
            "vigil_master_commit_duration_seconds",
            "Time to commit one batch's state.",
            registry=registry,
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0),
        )


@dataclass
class BatchResult:
    duplicate: bool
    breaches: list[alert_pb2.ModelBreach] = field(default_factory=list)
    actions: list[ActionRecord] = field(default_factory=list)
    new_devices: list[alert_pb2.DeviceRef] = field(default_factory=list)


class BatchProcessor:
    """dedup → entities → features → models → breaches → policy → one atomic commit.

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
    ) -> None:
        self.pipeline = pipeline
        self.policy = policy
        self.store = store
        self.metrics = metrics
        self.action_clock = action_clock or (lambda _breach: time.time())

    async def process(self, batch_id: str, records: Sequence[sensor_pb2.Record]) -> BatchResult:
        if await self.store.is_processed(batch_id):
            if self.metrics:
                self.metrics.duplicates.inc()
            return BatchResult(duplicate=True)
        ex = self.pipeline.extract(records)
        ws = WorkingSet(await self.store.load(self.pipeline.address_keys(ex)))
        ws.add(await self.store.load(ws.missing(self.pipeline.state_keys(ex, ws))))
        ws.add(await self.store.load(ws.missing(self.pipeline.group_keys(ex, ws))))
        outcome = self.pipeline.run(ex, ws)
        actions: list[ActionRecord] = []
        skipped: list[str] = []
        for breach in outcome.breaches:
            decision = self.policy.decide(breach, self.action_clock(breach))
            if decision.record is not None:
                actions.append(decision.record)
            else:
                skipped.append(decision.reason)
        commit = Commit(
            batch_id, ws.writes(), outcome.new_devices, outcome.breaches, actions, due_time=time.time()
        )
        started = time.perf_counter()
        committed = await self.store.commit(commit)
        if self.metrics:
            self.metrics.commit_duration.observe(time.perf_counter() - started)
        if not committed:
            if self.metrics:
                self.metrics.duplicates.inc()
            return BatchResult(duplicate=True)
        if self.metrics:
            m = self.metrics
            m.batches.inc()
            for kind, n in outcome.kinds.items():
                m.records.labels(kind=kind).inc(n)
            for breach in outcome.breaches:
                m.breaches.labels(model=breach.model).inc()
            for record in actions:
                m.actions.labels(
                    kind=responder_pb2.ActionKind.Name(record.action.kind), mode=record.mode
                ).inc()
            for reason in skipped:
                m.actions_skipped.labels(reason=reason).inc()
            if outcome.late_records:
                m.late_records.inc(outcome.late_records)
            if outcome.new_devices:
                m.devices.set(await self.store.device_count())
        return BatchResult(False, outcome.breaches, actions, outcome.new_device_refs)


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


class Consumer:
    """Fetch → handle one message at a time (event-time order matters per device) → ack."""

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
        ack_wait_s: float = 30.0,
        on_actions: Callable[[], None] | None = None,
        on_store_health: Callable[[bool], None] | None = None,
    ) -> None:
        self.nc = nc
        self.js = js
        self.processor = processor
        self.metrics = metrics
        self.stream = stream
        self.durable = durable
        self.fetch_batch = fetch_batch
        self.ack_wait_s = ack_wait_s
        self.on_actions = on_actions or (lambda: None)
        self.on_store_health = on_store_health or (lambda _ok: None)
        self._sub: Any = None

    async def subscribe(self) -> None:
        config = consumer_config(self.durable, max(4 * self.fetch_batch, 256), self.ack_wait_s)
        self._sub = await self.js.pull_subscribe(
            TELEMETRY_SUBJECTS, durable=self.durable, stream=self.stream, config=config
        )

    def _reject(self, reason: str) -> None:
        self.metrics.rejected.labels(reason=reason).inc()
        log.warning("batch_rejected", reason=reason)

    async def handle(self, msg: Msg) -> str:
        """Handle one message; returns what happened (for logs and tests)."""
        if len(msg.data) > MAX_BATCH_BYTES:
            await msg.term()
            self._reject("oversized")
            return "rejected"
        try:
            batch = sensor_pb2.Batch.FromString(msg.data)
        except Exception:  # untrusted bytes: any decode failure is the message's fault, not ours
            await msg.term()
            self._reject("undecodable")
            return "rejected"
        if not batch.batch_id:
            await msg.term()
            self._reject("missing_batch_id")
            return "rejected"
        try:
            result = await self.processor.process(batch.batch_id, batch.records)
        except StoreUnavailable as exc:
            self.on_store_health(False)
            log.warning("store_unavailable", batch_id=batch.batch_id, error=str(exc)[:200])
            await msg.nak(delay=UNAVAILABLE_NAK_DELAY_S)
            return "unavailable"
        except Exception:
            attempts = msg.metadata.num_delivered if msg.metadata else 1
            log.exception("batch_failed", batch_id=batch.batch_id, attempts=attempts)
            if attempts >= MAX_PROCESSING_ATTEMPTS:
                await msg.term()
                self._reject("processing_error")
                return "rejected"
            await msg.nak(delay=UNAVAILABLE_NAK_DELAY_S)
            return "failed"
        self.on_store_health(True)
        await msg.ack()
        if result.duplicate:
            log.info("batch_duplicate", batch_id=batch.batch_id)
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
        if result.actions:
            self.on_actions()
        return "processed"

    async def run(self, stop: asyncio.Event) -> None:
        """Fetch and handle until ``stop``; the message in hand is finished, the rest of a fetch released."""
        if self._sub is None:
            await self.subscribe()
        while not stop.is_set():
            try:
                msgs = await self._sub.fetch(batch=self.fetch_batch, timeout=1.0)
            except NatsTimeoutError:
                continue
            except Exception as exc:
                # Disconnected, consumer recreated, server restarting: the client reconnects on its own.
                log.warning("fetch_failed", error=str(exc)[:200])
                await asyncio.sleep(0.5)
                continue
            unavailable = False
            for i, msg in enumerate(msgs):
                if stop.is_set() or unavailable:
                    # Hand the rest back now rather than after ack_wait.
                    for rest in msgs[i:]:
                        await rest.nak(delay=UNAVAILABLE_NAK_DELAY_S if unavailable else None)
                    break
                unavailable = await self.handle(msg) == "unavailable"
            if unavailable:
                await asyncio.sleep(UNAVAILABLE_NAK_DELAY_S / 2)
