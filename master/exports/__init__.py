"""Live exports of model breaches: OCSF JSON lines, syslog (RFC 5424 / CEF), signed webhooks, Alertmanager.

The master hands every committed breach to :meth:`Exporters.submit` (after the ack, beside the live NATS
publish); each configured destination has its own bounded queue and worker (:mod:`master.exports.sink`), so
a slow or dead receiver delays only itself and never the master. One module per format:
:mod:`~master.exports.ocsf`, :mod:`~master.exports.syslog`, :mod:`~master.exports.webhook`.
"""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import Awaitable, Callable, Iterable
from pathlib import Path

from prometheus_client import CollectorRegistry

from master.exports import ocsf, syslog, webhook
from master.exports.sink import ExportMetrics, Retry, Sink
from vigil.alert.v1 import alert_pb2
from vigil.config import SEVERITIES, ExportsConfig

__all__ = ["ExportMetrics", "Exporters", "Sink"]


class _OcsfFile:
    """Appends one Detection Finding per line; the file is opened per write so that rotation by
    logrotate (move, then a new file) needs no signal."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def _write(self, line: bytes) -> None:
        with open(self.path, "ab") as fh:
            fh.write(line)

    async def send(self, breach: alert_pb2.ModelBreach) -> None:
        line = json.dumps(ocsf.detection_finding(breach), separators=(",", ":"), ensure_ascii=False)
        await asyncio.to_thread(self._write, line.encode("utf-8") + b"\n")

    async def close(self) -> None:
        return None


def _sinks(
    cfg: ExportsConfig,
) -> Iterable[tuple[str, Callable[..., Awaitable[None]], Callable[[], Awaitable[None]]]]:
    if cfg.ocsf.path is not None:
        out = _OcsfFile(cfg.ocsf.path)
        yield "ocsf", out.send, out.close
    s = cfg.syslog
    if s.address:
        host, _, port = s.address.rpartition(":")
        transport = syslog.SyslogTransport(
            host.strip("[]"),
            int(port),
            s.transport,
            ca_file=s.ca_file,
            cert_file=s.cert_file,
            key_file=s.key_file,
            server_name=s.server_name,
            connect_timeout_s=cfg.timeout_s,
        )

        async def send_syslog(breach: alert_pb2.ModelBreach) -> None:
            await transport.send(
                syslog.message(
                    breach,
                    fmt=s.format,
                    facility=s.facility,
                    hostname=s.hostname,
                    app_name=s.app_name,
                    sd_id=s.sd_id,
                    max_bytes=s.max_message_bytes,
                )
            )

        yield "syslog", send_syslog, transport.close
    w = cfg.webhook
    if w.url:
        hook = webhook.HttpTransport(
            w.url,
            secret=w.secret.get_secret_value().encode() if w.secret else None,
            timeout_s=cfg.timeout_s,
        )
        payload = webhook.PAYLOADS[w.format]

        async def send_webhook(breach: alert_pb2.ModelBreach) -> None:
            await hook.post(payload(breach))

        yield "webhook", send_webhook, hook.close
    a = cfg.alertmanager
    if a.url:
        manager = webhook.HttpTransport(a.url.rstrip("/") + "/api/v2/alerts", timeout_s=cfg.timeout_s)

        async def send_alert(breach: alert_pb2.ModelBreach) -> None:
            await manager.post(webhook.alertmanager_alerts(breach, a.resolve_after_s))

        yield "alertmanager", send_alert, manager.close


class Exporters:
    """Every configured destination; ``submit`` is synchronous and cannot fail."""

    def __init__(
        self, cfg: ExportsConfig, registry: CollectorRegistry, rng: random.Random | None = None
    ) -> None:
        self.metrics = ExportMetrics(registry)
        self.min_rank = SEVERITIES.index(cfg.min_severity)
        retry = Retry(cfg.retry_initial_s, cfg.retry_max_s)
        self.sinks = [
            Sink(
                kind,
                send,
                close,
                self.metrics,
                queue_max=cfg.queue_max,
                retry=retry,
                attempt_timeout_s=cfg.timeout_s * 2,
                rng=rng,
            )
            for kind, send, close in _sinks(cfg)
        ]

    def __bool__(self) -> bool:
        return bool(self.sinks)

    def submit(self, breaches: Iterable[alert_pb2.ModelBreach]) -> None:
        for breach in breaches:
            rank = SEVERITIES.index(breach.severity) if breach.severity in SEVERITIES else 0
            if rank < self.min_rank:
                continue
            for sink in self.sinks:
                sink.submit(breach)

    async def run(self, stop: asyncio.Event) -> None:
        await asyncio.gather(*(sink.run(stop) for sink in self.sinks))
