"""Async client for the responder (what the master uses), with a deadline on every call."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterable
from types import TracebackType

import grpc
from google.protobuf.timestamp_pb2 import Timestamp

from vigil.config import TlsConfig
from vigil.responder.v1 import responder_pb2 as pb
from vigil.responder.v1 import responder_pb2_grpc as pb_grpc
from vigil.tls import channel_credentials, channel_options


def scope_text(scopes: Iterable[pb.Scope]) -> str:
    """ " [198.51.100.31:*, *:445]": what a scoped action is limited to (peer:port, * = any); "" if none."""
    parts = [f"{s.peer_ip or '*'}:{s.port or '*'}" for s in scopes]
    return f" [{', '.join(parts)}]" if parts else ""


def make_action(
    action_id: str,
    kind: int,
    target_ip: str,
    duration_s: float,
    *,
    scopes: Iterable[pb.Scope] = (),
    reason: str = "",
    incident_id: str = "",
    breach_id: str = "",
    now: float | None = None,
) -> pb.Action:
    """Build an ``Action`` expiring ``duration_s`` from ``now`` (wall clock by default)."""
    now = time.time() if now is None else now
    expire = Timestamp()
    expire.FromNanoseconds(int((now + duration_s) * 1e9))
    created = Timestamp()
    created.FromNanoseconds(int(now * 1e9))
    return pb.Action(
        action_id=action_id,
        kind=kind,  # type: ignore[arg-type]
        target_ip=target_ip,
        scopes=list(scopes),
        expire_time=expire,
        reason=reason,
        incident_id=incident_id,
        breach_id=breach_id,
        create_time=created,
    )


class ResponderClient:
    """``async with ResponderClient("127.0.0.1:50051") as client: await client.apply(action)``.

    Errors surface as ``grpc.aio.AioRpcError`` (INVALID_ARGUMENT for a refused request, NOT_FOUND
    for an unknown revoke, DEADLINE_EXCEEDED / UNAVAILABLE when the responder is unreachable).

    With ``tls`` (an active TlsConfig) or ready-made ``credentials`` the channel is mutual TLS; a
    failed handshake (untrusted server, or the server refusing our certificate) surfaces as
    UNAVAILABLE. Without either, the channel is plaintext, as before.
    """

    def __init__(
        self,
        address: str,
        timeout_s: float = 5.0,
        *,
        tls: TlsConfig | None = None,
        credentials: grpc.ChannelCredentials | None = None,
    ) -> None:
        self.address = address
        self.timeout_s = timeout_s
        if tls is not None and credentials is not None:
            raise ValueError("pass either tls or credentials, not both")
        options: list[tuple[str, str]] = []
        if tls is not None and tls.active:
            credentials = channel_credentials(tls)
            options = channel_options(tls)
        self.secure = credentials is not None
        if credentials is not None:
            self._channel = grpc.aio.secure_channel(address, credentials, options=options)
        else:
            self._channel = grpc.aio.insecure_channel(address)
        self._stub = pb_grpc.ResponderServiceStub(self._channel)

    async def apply(self, action: pb.Action) -> pb.ApplyResponse:
        response: pb.ApplyResponse = await self._stub.Apply(
            pb.ApplyRequest(action=action), timeout=self.timeout_s
        )
        return response

    async def revoke(self, action_id: str, reason: str = "") -> pb.ActionStatus:
        response: pb.RevokeResponse = await self._stub.Revoke(
            pb.RevokeRequest(action_id=action_id, reason=reason), timeout=self.timeout_s
        )
        return response.status

    async def list(self, include_inactive: bool = False) -> list[pb.ActionStatus]:
        response: pb.ListResponse = await self._stub.List(
            pb.ListRequest(include_inactive=include_inactive), timeout=self.timeout_s
        )
        return list(response.actions)

    async def watch(self) -> AsyncIterator[pb.ActionStatus]:
        """Every status change from now on; no deadline (it is a stream), ends when the server drops it."""
        call = self._stub.Watch(pb.WatchRequest())
        try:
            async for response in call:
                yield response.status
        finally:
            call.cancel()

    async def close(self) -> None:
        await self._channel.close()

    async def __aenter__(self) -> ResponderClient:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()
