"""The responder as a Vigil service: gRPC server + reconcile loop + /metrics, /healthz, /readyz."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable

import grpc
from prometheus_client import CollectorRegistry

from responder.backends.base import Backend
from responder.backends.dryrun import DryRunBackend
from responder.backends.nftables import NftablesBackend
from responder.metrics import ResponderMetrics
from responder.protected import ProtectedAssets
from responder.reconcile import Reconciler
from responder.server import ResponderServicer
from responder.state import ActionStore
from vigil.config import ResponderConfig, VigilConfig
from vigil.health import HealthState
from vigil.log import get
from vigil.metrics import service_metrics
from vigil.responder.v1 import responder_pb2_grpc as pb_grpc
from vigil.service import ListenError, run_service
from vigil.tls import server_credentials

_log = get("responder")

GRACE_S = 5.0


def make_backend(cfg: ResponderConfig, clock: Callable[[], float] = time.time) -> Backend:
    if cfg.backend == "nftables":
        return NftablesBackend(table=cfg.nft_table, netns=cfg.netns, clock=clock)
    return DryRunBackend(clock=clock)


class ResponderService:
    name = "responder"

    def __init__(
        self,
        cfg: ResponderConfig,
        registry: CollectorRegistry | None = None,
        backend: Backend | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.cfg = cfg
        self.registry = registry if registry is not None else CollectorRegistry()
        self.health = HealthState()
        service_metrics(self.registry, "responder")
        self.metrics = ResponderMetrics(self.registry)
        self.backend = backend if backend is not None else make_backend(cfg, clock)
        self.store = ActionStore(
            protected=ProtectedAssets(cfg.protected.networks),
            max_action_duration_s=cfg.max_action_duration_s,
            backend_name=self.backend.name,
            metrics=self.metrics,
            state_file=cfg.state_file,
            clock=clock,
        )
        self.reconciler = Reconciler(
            self.store, self.backend, self.metrics, interval_s=cfg.reconcile_interval_s, clock=clock
        )
        self.servicer = ResponderServicer(self.store, self.reconciler, self.metrics)
        self.port: int | None = None
        self.started = asyncio.Event()
        self._grpc_serving = False
        self.health.add_check("backend", lambda: self.reconciler.healthy)
        self.health.add_check("grpc", lambda: self._grpc_serving)

    async def run(self, stop: asyncio.Event) -> None:
        restored = self.store.load()
        server = grpc.aio.server()
        pb_grpc.add_ResponderServiceServicer_to_server(self.servicer, server)
        tls = self.cfg.tls.active
        if tls:
            # Credentials are built before anything listens, so a bad file stops start-up here.
            credentials = server_credentials(self.cfg.tls)
        else:
            # Anyone who can reach this port can block traffic; say so once per start, loudly.
            _log.warning(
                "grpc_insecure",
                listen=self.cfg.listen,
                hint="set responder.tls.{ca_file,cert_file,key_file} to require client certificates",
            )
        try:
            port = (
                server.add_secure_port(self.cfg.listen, credentials)
                if tls
                else server.add_insecure_port(self.cfg.listen)
            )
        except RuntimeError as exc:  # grpc's way of saying the address is taken or not ours
            port = 0
            _log.debug("grpc_bind_failed", error=str(exc)[:200])
        if port == 0:
            raise ListenError(
                f"responder: cannot listen for gRPC on {self.cfg.listen} (in use, or not an address here)"
            )
        self.port = port
        reconcile_stop = asyncio.Event()
        # First pass before serving, so restored actions are enforced before new ones arrive.
        await self.reconciler.reconcile_once()
        reconcile_task = asyncio.create_task(self.reconciler.run(reconcile_stop), name="responder-reconcile")
        await server.start()
        self._grpc_serving = True
        self.started.set()
        _log.info(
            "responder_started",
            listen=self.cfg.listen,
            port=port,
            backend=self.backend.name,
            mtls=tls,
            protected_networks=len(self.cfg.protected.networks),
            restored=restored,
        )
        try:
            await stop.wait()
        finally:
            self.health.draining = True
            self._grpc_serving = False
            await server.stop(GRACE_S)
            reconcile_stop.set()
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait_for(reconcile_task, GRACE_S)
            await self.backend.close()
            self.store.save()
            _log.info("responder_stopped", active=len(self.store.desired()))


async def serve(cfg: VigilConfig) -> None:
    """Run the responder until SIGTERM/SIGINT (what ``vigil responder`` calls)."""
    await run_service(ResponderService(cfg.responder), cfg.responder.http)
