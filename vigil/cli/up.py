"""`vigil up`: the whole system on one machine, supervised.

It takes an exclusive lock on its data directory, starts a real nats-server (JetStream, every message
fsynced before its ack) and a real Valkey (AOF, every write fsynced before its answer) on that data, then
the sensor, master and responder as separate processes, and watches all five:

* a server that dies is started again on the same data and address, with backoff (0.5 s doubling); after
  five failed attempts in a row `vigil up` stops everything and exits with a clear message (exit 5);
* the master or responder that dies is started again the same way; one that dies five times within a minute,
  or stops for a configuration problem, ends the run (exit 5, or its own exit code);
* a sensor replaying captures republishes the same batches under the same ids when started again, so it
  is restarted like the others (the bus and the master drop what they already had); a sensor on a live
  interface is restarted too (what the wire carried while it was down is lost);
* SIGTERM or SIGINT stops the sensor first (it flushes and drains its spool), then the master and the
  responder, then the servers, each with a deadline after which it is killed: shutdown is bounded. A
  second signal kills everything at once. Every process started here gets SIGTERM from the kernel if
  `vigil up` itself is killed, so nothing outlives it.

The console says what happens (devices, breaches and actions as they come, every restart), and the last line
gives the totals from the store, which a restart does not disturb.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

import grpc
import yaml
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg

from responder.client import ResponderClient, scope_text
from vigil import bus, embedded
from vigil.action_kinds import action_kind_name
from vigil.alert.v1 import alert_pb2
from vigil.config import TlsConfig, VigilConfig
from vigil.exitcodes import Exit
from vigil.log import get
from vigil.responder.v1 import responder_pb2

log = get("up")

BREACH_SUBJECT = "vigil.v1.alerts.breach"
DEVICE_SUBJECT = "vigil.v1.alerts.device"
POLL_S = 0.25
# Restarts: the first after RESTART_FIRST_S, doubling up to RESTART_MAX_S; a server that failed to start
# GIVE_UP_AFTER times in a row, or a service that died GIVE_UP_AFTER times within CRASH_LOOP_S, ends the run.
RESTART_FIRST_S = 0.5
RESTART_MAX_S = 8.0
GIVE_UP_AFTER = 5
CRASH_LOOP_S = 60.0
SERVER_START_TIMEOUT_S = 5.0
# Shutdown deadlines after SIGTERM, then SIGKILL: the sensor gets its spool's drain time on top.
SERVICE_STOP_S = 10.0
SERVER_STOP_S = 5.0
# Once the capture is read and the consumer has nothing pending, wait this long for policy -> responder.
SETTLE_S = 2.0


class UserError(Exception):
    """A problem the operator can fix (missing file, no permission, a locked data directory)."""


class DependencyError(Exception):
    """A server or service could not be kept running."""


def _now() -> str:
    return datetime.now(UTC).strftime("%H:%M:%S")


def _ts(ts: Any) -> str:
    return datetime.fromtimestamp(ts.seconds + ts.nanos / 1e9, UTC).strftime("%Y-%m-%d %H:%M:%S")


def describe_exit(code: int) -> str:
    if code == 0:
        return "done"
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    try:
        return f"exit code {code} ({Exit(code).meaning})"
    except ValueError:
        return f"exit code {code}"


class LiveView:
    """What `vigil up` prints as it happens: devices, breaches, actions, and what the supervisor does."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.devices = 0
        self.breaches = 0
        self.actions: dict[str, str] = {}

    def line(self, kind: str, text: str) -> None:
        print(f"{_now()}  {kind:<7} {text}", file=self.out, flush=True)

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
        kind = action_kind_name(act.kind)
        self.line(
            "action",
            f"{act.target_ip:<15} {kind}{scope_text(act.scopes)} {state} via {status.backend}"
            f" until {_ts(act.expire_time)}{'  (' + status.detail + ')' if status.detail else ''}",
        )


def _safe(fn: Callable[[bytes], None], payload: bytes) -> None:
    """The live view must survive a message it cannot decode."""
    try:
        fn(payload)
    except Exception as exc:
        log.warning("live_view_decode_failed", error=type(exc).__name__)


