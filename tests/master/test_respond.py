"""Delivering actions to a real gRPC responder endpoint: success, retry after failure, expiry."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc
import pytest

from master.respond import Dispatcher, backoff_s
from master.store import ActionRecord, Commit, Store
from responder.client import ResponderClient
from vigil.responder.v1 import responder_pb2, responder_pb2_grpc


class Recorder(responder_pb2_grpc.ResponderServiceServicer):
    """A minimal responder: remembers what it was asked, refuses one target, can be told to fail."""

    def __init__(self) -> None:
        self.applied: list[str] = []
        self.fail = False

    async def Apply(
        self, request: responder_pb2.ApplyRequest, context: grpc.aio.ServicerContext
    ) -> responder_pb2.ApplyResponse:
        if self.fail:
            await context.abort(grpc.StatusCode.UNAVAILABLE, "backend down")
        if request.action.target_ip == "10.0.0.2":
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "not acceptable")
        duplicate = request.action.action_id in self.applied
        self.applied.append(request.action.action_id)
        state = (
            responder_pb2.ACTION_STATE_REFUSED
            if request.action.target_ip == "10.0.0.1"
            else responder_pb2.ACTION_STATE_ACTIVE
        )
        return responder_pb2.ApplyResponse(
            status=responder_pb2.ActionStatus(action=request.action, state=state), duplicate=duplicate
        )


@pytest.fixture
async def responder() -> AsyncIterator[tuple[Recorder, str]]:
    server = grpc.aio.server()
    recorder = Recorder()  # type: ignore[abstract]  # List/Revoke/Watch: not needed, gRPC answers UNIMPLEMENTED
    responder_pb2_grpc.add_ResponderServiceServicer_to_server(recorder, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    yield recorder, f"127.0.0.1:{port}"
    await server.stop(0)


def _action(action_id: str, target: str, expire: float) -> ActionRecord:
    action = responder_pb2.Action(
        action_id=action_id, kind=responder_pb2.ACTION_KIND_BLOCK_ALL_OUTGOING, target_ip=target
    )
    action.expire_time.FromSeconds(int(expire))
    return ActionRecord(action, "pending", "autonomous")


async def test_delivery_retry_and_expiry(store: Store, responder: tuple[Recorder, str]) -> None:
    recorder, address = responder
    now = [1_000_000.0]
    outcomes: list[str] = []
    link = ResponderClient(address, timeout_s=2.0)
    dispatcher = Dispatcher(store, link, on_result=outcomes.append, clock=lambda: now[0])
    commit = Commit(
        ("b",),
        actions=[
            _action("act-a", "10.0.1.5", now[0] + 600),
            _action("act-b", "10.0.0.1", now[0] + 600),
            _action("act-c", "10.0.1.6", now[0] + 1),
            _action("act-d", "10.0.0.2", now[0] + 600),
        ],
        due_time=now[0],
    )
    assert await store.commit(commit)
    recorder.fail = True
    assert await dispatcher.run_once() == 4
    assert outcomes == ["retry"] * 4
    # Retried only after the backoff, then delivered; the short-lived one expired meanwhile.
    assert await dispatcher.run_once() == 0
    now[0] += backoff_s(1) + 1
    recorder.fail = False
    assert await dispatcher.run_once() == 4
    ids = ("act-a", "act-b", "act-c", "act-d")
    states = {i: (await store.action(i)).state for i in ids}  # type: ignore[union-attr]
    assert states == {"act-a": "applied", "act-b": "refused", "act-c": "expired", "act-d": "refused"}
    assert recorder.applied == ["act-a", "act-b"]
    assert await dispatcher.run_once() == 0
    await link.close()
