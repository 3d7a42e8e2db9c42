"""The one place where services are wired together: what `vigil <command>` runs."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

import grpc
import yaml
from nats.aio.msg import Msg

from responder.client import ResponderClient, scope_text
from vigil import bus, embedded
from vigil.alert.v1 import alert_pb2
from vigil.config import TlsConfig, VigilConfig
from vigil.log import get
from vigil.responder.v1 import responder_pb2

log = get("up")

BREACH_SUBJECT = "vigil.v1.alerts.breach"
DEVICE_SUBJECT = "vigil.v1.alerts.device"


class UserError(Exception):
    """A problem the operator can fix (missing file, no permission); printed without a traceback."""


# -- single services ---------------------------------------------------------------------------------


async def sensor(cfg: VigilConfig) -> int:
    from sensor.service import serve

    return await serve(cfg)


async def master(cfg: VigilConfig) -> int:
    import gc

    from master.service import serve

    # The process is the master's: everything imported so far lives for ever, so take it out of the
    # collector's full scans (the batch path pauses the collector around its steps; see master/gcpause.py).
    gc.freeze()
    await serve(cfg)
    return 0


async def responder(cfg: VigilConfig) -> int:
    from responder.service import serve

    await serve(cfg)
    return 0


def analyze(cfg: VigilConfig, captures: Sequence[Path], as_json: bool, learn: Sequence[Path] = ()) -> int:
    from vigil.offline import analyze_captures

    return analyze_captures(cfg, captures, as_json=as_json, out=sys.stdout, learn=learn)


def evaluate(cfg: VigilConfig, directory: Path, as_json: bool) -> int:
    from vigil.evaluate import evaluate_directory

    return evaluate_directory(cfg, directory, as_json=as_json, out=sys.stdout)


def sensor_read(cfg: VigilConfig, captures: Sequence[Path], fmt: str, out: Path) -> int:
    from sensor.logwriter import read_to_logs

    return read_to_logs(cfg, captures, fmt, out)


# -- all in one --------------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _socket_dir(data_dir: Path) -> Path:
    """Unix socket paths are limited to ~100 bytes; fall back to a short per-data-dir path in /tmp."""
    if len(str(data_dir / "redis" / "valkey.sock")) < 100:
        return data_dir / "redis"
    digest = hashlib.sha256(str(data_dir).encode()).hexdigest()[:12]
    return Path("/tmp") / f"vigil-{digest}"


def _ts(ts: Any) -> str:
    return datetime.fromtimestamp(ts.seconds + ts.nanos / 1e9, UTC).strftime("%Y-%m-%d %H:%M:%S")


class LiveView:
    """What `vigil up` prints as it happens: devices, breaches, actions."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.devices = 0
        self.breaches = 0
        self.actions: dict[str, str] = {}

    def line(self, kind: str, text: str) -> None:
        print(f"{datetime.now(UTC).strftime('%H:%M:%S')}  {kind:<7} {text}", file=self.out, flush=True)

    def device(self, payload: bytes) -> None:
        dev = alert_pb2.DeviceRef.FromString(payload)
        self.devices += 1
        extra = "  ".join(x for x in (dev.mac, dev.hostname) if x)
        self.line("device", f"{dev.ip:<15} new device {dev.device_id}  {extra}".rstrip())

    def breach(self, payload: bytes) -> None:
        breach = alert_pb2.ModelBreach.FromString(payload)
        self.breaches += 1
        self.line(
            "breach",
            f"{breach.device.ip:<15} {breach.model}  score {breach.score} ({breach.severity or 'n/a'})"
            f"  at {_ts(breach.time)}\n"
            f"{'':18}{breach.explanation}",
        )

    def action(self, status: responder_pb2.ActionStatus) -> None:
        act = status.action
        state = responder_pb2.ActionState.Name(status.state).removeprefix("ACTION_STATE_").lower()
        if self.actions.get(act.action_id) == state:
            return
        self.actions[act.action_id] = state
        kind = responder_pb2.ActionKind.Name(act.kind).removeprefix("ACTION_KIND_").lower()
        self.line(
            "action",
            f"{act.target_ip:<15} {kind}{scope_text(act.scopes)} {state} via {status.backend}"
            f" until {_ts(act.expire_time)}{'  (' + status.detail + ')' if status.detail else ''}",
        )


def _reveal(cfg: VigilConfig) -> dict[str, Any]:
    """The config as a plain tree with secrets in clear: the children need the real values.

    The file is written with mode 0600 inside the data directory, like any credentials file.
    """
    tree: dict[str, Any] = json.loads(cfg.model_dump_json())
    if cfg.nats.password is not None:
        tree["nats"]["password"] = cfg.nats.password.get_secret_value()
    return tree


def _child_env(cfg_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("VIGIL_")}
    env["VIGIL_CONFIG"] = str(cfg_path)
    return env


def _spawn(name: str, cfg_path: Path, logs: Path, *args: str) -> subprocess.Popen[bytes]:
    logfile = open(logs / f"{name}.log", "ab")  # noqa: SIM115 - owned by the child
    proc = subprocess.Popen(
        [sys.executable, "-m", "vigil.cli", *args],
        stdout=logfile,
        stderr=subprocess.STDOUT,
        env=_child_env(cfg_path),
    )
    logfile.close()
    return proc