# -- the data directory ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class DataDir:
    """Where one `vigil up` keeps everything; locked for as long as it runs."""

    root: Path

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def nats(self) -> Path:
        return self.root / "nats"

    @property
    def redis(self) -> Path:
        return self.root / "redis"

    @property
    def spool(self) -> Path:
        return self.root / "spool"

    @property
    def zeek_logs(self) -> Path:
        return self.root / "zeek-logs"

    @property
    def responder_state(self) -> Path:
        return self.root / "responder" / "state.json"

    @property
    def config(self) -> Path:
        return self.root / "config.yaml"

    @property
    def lock_file(self) -> Path:
        return self.root / "vigil-up.lock"

    @property
    def socket(self) -> Path:
        """Valkey's socket: unix socket paths are limited to ~100 bytes, so a deep data directory gets a
        short one in /tmp named after it (its data stays here)."""
        inside = self.redis / "valkey.sock"
        if len(str(inside)) < 100:
            return inside
        digest = hashlib.sha256(str(self.root).encode()).hexdigest()[:12]
        return Path("/tmp") / f"vigil-{digest}" / "valkey.sock"

    def has_state(self) -> bool:
        store = self.nats / "js"
        return store.is_dir() and any(store.iterdir())

    def forget(self) -> None:
        """Everything an earlier run learned and queued (the logs stay)."""
        for path in (self.nats, self.redis, self.spool, self.responder_state.parent, self.socket.parent):
            if path.is_dir() and path != self.root:
                shutil.rmtree(path)
        with contextlib.suppress(FileNotFoundError):
            self.config.unlink()


class DataDirLock:
    """An exclusive ``flock`` on the data directory: a second `vigil up` there is refused, never allowed to
    share the first one's JetStream store and AOF file. The kernel releases it when the holder dies."""

    def __init__(self, data: DataDir) -> None:
        self.data = data
        self._fd: int | None = None

    def acquire(self) -> None:
        path = self.data.lock_file
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 32).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise UserError(
                f"data directory {self.data.root} is in use by another `vigil up` (pid {holder}); "
                "stop it first, or give this one another --data-dir"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, 0)
            os.close(self._fd)
            self._fd = None


def prepare(data: DataDir) -> None:
    """Create the data directory, or say clearly why it cannot be one."""
    root = data.root
    if root.exists() and not root.is_dir():
        raise UserError(f"--data-dir {root}: exists and is not a directory")
    try:
        data.logs.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"--data-dir {root}: cannot create: {exc.strerror or exc}") from None
    if not os.access(root, os.W_OK | os.X_OK):
        raise UserError(f"--data-dir {root}: not writable by this process")


# -- restarts -----------------------------------------------------------------------------------------------


@dataclass
class Restarts:
    """When a dead process may be started again, and when to stop trying."""

    recent: deque[float] = field(default_factory=deque)
    failures_in_row: int = 0
    next_at: float = 0.0

    def died(self, now: float) -> bool:
        """Note a death; False when it died GIVE_UP_AFTER times within CRASH_LOOP_S (a crash loop)."""
        self.recent.append(now)
        while self.recent and now - self.recent[0] > CRASH_LOOP_S:
            self.recent.popleft()
        self.next_at = now + self._delay()
        return len(self.recent) < GIVE_UP_AFTER

    def failed(self, now: float) -> bool:
        """Note a start that failed; False after GIVE_UP_AFTER failures in a row."""
        self.failures_in_row += 1
        self.next_at = now + self._delay()
        return self.failures_in_row < GIVE_UP_AFTER

    def started(self) -> None:
        self.failures_in_row = 0

    def _delay(self) -> float:
        attempts = max(len(self.recent), self.failures_in_row)
        return float(min(RESTART_MAX_S, RESTART_FIRST_S * 2 ** max(attempts - 1, 0)))


class Server:
    """One embedded server, kept alive on the same data and address."""

    def __init__(
        self,
        name: str,
        start: Callable[[], embedded.ManagedProcess],
        view: LiveView,
        process: embedded.ManagedProcess | None = None,
    ) -> None:
        self.name = name
        self._start = start
        self.view = view
        self.process = process or start()
        self.down_since: float | None = None
        self.restarts = Restarts()

    def check(self, now: float) -> None:
        """Restart the server if it died and its turn has come; DependencyError when giving up."""
        code = self.process.proc.poll()
        if code is None:
            return
        if self.down_since is None:
            self.down_since = now
            self.view.line(
                "vigil", f"{self.name} died ({describe_exit(code)}); restarting it on the same data"
            )
            if not self.restarts.died(now):
                raise DependencyError(f"{self.name} died {GIVE_UP_AFTER} times within {CRASH_LOOP_S:.0f} s")
        if now < self.restarts.next_at:
            return
        try:
            self.process = self._start()
        except embedded.EmbeddedServerError as exc:
            if not self.restarts.failed(now):
                raise DependencyError(
                    f"{self.name} could not be restarted after {GIVE_UP_AFTER} attempts: {exc}"
                ) from None
            self.view.line("vigil", f"{self.name} did not start ({exc}); trying again")
            return
        self.restarts.started()
        self.view.line("vigil", f"{self.name} is back after {now - self.down_since:.1f} s")
        self.down_since = None

    def stop(self) -> None:
        self.process.stop(SERVER_STOP_S)


