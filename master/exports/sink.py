"""One export destination: a bounded in-memory queue and a worker that drains it with retries.

``submit`` never blocks and never raises: the master's loop hands breaches over and moves on. While the
receiver is down the queue keeps up to ``queue_max`` breaches and the worker retries the oldest with
exponential backoff and jitter; when the receiver returns they go out in order. Beyond the bound the
oldest breach is dropped (the newest say most about what is happening now) and counted.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge

from vigil.alert.v1 import alert_pb2
from vigil.log import get

log = get("master.exports")

SINK_KINDS = ("ocsf", "syslog", "webhook", "alertmanager")
OUTCOMES = ("sent", "failed")
DROP_REASONS = ("queue_full", "shutdown")


class ExportMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.attempts = Counter(
            "vigil_master_export_attempts_total",
            "Breach export attempts, by sink and outcome (a failed one is retried).",
            ["sink", "outcome"],
            registry=registry,
        )
        self.dropped = Counter(
            "vigil_master_export_dropped_total",
            "Breaches an export gave up on: the queue was full, or the master stopped with them queued.",
            ["sink", "reason"],
            registry=registry,
        )
        self.queued = Gauge(
            "vigil_master_export_queue_breaches",
            "Breaches waiting in an export's queue.",
            ["sink"],
            registry=registry,
        )
        for sink in SINK_KINDS:
            self.queued.labels(sink=sink)
            for outcome in OUTCOMES:
                self.attempts.labels(sink=sink, outcome=outcome)
            for reason in DROP_REASONS:
                self.dropped.labels(sink=sink, reason=reason)


@dataclass(frozen=True)
class Retry:
    initial_s: float = 0.5
    max_s: float = 60.0

    def delay_s(self, failures: int, rng: random.Random) -> float:
        """Exponential in the consecutive failures, capped, with half of it random ("equal jitter") so that
        several masters do not hammer a returning receiver in step."""
        ceiling = min(self.max_s, self.initial_s * 2 ** max(failures - 1, 0))
        return float(ceiling / 2 + rng.uniform(0, ceiling / 2))


Send = Callable[[alert_pb2.ModelBreach], Awaitable[None]]


class Sink:
    def __init__(
        self,
        kind: str,
        send: Send,
        close: Callable[[], Awaitable[None]],
        metrics: ExportMetrics,
        *,
        queue_max: int,
        retry: Retry,
        attempt_timeout_s: float,
        rng: random.Random | None = None,
    ) -> None:
        self.kind = kind
        self._send, self._close = send, close
        self.metrics = metrics
        self.queue: deque[alert_pb2.ModelBreach] = deque()
        self.queue_max = queue_max
        self.retry = retry
        self.attempt_timeout_s = attempt_timeout_s
        self.rng = rng or random.Random()
        self._wake = asyncio.Event()
        self.failures = 0

    def submit(self, breach: alert_pb2.ModelBreach) -> None:
        if len(self.queue) >= self.queue_max:
            self.queue.popleft()
            self.metrics.dropped.labels(sink=self.kind, reason="queue_full").inc()
        self.queue.append(breach)
        self.metrics.queued.labels(sink=self.kind).set(len(self.queue))
        self._wake.set()

    async def _attempt(self, breach: alert_pb2.ModelBreach) -> bool:
        try:
            await asyncio.wait_for(self._send(breach), self.attempt_timeout_s)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # any failure of a receiver is the receiver's: retry, never crash the master
            self.failures += 1
            self.metrics.attempts.labels(sink=self.kind, outcome="failed").inc()
            if self.failures == 1 or self.failures % 10 == 0:
                log.warning(
                    "export_failed",
                    sink=self.kind,
                    failures=self.failures,
                    queued=len(self.queue),
                    error=f"{type(exc).__name__}: {str(exc)[:200]}",
                )
            return False
        if self.failures:
            log.info("export_recovered", sink=self.kind, failures=self.failures)
        self.failures = 0
        self.metrics.attempts.labels(sink=self.kind, outcome="sent").inc()
        return True

    async def _pause(self, stop: asyncio.Event, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), seconds)

    async def run(self, stop: asyncio.Event, drain_s: float = 2.0) -> None:
        """Deliver until ``stop``; then spend up to ``drain_s`` on what is queued, and count the rest."""
        while not stop.is_set():
            if not self.queue:
                self._wake.clear()
                waiter = asyncio.ensure_future(self._wake.wait())
                stopper = asyncio.ensure_future(stop.wait())
                await asyncio.wait({waiter, stopper}, return_when=asyncio.FIRST_COMPLETED)
                waiter.cancel()
                stopper.cancel()
                continue
            await self._deliver_head(stop)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._drain(), drain_s)
        if self.queue:
            self.metrics.dropped.labels(sink=self.kind, reason="shutdown").inc(len(self.queue))
            log.warning("export_dropped_at_shutdown", sink=self.kind, breaches=len(self.queue))
            self.queue.clear()
        self.metrics.queued.labels(sink=self.kind).set(0)
        with contextlib.suppress(Exception):
            await self._close()

    async def _deliver_head(self, stop: asyncio.Event) -> None:
        breach = self.queue[0]
        if await self._attempt(breach):
            # The head may have been dropped for room while it was being sent: remove it only if still there.
            if self.queue and self.queue[0] is breach:
                self.queue.popleft()
            self.metrics.queued.labels(sink=self.kind).set(len(self.queue))
        else:
            await self._pause(stop, self.retry.delay_s(self.failures, self.rng))

    async def _drain(self) -> None:
        while self.queue:
            breach = self.queue[0]
            if not await self._attempt(breach):
                return
            if self.queue and self.queue[0] is breach:
                self.queue.popleft()
