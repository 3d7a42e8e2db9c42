"""``vigil analyze``: the master's pipeline over records replayed in event time, state in memory.

Records are cut into batches of ``batch_records`` and run through exactly the code the service runs
(:class:`~master.ingest.BatchProcessor` over :class:`~master.store.MemoryStore`); actions are decided in
the configured mode but never sent, and their clock is the breach's event time.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterable, Iterable
from dataclasses import dataclass, field

from master.analyst.incidents import render
from master.ingest import BatchProcessor
from master.service import build_analyst, build_pipeline, build_policy
from master.store import ActionRecord, MemoryStore
from vigil.alert.v1 import alert_pb2
from vigil.config import MasterConfig
from vigil.sensor.v1 import sensor_pb2


@dataclass
class OfflineResult:
    breaches: list[alert_pb2.ModelBreach] = field(default_factory=list)
    actions: list[ActionRecord] = field(default_factory=list)
    records: int = 0
    # Records the master's door turned away, by reason (master/door.py).
    rejected: Counter[str] = field(default_factory=Counter)


class OfflineMaster:
    def __init__(
        self, cfg: MasterConfig | None = None, batch_records: int = 500, key_prefix: str = "vigil:v1"
    ) -> None:
        self.cfg = cfg or MasterConfig()
        self.batch_records = batch_records
        self.store = MemoryStore(key_prefix)
        self.processor = BatchProcessor(
            build_pipeline(self.cfg, self.store.keys),
            build_policy(self.cfg),
            self.store,
            action_clock=lambda breach: breach.time.ToNanoseconds() / 1e9,
            analyst=build_analyst(self.cfg, self.store.keys),
        )
        self._batches = 0

    async def _flush(self, chunk: list[sensor_pb2.Record], out: OfflineResult) -> None:
        self._batches += 1
        result = await self.processor.process(f"offline-{self._batches}", chunk)
        out.breaches.extend(result.breaches)
        out.actions.extend(result.actions)
        out.records += len(chunk)
        out.rejected.update(result.rejected)

    async def aprocess(
        self, records: Iterable[sensor_pb2.Record] | AsyncIterable[sensor_pb2.Record]
    ) -> OfflineResult:
        """Process records in event-time order; may be called repeatedly (state carries over)."""
        out = OfflineResult()
        chunk: list[sensor_pb2.Record] = []
        if isinstance(records, AsyncIterable):
            async for record in records:
                chunk.append(record)
                if len(chunk) >= self.batch_records:
                    await self._flush(chunk, out)
                    chunk = []
        else:
            for record in records:
                chunk.append(record)
                if len(chunk) >= self.batch_records:
                    await self._flush(chunk, out)
                    chunk = []
        if chunk:
            await self._flush(chunk, out)
        return out

    def incidents(self) -> list[alert_pb2.Incident]:
        """Every incident so far (those merged into another aside), in the order they began."""
        return [render(doc) for doc in self.store.all_incidents()]

    def fork(self) -> OfflineMaster:
        """An independent master that has learned exactly what this one has (to try several futures)."""
        twin = OfflineMaster(self.cfg, self.batch_records, self.store.keys.prefix)
        twin.store.copy_from(self.store)
        twin._batches = self._batches
        return twin

    def process(self, records: Iterable[sensor_pb2.Record]) -> OfflineResult:
        """Synchronous form for callers without an event loop (the CLI)."""
        return asyncio.run(self.aprocess(records))
