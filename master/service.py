"""The master as a service: wiring of config → store, pipeline, policy, consumer, dispatcher, health.

``serve(cfg)`` is what ``vigil master`` and ``vigil up`` call. On SIGTERM (via ``run_service``) the master
reports not-ready, stops fetching, finishes the batch in hand, releases the rest, and exits; anything not
acked is redelivered to whichever master runs next.
"""

from __future__ import annotations

import asyncio
import contextlib

from nats.aio.msg import Msg
from prometheus_client import CollectorRegistry

from master.analyst.incidents import Analyst
from master.door import DoorLimits
from master.exports import Exporters
from master.ingest import BatchProcessor, Consumer, MasterMetrics
from master.lag import HeartbeatAges
from master.models.counts import CountParams
from master.pipeline import Pipeline
from master.policy import Policy
from master.respond import Dispatcher, ResponderLink
from master.store import LAYOUT_VERSION, Keys, RedisStore, Store, StoreUnavailable
from responder.client import ResponderClient
from vigil.bus import HEARTBEAT_PREFIX, connect, ensure_stream
from vigil.config import MasterConfig, VigilConfig
from vigil.health import HealthState
from vigil.log import get
from vigil.metrics import service_metrics
from vigil.service import run_service

log = get("master")

_STORE_PROBE_INTERVAL_S = 2.0
_BACKLOG_INTERVAL_S = 2.0
# A sensor id in a metric label is cut to this many characters (it comes from a subject on the bus).
_MAX_SENSOR_LABEL = 64
# Apply is a local bookkeeping call on the responder; a slow one is a failure to retry, not to wait for.
_RESPONDER_TIMEOUT_S = 3.0


def scan_params(cfg: MasterConfig) -> CountParams:
    return CountParams(
        window_s=cfg.window_s,
        breach_probability=cfg.breach_probability,
        half_life_s=cfg.half_life_s,
        new_device_grace_s=cfg.new_device_grace_s,
        timezone=cfg.timezone,
    )


def door_limits(cfg: MasterConfig) -> DoorLimits:
    return DoorLimits(
        min_event_time=cfg.min_event_time.timestamp(),
        max_clock_skew_s=cfg.max_clock_skew_s,
        max_batch_span_s=cfg.max_batch_span_s,
        max_event_step_s=cfg.max_event_step_s,
    )


def build_pipeline(cfg: MasterConfig, keys: Keys) -> Pipeline:
    return Pipeline(scan_params(cfg), cfg.internal_networks, keys, door=door_limits(cfg))


def build_analyst(cfg: MasterConfig, keys: Keys) -> Analyst:
    return Analyst(keys, cfg.internal_networks, cfg.incident_gap_s)


def build_policy(cfg: MasterConfig) -> Policy:
    return Policy(
        mode=cfg.response_mode,
        action_min_score=cfg.action_min_score,
        block_duration_s=cfg.block_duration_s,
        max_actions_per_minute=cfg.max_actions_per_minute,
        protected_networks=cfg.protected.networks,
        internal_networks=cfg.internal_networks,
        narrow_scope=cfg.scan_response == "block_internal",
    )


