"""Real receivers for the export tests: rsyslog on free loopback ports, an HTTP server in a thread, and
breaches built through the master's own catalog."""

from __future__ import annotations

import asyncio
import json
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from master.breaches import make_breach
from vigil.alert.v1 import alert_pb2
from vigil.config import ExportsConfig

RSYSLOGD = shutil.which("rsyslogd") or ("/usr/sbin/rsyslogd" if Path("/usr/sbin/rsyslogd").exists() else None)
OPENSSL = shutil.which("openssl")


def breach(
    n: int = 0,
    *,
    ip: str = "10.0.1.4",
    explanation: str = "10.0.1.4 contacted 200 distinct internal hosts in 60 s (expected 1.2, P=3e-12)",
    peer: str = "",
    model: str = "Device / Network Scan",
    techniques: tuple[str, ...] = ("T1046",),
    score: int = 71,
) -> alert_pb2.ModelBreach:
    device = alert_pb2.DeviceRef(
        device_id=f"dev-{n:04d}",
        ip=ip,
        mac="b8:27:eb:00:00:01",
        hostname="ws-04",
        tags=["vendor:Raspberry Pi"],
    )
    evidence = [
        alert_pb2.Evidence(
            feature="distinct_internal_destinations",
            observed=200,
            expected=1.2,
            probability=3e-12,
            window_seconds=60,
            examples=["10.0.1.20", "10.0.1.21"],
        )
    ]
    t = 1_796_679_000.25 + n
    return make_breach(
        model,
        device,
        key=n,
        score=score,
        when=t,
        window=(t - 60, t),
        explanation=explanation,
        evidence=evidence,
        techniques=techniques,
        uids=["CAbc1", "CAbc2"],
        peer=peer,
    )


def exports_config(**sections: Any) -> ExportsConfig:
    """``master.exports`` from plain values, validated as a configuration file's would be."""
    return ExportsConfig.model_validate(sections)


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_listening(port: int, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port}")


# -- rsyslog ---------------------------------------------------------------------------------------------

# Each input writes what rsyslog parsed out of the RFC 5424 message as one JSON object per line.
_TEMPLATE = (
    r'template(name="parsed" type="string" string="{\"app\":\"%app-name:::json%\",'
    r"\"host\":\"%hostname:::json%\",\"procid\":\"%procid:::json%\",\"msgid\":\"%msgid:::json%\","
    r"\"pri\":%pri%,\"ts\":\"%timereported:::date-rfc3339%\",\"sd\":\"%structured-data:::json%\","
    r'\"msg\":\"%msg:::json%\"}\n")'
)


@dataclass
class Rsyslog:
    directory: Path
    ports: dict[str, int]
    ca_file: Path
    process: subprocess.Popen[bytes] | None = None

    def received(self, transport: str) -> list[dict[str, Any]]:
        path = self.directory / f"{transport}.jsonl"
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]

    async def wait_for(self, transport: str, count: int, timeout_s: float = 10.0) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            rows = self.received(transport)
            if len(rows) >= count:
                return rows
            await asyncio.sleep(0.05)
        raise AssertionError(
            f"rsyslog got {len(self.received(transport))} of {count} messages over {transport}"
        )


def _openssl(*args: str | Path) -> None:
    assert OPENSSL is not None
    subprocess.run([OPENSSL, *map(str, args)], check=True, capture_output=True)


def make_certs(directory: Path) -> tuple[Path, Path, Path]:
    """A throwaway CA and a server certificate for 127.0.0.1 signed by it: (ca, cert, key)."""
    ca, ca_key = directory / "ca.pem", directory / "ca.key"
    _openssl(
        "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
        "-keyout", ca_key, "-out", ca, "-days", "2", "-subj", "/CN=vigil-test-ca",
        "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign",
        "-addext", "subjectKeyIdentifier=hash",
    )  # fmt: skip
    cert, key, csr, ext = (directory / n for n in ("server.pem", "server.key", "server.csr", "server.ext"))
    ext.write_text(
        "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\n"
        "extendedKeyUsage=serverAuth\nsubjectAltName=IP:127.0.0.1,DNS:localhost\n"
        "subjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid,issuer\n"
    )
    _openssl(
        "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
        "-keyout", key, "-out", csr, "-subj", "/CN=localhost",
    )  # fmt: skip
    _openssl(
        "x509", "-req", "-in", csr, "-CA", ca, "-CAkey", ca_key, "-CAcreateserial", "-days", "2",
        "-out", cert, "-extfile", ext,
    )  # fmt: skip
    return ca, cert, key


