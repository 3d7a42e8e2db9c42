"""gRPC ``ResponderService``: RPCs change the desired state and wake the reconcile loop."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import grpc

from responder.actions import InvalidAction
from responder.metrics import ResponderMetrics
from responder.reconcile import Reconciler
from responder.state import ActionStore, UnknownAction
from vigil.log import get
from vigil.responder.v1 import responder_pb2 as pb
from vigil.responder.v1 import responder_pb2_grpc as pb_grpc

_log = get("responder.server")


class _Watcher:
    """One Watch stream's bounded queue. Overflow ends that stream, never blocks the responder."""

    def __init__(self, size: int) -> None:
        self.queue: asyncio.Queue[pb.ActionStatus | None] = asyncio.Queue(maxsize=size)
        self.dropped = False

    def offer(self, status: pb.ActionStatus) -> bool:
        if self.dropped:
            return False
        try:
            self.queue.put_nowait(status)
            return True
        except asyncio.QueueFull:
            # Make room for the end-of-stream marker: the client will resync with List anyway.
            self.dropped = True
            while not self.queue.empty():
                self.queue.get_nowait()
            self.queue.put_nowait(None)
            return False


class ResponderServicer(pb_grpc.ResponderServiceServicer):
    def __init__(
        self,
        store: ActionStore,
        reconciler: Reconciler,
        metrics: ResponderMetrics,
        watch_queue_size: int = 256,
    ) -> None:
        self._store = store
        self._reconciler = reconciler
        self._metrics = metrics
        self._watch_queue_size = watch_queue_size
        self._watchers: set[_Watcher] = set()
        store.add_listener(self._broadcast)

    def _broadcast(self, status: pb.ActionStatus) -> None:
        for watcher in list(self._watchers):
            if not watcher.offer(status) and watcher.dropped:
                self._watchers.discard(watcher)
                self._metrics.watchers_dropped.inc()
                _log.warning("watcher_dropped", reason="queue full")

    @property
    def watcher_count(self) -> int:
        return len(self._watchers)

    async def Apply(self, request: pb.ApplyRequest, context: grpc.aio.ServicerContext) -> pb.ApplyResponse:
        try:
            status, duplicate = self._store.apply(request.action)
        except InvalidAction as exc:
            _log.info("apply_invalid", action_id=request.action.action_id, error=str(exc))
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
            raise  # abort raises; this keeps the type checker informed
        except OSError as exc:
            # The state file could not be written: the action is not durable, so it is not accepted.
            _log.error("state_write_failed", error=str(exc))
            await context.abort(grpc.StatusCode.UNAVAILABLE, f"cannot persist state: {exc}")
            raise
        if not duplicate and status.state == pb.ACTION_STATE_PENDING:
            self._reconciler.trigger()
        return pb.ApplyResponse(status=status, duplicate=duplicate)

    async def Revoke(self, request: pb.RevokeRequest, context: grpc.aio.ServicerContext) -> pb.RevokeResponse:
        try:
            status = self._store.revoke(request.action_id, request.reason)
        except UnknownAction:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"no action with id {request.action_id!r}")
            raise
        self._reconciler.trigger()
        return pb.RevokeResponse(status=status)

    async def List(self, request: pb.ListRequest, context: grpc.aio.ServicerContext) -> pb.ListResponse:
        return pb.ListResponse(actions=self._store.statuses(include_inactive=request.include_inactive))

    async def Watch(
        self, request: pb.WatchRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.WatchResponse]:
        watcher = _Watcher(self._watch_queue_size)
        self._watchers.add(watcher)
        try:
            while True:
                status = await watcher.queue.get()
                if status is None:
                    await context.abort(
                        grpc.StatusCode.RESOURCE_EXHAUSTED,
                        "watcher fell behind; reconnect and List to resync",
                    )
                    return
                yield pb.WatchResponse(status=status)
        finally:
            self._watchers.discard(watcher)