class MasterService:
    name = "master"

    def __init__(
        self,
        cfg: VigilConfig,
        registry: CollectorRegistry | None = None,
        store: Store | None = None,
        responder: ResponderLink | None = None,
        ack_wait_s: float | None = None,
    ) -> None:
        self.cfg = cfg
        self.ack_wait_s = ack_wait_s if ack_wait_s is not None else cfg.master.ack_wait_s
        self.registry = registry or CollectorRegistry()
        self.health = HealthState()
        self.metrics = MasterMetrics(self.registry)
        self.heartbeats = HeartbeatAges(self.registry)
        service_metrics(self.registry, "master")
        # A processed marker must outlive every possible redelivery of its batch: JetStream keeps a message
        # at most stream_max_age_s; a day more covers clock skew and a slow consumer.
        marker_ttl_s = cfg.nats.stream_max_age_s + 24 * 3600
        self.store: Store = store or RedisStore(cfg.redis.url, cfg.redis.key_prefix, marker_ttl_s)
        self._responder = responder
        self._nats_connected = False
        self._store_ok = False
        self.health.add_check("nats", lambda: self._nats_connected)
        self.health.add_check("redis", lambda: self._store_ok)
        keys = self.store.keys
        self.pipeline = build_pipeline(cfg.master, keys)
        self.policy = build_policy(cfg.master)
        self.processor = BatchProcessor(
            self.pipeline, self.policy, self.store, self.metrics, analyst=build_analyst(cfg.master, keys)
        )
        self.exporters = Exporters(cfg.master.exports, self.registry)

    def _set_store_ok(self, ok: bool) -> None:
        self._store_ok = ok

    async def _probe_store(self, stop: asyncio.Event) -> None:
        """Readiness for Redis between batches too: an idle master must notice the store went away."""
        while not stop.is_set():
            self._store_ok = await self.store.ping()
            if self._store_ok:
                with contextlib.suppress(StoreUnavailable):
                    self.metrics.devices.set(await self.store.device_count())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), _STORE_PROBE_INTERVAL_S)

    async def _watch_backlog(self, consumer: Consumer, stop: asyncio.Event) -> None:
        """The consumer's backlog into the gauges every couple of seconds; a failed look is retried."""
        while not stop.is_set():
            try:
                await consumer.record_backlog()
            except Exception as exc:
                log.debug("backlog_unknown", error_type=type(exc).__name__, error=repr(exc)[:200])
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), _BACKLOG_INTERVAL_S)

    async def _heard(self, msg: Msg) -> None:
        sensor_id = msg.subject.removeprefix(HEARTBEAT_PREFIX + ".")[:_MAX_SENSOR_LABEL]
        self.heartbeats.heard(sensor_id)

    async def _migrate(self, stop: asyncio.Event) -> bool:
        """Bring the store's key layout up to date before reading anything; wait for an unreachable store
        (False only when stopped first). A store written by a newer version stops the master."""
        while not stop.is_set():
            try:
                moved = await self.store.migrate()
            except StoreUnavailable as exc:
                self._store_ok = False
                log.warning("store_unavailable_at_start", error=str(exc)[:200])
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), _STORE_PROBE_INTERVAL_S)
                continue
            for step, count in moved.items():
                log.warning("store_layout_migrated", step=step, keys_moved=count, layout=LAYOUT_VERSION)
            return True
        return False

    async def run(self, stop: asyncio.Event) -> None:
        cfg = self.cfg

        async def _disconnected() -> None:
            self._nats_connected = False

        async def _reconnected() -> None:
            self._nats_connected = True

        async def _error(exc: Exception) -> None:
            log.warning("nats_error", error=str(exc)[:200])

        if not await self._migrate(stop):
            return
        nc = await connect(
            cfg.nats,
            "vigil-master",
            disconnected_cb=_disconnected,
            reconnected_cb=_reconnected,
            error_cb=_error,
        )
        self._nats_connected = nc.is_connected
        js = nc.jetstream()
        await ensure_stream(js, cfg.nats)
        wake = asyncio.Event()
        consumer = Consumer(
            nc,
            js,
            self.processor,
            self.metrics,
            stream=cfg.nats.stream,
            durable=cfg.master.consumer,
            fetch_batch=cfg.master.fetch_batch,
            unit_max_records=cfg.master.unit_max_records,
            ack_wait_s=self.ack_wait_s,
            on_actions=wake.set,
            on_store_health=self._set_store_ok,
            on_breaches=self.exporters.submit,
        )
        await consumer.subscribe()
        await nc.subscribe(HEARTBEAT_PREFIX + ".*", cb=self._heard)
        tasks = [
            asyncio.create_task(self._probe_store(stop), name="master-store-probe"),
            asyncio.create_task(self._watch_backlog(consumer, stop), name="master-backlog"),
        ]
        if self.exporters:
            tasks.append(asyncio.create_task(self.exporters.run(stop), name="master-exports"))
        link = self._responder
        # In confirm mode too: an action an operator confirmed (master/api/) is pending until delivered.
        if link is None and cfg.master.responder_address and cfg.master.response_mode != "observe":
            link = ResponderClient(
                cfg.master.responder_address, timeout_s=_RESPONDER_TIMEOUT_S, tls=cfg.master.responder_tls
            )
        if link is not None:
            dispatcher = Dispatcher(
                self.store,
                link,
                on_result=lambda outcome: self.metrics.deliveries.labels(outcome=outcome).inc(),
            )
            tasks.append(asyncio.create_task(dispatcher.run(stop, wake), name="master-dispatch"))
        log.info(
            "master_started",
            consumer=cfg.master.consumer,
            stream=cfg.nats.stream,
            mode=cfg.master.response_mode,
            exports=[sink.kind for sink in self.exporters.sinks],
        )
        try:
            await consumer.run(stop)
        finally:
            stop.set()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            if link is not None:
                await link.close()
            # Flush so the acks already given reach the server, then close. (drain() would wait out its
            # timeout on the pull subscription's pending fetch.)
            with contextlib.suppress(Exception):
                await nc.flush(timeout=2)
            with contextlib.suppress(Exception):
                await nc.close()
            await self.store.close()


async def serve(
    cfg: VigilConfig,
    registry: CollectorRegistry | None = None,
    stop: asyncio.Event | None = None,
    ack_wait_s: float | None = None,
) -> None:
    """Run the master until SIGTERM/SIGINT (or ``stop``), serving /metrics, /healthz and /readyz."""
    service = MasterService(cfg, registry, ack_wait_s=ack_wait_s)
    await run_service(service, cfg.master.http, stop)
