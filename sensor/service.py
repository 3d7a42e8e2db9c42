"""The sensor service: a packet source -> the pipeline -> the publisher, until SIGTERM or end of input."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator

from prometheus_client import CollectorRegistry, Counter

from sensor.analyzers import default_registry
from sensor.capture import CaptureError, PacketBlock
from sensor.pipeline import SensorPipeline, tune_gc
from sensor.publisher import BatchPublisher
from sensor.sources.pcap import PcapSource
from sensor.sources.tap import TapSource
from vigil.config import VigilConfig
from vigil.health import HealthState
from vigil.log import get
from vigil.sensor.v1 import sensor_pb2
from vigil.service import build_info, run_service

log = get("sensor")


class SensorService:
    name = "sensor"

    def __init__(self, cfg: VigilConfig, registry: CollectorRegistry | None = None) -> None:
        self.cfg = cfg
        self.registry = registry if registry is not None else CollectorRegistry()
        self.health = HealthState()
        build_info(self.registry, "sensor")
        self.pipeline = SensorPipeline(cfg.sensor, default_registry(), metrics_registry=self.registry)
        self.publisher = BatchPublisher(cfg.sensor, cfg.nats, self.registry)
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
            if not scfg.interface:
                raise ValueError("sensor.source is tap but sensor.interface is not set")
            self._tap = TapSource(scfg.interface)
            self._tap.open()
            async for block in self._tap.blocks():
                yield block
            return
        source = PcapSource(scfg.pcap_files, realtime=scfg.pcap_realtime)
        async for block in source.ablocks():
            yield block

    async def _publish(self, records: list[sensor_pb2.Record]) -> None:
        if records:
            await self.publisher.add(records)

    async def run(self, stop: asyncio.Event) -> None:
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
                    self.exit_code = 3
                    break
                self.packets += len(block)
                if len(block):
                    await self._publish(self.pipeline.feed(block))
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
            if self._tap is not None:
                self._tap.close()
            await self.publisher.close(drain_timeout_s=10.0)
            log.info("sensor_stopped", packets=self.packets, spooled=self.publisher.spooled_batches)

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
