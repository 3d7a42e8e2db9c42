"""Records -> batches -> NATS JetStream, with a bounded on-disk spool while NATS is unreachable.

Every batch carries a unique id that is also its ``Nats-Msg-Id``, so a batch published twice (a retry after
a lost ack, or a spool drained after the client had already flushed its own buffer) is stored once by
JetStream's deduplication window. Order is kept: once anything is spooled, new batches queue behind it
until the spool has drained.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time
from collections.abc import Callable, Sequence

from google.protobuf.timestamp_pb2 import Timestamp
from nats.aio.client import Client as NatsClient
from nats.js import JetStreamContext
from prometheus_client import CollectorRegistry, Counter, Gauge

from sensor.spool import Spool
from vigil import __version__, bus
from vigil.config import NatsConfig, SensorConfig
from vigil.log import get
from vigil.sensor.v1 import sensor_pb2

log = get("sensor.publisher")

_PUBLISH_TIMEOUT_S = 2.0


class PublisherMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.batches = Counter(
            "vigil_sensor_batches_published_total", "Batches acknowledged by JetStream.", registry=registry
        )
        self.records = Counter(
            "vigil_sensor_records_published_total", "Records in acknowledged batches.", registry=registry
        )
        self.spooled = Counter(
            "vigil_sensor_batches_spooled_total", "Batches written to the spool.", registry=registry
        )
        self.dropped = Counter(
            "vigil_sensor_dropped_records_total",
            "Records the sensor had to drop.",
            ["reason"],
            registry=registry,
        )
        self.spool_bytes = Gauge("vigil_sensor_spool_bytes", "Bytes waiting in the spool.", registry=registry)
        self.spool_batches = Gauge(
            "vigil_sensor_spool_batches", "Batches waiting in the spool.", registry=registry
        )
        self.connected = Gauge("vigil_sensor_nats_connected", "1 while connected to NATS.", registry=registry)


class BatchPublisher:
    def __init__(
        self,
        sensor_cfg: SensorConfig,
        nats_cfg: NatsConfig,
        registry: CollectorRegistry,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._cfg = sensor_cfg
        self._nats_cfg = nats_cfg
        self._clock = clock
        self._metrics = PublisherMetrics(registry)
        self._subject = bus.telemetry_subject(sensor_cfg.site, sensor_cfg.sensor_id)
        self._boot = secrets.token_hex(4)
        self._sequence = 0
        self._pending: list[sensor_pb2.Record] = []
        self._pending_since: float | None = None
        self._dropped_since_last = 0
        self._spool = Spool(sensor_cfg.spool_dir, sensor_cfg.spool_max_bytes)
        self._nc: NatsClient | None = None
        self._js: JetStreamContext | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._wake_drain = asyncio.Event()
        self._lock = asyncio.Lock()
        self.published_batches = 0
        self._update_spool_gauges()

    # -- lifecycle -------------------------------------------------------------------------------
    async def start(self) -> None:
        self._tasks.append(asyncio.create_task(self._connect_loop(), name="publisher-connect"))
        self._tasks.append(asyncio.create_task(self._drain_loop(), name="publisher-drain"))
        self._tasks.append(asyncio.create_task(self._timer_loop(), name="publisher-timer"))

    @property
    def connected(self) -> bool:
        return self._nc is not None and self._nc.is_connected

    @property
    def spooled_batches(self) -> int:
        return len(self._spool)

    async def close(self, drain_timeout_s: float = 5.0) -> None:
        """Flush what is pending, give the spool a bounded chance to drain, then disconnect."""
        await self.flush()
        # Whatever is spooled gets a bounded chance to go out, including a connection still being made.
        deadline = time.monotonic() + drain_timeout_s
        while len(self._spool) and time.monotonic() < deadline:
            self._wake_drain.set()
            await asyncio.sleep(0.05)
        for task in self._tasks:
            task.cancel()
        if self._tasks:
            # A client library call may swallow cancellation; never let that hang shutdown.
            _, stuck = await asyncio.wait(self._tasks, timeout=2.0)
            for task in stuck:
                log.warning("publisher_task_stuck", task=task.get_name())
        self._tasks.clear()
        if self._nc is not None:
            with contextlib.suppress(Exception):
                await self._nc.drain()
            self._nc = None
            self._js = None
        if len(self._spool):
            log.warning("spool_kept_on_exit", batches=len(self._spool), bytes=self._spool.size_bytes)

    # -- input ------------------------------------------------------------------------------------
    async def add(self, records: Sequence[sensor_pb2.Record]) -> None:
        if not records:
            return
        if self._pending_since is None:
            self._pending_since = time.monotonic()
        self._pending.extend(records)
        while len(self._pending) >= self._cfg.batch_max_records:
            chunk = self._pending[: self._cfg.batch_max_records]
            del self._pending[: self._cfg.batch_max_records]
            await self._send(chunk)
        if not self._pending:
            self._pending_since = None

    async def flush(self) -> None:
        while self._pending:
            chunk = self._pending[: self._cfg.batch_max_records]
            del self._pending[: self._cfg.batch_max_records]
            await self._send(chunk)
        self._pending_since = None

    def count_dropped(self, records: int, reason: str) -> None:
        """Records lost before they reached the publisher (e.g. a full capture ring)."""
        self._metrics.dropped.labels(reason=reason).inc(records)
        self._dropped_since_last += records

    # -- batching ---------------------------------------------------------------------------------
    def _make_batch(self, records: Sequence[sensor_pb2.Record]) -> sensor_pb2.Batch:
        self._sequence += 1
        created = Timestamp()
        created.FromNanoseconds(int(self._clock() * 1e9))
        batch = sensor_pb2.Batch(
            sensor_id=self._cfg.sensor_id,
            site=self._cfg.site,
            batch_id=f"{self._cfg.sensor_id}-{self._boot}-{self._sequence}",
            sequence=self._sequence,
            create_time=created,
            dropped_records_count=self._dropped_since_last,
        )
        batch.records.extend(records)
        self._dropped_since_last = 0
        return batch

    async def _send(self, records: Sequence[sensor_pb2.Record]) -> None:
        batch = self._make_batch(records)
        payload = batch.SerializeToString()
        if len(payload) > bus.MAX_BATCH_BYTES:
            # Split rather than lose: halve until each part fits.
            self._sequence -= 1
            half = max(1, len(records) // 2)
            if len(records) == 1:
                self.count_dropped(1, "record_too_large")
                return
            await self._send(records[:half])
            await self._send(records[half:])
            return
        async with self._lock:
            if len(self._spool) == 0 and await self._publish(batch.batch_id, payload, len(records)):
                return
            self._to_spool(batch, payload)

    def _to_spool(self, batch: sensor_pb2.Batch, payload: bytes) -> None:
        key = f"{time.time_ns():020d}-{batch.sequence:012d}"
        dropped = self._spool.put(key, payload, len(batch.records))
        self._metrics.spooled.inc()
        if dropped:
            self._metrics.dropped.labels(reason="spool_full").inc(dropped)
            self._dropped_since_last += dropped
            log.warning("spool_full_dropped", records=dropped)
        self._update_spool_gauges()
        self._wake_drain.set()

    async def _publish(self, batch_id: str, payload: bytes, records: int) -> bool:
        js = self._js
        if js is None or not self.connected:
            return False
        try:
            await js.publish(
                self._subject, payload, timeout=_PUBLISH_TIMEOUT_S, headers={"Nats-Msg-Id": batch_id}
            )
        except Exception as exc:  # any failure means "not acknowledged": keep the batch
            log.warning("publish_failed", batch_id=batch_id, error=type(exc).__name__)
            return False
        self._metrics.batches.inc()
        self._metrics.records.inc(records)
        self.published_batches += 1
        return True

    def _update_spool_gauges(self) -> None:
        self._metrics.spool_bytes.set(self._spool.size_bytes)
        self._metrics.spool_batches.set(len(self._spool))

    # -- background -------------------------------------------------------------------------------
    async def _connect_loop(self) -> None:
        delay = 0.2
        while self._nc is None:
            try:
                nc = await bus.connect(
                    self._nats_cfg,
                    name=f"vigil-sensor-{self._cfg.sensor_id}",
                    disconnected_cb=self._on_disconnect,
                    reconnected_cb=self._on_reconnect,
                    error_cb=self._on_error,
                )
                js = nc.jetstream()
                await bus.ensure_stream(js, self._nats_cfg)
            except Exception as exc:
                self._metrics.connected.set(0)
                log.warning("nats_connect_failed", error=type(exc).__name__, retry_in_s=delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
                continue
            self._nc, self._js = nc, js
            self._metrics.connected.set(1)
            log.info("nats_connected")
            self._wake_drain.set()

    async def _on_disconnect(self) -> None:
        self._metrics.connected.set(0)
        log.warning("nats_disconnected")

    async def _on_reconnect(self) -> None:
        self._metrics.connected.set(1)
        log.info("nats_reconnected")
        self._wake_drain.set()

    async def _on_error(self, exc: Exception) -> None:
        log.debug("nats_error", error=type(exc).__name__)

    async def _drain_loop(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake_drain.wait(), timeout=1.0)
            self._wake_drain.clear()
            while len(self._spool) and self.connected:
                async with self._lock:
                    item = self._spool.peek()
                    if item is None:
                        break
                    entry, payload = item
                    try:
                        batch_id = sensor_pb2.Batch.FromString(payload).batch_id
                    except Exception:
                        # A corrupt spool file cannot be published; count it and move on.
                        self._spool.pop(entry)
                        self.count_dropped(entry.records, "spool_corrupt")
                        continue
                    if not await self._publish(batch_id, payload, entry.records):
                        break
                    self._spool.pop(entry)
                    self._update_spool_gauges()
                if not len(self._spool):
                    log.info("spool_drained")
            if len(self._spool):
                await asyncio.sleep(0.5)

    async def _timer_loop(self) -> None:
        """Flush a partial batch once it is older than batch_max_delay_s (wall clock: latency bound)."""
        while True:
            await asyncio.sleep(min(0.1, self._cfg.batch_max_delay_s / 2))
            since = self._pending_since
            if since is not None and time.monotonic() - since >= self._cfg.batch_max_delay_s:
                await self.flush()

    # -- heartbeats -------------------------------------------------------------------------------
    async def heartbeat(self, packets: int, dropped_packets: int) -> None:
        nc = self._nc
        if nc is None or not nc.is_connected:
            return
        now = Timestamp()
        now.FromNanoseconds(int(self._clock() * 1e9))
        beat = sensor_pb2.Heartbeat(
            sensor_id=self._cfg.sensor_id,
            site=self._cfg.site,
            time=now,
            packets_count=packets,
            dropped_packets_count=dropped_packets,
            batches_published_count=self.published_batches,
            batches_spooled_count=len(self._spool),
            version=__version__,
        )
        with contextlib.suppress(Exception):
            await nc.publish(bus.heartbeat_subject(self._cfg.sensor_id), beat.SerializeToString())
