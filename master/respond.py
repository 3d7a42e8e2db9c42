"""Deliver pending actions to the responder: at least once, retried with backoff, given up at expiry.

Actions are decided and recorded as "pending" in the same transaction as the breach, so delivery can fail,
the master can crash, the responder can be down: the action is still there and this loop sends it when it
can. The responder is idempotent on ``action_id``, so a repeat after a lost reply is harmless.

The link is :class:`responder.client.ResponderClient` (a deadline on every call); the loop only needs the
:class:`ResponderLink` protocol, so tests and other transports plug in without touching it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Protocol

import grpc

from master.store import ActionRecord, Store, StoreUnavailable
from vigil.log import get
from vigil.responder.v1 import responder_pb2

# What became of one delivery attempt (the `outcome` label of vigil_master_action_deliveries_total).
DELIVERY_OUTCOMES = ("applied", "refused", "expired", "retry")

log = get("master.respond")

_MAX_BACKOFF_S = 60.0
# Answers that are decisions, not failures: the action is refused for good.
_FINAL_CODES = frozenset(
    {grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.FAILED_PRECONDITION, grpc.StatusCode.PERMISSION_DENIED}
)


class ResponderLink(Protocol):
    async def apply(self, action: responder_pb2.Action) -> responder_pb2.ApplyResponse: ...

    async def close(self) -> None: ...


def backoff_s(attempts: int) -> float:
    return float(min(_MAX_BACKOFF_S, 2 ** max(attempts - 1, 0)))


class Dispatcher:
    def __init__(
        self,
        store: Store,
        link: ResponderLink,
        on_result: Callable[[str], None] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.link = link
        self.on_result = on_result or (lambda _state: None)
        self.clock = clock

    async def deliver(self, record: ActionRecord) -> None:
        now = self.clock()
        action = record.action
        if action.expire_time.ToNanoseconds() / 1e9 <= now:
            record.state, record.detail = "expired", "expired before the responder accepted it"
            await self.store.update_action(record, None)
            self.on_result(record.state)
            return
        record.attempts += 1
        try:
            response = await self.link.apply(action)
        except grpc.aio.AioRpcError as exc:
            record.detail = f"{exc.code().name}: {exc.details() or ''}"[:200]
            if exc.code() in _FINAL_CODES:
                # The responder understood and said no (invalid, protected, ...): retrying cannot help.
                record.state = "refused"
                await self.store.update_action(record, None)
                log.warning("action_refused", action_id=action.action_id, detail=record.detail)
                self.on_result(record.state)
                return
            await self.store.update_action(record, now + backoff_s(record.attempts))
            log.warning(
                "action_delivery_failed",
                action_id=action.action_id,
                attempts=record.attempts,
                code=exc.code().name,
            )
            self.on_result("retry")
            return
        refused = response.status.state in (
            responder_pb2.ACTION_STATE_REFUSED,
            responder_pb2.ACTION_STATE_FAILED,
        )
        record.state = "refused" if refused else "applied"
        record.detail = response.status.detail[:200]
        await self.store.update_action(record, None)
        log.info(
            "action_delivered", action_id=action.action_id, state=record.state, duplicate=response.duplicate
        )
        self.on_result(record.state)

    async def run_once(self) -> int:
        records = await self.store.due_actions(self.clock())
        for record in records:
            await self.deliver(record)
        return len(records)

    async def run(self, stop: asyncio.Event, wake: asyncio.Event, interval_s: float = 1.0) -> None:
        """Deliver until ``stop``; ``wake`` is set by the consumer when it committed new pending actions."""
        while not stop.is_set():
            try:
                await self.run_once()
            except StoreUnavailable:
                pass  # the consumer reports Redis readiness; just try again on the next tick
            except Exception:
                log.exception("dispatch_error")
            wake.clear()
            waiter = asyncio.ensure_future(wake.wait())
            stopper = asyncio.ensure_future(stop.wait())
            await asyncio.wait({waiter, stopper}, timeout=interval_s, return_when=asyncio.FIRST_COMPLETED)
            waiter.cancel()
            stopper.cancel()