def start_rsyslog(directory: Path, ports: dict[str, int] | None = None) -> Rsyslog:
    """rsyslogd writing what each input receives to ``<transport>.jsonl`` in ``directory``; ``ports`` (a
    restart) reuses an earlier instance's ports, else free ones are picked."""
    assert RSYSLOGD is not None
    ca, cert, key = make_certs(directory)
    ports = ports or {"udp": free_port(socket.SOCK_DGRAM), "tcp": free_port(), "tls": free_port()}
    lines = [
        # Control characters kept as sent, so a line break in an explanation can be compared exactly.
        f'global(workDirectory="{directory}" maxMessageSize="64k" '
        'parser.escapeControlCharactersOnReceive="off" '
        f'DefaultNetstreamDriverCAFile="{ca}" '
        f'DefaultNetstreamDriverCertFile="{cert}" DefaultNetstreamDriverKeyFile="{key}")',
        'module(load="imudp")',
        'module(load="imtcp" maxSessions="50")',
        _TEMPLATE,
    ]
    for transport in ports:
        lines.append(
            f'ruleset(name="{transport}") {{ action(type="omfile" file="{directory}/{transport}.jsonl" '
            'template="parsed") }'
        )
    lines.append(f'input(type="imudp" address="127.0.0.1" port="{ports["udp"]}" ruleset="udp")')
    lines.append(f'input(type="imtcp" address="127.0.0.1" port="{ports["tcp"]}" ruleset="tcp")')
    lines.append(
        f'input(type="imtcp" address="127.0.0.1" port="{ports["tls"]}" ruleset="tls" '
        'streamDriver.name="gtls" streamDriver.mode="1" streamDriver.authMode="anon")'
    )
    conf = directory / "rsyslog.conf"
    conf.write_text("\n".join(lines) + "\n")
    log = open(directory / "rsyslogd.log", "wb")  # noqa: SIM115 (handed to the process)
    process = subprocess.Popen(
        [RSYSLOGD, "-n", "-f", str(conf), "-i", str(directory / "rsyslogd.pid")], stdout=log, stderr=log
    )
    server = Rsyslog(directory, ports, ca, process)
    try:
        wait_listening(ports["tcp"])
        wait_listening(ports["tls"])
    except TimeoutError:
        stop_rsyslog(server)
        raise AssertionError((directory / "rsyslogd.log").read_text()) from None
    return server


def stop_rsyslog(server: Rsyslog) -> None:
    if server.process is not None:
        server.process.terminate()
        try:
            server.process.wait(10)
        except subprocess.TimeoutExpired:
            server.process.kill()
            server.process.wait(5)


# -- HTTP --------------------------------------------------------------------------------------------


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class HttpReceiver:
    port: int
    requests: list[Received] = field(default_factory=list)
    status: int = 200
    _server: ThreadingHTTPServer | None = None
    _thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = min(int(self.headers.get("Content-Length", "0")), 1 << 20)
                body = self.rfile.read(length)
                receiver.requests.append(Received(self.path, dict(self.headers.items()), body))
                self.send_response(receiver.status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                return None

        server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(5)

    async def wait_for(self, count: int, timeout_s: float = 10.0) -> list[Received]:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and len(self.requests) < count:  # noqa: ASYNC110 (a thread fills it)
            await asyncio.sleep(0.02)
        return list(self.requests)


def http_receiver() -> Iterator[HttpReceiver]:
    receiver = HttpReceiver(free_port())
    receiver.start()
    try:
        yield receiver
    finally:
        receiver.stop()