async def _watch_actions(address: str, tls: TlsConfig, view: LiveView, stop: asyncio.Event) -> None:
    """Follow the responder: its current actions, then every change (reconnecting if it restarts)."""
    while not stop.is_set():
        first: asyncio.Future[responder_pb2.ActionStatus] | None = None
        try:
            async with ResponderClient(address, timeout_s=2.0, tls=tls) as client:
                # Subscribe first, then list, so no change falls between the two.
                changes = client.watch()
                first = asyncio.ensure_future(anext(changes))
                for status in await client.list(include_inactive=True):
                    view.action(status)
                view.action(await first)
                async for status in changes:
                    view.action(status)
        except (grpc.aio.AioRpcError, StopAsyncIteration):
            # The responder is not up yet, or restarted: try again shortly.
            await asyncio.sleep(0.3)
        finally:
            if first is not None and not first.done():
                first.cancel()
            if first is not None:
                with contextlib.suppress(asyncio.CancelledError, grpc.aio.AioRpcError, StopAsyncIteration):
                    await first


async def _consumer_settled(cfg: VigilConfig, nats_url: str) -> bool:
    nc = await bus.connect(cfg.nats.model_copy(update={"url": nats_url}), "vigil-up-probe")
    try:
        js = nc.jetstream()
        info = await js.consumer_info(cfg.nats.stream, cfg.master.consumer)
        return bool(info.num_pending == 0 and info.num_ack_pending == 0)
    except Exception:
        return False
    finally:
        await nc.close()


async def up(cfg: VigilConfig, exit_when_done: bool = False, out: TextIO = sys.stdout) -> int:
    if cfg.sensor.source == "pcap":
        missing = [str(p) for p in cfg.sensor.pcap_files if not p.is_file()]
        if missing:
            raise UserError(f"capture not found: {', '.join(missing)}")
        if not cfg.sensor.pcap_files:
            raise UserError("nothing to watch: give --pcap FILE or --interface IFACE")
    if cfg.responder.backend == "nftables" and os.geteuid() != 0:
        raise UserError("the nftables backend needs root; use --backend dryrun")
    data = cfg.up.data_dir.resolve()
    logs = data / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    view = LiveView(out)
    nats_srv = embedded.start_nats(data / "nats")
    redis_srv = embedded.start_redis(_socket_dir(data))
    responder_addr = f"127.0.0.1:{_free_port()}"
    effective = cfg.model_copy(
        update={
            "nats": cfg.nats.model_copy(update={"url": nats_srv.url}),
            "redis": cfg.redis.model_copy(update={"url": redis_srv.url}),
            "master": cfg.master.model_copy(update={"responder_address": responder_addr}),
            "responder": cfg.responder.model_copy(update={"listen": responder_addr}),
            "sensor": cfg.sensor.model_copy(update={"spool_dir": data / "spool"}),
        }
    )
    cfg_path = data / "config.yaml"
    cfg_path.write_text(yaml.safe_dump(_reveal(effective)))
    cfg_path.chmod(0o600)
    view.line("vigil", f"nats-server {nats_srv.url}  valkey {redis_srv.url}  logs {logs}")
    children: dict[str, subprocess.Popen[bytes]] = {}
    stop = asyncio.Event()
    nc = None
    watcher: asyncio.Task[None] | None = None
    try:
        children["responder"] = _spawn("responder", cfg_path, logs, "responder")
        children["master"] = _spawn("master", cfg_path, logs, "master")
        nc = await bus.connect(effective.nats, "vigil-up")

        async def on_breach(msg: Msg) -> None:
            _safe(view.breach, msg.data)

        async def on_device(msg: Msg) -> None:
            _safe(view.device, msg.data)

        await nc.subscribe(BREACH_SUBJECT, cb=on_breach)
        await nc.subscribe(DEVICE_SUBJECT, cb=on_device)
        watcher = asyncio.create_task(
            _watch_actions(responder_addr, effective.master.responder_tls, view, stop)
        )
        children["sensor"] = _spawn("sensor", cfg_path, logs, "sensor")
        pcaps = ", ".join(map(str, cfg.sensor.pcap_files))
        source = pcaps if cfg.sensor.source == "pcap" else cfg.sensor.interface
        view.line("vigil", f"sensor reading {source}; responder backend {cfg.responder.backend}")
        return await _supervise(children, effective, nats_srv.url, view, exit_when_done)
    finally:
        stop.set()
        if watcher is not None:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher
        if nc is not None:
            with contextlib.suppress(Exception):
                await nc.close()
        for name in ("sensor", "master", "responder"):
            proc = children.get(name)
            if proc is not None and proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        nats_srv.stop()
        redis_srv.stop()
        view.line(
            "vigil",
            f"stopped: {view.devices} devices, {view.breaches} breaches, {len(view.actions)} actions",
        )


def _safe(fn: Any, payload: bytes) -> None:
    """The live view must survive a message it cannot decode."""
    try:
        fn(payload)
    except Exception as exc:
        log.warning("live_view_decode_failed", error=type(exc).__name__)


async def _supervise(
    children: dict[str, subprocess.Popen[bytes]],
    cfg: VigilConfig,
    nats_url: str,
    view: LiveView,
    exit_when_done: bool,
) -> int:
    sensor_done_at: float | None = None
    settled_since: float | None = None
    loop_stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in ("SIGINT", "SIGTERM"):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(getattr(signal, sig), loop_stop.set)
    while not loop_stop.is_set():
        await asyncio.sleep(0.25)
        for name, proc in children.items():
            code = proc.poll()
            if code is None:
                continue
            if name == "sensor" and code == 0 and cfg.sensor.source == "pcap":
                if sensor_done_at is None:
                    sensor_done_at = time.monotonic()
                    view.line("vigil", "capture fully read; waiting for the master to catch up")
                continue
            view.line("vigil", f"{name} exited with code {code}; see its log")
            return 1
        if exit_when_done and sensor_done_at is not None:
            if await _consumer_settled(cfg, nats_url):
                settled_since = settled_since or time.monotonic()
                # Give policy -> responder a moment after the last batch is acknowledged.
                if time.monotonic() - settled_since > 2.0:
                    return 0
            else:
                settled_since = None
    return 0
