"""The sensor service: a packet source -> the pipeline -> the publisher, until SIGTERM or end of input."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import time
from collections.abc import AsyncIterator

from prometheus_client import CollectorRegistry, Counter

from sensor.analyzers import default_registry
from sensor.capture import CaptureError, PacketBlock
from sensor.livelogs import LiveZeekLogs, LogDirError
from sensor.pipeline import SensorPipeline, tune_gc
from sensor.publisher import BatchPublisher
from sensor.sources.pcap import PcapSource, capture_problems
from sensor.sources.tap import TapSource, interface_problem
from vigil.config import SensorConfig, VigilConfig
from vigil.exitcodes import Exit
from vigil.health import HealthState
from vigil.log import get
from vigil.metrics import service_metrics
from vigil.sensor.v1 import sensor_pb2
from vigil.service import run_service

log = get("sensor")


def replay_id(cfg: SensorConfig) -> str | None:
    """For a replay of capture files: a digest of the sensor, the pacing and the files (path, size,
    modification time). The replay's connection ids and batch ids derive from it, and its batches are cut on
    record counts and event time only, so a sensor restarted on the same files republishes the very same
    batches, which the bus and the master recognise as duplicates. None for a live interface."""
    if cfg.source != "pcap" or not cfg.pcap_files:
        return None
    digest = hashlib.sha256(f"{cfg.sensor_id}\0{cfg.pcap_realtime}\0{cfg.batch_max_records}".encode())
    for path in cfg.pcap_files:
        try:
            info = path.stat()
        except OSError:
            return None
        digest.update(f"\0{path.resolve()}\0{info.st_size}\0{info.st_mtime_ns}".encode())
    return digest.hexdigest()[:12]


class SensorService:
    name = "sensor"

    def __init__(self, cfg: VigilConfig, registry: CollectorRegistry | None = None) -> None:
        self.cfg = cfg
        self.registry = registry if registry is not None else CollectorRegistry()
        self.health = HealthState()
        service_metrics(self.registry, "sensor")
        replay = replay_id(cfg.sensor)
        # Zeek logs written as records are produced (sensor.zeek_logs.directory), or none.
        self.zeek_logs: LiveZeekLogs | None = (
            LiveZeekLogs(cfg.sensor.zeek_logs, peer=cfg.sensor.sensor_id, registry=self.registry)
            if cfg.sensor.zeek_logs.directory is not None
            else None
        )
        self.pipeline = SensorPipeline(
            cfg.sensor,
            default_registry(),
            metrics_registry=self.registry,
            seed=int(replay, 16) if replay else None,
            weirds=self.zeek_logs.weirds if self.zeek_logs is not None else None,
        )
        self.publisher = BatchPublisher(
            cfg.sensor,
            cfg.nats,
            self.registry,
            boot_id=f"r{replay}" if replay else None,
            time_flush=cfg.sensor.source == "tap",
        )
        self.kernel_drops = Counter(
            "vigil_sensor_capture_dropped_packets_total",
            "Packets the kernel dropped before the sensor read them.",
            registry=self.registry,
        )
        self.capture_errors = Counter(
            "vigil_sensor_capture_errors_total",
            "Capture files that ended in an error.",
            registry=self.registry,
        )
        self.packets = 0
        self.exit_code = 0
        self._tap: TapSource | None = None
        self.health.add_check("nats", lambda: self.publisher.connected)

    async def _blocks(self) -> AsyncIterator[PacketBlock]:
        scfg = self.cfg.sensor
        if scfg.source == "tap":
            assert scfg.interface is not None  # the config requires it for a tap
            self._tap = TapSource(scfg.interface)
            self._tap.open()
            async for block in self._tap.blocks():
                yield block
            return
        for path in scfg.pcap_files:
            pipe = self.pipeline
            tallies = pipe.packets_read, pipe.unsupported_link_packets
            source = PcapSource([path], realtime=scfg.pcap_realtime, speed=scfg.pcap_speed)
            async for block in source.ablocks():
                yield block
            undecodable = pipe.undecodable_since(*tallies)
            if undecodable is not None:
                log.error("capture_undecodable", path=str(path), problem=undecodable)
                self.exit_code = self.exit_code or Exit.INPUT

    async def _publish(self, records: list[sensor_pb2.Record]) -> None:
        if self.zeek_logs is not None:
            self.zeek_logs.add(records, self.pipeline.now)
        if records:
            await self.publisher.add(records, event_time=self.pipeline.now)

    async def run(self, stop: asyncio.Event) -> None:
        if self.cfg.sensor.source == "tap":
            problem = interface_problem(self.cfg.sensor.interface or "")
            if problem:
                log.error("interface_unusable", problem=problem)
                self.exit_code = Exit.ENVIRONMENT
                return
        if self.cfg.sensor.source == "pcap":
            problems = capture_problems(self.cfg.sensor.pcap_files)
            if problems:
                for problem in problems:
                    log.error("capture_unusable", problem=problem)
                self.exit_code = Exit.ENVIRONMENT
                return
        if self.zeek_logs is not None:
            try:
                self.zeek_logs.start()
            except LogDirError as exc:
                log.error("zeek_logs_unusable", problem=str(exc))
                self.exit_code = Exit.ENVIRONMENT
                return
            log.info("zeek_logs", where=self.zeek_logs.describe())
        await self.publisher.start()
        heartbeat = asyncio.create_task(self._heartbeats(stop))
        last_drops = 0
        try:
            blocks = self._blocks()
            while not stop.is_set():
                next_block = asyncio.ensure_future(anext(blocks))
                stopping = asyncio.ensure_future(stop.wait())
                done, _ = await asyncio.wait({next_block, stopping}, return_when=asyncio.FIRST_COMPLETED)
                if next_block not in done:
                    next_block.cancel()
                    with contextlib.suppress(asyncio.CancelledError, StopAsyncIteration):
                        await next_block
                    break
                stopping.cancel()
                try:
                    block = next_block.result()
                except StopAsyncIteration:
                    log.info("input_finished", packets=self.packets)
                    break
                except CaptureError as exc:
                    # Keep what was read: the pipeline already holds every packet before the error.
                    self.capture_errors.inc()
                    log.error("capture_error", error=str(exc))
                    self.exit_code = Exit.INPUT
                    break
                self.packets += len(block)
                if len(block):
                    await self._publish(self.pipeline.feed(block))
                    if self.cfg.sensor.pcap_realtime:
                        # A paced replay bounds latency like a live sensor, but on event time, so the
                        # batches (and their ids) come out the same if it is started again.
                        await self.publisher.flush_due(self.pipeline.now)
                elif self._tap is not None:
                    # A quiet wire: advance event time by the clock so idle flows still expire.
                    await self._publish(self.pipeline.expire(time.time()))
                if self._tap is not None:
                    _, drops = self._tap.read_stats()
                    if drops > last_drops:
                        self.kernel_drops.inc(drops - last_drops)
                        last_drops = drops
        finally:
            self.health.draining = True
            heartbeat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await heartbeat
            await self._publish(self.pipeline.flush())
            if self.zeek_logs is not None:
                self.zeek_logs.close(self.pipeline.now)
            if self._tap is not None:
                self._tap.close()
            await self.publisher.close(drain_timeout_s=self.cfg.sensor.drain_timeout_s)
            spooled = self.publisher.spooled_batches
            if spooled:
                # Kept on disk for the next run; the operator (and `vigil up`) must hear of it all the same.
                log.error("telemetry_undelivered", batches=spooled, spool=str(self.cfg.sensor.spool_dir))
                self.exit_code = self.exit_code or Exit.UNDELIVERED
            log.info("sensor_stopped", packets=self.packets, spooled=spooled)

    async def _heartbeats(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            drops = self._tap.kernel_drops if self._tap is not None else 0
            await self.publisher.heartbeat(self.packets, drops)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.cfg.sensor.heartbeat_interval_s)


async def serve(cfg: VigilConfig) -> int:
    tune_gc()  # process-wide GC settings: the service owns the process, the library does not
    service = SensorService(cfg)
    await run_service(service, cfg.sensor.http)
    return service.exit_code
