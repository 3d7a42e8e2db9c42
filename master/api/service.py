"""The console as a service (``vigil console``, and one of the processes ``vigil up`` runs): the gRPC API and
the HTTP/JSON API over the master's store, a client of the responder like the master.

A separate process rather than part of the master: an operator's queries never slow the master's batches,
and the API restarts without touching detection.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import grpc
import uvicorn
from prometheus_client import CollectorRegistry

from master.api.api import Console
from master.api.auth import Tokens
from master.api.transport import ConsoleServicer, http_app
from master.store import RedisStore
from responder.client import ResponderClient
from vigil.config import VigilConfig
from vigil.console.v1 import console_pb2_grpc as pb_grpc
from vigil.health import HealthState
from vigil.log import get
from vigil.metrics import service_metrics
from vigil.service import run_service
from vigil.tls import server_credentials

log = get("console")

GRACE_S = 5.0
_RESPONDER_TIMEOUT_S = 3.0
_HTTP_START_S = 10.0


class ConsoleService:
    name = "console"

    def __init__(self, cfg: VigilConfig, registry: CollectorRegistry | None = None) -> None:
        self.cfg = cfg
        self.registry = registry if registry is not None else CollectorRegistry()
        self.health = HealthState()
        service_metrics(self.registry, "console")
        self.grpc_port: int | None = None
        self.http_port: int | None = None
        self.started = asyncio.Event()
        self._serving = False
        self.health.add_check("api", lambda: self._serving)

    async def run(self, stop: asyncio.Event) -> None:
        cfg = self.cfg
        tokens = Tokens(cfg.console.tokens)
        if not tokens:
            log.warning("console_no_tokens", hint="set console.tokens: every request is refused until then")
        store = RedisStore(cfg.redis.url, cfg.redis.key_prefix)
        link = None
        if cfg.master.responder_address:
            link = ResponderClient(
                cfg.master.responder_address, timeout_s=_RESPONDER_TIMEOUT_S, tls=cfg.master.responder_tls
            )
        console = Console(store, link, cfg.master.window_s)
        server = grpc.aio.server()
        servicer: Any = ConsoleServicer(console, tokens)  # its methods are made from the operations table
        pb_grpc.add_ConsoleServiceServicer_to_server(servicer, server)
        tls = cfg.console.tls.active
        if tls:
            port = server.add_secure_port(cfg.console.grpc_listen, server_credentials(cfg.console.tls))
        else:
            log.warning(
                "grpc_insecure", listen=cfg.console.grpc_listen, hint="set console.tls for mutual TLS"
            )
            port = server.add_insecure_port(cfg.console.grpc_listen)
        if port == 0:
            raise RuntimeError(f"cannot listen on {cfg.console.grpc_listen}")
        host, _, http_port = cfg.console.http_listen.rpartition(":")
        web = uvicorn.Server(
            uvicorn.Config(
                http_app(console, tokens),
                host=host.strip("[]"),
                port=int(http_port),
                log_config=None,
                access_log=False,  # the access log would carry nothing useful and risks headers
                lifespan="off",
            )
        )
        await server.start()
        web_task = asyncio.create_task(web.serve(), name="console-http")
        try:
            async with asyncio.timeout(_HTTP_START_S):
                while not web.started:
                    if web_task.done():
                        raise RuntimeError(f"cannot listen on {cfg.console.http_listen}")
                    await asyncio.sleep(0.02)
            self.grpc_port = port
            self.http_port = int(web.servers[0].sockets[0].getsockname()[1])
            self._serving = True
            self.started.set()
            log.info(
                "console_started", grpc_port=port, http_port=self.http_port, mtls=tls, tokens=len(tokens)
            )
            await stop.wait()
        finally:
            self._serving = False
            web.should_exit = True
            with contextlib.suppress(Exception):
                await asyncio.wait_for(web_task, GRACE_S)
            await server.stop(GRACE_S)
            if link is not None:
                await link.close()
            await store.close()


async def serve(cfg: VigilConfig) -> None:
    """Run the console until SIGTERM/SIGINT (what ``vigil console`` calls)."""
    await run_service(ConsoleService(cfg), cfg.console.http)
