"""NATS JetStream wiring shared by the sensor and the master: subjects, stream, connection."""

from __future__ import annotations

import ssl
from typing import Any

import nats
from nats.aio.client import Client as NatsClient
from nats.js import JetStreamContext
from nats.js.api import DiscardPolicy, RetentionPolicy, StorageType, StreamConfig
from nats.js.errors import NotFoundError

from vigil.config import NatsConfig

TELEMETRY_SUBJECTS = "vigil.v1.telemetry.>"
HEARTBEAT_PREFIX = "vigil.v1.heartbeat"
# A batch carries at most this many bytes; larger payloads are refused by the master as garbage.
MAX_BATCH_BYTES = 8 * 1024 * 1024


def _token(value: str) -> str:
    """Subject tokens may not contain '.', '*', '>' or whitespace."""
    cleaned = "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in value)
    return cleaned or "_"


def telemetry_subject(site: str, sensor_id: str) -> str:
    return f"vigil.v1.telemetry.{_token(site)}.{_token(sensor_id)}"


def heartbeat_subject(sensor_id: str) -> str:
    return f"{HEARTBEAT_PREFIX}.{_token(sensor_id)}"


def _tls_context(cfg: NatsConfig) -> ssl.SSLContext | None:
    if not (cfg.tls_ca or cfg.tls_cert):
        return None
    ctx = ssl.create_default_context(cafile=str(cfg.tls_ca) if cfg.tls_ca else None)
    if cfg.tls_cert and cfg.tls_key:
        ctx.load_cert_chain(str(cfg.tls_cert), str(cfg.tls_key))
    return ctx


async def connect(cfg: NatsConfig, name: str, **callbacks: Any) -> NatsClient:
    """Connect with reconnects forever; callbacks (error_cb, disconnected_cb, ...) are passed through."""
    options: dict[str, Any] = {
        "servers": [cfg.url],
        "name": name,
        "connect_timeout": cfg.connect_timeout_s,
        "max_reconnect_attempts": -1,
        "reconnect_time_wait": 0.5,
        "allow_reconnect": True,
    }
    if cfg.user:
        options["user"] = cfg.user
        options["password"] = cfg.password or ""
    if cfg.creds_file:
        options["user_credentials"] = str(cfg.creds_file)
    tls = _tls_context(cfg)
    if tls is not None:
        options["tls"] = tls
    options.update(callbacks)
    return await nats.connect(**options)


def stream_config(cfg: NatsConfig) -> StreamConfig:
    return StreamConfig(
        name=cfg.stream,
        subjects=[TELEMETRY_SUBJECTS],
        retention=RetentionPolicy.LIMITS,
        storage=StorageType.FILE,
        max_age=cfg.stream_max_age_s,
        max_bytes=cfg.stream_max_bytes,
        max_msg_size=MAX_BATCH_BYTES,
        discard=DiscardPolicy.OLD,
        duplicate_window=cfg.duplicate_window_s,
    )


async def ensure_stream(js: JetStreamContext, cfg: NatsConfig) -> None:
    """Create the telemetry stream, or bring an existing one's limits in line with the config."""
    wanted = stream_config(cfg)
    try:
        await js.stream_info(cfg.stream)
    except NotFoundError:
        await js.add_stream(wanted)
        return
    await js.update_stream(wanted)
