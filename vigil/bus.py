"""NATS JetStream wiring shared by the sensor and the master: subjects, stream, connection."""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import sys
from typing import Any

import nats
import nats.errors
from nats.aio.client import Client as NatsClient
from nats.js import JetStreamContext
from nats.js.api import DiscardPolicy, RetentionPolicy, StorageType, StreamConfig
from nats.js.errors import BadRequestError, NotFoundError

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


def _redact_url(url: str) -> str:
    """The URL without any ``user:password@`` part, for messages."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url
    return f"{scheme}://{rest.rpartition('@')[2]}"


def _tls_context(cfg: NatsConfig) -> ssl.SSLContext | None:
    if not (cfg.tls_ca or cfg.tls_cert):
        return None
    ctx = ssl.create_default_context(cafile=str(cfg.tls_ca) if cfg.tls_ca else None)
    if cfg.tls_cert and cfg.tls_key:
        ctx.load_cert_chain(str(cfg.tls_cert), str(cfg.tls_key))
    return ctx


class BusConnectError(RuntimeError):
    """The first connection was refused for a reason retrying cannot fix (credentials, certificates)."""


def _permanent(exc: BaseException) -> bool:
    """Errors that mean the configuration is wrong, not that the server is briefly away."""
    if isinstance(exc, nats.errors.AuthorizationError | ssl.SSLCertVerificationError):
        return True
    return isinstance(exc, nats.errors.Error) and "authorization violation" in str(exc).lower()


def _never_raising(name: str, callback: Any) -> Any:
    async def guarded(*args: Any) -> None:
        try:
            await callback(*args)
        except Exception as exc:
            # Nothing sensible to do but keep the connection machinery alive.
            print(f"vigil: NATS {name} callback failed: {type(exc).__name__}", file=sys.stderr)

    return guarded


async def connect(cfg: NatsConfig, name: str, **callbacks: Any) -> NatsClient:
    """Connect with reconnects forever; callbacks (error_cb, disconnected_cb, ...) are passed through.

    An unreachable server is waited for (it may simply start after us), but a first connection refused
    for bad credentials or an untrusted certificate raises BusConnectError at once: nats-py would
    otherwise retry that forever, and the service would sit "starting" with the cause only in a
    callback. Once connected, every later failure is retried as before.
    """
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
        # Unwrapped only here, at the call into nats-py; everywhere else it stays a SecretStr.
        options["password"] = cfg.password.get_secret_value() if cfg.password else ""
    if cfg.creds_file:
        options["user_credentials"] = str(cfg.creds_file)
    tls = _tls_context(cfg)
    if tls is not None:
        options["tls"] = tls
    # A callback that raises inside nats-py's reconnect task ends reconnection for good: never let one.
    options.update({key: _never_raising(key, cb) for key, cb in callbacks.items()})
    user_error_cb = options.get("error_cb")
    refused: asyncio.Future[BaseException] = asyncio.get_running_loop().create_future()

    async def error_cb(exc: Exception) -> None:
        if _permanent(exc) and not refused.done():
            refused.set_result(exc)
        if user_error_cb is not None:
            await user_error_cb(exc)

    options["error_cb"] = error_cb
    client = NatsClient()
    attempt = asyncio.ensure_future(client.connect(**options))
    try:
        racing: list[asyncio.Future[Any]] = [attempt, refused]
        await asyncio.wait(racing, return_when=asyncio.FIRST_COMPLETED)
    except BaseException:
        # Cancelled by the caller (e.g. a start-up deadline): leave no half-open client behind.
        attempt.cancel()
        with contextlib.suppress(BaseException):
            await client.close()
        raise
    if attempt.done():
        refused.cancel()
        attempt.result()
        return client
    attempt.cancel()
    with contextlib.suppress(asyncio.CancelledError, Exception):
        await attempt
    with contextlib.suppress(Exception):
        await client.close()
    cause = refused.result()
    # The server's words (e.g. "Authorization Violation") and the user name, never the password.
    raise BusConnectError(
        f"NATS at {_redact_url(cfg.url)} refused {name!r} (user {cfg.user or '-'}): {cause}"
    ) from cause


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
        try:
            await js.add_stream(wanted)
            return
        except BadRequestError:
            # Another service (sensor or master) created it between our two calls: fall through.
            pass
    await js.update_stream(wanted)
