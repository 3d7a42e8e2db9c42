"""The lifecycle every Vigil service shares: serve health/metrics, run until SIGTERM, drain, exit."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from typing import Protocol

from prometheus_client import CollectorRegistry

from vigil.config import HttpConfig
from vigil.health import HealthServer, HealthState
from vigil.log import get


class ListenError(Exception):
    """An address a service must listen on is taken or not ours to use: the operator's to fix (exit 1),
    not a bug."""


class Service(Protocol):
    name: str
    registry: CollectorRegistry
    health: HealthState

    async def run(self, stop: asyncio.Event) -> None:
        """Work until ``stop`` is set, then drain in-flight work and return."""
        ...


async def run_service(service: Service, http: HttpConfig, stop: asyncio.Event | None = None) -> None:
    log = get(service.name)
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()

    def _request_stop(signame: str) -> None:
        log.info("shutdown_requested", signal=signame)
        service.health.draining = True
        stop.set()

    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, _request_stop, sig.name)
    server = HealthServer(service.registry, service.health, http.host, http.port)
    try:
        await server.start()
    except OSError as exc:
        raise ListenError(
            f"{service.name}: cannot serve /metrics on {http.host}:{http.port}: {exc.strerror or exc}"
        ) from exc
    log.info("http_listening", host=http.host, port=server.port)
    try:
        await service.run(stop)
    finally:
        service.health.draining = True
        await server.stop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.remove_signal_handler(sig)
        log.info("stopped")
