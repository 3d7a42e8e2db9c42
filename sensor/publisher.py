"""Records -> batches -> NATS JetStream, with a bounded on-disk spool while NATS is unreachable.

Every batch carries a unique id that is also its ``Nats-Msg-Id``, so a batch published twice (a retry after
a lost ack, or a spool drained after the client had already flushed its own buffer) is stored once by
JetStream's deduplication window. Order is kept: once anything is spooled, new batches queue behind it
until the spool has drained.

Batches always fit the bus. The limit is the server's ``max_payload`` (read at connect, less room for the
headers), or :data:`vigil.bus.MAX_BATCH_BYTES` before the first connection. A batch over it is split by
records into parts with ids ``<batch id>.1``, ``<batch id>.2`` (recursively), so the same batch split again
after a crash gets the same ids; a single record over it is cut to documented field limits
(:mod:`sensor.limits`) and counted, or dropped and counted when nothing makes it fit. A batch the server
refuses for its size is split the same way; a spooled batch that no longer fits is split as it drains. So
no batch can sit at the head of the spool for ever, whatever the traffic.

The spool is bounded in bytes and in age; what it drops is counted by reason.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from google.protobuf.timestamp_pb2 import Timestamp
from nats.aio.client import Client as NatsClient
from nats.errors import MaxPayloadError
from nats.js import JetStreamContext
from nats.js.errors import APIError
from prometheus_client import CollectorRegistry, Counter, Gauge

from sensor.limits import fit_record
from sensor.spool import Spool
from vigil import __version__, bus
from vigil.config import NatsConfig, SensorConfig
from vigil.log import get
from vigil.sensor.v1 import sensor_pb2

log = get("sensor.publisher")

_PUBLISH_TIMEOUT_S = 2.0
# Room left under the server's max_payload for the message headers (Nats-Msg-Id and NATS' own framing):
# the server counts headers and payload together and closes the connection of a client that exceeds it.
HEADER_ROOM_BYTES = 4096
# JetStream's error code for a message larger than the stream's max_msg_size.
_JS_MESSAGE_TOO_LARGE = 10054


@dataclass
class _Cuts:
    """What fitting one batch to the bus took: splits, fields cut (one per cut record), records left out."""

    splits: int = 0
    fields: list[str] = field(default_factory=list)
    dropped: int = 0


class PublisherMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.batches = Counter(
            "vigil_sensor_batches_published_total", "Batches acknowledged by JetStream.", registry=registry
        )
        self.records = Counter(
            "vigil_sensor_records_published_total", "Records in acknowledged batches.", registry=registry
        )
        self.duplicates = Counter(
            "vigil_sensor_batches_duplicate_total",
            "Batches JetStream already held (same id): a retry, or a replay the bus had seen.",
            registry=registry,
        )
        self.spooled = Counter(
            "vigil_sensor_batches_spooled_total", "Batches written to the spool.", registry=registry
        )
        self.split = Counter(
            "vigil_sensor_batches_split_total",
            "Batches split into parts to fit the bus's maximum message size.",
            registry=registry,
        )
        self.truncated = Counter(
            "vigil_sensor_records_truncated_total",
            "Records cut to the documented field limits to fit the bus, by field.",
            ["field"],
            registry=registry,
        )
        self.dropped = Counter(
            "vigil_sensor_dropped_records_total",
            "Records the sensor had to drop.",
            ["reason"],
            registry=registry,
        )
        for reason in ("record_too_large", "spool_full", "spool_expired", "spool_corrupt"):
            self.dropped.labels(reason=reason)
        self.max_batch_bytes = Gauge(
            "vigil_sensor_max_batch_bytes",
            "Largest batch the sensor sends: the server's max_payload less header room.",
            registry=registry,
        )
        self.spool_bytes = Gauge("vigil_sensor_spool_bytes", "Bytes waiting in the spool.", registry=registry)
        self.spool_batches = Gauge(
            "vigil_sensor_spool_batches", "Batches waiting in the spool.", registry=registry
        )
        self.connected = Gauge("vigil_sensor_nats_connected", "1 while connected to NATS.", registry=registry)


class BatchPublisher:
    """``boot_id`` names this run in batch ids (random by default). A replay of capture files passes one
    derived from the files, with ``time_flush=False`` so batches are cut by record count alone: a replay
    started again then produces the same batches with the same ids, which the bus and the master drop as
    duplicates instead of learning everything twice."""

    def __init__(
        self,
        sensor_cfg: SensorConfig,
        nats_cfg: NatsConfig,
        registry: CollectorRegistry,
        clock: Callable[[], float] = time.time,
        boot_id: str | None = None,
        time_flush: bool = True,
    ) -> None:
        self._cfg = sensor_cfg
        self._nats_cfg = nats_cfg
        self._clock = clock
        self._metrics = PublisherMetrics(registry)
        self._subject = bus.telemetry_subject(sensor_cfg.site, sensor_cfg.sensor_id)
        self._boot = boot_id or secrets.token_hex(4)
        self._time_flush = time_flush
        self._sequence = 0
        self._pending: list[sensor_pb2.Record] = []
        self._pending_since: float | None = None
        # Event time when the oldest pending record was added (see flush_due).
        self._pending_event_time: float | None = None
        self._dropped_since_last = 0
        self._spool = Spool(sensor_cfg.spool_dir, sensor_cfg.spool_max_bytes)
        # The largest payload sent: the server's max_payload once connected (bus.MAX_BATCH_BYTES before).
        self.max_batch_bytes = bus.MAX_BATCH_BYTES
        self._metrics.max_batch_bytes.set(self.max_batch_bytes)
        self._nc: NatsClient | None = None
        self._js: JetStreamContext | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._wake_drain = asyncio.Event()
        self._lock = asyncio.Lock()
        self.published_batches = 0
        self.duplicate_batches = 0
        self._update_spool_gauges()

    # -- lifecycle -------------------------------------------------------------------------------
    async def start(self) -> None:
        self._tasks.append(asyncio.create_task(self._connect_loop(), name="publisher-connect"))
        self._tasks.append(asyncio.create_task(self._drain_loop(), name="publisher-drain"))
        if self._time_flush:
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
                await asyncio.wait_for(self._nc.drain(), timeout=5.0)
            self._nc = None
            self._js = None
        if len(self._spool):
            log.warning("spool_kept_on_exit", batches=len(self._spool), bytes=self._spool.size_bytes)

    # -- input ------------------------------------------------------------------------------------
    async def add(self, records: Sequence[sensor_pb2.Record], event_time: float | None = None) -> None:
        if not records:
            return
        if self._pending_since is None:
            self._pending_since = time.monotonic()
            self._pending_event_time = event_time
        self._pending.extend(records)
        while len(self._pending) >= self._cfg.batch_max_records:
            chunk = self._pending[: self._cfg.batch_max_records]
            del self._pending[: self._cfg.batch_max_records]
            await self._send(chunk)
        if not self._pending:
            self._pending_since = self._pending_event_time = None

    async def flush(self) -> None:
        while self._pending:
            chunk = self._pending[: self._cfg.batch_max_records]
            del self._pending[: self._cfg.batch_max_records]
            await self._send(chunk)
        self._pending_since = self._pending_event_time = None

    async def flush_due(self, event_time: float) -> None:
        """Flush a partial batch whose oldest record was added batch_max_delay_s of event time ago."""
        since = self._pending_event_time
        if since is not None and event_time - since >= self._cfg.batch_max_delay_s:
            await self.flush()

    def count_dropped(self, records: int, reason: str) -> None:
        """Records lost before they reached the bus (a full capture ring, a full spool, ...)."""
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
        async with self._lock:
            if len(self._spool) == 0 and await self._deliver(batch, payload):
                return
            self._to_spool(batch, payload)

    def _parts(self, batch: sensor_pb2.Batch, payload: bytes, cuts: _Cuts) -> list[tuple[str, bytes, int]]:
        """(id, payload, records) of the messages that carry ``batch`` within the current size limit.

        Halves by records, naming the halves ``<id>.1`` and ``<id>.2``, until each part fits; a single record
        that does not fit is cut to the field limits or, failing that, left out (both noted in ``cuts``).
        """
        limit = self.max_batch_bytes
        if len(payload) <= limit:
            return [(batch.batch_id, payload, len(batch.records))]
        records = list(batch.records)
        if len(records) <= 1:
            envelope = len(payload) - (records[0].ByteSize() if records else 0)
            room = limit - envelope - 16  # the record's own tag and length prefix
            fitted = fit_record(records[0], room) if records and room > 0 else None
            if fitted is None:
                cuts.dropped += len(records)
                return []
            record, fields = fitted
            cuts.fields += fields
            single = self._part(batch, batch.batch_id, [record], first=True)
            return [(batch.batch_id, single.SerializeToString(), 1)]
        cuts.splits += 1
        half = len(records) // 2
        out = []
        for suffix, chunk in ((".1", records[:half]), (".2", records[half:])):
            part = self._part(batch, batch.batch_id + suffix, chunk, first=suffix == ".1")
            out += self._parts(part, part.SerializeToString(), cuts)
        return out

    @staticmethod
    def _part(
        batch: sensor_pb2.Batch, batch_id: str, records: Sequence[sensor_pb2.Record], first: bool
    ) -> sensor_pb2.Batch:
        # The parts keep the batch's sequence and time; the drop count travels with the first part only.
        part = sensor_pb2.Batch(
            sensor_id=batch.sensor_id,
            site=batch.site,
            batch_id=batch_id,
            sequence=batch.sequence,
            create_time=batch.create_time,
            dropped_records_count=batch.dropped_records_count if first else 0,
        )
        part.records.extend(records)
        return part

    async def _deliver(self, batch: sensor_pb2.Batch, payload: bytes) -> bool:
        """Publish ``batch`` in as many parts as the size limit needs; True once every part is acknowledged.

        A part the server refuses for its size lowers the limit and the batch is cut again; parts already
        acknowledged are deduplicated by id when it is retried. Cuts and drops are counted once, when the
        batch is through (a batch retried through an outage is cut again each time, identically).
        """
        for _ in range(64):  # each refusal halves the limit: this bounds the retries, not the traffic
            cuts = _Cuts()
            outcome = "ok"
            for part_id, part, count in self._parts(batch, payload, cuts):
                outcome = await self._publish(part_id, part, count)
                if outcome != "ok":
                    break
            if outcome == "ok":
                self._count_cuts(batch, cuts)
                return True
            if outcome != "too_large":
                return False
        return False

    def _count_cuts(self, batch: sensor_pb2.Batch, cuts: _Cuts) -> None:
        if cuts.splits:
            self._metrics.split.inc(cuts.splits)
        for name in cuts.fields:
            self._metrics.truncated.labels(field=name).inc()
        if cuts.fields:
            log.warning("records_truncated", batch_id=batch.batch_id, fields=sorted(set(cuts.fields)))
        if cuts.dropped:
            self.count_dropped(cuts.dropped, "record_too_large")
            log.warning("records_dropped_too_large", batch_id=batch.batch_id, records=cuts.dropped)

    def _to_spool(self, batch: sensor_pb2.Batch, payload: bytes) -> None:
        key = f"{time.time_ns():020d}-{batch.sequence:012d}"
        dropped = self._spool.put(key, payload, len(batch.records))
        self._metrics.spooled.inc()
        if dropped:
            self.count_dropped(dropped, "spool_full")
            log.warning("spool_full_dropped", records=dropped)
        self._update_spool_gauges()
        self._wake_drain.set()

    async def _publish(self, batch_id: str, payload: bytes, records: int) -> str:
        """ "ok" (acknowledged), "too_large" (refused for its size; the limit is lowered) or "retry"."""
        js = self._js
        if js is None or not self.connected:
            return "retry"
        if len(payload) > self.max_batch_bytes:
            return "too_large"
        try:
            ack = await js.publish(
                self._subject, payload, timeout=_PUBLISH_TIMEOUT_S, headers={"Nats-Msg-Id": batch_id}
            )
        except MaxPayloadError:
            self._lower_limit(len(payload), "client")
            return "too_large"
        except APIError as exc:
            if exc.err_code == _JS_MESSAGE_TOO_LARGE:
                self._lower_limit(len(payload), "stream")
                return "too_large"
            log.warning("publish_failed", batch_id=batch_id, error=str(exc)[:200])
            return "retry"
        except Exception as exc:  # any other failure means "not acknowledged": keep the batch
            log.warning("publish_failed", batch_id=batch_id, error=type(exc).__name__)
            return "retry"
        if ack.duplicate:
            # Stored already (a retried part, a replay the bus had seen): not published twice.
            self._metrics.duplicates.inc()
            self.duplicate_batches += 1
            return "ok"
        self._metrics.batches.inc()
        self._metrics.records.inc(records)
        self.published_batches += 1
        return "ok"

    def _lower_limit(self, refused_bytes: int, by: str) -> None:
        self.max_batch_bytes = max(1024, min(self.max_batch_bytes, refused_bytes // 2))
        self._metrics.max_batch_bytes.set(self.max_batch_bytes)
        log.warning("batch_refused_too_large", by=by, bytes=refused_bytes, new_limit=self.max_batch_bytes)

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
            self._take_server_limit(nc)
            self._metrics.connected.set(1)
            log.info("nats_connected", max_batch_bytes=self.max_batch_bytes)
            self._wake_drain.set()

    def _take_server_limit(self, nc: NatsClient) -> None:
        """The server's max_payload (after a reconnect possibly another server's) bounds every batch."""
        server = int(nc.max_payload or 0)
        if server > 0:
            self.max_batch_bytes = max(1024, min(bus.MAX_BATCH_BYTES, server - HEADER_ROOM_BYTES))
            self._metrics.max_batch_bytes.set(self.max_batch_bytes)

    async def _on_disconnect(self) -> None:
        self._metrics.connected.set(0)
        log.warning("nats_disconnected")

    async def _on_reconnect(self) -> None:
        self._metrics.connected.set(1)
        if self._nc is not None:
            self._take_server_limit(self._nc)
        log.info("nats_reconnected", max_batch_bytes=self.max_batch_bytes)
        self._wake_drain.set()

    async def _on_error(self, exc: Exception) -> None:
        log.debug("nats_error", error=type(exc).__name__)

    def _expire_spool(self) -> None:
        dropped = self._spool.expire(time.time(), self._cfg.spool_max_age_s)
        if dropped:
            self.count_dropped(dropped, "spool_expired")
            log.warning("spool_expired_dropped", records=dropped, max_age_s=self._cfg.spool_max_age_s)
            self._update_spool_gauges()

    async def _drain_loop(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake_drain.wait(), timeout=1.0)
            self._wake_drain.clear()
            self._expire_spool()
            while len(self._spool) and self.connected:
                async with self._lock:
                    item = self._spool.peek()
                    if item is None:
                        break
                    entry, payload = item
                    try:
                        batch = sensor_pb2.Batch.FromString(payload)
                    except Exception:
                        # A corrupt spool file cannot be published; count it and move on.
                        self._spool.pop(entry)
                        self.count_dropped(entry.records, "spool_corrupt")
                        continue
                    if not await self._deliver(batch, payload):
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