@dataclass
class Service:
    """One Vigil service process (`vigil sensor|master|responder`)."""

    name: str
    proc: subprocess.Popen[bytes]
    restarts: Restarts = field(default_factory=Restarts)
    finished: int | None = None  # the sensor's exit code once its input was read to the end
    down_since: float | None = None


def spawn(name: str, cfg_path: Path, logs: Path) -> subprocess.Popen[bytes]:
    """`vigil NAME` on the run's configuration, its output appended to its log; DependencyError when the
    process cannot even be created (no memory, no process slots, the log unwritable)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("VIGIL_")}
    env["VIGIL_CONFIG"] = str(cfg_path)
    try:
        logfile = open(logs / f"{name}.log", "ab")  # noqa: SIM115 - owned by the child
    except OSError as exc:
        raise DependencyError(f"cannot open the {name} log: {exc.strerror or exc}") from None
    try:
        return subprocess.Popen(
            embedded.die_with_parent([sys.executable, "-m", "vigil.cli", name]),
            stdout=logfile,
            stderr=subprocess.STDOUT,
            env=env,
        )
    except OSError as exc:
        raise DependencyError(f"cannot start {name}: {exc.strerror or exc}") from None
    finally:
        logfile.close()


def _reveal(cfg: VigilConfig) -> dict[str, Any]:
    """The config as a plain tree with secrets in clear: the children need the real values.

    The file is written with mode 0600 inside the data directory, like any credentials file.
    """
    tree: dict[str, Any] = json.loads(cfg.model_dump_json())
    if cfg.nats.password is not None:
        tree["nats"]["password"] = cfg.nats.password.get_secret_value()
    for item, token in zip(tree["console"]["tokens"], cfg.console.tokens, strict=True):
        if token.token is not None:
            item["token"] = token.token.get_secret_value()
    return tree


# -- the run ------------------------------------------------------------------------------------------------


class AllInOne:
    def __init__(self, cfg: VigilConfig, data: DataDir, view: LiveView, exit_when_done: bool) -> None:
        self.cfg = cfg
        self.data = data
        self.view = view
        self.exit_when_done = exit_when_done
        self.servers: list[Server] = []
        self.services: dict[str, Service] = {}
        self.stop = asyncio.Event()
        self.signals = 0
        self.effective: VigilConfig | None = None
        self.nc: NatsClient | None = None
        self.nats_monitoring = ""

    # -- start ----------------------------------------------------------------------------------------
    def start_servers(self) -> tuple[str, str]:
        nats_dir = self.data.nats
        sock = self.data.socket

        def start_nats(port: int = -1) -> embedded.EmbeddedNats:
            return embedded.start_nats(
                nats_dir, port=port, timeout_s=SERVER_START_TIMEOUT_S, sync_always=True, die_with_us=True
            )

        first = start_nats()
        self.nats_monitoring = first.monitoring_url
        port = int(first.url.rsplit(":", 1)[1])
        # Later starts keep the address every client was given.
        self.servers.append(Server("nats-server", lambda: start_nats(port), self.view, first))

        def start_valkey() -> embedded.EmbeddedRedis:
            return embedded.start_redis(
                self.data.redis,
                timeout_s=SERVER_START_TIMEOUT_S,
                socket_path=sock,
                fsync="always",
                die_with_us=True,
            )

        valkey = Server("valkey-server", start_valkey, self.view)
        self.servers.append(valkey)
        return first.url, f"unix://{sock}"

    def write_config(
        self, nats_url: str, redis_url: str, responder_addr: str, console_addrs: tuple[str, str]
    ) -> Path:
        cfg = self.cfg
        # A service's /metrics port left to chance (0) is chosen here, so that it can be printed.
        http = {
            name: section.http.model_copy(update={"port": section.http.port or _free_port()})
            for name, section in (
                ("sensor", cfg.sensor),
                ("master", cfg.master),
                ("responder", cfg.responder),
                ("console", cfg.console),
            )
        }
        self.effective = cfg.model_copy(
            update={
                "console": cfg.console.model_copy(
                    update={
                        "grpc_listen": console_addrs[0],
                        "http_listen": console_addrs[1],
                        "http": http["console"],
                    }
                ),
                "nats": cfg.nats.model_copy(update={"url": nats_url}),
                "redis": cfg.redis.model_copy(update={"url": redis_url}),
                "master": cfg.master.model_copy(
                    update={"responder_address": responder_addr, "http": http["master"]}
                ),
                "responder": cfg.responder.model_copy(
                    update={
                        "listen": responder_addr,
                        "state_file": self.data.responder_state,
                        "http": http["responder"],
                    }
                ),
                "sensor": cfg.sensor.model_copy(
                    update={
                        "http": http["sensor"],
                        "spool_dir": self.data.spool,
                        "zeek_logs": cfg.sensor.zeek_logs.model_copy(
                            update={
                                "directory": (cfg.sensor.zeek_logs.directory or self.data.zeek_logs).resolve()
                            }
                        ),
                    }
                ),
            }
        )
        self.data.responder_state.parent.mkdir(parents=True, exist_ok=True)
        path = self.data.config
        # Created 0600 (it holds the bus password in clear), never readable by others even for an instant.
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(yaml.safe_dump(_reveal(self.effective)))
        return path

    # -- watch ----------------------------------------------------------------------------------------
    async def supervise(self, cfg_path: Path) -> int:
        """Watch every process until done, stopped or given up; returns the exit code."""
        settled_since: float | None = None
        while not self.stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stop.wait(), POLL_S)
            if self.stop.is_set():
                break
            now = time.monotonic()
            for server in self.servers:
                server.check(now)
            code = self._check_services(cfg_path, now)
            if code is not None:
                return code
            sensor = self.services["sensor"]
            if self.exit_when_done and sensor.finished is not None:
                if await self._consumer_settled():
                    settled_since = settled_since or now
                    if now - settled_since > SETTLE_S:
                        return sensor.finished
                else:
                    settled_since = None
        return self.services["sensor"].finished or Exit.OK

    def _check_services(self, cfg_path: Path, now: float) -> int | None:
        for svc in self.services.values():
            if svc.finished is not None:
                continue
            if svc.down_since is not None:
                if now >= svc.restarts.next_at:
                    svc.proc = spawn(svc.name, cfg_path, self.data.logs)
                    svc.down_since = None
                    self.view.line("vigil", f"{svc.name} restarted")
                continue
            code = svc.proc.poll()
            if code is None:
                continue
            verdict = self._on_exit(svc, code)
            if verdict is not None:
                return verdict
            if svc.finished is None:
                if not svc.restarts.died(now):
                    raise DependencyError(
                        f"{svc.name} died {GIVE_UP_AFTER} times within {CRASH_LOOP_S:.0f} s; see "
                        f"{self.data.logs / (svc.name + '.log')}"
                    )
                svc.down_since = now
                self.view.line("vigil", f"{svc.name} died ({describe_exit(code)}); restarting it")
        return None

    def _on_exit(self, svc: Service, code: int) -> int | None:
        """What a service's exit means: an exit code to end with, None to restart (or, for a sensor whose
        input is done, to wait for the master)."""
        logfile = self.data.logs / f"{svc.name}.log"
        if code in (Exit.ENVIRONMENT, Exit.USAGE):
            self.view.line("vigil", f"{svc.name} cannot run ({describe_exit(code)}); see {logfile}")
            return code
        if svc.name != "sensor":
            return None
        if self.cfg.sensor.source == "pcap" and code in (Exit.OK, Exit.INPUT, Exit.UNDELIVERED):
            svc.finished = code
            if code == Exit.OK:
                self.view.line("vigil", "capture fully read; waiting for the master to catch up")
            elif code == Exit.INPUT:
                self.view.line("vigil", f"the capture could not be read entirely; see {logfile}")
            else:
                self.view.line(
                    "vigil",
                    f"sensor stopped with telemetry undelivered; it is kept in {self.data.spool} for the "
                    f"next run (see {logfile})",
                )
            return None
        # Died: restarted. A replay republishes its batches under the same ids, which are dropped as known.
        return None

    async def _consumer_settled(self) -> bool:
        nc, cfg = self.nc, self.effective
        if nc is None or cfg is None or not nc.is_connected:
            return False
        try:
            js = nc.jetstream()
            info = await asyncio.wait_for(js.consumer_info(cfg.nats.stream, cfg.master.consumer), 2.0)
        except Exception:
            return False
        return bool(info.num_pending == 0 and info.num_ack_pending == 0)

    # -- stop -----------------------------------------------------------------------------------------
    def on_signal(self) -> None:
        self.signals += 1
        self.stop.set()
        if self.signals > 1:
            self.view.line("vigil", "second signal: killing everything now")
            self.kill_all()

    def kill_all(self) -> None:
        for svc in self.services.values():
            if svc.proc.poll() is None:
                svc.proc.kill()
        for server in self.servers:
            server.process.kill()

    async def stop_services(self) -> None:
        """Sensor first (it flushes and drains its spool to the still-running bus), then the master and the
        responder; each gets SIGTERM and a deadline, then SIGKILL. The caller stops the servers last."""
        sensor = self.services.get("sensor")
        if sensor is not None:
            await _terminate([sensor.proc], SERVICE_STOP_S + self.cfg.sensor.drain_timeout_s)
        await _terminate([s.proc for n, s in self.services.items() if n != "sensor"], SERVICE_STOP_S)

    def store_up(self) -> bool:
        return self.effective is not None and all(s.process.proc.poll() is None for s in self.servers)


async def _terminate(procs: list[subprocess.Popen[bytes]], grace_s: float) -> None:
    alive = [p for p in procs if p.poll() is None]
    for proc in alive:
        with contextlib.suppress(ProcessLookupError):
            proc.terminate()
    deadline = time.monotonic() + grace_s
    # Popen has nothing to await: poll, without blocking the loop (a second signal must still be heard).
    while any(p.poll() is None for p in alive) and time.monotonic() < deadline:  # noqa: ASYNC110
        await asyncio.sleep(0.05)
    for proc in alive:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


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


async def _store_totals(cfg: VigilConfig) -> str:
    """Devices, breaches, actions and committed batches as the store holds them ('' when it cannot say)."""
    from master.store import RedisStore

    store = RedisStore(cfg.redis.url, cfg.redis.key_prefix)
    try:
        totals = await asyncio.wait_for(store.totals(), 5.0)
    except Exception:
        return ""
    finally:
        with contextlib.suppress(Exception):
            await store.close()
    return (
        f"{totals['devices']} devices, {totals['breaches']} breaches, {totals['actions']} actions, "
        f"{totals['batches']} batches committed"
    )


async def run(
    cfg: VigilConfig, exit_when_done: bool = False, fresh: bool = False, out: TextIO = sys.stdout
) -> int:
    from sensor.livelogs import describe as describe_zeek_logs
    from sensor.livelogs import directory_problem
    from sensor.sources.pcap import capture_problems
    from sensor.sources.tap import interface_problem

    # That there is something to read is checked with the other flags (vigil/cli/__init__.py: _check_source).
    if cfg.sensor.source == "pcap":
        problems = capture_problems(cfg.sensor.pcap_files)
        if problems:
            raise UserError("; ".join(problems))
    elif (problem := interface_problem(cfg.sensor.interface or "")) is not None:
        raise UserError(problem)
    if cfg.responder.backend == "nftables" and os.geteuid() != 0:
        raise UserError("the nftables backend needs root; use --backend dryrun")
    data = DataDir(cfg.up.data_dir.resolve())
    prepare(data)
    problem = directory_problem(cfg.sensor.zeek_logs.directory or data.zeek_logs)
    if problem:
        raise UserError(f"zeek logs: {problem}")
    lock = DataDirLock(data)
    lock.acquire()
    view = LiveView(out)
    run = AllInOne(cfg, data, view, exit_when_done)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, run.on_signal)
    watcher: asyncio.Task[None] | None = None
    code: int = Exit.INTERNAL  # until a path below says otherwise
    try:
        if fresh:
            data.forget()
            view.line("vigil", f"--fresh: forgot what earlier runs in {data.root} learned")
        had_state = data.has_state()
        nats_url, redis_url = run.start_servers()
        responder_addr = f"127.0.0.1:{_free_port()}"
        console_addrs = (f"127.0.0.1:{_free_port()}", f"127.0.0.1:{_free_port()}")
        cfg_path = run.write_config(nats_url, redis_url, responder_addr, console_addrs)
        effective = run.effective
        assert effective is not None
        view.line("vigil", f"service logs {data.logs}")
        for name, where in endpoints(effective, run.nats_monitoring):
            view.line("vigil", f"listening  {name:<22} {where}")
        tokens = (
            f"{len(cfg.console.tokens)} token(s)" if cfg.console.tokens else "no tokens: set console.tokens"
        )
        view.line(
            "vigil",
            f"console grpc {console_addrs[0]}  http http://{console_addrs[1]} (/openapi.json; {tokens})",
        )
        if had_state:
            known = await _store_totals(effective)
            view.line(
                "vigil",
                f"continuing from the state in {data.root} ({known or 'unreadable'}); a capture it already "
                "read adds nothing new — run with --fresh to start over",
            )
        run.services["responder"] = Service("responder", spawn("responder", cfg_path, data.logs))
        run.services["master"] = Service("master", spawn("master", cfg_path, data.logs))
        run.services["console"] = Service("console", spawn("console", cfg_path, data.logs))
        run.nc = await asyncio.wait_for(bus.connect(effective.nats, "vigil-up"), 10.0)

        async def on_breach(msg: Msg) -> None:
            _safe(view.breach, msg.data)

        async def on_device(msg: Msg) -> None:
            _safe(view.device, msg.data)

        await run.nc.subscribe(BREACH_SUBJECT, cb=on_breach)
        await run.nc.subscribe(DEVICE_SUBJECT, cb=on_device)
        watcher = asyncio.create_task(
            _watch_actions(responder_addr, effective.master.responder_tls, view, run.stop)
        )
        run.services["sensor"] = Service("sensor", spawn("sensor", cfg_path, data.logs))
        source = (
            ", ".join(map(str, cfg.sensor.pcap_files))
            if cfg.sensor.source == "pcap"
            else cfg.sensor.interface
        )
        view.line("vigil", f"sensor reading {source}; responder backend {cfg.responder.backend}")
        view.line("vigil", f"zeek logs {describe_zeek_logs(effective.sensor.zeek_logs)}")
        code = await run.supervise(cfg_path)
        return code
    except DependencyError as exc:
        view.line("vigil", f"giving up: {exc}")
        code = Exit.DEPENDENCY
        return code
    except (embedded.EmbeddedServerError, TimeoutError, bus.BusConnectError) as exc:
        view.line("vigil", f"could not start: {exc or type(exc).__name__}")
        code = Exit.DEPENDENCY
        return code
    finally:
        run.stop.set()
        if watcher is not None:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher
        if run.nc is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(run.nc.close(), 2.0)
        totals = ""
        try:
            await run.stop_services()
            if run.store_up() and run.effective is not None:
                totals = await _store_totals(run.effective)
        finally:
            for server in reversed(run.servers):
                server.stop()
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(sig)
            lock.release()
        view.line("vigil", f"stopped ({describe_exit(code)}): {totals or 'store totals unavailable'}")


def endpoints(cfg: VigilConfig, nats_monitoring: str = "") -> list[tuple[str, str]]:
    """Where everything of `vigil up` listens, as (what, address) in the order an operator looks for them:
    the bus and the store, each service's /metrics (with /healthz and /readyz beside it), the gRPC API."""
    out = [("nats", cfg.nats.url)]
    if nats_monitoring:
        out.append(("nats monitoring", f"{nats_monitoring}/varz"))
    out.append(("valkey", cfg.redis.url))
    for name, http in (
        ("sensor", cfg.sensor.http),
        ("master", cfg.master.http),
        ("responder", cfg.responder.http),
        ("console", cfg.console.http),
    ):
        out.append((f"{name} metrics", f"http://{_host_port(http.host, http.port)}/metrics"))
    scheme = "grpcs" if cfg.responder.tls.active else "grpc"
    out.append(("responder gRPC", f"{scheme}://{cfg.responder.listen}"))
    console_scheme = "grpcs" if cfg.console.tls.active else "grpc"
    out.append(("console gRPC", f"{console_scheme}://{cfg.console.grpc_listen}"))
    out.append(("console HTTP API", f"http://{cfg.console.http_listen}/openapi.json"))
    return out


def _host_port(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
