"""The one loop that makes the backend match the desired state.

It wakes on every change (``trigger``), at the next expiry, and every ``interval_s`` regardless, so
an element someone deleted by hand, or a table someone flushed, is put back within one interval.
A failing backend is retried with exponential backoff; while it fails, the affected actions show
FAILED with the backend's message.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable

from responder.backends.base import Backend, BackendError
from responder.metrics import ResponderMetrics
from responder.state import ActionStore
from vigil.log import get

_log = get("responder.reconcile")


class Reconciler:
    def __init__(
        self,
        store: ActionStore,
        backend: Backend,
        metrics: ResponderMetrics,
        *,
        interval_s: float,
        clock: Callable[[], float] = time.time,
        backoff_initial_s: float = 0.2,
        backoff_max_s: float = 30.0,
    ) -> None:
        self._store = store
        self._backend = backend
        self._metrics = metrics
        self._interval = interval_s
        self._clock = clock
        self._backoff_initial = backoff_initial_s
        self._backoff_max = backoff_max_s
        self._wake = asyncio.Event()
        self.failures = 0  # consecutive failed passes
        self.passes = 0
        self.last_error: str | None = None
        self._healthy = False
        self._passed = asyncio.Condition()

    @property
    def healthy(self) -> bool:
        """True once a pass succeeded and the most recent one did too (readiness check)."""
        return self._healthy

    def trigger(self) -> None:
        self._wake.set()

    async def reconcile_once(self) -> bool:
        """Expire, then converge the backend. Returns whether the backend accepted the desired set."""
        started = time.perf_counter()
        self._store.expire()
        desired = self._store.desired()
        ids = [a.action_id for a in desired]
        try:
            await self._backend.apply(desired)
        except (BackendError, OSError) as exc:
            self.failures += 1
            self._healthy = False
            self.last_error = str(exc)
            self._metrics.reconcile_errors.inc()
            self._store.mark_failed(ids, f"backend {self._backend.name} failed: {exc}")
            _log.warning("reconcile_failed", error=str(exc), failures=self.failures, actions=len(ids))
            ok = False
        else:
            if self.failures:
                _log.info("reconcile_recovered", after_failures=self.failures)
            self.failures = 0
            self._healthy = True
            self.last_error = None
            self._store.mark_applied(ids)
            ok = True
        finally:
            self._metrics.reconcile_duration.observe(time.perf_counter() - started)
        async with self._passed:
            self.passes += 1
            self._passed.notify_all()
        return ok

    def _delay(self) -> float:
        if self.failures:
            return float(min(self._backoff_max, self._backoff_initial * 2.0 ** (self.failures - 1)))
        delay = self._interval
        nxt = self._store.next_expiry()
        if nxt is not None:
            # Wake right after the earliest expiry so the state says EXPIRED when the kernel lifts it.
            delay = min(delay, max(0.05, nxt - self._clock() + 0.01))
        return delay

    async def wait_for_pass(self, after: int, within_s: float) -> None:
        """Wait until more than ``after`` passes have completed (tests and start-up)."""
        async with self._passed:
            await asyncio.wait_for(self._passed.wait_for(lambda: self.passes > after), within_s)

    async def run(self, stop: asyncio.Event) -> None:
        _log.info("reconcile_started", backend=self._backend.name, interval_s=self._interval)
        while not stop.is_set():
            self._wake.clear()
            try:
                await self.reconcile_once()
            except Exception:
                # A bug in one pass must not end enforcement of expiry for good; count it and go on.
                self.failures += 1
                self._healthy = False
                self._metrics.reconcile_errors.inc()
                _log.exception("reconcile_crashed")
            waiters = [asyncio.ensure_future(self._wake.wait()), asyncio.ensure_future(stop.wait())]
            try:
                await asyncio.wait(waiters, timeout=self._delay(), return_when=asyncio.FIRST_COMPLETED)
            finally:
                for waiter in waiters:
                    waiter.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await waiter
        _log.info("reconcile_stopped")
