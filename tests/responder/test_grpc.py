"""The responder over real gRPC (grpc.aio server on a free loopback port) with the dry-run backend."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import grpc
import pytest
from prometheus_client import CollectorRegistry

from responder.actions import ActiveAction
from responder.backends.base import Backend, BackendError
from responder.backends.dryrun import DryRunBackend
from responder.client import ResponderClient, make_action
from responder.rules import Element
from responder.service import ResponderService
from vigil.config import ProtectedConfig, ResponderConfig
from vigil.responder.v1 import responder_pb2 as pb

pytestmark = pytest.mark.timeout(60)


class FlakyBackend:
    """A real dry-run backend that refuses the first ``failures`` passes (to exercise retry/backoff)."""

    name = "flaky"

    def __init__(self, failures: int) -> None:
        self.inner = DryRunBackend()
        self.failures = failures
        self.calls = 0

    async def apply(self, desired: Sequence[ActiveAction]) -> None:
        self.calls += 1
        if self.calls <= self.failures:
            raise BackendError(f"simulated outage {self.calls}")
        await self.inner.apply(desired)

    async def current(self) -> dict[Element, float]:
        return await self.inner.current()

    async def close(self) -> None:
        await self.inner.close()


class Running:
    def __init__(self, service: ResponderService, client: ResponderClient) -> None:
        self.service = service
        self.client = client


async def start(
    tmp_path: Path, backend: Backend | None = None, state_file: bool = False, interval: float = 0.5
) -> tuple[ResponderService, asyncio.Event, asyncio.Task[None]]:
    cfg = ResponderConfig(
        listen="127.0.0.1:0",
        backend="dryrun",
        reconcile_interval_s=interval,
        max_action_duration_s=600,
        protected=ProtectedConfig(networks=["10.0.0.53/32", "fd00::53/128"]),
        state_file=tmp_path / "state.json" if state_file else None,
    )
    service = ResponderService(cfg, CollectorRegistry(), backend=backend)
    stop = asyncio.Event()
    task = asyncio.create_task(service.run(stop))
    await asyncio.wait_for(service.started.wait(), 10)
    return service, stop, task


@pytest.fixture
async def running(tmp_path: Path) -> AsyncIterator[Running]:
    service, stop, task = await start(tmp_path)
    client = ResponderClient(f"127.0.0.1:{service.port}", timeout_s=5)
    try:
        yield Running(service, client)
    finally:
        await client.close()
        stop.set()
        await asyncio.wait_for(task, 15)


async def wait_state(
    client: ResponderClient, action_id: str, state: int, within_s: float = 5
) -> pb.ActionStatus:
    deadline = time.monotonic() + within_s
    while True:
        for status in await client.list(include_inactive=True):
            if status.action.action_id == action_id and status.state == state:
                return status
        if time.monotonic() > deadline:
            raise AssertionError(f"{action_id} never reached {pb.ActionState.Name(state)}")  # type: ignore[arg-type]
        await asyncio.sleep(0.05)


def block(action_id: str, target: str = "10.0.0.5", duration: float = 60) -> pb.Action:
    return make_action(
        action_id,
        pb.ACTION_KIND_BLOCK_CONNECTION,
        target,
        duration,
        scopes=[pb.Scope(peer_ip="10.0.0.9", port=443, protocol=pb.IP_PROTOCOL_TCP)],
        reason="test",
    )


async def test_apply_twice_is_a_duplicate_and_gets_enforced(running: Running) -> None:
    action = block("a1")
    first = await running.client.apply(action)
    assert not first.duplicate
    assert first.status.state == pb.ACTION_STATE_PENDING
    assert first.status.backend == "dryrun"
    second = await running.client.apply(action)
    assert second.duplicate
    await wait_state(running.client, "a1", pb.ACTION_STATE_ACTIVE)
    backend = running.service.backend
    assert isinstance(backend, DryRunBackend)
    assert set(await backend.current()) == {
        Element("block_src_dst_proto_port_v4", ("10.0.0.5", "10.0.0.9", 6, 443))
    }
    registry = running.service.registry
    assert (
        registry.get_sample_value("vigil_responder_actions_applied_total", {"kind": "block_connection"}) == 1
    )
    assert registry.get_sample_value("vigil_responder_active_actions") == 1


async def test_same_id_other_content_is_invalid(running: Running) -> None:
    await running.client.apply(block("a1"))
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await running.client.apply(block("a1", target="10.0.0.6"))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_revoke_and_list(running: Running) -> None:
    await running.client.apply(block("a1"))
    await running.client.apply(block("a2", target="10.0.0.6"))
    await wait_state(running.client, "a1", pb.ACTION_STATE_ACTIVE)
    status = await running.client.revoke("a1", "false positive")
    assert status.state == pb.ACTION_STATE_REVOKED
    assert [s.action.action_id for s in await running.client.list()] == ["a2"]
    assert {s.action.action_id for s in await running.client.list(include_inactive=True)} == {"a1", "a2"}
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await running.client.revoke("missing")
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    backend = running.service.backend
    assert isinstance(backend, DryRunBackend)
    deadline = time.monotonic() + 5
    while any(e.key[0] == "10.0.0.5" for e in await backend.current()):
        assert time.monotonic() < deadline, "revoked block still installed"
        await asyncio.sleep(0.05)


async def test_protected_target_is_refused(running: Running) -> None:
    for i, target in enumerate(["10.0.0.53", "::ffff:10.0.0.53", "fd00::53"]):
        response = await running.client.apply(
            make_action(f"q{i}", pb.ACTION_KIND_QUARANTINE, target, 60, reason="test")
        )
        assert response.status.state == pb.ACTION_STATE_REFUSED
        assert "protected" in response.status.detail
    await asyncio.sleep(0.2)
    backend = running.service.backend
    assert isinstance(backend, DryRunBackend)
    assert await backend.current() == {}
    assert all(not change.added for change in backend.changes)


@pytest.mark.parametrize("duration", [-10, None])
async def test_invalid_expiry_is_refused(running: Running, duration: float | None) -> None:
    action = make_action("bad", pb.ACTION_KIND_QUARANTINE, "10.0.0.7", duration or 60)
    if duration is None:
        action.ClearField("expire_time")
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await running.client.apply(action)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "expire_time" in (err.value.details() or "")
    assert await running.client.list(include_inactive=True) == []


async def test_watch_streams_status_changes_and_expiry(running: Running) -> None:
    seen: list[tuple[str, int]] = []

    async def consume() -> None:
        async for status in running.client.watch():
            seen.append((status.action.action_id, status.state))
            if status.state == pb.ACTION_STATE_EXPIRED:
                return

    watcher = asyncio.create_task(consume())
    deadline = time.monotonic() + 5
    while running.service.servicer.watcher_count == 0:
        assert time.monotonic() < deadline
        await asyncio.sleep(0.02)
    await running.client.apply(block("w1", duration=1.0))
    await asyncio.wait_for(watcher, 10)
    assert seen == [
        ("w1", pb.ACTION_STATE_PENDING),
        ("w1", pb.ACTION_STATE_ACTIVE),
        ("w1", pb.ACTION_STATE_EXPIRED),
    ]
    assert running.service.registry.get_sample_value("vigil_responder_actions_expired_total") == 1


async def test_slow_watcher_is_dropped_not_the_responder(running: Running) -> None:
    call = running.client._stub.Watch(pb.WatchRequest())
    deadline = time.monotonic() + 5
    while running.service.servicer.watcher_count == 0:
        assert time.monotonic() < deadline
        await asyncio.sleep(0.02)
    try:
        # A burst of changes within one event-loop turn (as one reconcile pass marking many actions
        # ACTIVE produces): more than the 256-entry queue of a watcher holds before it can be drained.
        for i in range(400):
            running.service.store.apply(block(f"s{i}", target=f"10.1.{i // 250}.{i % 250 + 1}"))
        assert running.service.servicer.watcher_count == 0
        assert running.service.registry.get_sample_value("vigil_responder_watchers_dropped_total") == 1
        with pytest.raises(grpc.aio.AioRpcError) as err:
            async for _ in call:
                pass
        assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        # The responder itself is unaffected.
        assert len(await running.client.list()) == 400
        assert not (await running.client.apply(block("after"))).duplicate
    finally:
        call.cancel()


async def test_backend_failure_retries_with_backoff(tmp_path: Path) -> None:
    backend = FlakyBackend(failures=3)
    service, stop, task = await start(tmp_path, backend=backend, interval=30)
    client = ResponderClient(f"127.0.0.1:{service.port}")
    try:
        assert not service.health.readiness()[0]  # the first pass at start-up failed
        await client.apply(block("f1"))
        failed = await wait_state(client, "f1", pb.ACTION_STATE_FAILED)
        assert "simulated outage" in failed.detail
        # Retries are not tied to the 30 s resync interval: backoff brings the action up quickly.
        await wait_state(client, "f1", pb.ACTION_STATE_ACTIVE, within_s=10)
        assert backend.calls >= 4
        assert service.registry.get_sample_value("vigil_responder_reconcile_errors_total") == 3
        assert service.health.readiness() == (True, {"backend": True, "grpc": True})
    finally:
        await client.close()
        stop.set()
        await asyncio.wait_for(task, 15)


async def test_restart_reapplies_from_state_file(tmp_path: Path) -> None:
    action = block("persist")
    service, stop, task = await start(tmp_path, state_file=True)
    client = ResponderClient(f"127.0.0.1:{service.port}")
    try:
        await client.apply(action)
        await wait_state(client, "persist", pb.ACTION_STATE_ACTIVE)
    finally:
        await client.close()
        stop.set()
        await asyncio.wait_for(task, 15)

    service, stop, task = await start(tmp_path, state_file=True)
    client = ResponderClient(f"127.0.0.1:{service.port}")
    try:
        await wait_state(client, "persist", pb.ACTION_STATE_ACTIVE)
        assert (await client.apply(action)).duplicate  # the master retrying the same request
        backend = service.backend
        assert isinstance(backend, DryRunBackend)
        assert len(await backend.current()) == 1
    finally:
        await client.close()
        stop.set()
        await asyncio.wait_for(task, 15)
