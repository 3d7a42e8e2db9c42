"""/metrics, /healthz and /readyz for every service, on a small asyncio HTTP server.

Readiness aggregates named checks; a service that is draining reports not-ready so a load balancer
or Kubernetes stops sending it work before it exits.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry

from vigil.metrics import exposition

ReadyCheck = Callable[[], bool]

_MAX_REQUEST_BYTES = 8192


@dataclass
class HealthState:
    checks: dict[str, ReadyCheck] = field(default_factory=dict)
    draining: bool = False

    def add_check(self, name: str, check: ReadyCheck) -> None:
        self.checks[name] = check

    def readiness(self) -> tuple[bool, dict[str, bool]]:
        results: dict[str, bool] = {}
        for name, check in self.checks.items():
            try:
                results[name] = bool(check())
            except Exception:
                results[name] = False
        ready = not self.draining and all(results.values())
        return ready, results


def _header(head: bytes, name: bytes) -> str:
    """The value of one request header (case-insensitive name; the first if repeated), or ""."""
    for line in head.split(b"\r\n")[1:]:
        key, sep, value = line.partition(b":")
        if sep and key.strip().lower() == name:
            return value.strip().decode("latin-1")
    return ""


class HealthServer:
    def __init__(self, registry: CollectorRegistry, state: HealthState, host: str, port: int) -> None:
        self._registry = registry
        self._state = state
        self._host = host
        self._port = port
        self._server: asyncio.Server | None = None

    @property
    def port(self) -> int:
        assert self._server is not None, "server not started"
        sock = self._server.sockets[0]
        return int(sock.getsockname()[1])

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, self._host, self._port)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    def _route(self, path: str, accept: str = "") -> tuple[int, str, bytes]:
        path = path.split("?", 1)[0]
        if path == "/metrics":
            metrics, content_type = exposition(self._registry, accept)
            return 200, content_type, metrics
        if path == "/healthz":
            return 200, "text/plain; charset=utf-8", b"ok\n"
        if path == "/readyz":
            ready, results = self._state.readiness()
            body = json.dumps({"ready": ready, "draining": self._state.draining, "checks": results})
            return (200 if ready else 503), "application/json", body.encode() + b"\n"
        return 404, "text/plain; charset=utf-8", b"not found\n"

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout=5)
            if len(head) > _MAX_REQUEST_BYTES:
                raise ValueError("request too large")
            request_line = head.split(b"\r\n", 1)[0].decode("latin-1")
            parts = request_line.split()
            if len(parts) < 2 or parts[0] not in ("GET", "HEAD"):
                status, ctype, body = 405, "text/plain", b"method not allowed\n"
            else:
                status, ctype, body = self._route(parts[1], _header(head, b"accept"))
            reason = {200: "OK", 404: "Not Found", 405: "Method Not Allowed", 503: "Service Unavailable"}
            header = (
                f"HTTP/1.1 {status} {reason.get(status, '')}\r\nContent-Type: {ctype}\r\n"
                f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
            )
            writer.write(header.encode() + (body if parts[0] != "HEAD" else b""))
            await writer.drain()
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError, ValueError, OSError):
            pass
        finally:
            writer.close()
