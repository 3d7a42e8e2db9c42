"""/metrics, /healthz and /readyz as Prometheus and Kubernetes see them; readiness drops while draining."""

from __future__ import annotations

import asyncio

from prometheus_client import CollectorRegistry, Counter

from vigil.health import HealthServer, HealthState


async def _get(port: int, path: str, method: str = "GET") -> tuple[int, bytes]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"{method} {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    await writer.drain()
    raw = await reader.read()
    writer.close()
    head, _, body = raw.partition(b"\r\n\r\n")
    return int(head.split()[1]), body


async def test_endpoints_and_draining() -> None:
    registry = CollectorRegistry()
    Counter("vigil_test_things_total", "Things.", registry=registry).inc(3)
    state = HealthState()
    backend_ok = True
    state.add_check("backend", lambda: backend_ok)
    server = HealthServer(registry, state, "127.0.0.1", 0)
    await server.start()
    try:
        status, body = await _get(server.port, "/metrics")
        assert status == 200 and b"vigil_test_things_total 3.0" in body
        assert (await _get(server.port, "/healthz"))[0] == 200
        status, body = await _get(server.port, "/readyz")
        assert status == 200 and b'"backend": true' in body
        backend_ok = False
        status, body = await _get(server.port, "/readyz")
        assert status == 503 and b'"backend": false' in body
        backend_ok = True
        state.draining = True
        status, body = await _get(server.port, "/readyz")
        assert status == 503 and b'"draining": true' in body
        assert (await _get(server.port, "/healthz"))[0] == 200, "alive while draining"
        assert (await _get(server.port, "/nope"))[0] == 404
        assert (await _get(server.port, "/metrics", method="POST"))[0] == 405
    finally:
        await server.stop()


async def test_a_failing_check_reports_not_ready_instead_of_crashing() -> None:
    state = HealthState()

    def broken() -> bool:
        raise RuntimeError("redis gone")

    state.add_check("redis", broken)
    ready, results = state.readiness()
    assert not ready and results == {"redis": False}


async def test_garbage_request_does_not_kill_the_server() -> None:
    server = HealthServer(CollectorRegistry(), HealthState(), "127.0.0.1", 0)
    await server.start()
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(b"\x00\xff garbage \r\n\r\n")
        await writer.drain()
        await reader.read()
        writer.close()
        assert (await _get(server.port, "/healthz"))[0] == 200
    finally:
        await server.stop()
