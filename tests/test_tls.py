"""Transport security end to end: gRPC mutual TLS to a real responder, NATS auth (+TLS) on a real server.

Certificates are minted per test session with the openssl CLI (a throwaway CA, a server certificate
for 127.0.0.1/localhost and a client certificate), so nothing secret is checked into the repository.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import nats.errors
import pytest
from prometheus_client import CollectorRegistry
from structlog.testing import capture_logs

from responder.client import ResponderClient, make_action
from responder.service import ResponderService
from vigil import embedded
from vigil.bus import BusConnectError, connect
from vigil.config import ConfigError, NatsConfig, ResponderConfig, TlsConfig, build
from vigil.responder.v1 import responder_pb2 as pb
from vigil.tls import TlsSetupError, channel_credentials, server_credentials

pytestmark = pytest.mark.timeout(60)

OPENSSL = shutil.which("openssl")
NATS_PASSWORD = "correct-horse-battery-staple"


@dataclass(frozen=True)
class Pki:
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    # A second, unrelated CA with its own client certificate: trusted by nobody.
    rogue_ca: Path
    rogue_client_cert: Path
    rogue_client_key: Path


def _openssl(*args: str | Path) -> None:
    assert OPENSSL is not None
    subprocess.run([OPENSSL, *map(str, args)], check=True, capture_output=True)


def _make_ca(directory: Path, name: str) -> tuple[Path, Path]:
    cert, key = directory / f"{name}.pem", directory / f"{name}.key"
    _openssl(
        "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
        "-keyout", key, "-out", cert, "-days", "2", "-subj", f"/CN={name}",
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign",
        "-addext", "subjectKeyIdentifier=hash",
    )  # fmt: skip
    return cert, key


def _make_leaf(directory: Path, name: str, ca: tuple[Path, Path], usage: str) -> tuple[Path, Path]:
    cert, key, csr = directory / f"{name}.pem", directory / f"{name}.key", directory / f"{name}.csr"
    ext = directory / f"{name}.ext"
    # SANs for the server (clients check them, the CN is ignored); AKI/SKI because strict X.509
    # verification (Python >= 3.13, BoringSSL) refuses leaves without them.
    ext.write_text(
        "basicConstraints=critical,CA:FALSE\n"
        "keyUsage=critical,digitalSignature,keyEncipherment\n"
        f"extendedKeyUsage={usage}\n"
        "subjectAltName=IP:127.0.0.1,DNS:localhost\n"
        "subjectKeyIdentifier=hash\n"
        "authorityKeyIdentifier=keyid,issuer\n"
    )
    _openssl(
        "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
        "-keyout", key, "-out", csr, "-subj", f"/CN={name}",
    )  # fmt: skip
    _openssl(
        "x509", "-req", "-in", csr, "-CA", ca[0], "-CAkey", ca[1], "-CAcreateserial",
        "-days", "2", "-out", cert, "-extfile", ext,
    )  # fmt: skip
    return cert, key


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    if OPENSSL is None:
        pytest.skip("the openssl CLI is needed to mint test certificates and is not on PATH")
    d = tmp_path_factory.mktemp("pki")
    ca = _make_ca(d, "vigil-test-ca")
    rogue = _make_ca(d, "rogue-ca")
    server = _make_leaf(d, "responder", ca, "serverAuth")
    client = _make_leaf(d, "master", ca, "clientAuth")
    rogue_client = _make_leaf(d, "rogue-master", rogue, "clientAuth")
    return Pki(
        ca=ca[0],
        server_cert=server[0],
        server_key=server[1],
        client_cert=client[0],
        client_key=client[1],
        rogue_ca=rogue[0],
        rogue_client_cert=rogue_client[0],
        rogue_client_key=rogue_client[1],
    )


# --- gRPC mutual TLS against the real responder ------------------------------------------------------


@dataclass
class Responder:
    service: ResponderService
    address: str


@pytest.fixture
async def mtls_responder(pki: Pki) -> AsyncIterator[Responder]:
    cfg = ResponderConfig(
        listen="127.0.0.1:0",
        backend="dryrun",
        reconcile_interval_s=0.5,
        tls=TlsConfig(ca_file=pki.ca, cert_file=pki.server_cert, key_file=pki.server_key),
    )
    service = ResponderService(cfg, CollectorRegistry())
    stop = asyncio.Event()
    with capture_logs() as logs:
        task = asyncio.create_task(service.run(stop))
        await asyncio.wait_for(service.started.wait(), 10)
    assert not [e for e in logs if e["event"] == "grpc_insecure"]
    try:
        yield Responder(service, f"127.0.0.1:{service.port}")
    finally:
        stop.set()
        await asyncio.wait_for(task, 15)


def _block(action_id: str) -> pb.Action:
    return make_action(
        action_id,
        pb.ACTION_KIND_BLOCK_CONNECTION,
        "10.0.0.5",
        60,
        scopes=[pb.Scope(peer_ip="10.0.0.9", port=443, protocol=pb.IP_PROTOCOL_TCP)],
        reason="tls test",
    )


async def test_client_with_our_certificate_can_apply_and_list(mtls_responder: Responder, pki: Pki) -> None:
    tls = TlsConfig(ca_file=pki.ca, cert_file=pki.client_cert, key_file=pki.client_key)
    async with ResponderClient(mtls_responder.address, timeout_s=5, tls=tls) as client:
        assert client.secure
        applied = await client.apply(_block("mtls-1"))
        assert not applied.duplicate
        listed = await client.list(include_inactive=True)
    assert [s.action.action_id for s in listed] == ["mtls-1"]


async def test_server_name_override_reaches_the_responder_by_dns_name(
    mtls_responder: Responder, pki: Pki
) -> None:
    # Dial the IP but verify against the DNS SAN, as when a responder is addressed by IP behind a name.
    tls = TlsConfig(
        ca_file=pki.ca, cert_file=pki.client_cert, key_file=pki.client_key, server_name="localhost"
    )
    async with ResponderClient(mtls_responder.address, timeout_s=5, tls=tls) as client:
        assert await client.list() == []


async def _assert_refused(client: ResponderClient) -> None:
    async with client:
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await client.apply(_block("should-never-land"))
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE, err.value


async def test_client_without_a_certificate_is_refused(mtls_responder: Responder, pki: Pki) -> None:
    # Trusts the server correctly, but has nothing to present: the server ends the handshake.
    creds = grpc.ssl_channel_credentials(root_certificates=pki.ca.read_bytes())
    await _assert_refused(ResponderClient(mtls_responder.address, timeout_s=3, credentials=creds))
    assert await mtls_responder.service.backend.current() == {}
    assert mtls_responder.service.store.desired() == []


async def test_client_with_a_certificate_from_another_ca_is_refused(
    mtls_responder: Responder, pki: Pki
) -> None:
    tls = TlsConfig(ca_file=pki.ca, cert_file=pki.rogue_client_cert, key_file=pki.rogue_client_key)
    await _assert_refused(ResponderClient(mtls_responder.address, timeout_s=3, tls=tls))
    assert mtls_responder.service.store.desired() == []


async def test_client_trusting_another_ca_refuses_the_server(mtls_responder: Responder, pki: Pki) -> None:
    # Our own client certificate is fine, but we do not trust whoever signed the server's: an
    # impostor responder would look exactly like this, so the client must refuse to talk.
    tls = TlsConfig(ca_file=pki.rogue_ca, cert_file=pki.client_cert, key_file=pki.client_key)
    await _assert_refused(ResponderClient(mtls_responder.address, timeout_s=3, tls=tls))


async def test_plaintext_client_is_refused(mtls_responder: Responder) -> None:
    await _assert_refused(ResponderClient(mtls_responder.address, timeout_s=3))


async def test_responder_without_tls_warns_once_and_still_serves() -> None:
    service = ResponderService(ResponderConfig(listen="127.0.0.1:0"), CollectorRegistry())
    stop = asyncio.Event()
    with capture_logs() as logs:
        task = asyncio.create_task(service.run(stop))
        await asyncio.wait_for(service.started.wait(), 10)
        async with ResponderClient(f"127.0.0.1:{service.port}", timeout_s=5) as client:
            assert not client.secure
            assert await client.list() == []
        stop.set()
        await asyncio.wait_for(task, 15)
    assert [e["event"] for e in logs].count("grpc_insecure") == 1
    started = next(e for e in logs if e["event"] == "responder_started")
    assert started["mtls"] is False


# --- configuration -----------------------------------------------------------------------------------


def test_tls_config_is_off_by_default_and_on_when_files_are_set(pki: Pki) -> None:
    assert not ResponderConfig().tls.active
    assert not build().master.responder_tls.active
    on = TlsConfig(ca_file=pki.ca, cert_file=pki.server_cert, key_file=pki.server_key)
    assert on.active
    # enabled: false keeps paths in the file but serves plaintext, and skips the file checks.
    assert not TlsConfig(enabled=False, ca_file=Path("/nonexistent/ca.pem")).active


def test_every_tls_problem_is_reported_together(pki: Pki, tmp_path: Path) -> None:
    missing_key = tmp_path / "no-such.key"
    with pytest.raises(ConfigError) as err:
        build(
            {
                "responder": {
                    "tls": {
                        "ca_file": str(tmp_path / "no-such-ca.pem"),
                        "cert_file": str(pki.server_cert),
                        "key_file": str(missing_key),
                    }
                },
                # A second section with a different mistake: a certificate with no key and no CA.
                "master": {"responder_tls": {"cert_file": str(pki.client_cert)}},
            }
        )
    problems = err.value.problems
    assert any(p.startswith("responder.tls.key_file:") and "does not exist" in p for p in problems), problems
    assert any(p.startswith("responder.tls.ca_file:") and "does not exist" in p for p in problems), problems
    assert any(p.startswith("master.responder_tls.key_file:") and "required" in p for p in problems)
    assert any(p.startswith("master.responder_tls.ca_file:") and "required" in p for p in problems)
    # The certificates that do exist are not complained about.
    assert not any(p.split(":")[0].endswith(".cert_file") for p in problems), problems
    assert str(missing_key) in str(err.value)


def test_enabled_without_files_is_an_error_not_plaintext() -> None:
    with pytest.raises(ConfigError) as err:
        build(environ={"VIGIL_RESPONDER__TLS__ENABLED": "true"})
    assert {p.split(":")[0] for p in err.value.problems} == {
        "responder.tls.ca_file",
        "responder.tls.cert_file",
        "responder.tls.key_file",
    }


def test_tls_paths_come_from_the_environment(pki: Pki) -> None:
    cfg = build(
        environ={
            "VIGIL_MASTER__RESPONDER_TLS__CA_FILE": str(pki.ca),
            "VIGIL_MASTER__RESPONDER_TLS__CERT_FILE": str(pki.client_cert),
            "VIGIL_MASTER__RESPONDER_TLS__KEY_FILE": str(pki.client_key),
        }
    )
    assert cfg.master.responder_tls.active
    assert cfg.master.responder_tls.key_file == pki.client_key


def test_credential_helpers_never_put_key_material_in_errors(pki: Pki, tmp_path: Path) -> None:
    good = TlsConfig(ca_file=pki.ca, cert_file=pki.server_cert, key_file=pki.server_key)
    assert isinstance(server_credentials(good), grpc.ServerCredentials)
    # A key file that is not PEM (here: the key's base64 body without its armour) is refused by name.
    body = "".join(line for line in pki.client_key.read_text().splitlines() if not line.startswith("-----"))
    bad_key = tmp_path / "bad.key"
    bad_key.write_text(body)
    cfg = TlsConfig(ca_file=pki.ca, cert_file=pki.client_cert, key_file=bad_key)
    with pytest.raises(TlsSetupError) as err:
        channel_credentials(cfg)
    assert str(bad_key) in str(err.value)
    assert body[:16] not in str(err.value)
    with pytest.raises(TlsSetupError):
        channel_credentials(TlsConfig())
    with pytest.raises(ValueError, match="either"):
        ResponderClient("127.0.0.1:1", tls=cfg, credentials=grpc.ssl_channel_credentials())


# --- NATS: credentials and TLS on a real nats-server ------------------------------------------------


@dataclass
class NatsServer:
    proc: subprocess.Popen[bytes]
    url: str


@pytest.fixture
def secured_nats(pki: Pki, short_tmp: Path) -> Iterator[NatsServer]:
    try:
        binary = embedded.nats_server_binary()
    except embedded.EmbeddedServerError as exc:
        pytest.skip(str(exc))
    ports_dir = short_tmp / "ports"
    ports_dir.mkdir()
    conf = short_tmp / "nats.conf"
    # Password and mutual TLS at once, as DESIGN.md asks for production; port -1 lets the server
    # pick a free port and report it through the ports file (no race for a port).
    conf.write_text(
        json.dumps(
            {
                "host": "127.0.0.1",
                "port": -1,
                "authorization": {"user": "vigil", "password": NATS_PASSWORD},
                "tls": {
                    "cert_file": str(pki.server_cert),
                    "key_file": str(pki.server_key),
                    "ca_file": str(pki.ca),
                    "verify": True,
                    "timeout": 2,
                },
                "jetstream": {"store_dir": str(short_tmp / "js")},
                "ports_file_dir": str(ports_dir),
            }
        )
    )
    log = open(short_tmp / "nats.log", "wb")  # noqa: SIM115 - handed to the child process
    proc = subprocess.Popen([str(binary), "-c", str(conf)], stdout=log, stderr=subprocess.STDOUT)
    log.close()
    ports_file = ports_dir / f"nats-server_{proc.pid}.ports"
    deadline = time.monotonic() + 10
    url = None
    while url is None:
        if proc.poll() is not None:
            pytest.fail(f"nats-server exited: {(short_tmp / 'nats.log').read_text()}")
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail("nats-server did not write its ports file")
        try:
            url = json.loads(ports_file.read_text())["nats"][0]
        except (OSError, json.JSONDecodeError, KeyError, IndexError):
            time.sleep(0.02)
    try:
        yield NatsServer(proc, url)
    finally:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _nats_cfg(url: str, pki: Pki, password: str | None, client_cert: bool = True) -> NatsConfig:
    fields: dict[str, object] = {
        "url": url,
        "user": "vigil",
        "password": password,
        "tls_ca": pki.ca,
        "connect_timeout_s": 2,
    }
    if client_cert:
        fields |= {"tls_cert": pki.client_cert, "tls_key": pki.client_key}
    return NatsConfig.model_validate(fields)


async def _connect_once(cfg: NatsConfig) -> None:
    errors: list[Exception] = []

    async def error_cb(exc: Exception) -> None:
        errors.append(exc)

    # vigil.bus.connect reconnects forever; nats-py still gives up on the *first* connect when the
    # server refuses us, which is exactly what an operator with a wrong password should see.
    nc = await asyncio.wait_for(connect(cfg, "tls-test", error_cb=error_cb), 10)
    try:
        await nc.publish("vigil.v1.test", b"ping")
        await nc.flush(timeout=2)
        js = nc.jetstream()
        info = await js.account_info()
        assert info is not None
    finally:
        await nc.close()


async def test_nats_right_credentials_and_certificate_connect(secured_nats: NatsServer, pki: Pki) -> None:
    assert secured_nats.url.startswith(("nats://", "tls://"))
    await _connect_once(_nats_cfg(secured_nats.url, pki, NATS_PASSWORD))


async def test_nats_wrong_password_fails_clearly(secured_nats: NatsServer, pki: Pki) -> None:
    seen: list[Exception] = []

    async def error_cb(exc: Exception) -> None:
        seen.append(exc)

    cfg = _nats_cfg(secured_nats.url, pki, "not-the-password")
    started = time.monotonic()
    with pytest.raises(BusConnectError) as err:
        await asyncio.wait_for(connect(cfg, "tls-test", error_cb=error_cb), 10)
    # Refused at once rather than retried forever, and the caller's error_cb still heard why.
    assert time.monotonic() - started < 5
    assert seen
    message = str(err.value)
    assert "authorization violation" in message.lower(), message
    assert "'tls-test'" in message and "vigil" in message
    assert "not-the-password" not in message


async def test_nats_server_not_trusted_fails_clearly(secured_nats: NatsServer, pki: Pki) -> None:
    cfg = _nats_cfg(secured_nats.url, pki, NATS_PASSWORD).model_copy(update={"tls_ca": pki.rogue_ca})
    with pytest.raises(BusConnectError, match="certificate verify failed"):
        await asyncio.wait_for(connect(cfg, "tls-test"), 10)


async def test_nats_without_client_certificate_fails(secured_nats: NatsServer, pki: Pki) -> None:
    # The server ends the handshake; nats-py sees a dropped connection, which bus.connect treats as
    # transient (indistinguishable from a restarting server), so it is still trying at the deadline.
    with pytest.raises((nats.errors.Error, OSError, asyncio.TimeoutError)):
        await asyncio.wait_for(
            _connect_once(_nats_cfg(secured_nats.url, pki, NATS_PASSWORD, client_cert=False)), 3
        )


def test_url_credentials_are_redacted() -> None:
    from vigil.bus import _redact_url

    assert _redact_url("nats://vigil:hunter2@10.0.0.1:4222") == "nats://10.0.0.1:4222"
    assert _redact_url("tls://10.0.0.1:4222") == "tls://10.0.0.1:4222"


def test_nats_password_is_never_shown(pki: Pki) -> None:
    cfg = build({"nats": {"user": "vigil", "password": NATS_PASSWORD}})
    assert cfg.nats.password is not None
    assert cfg.nats.password.get_secret_value() == NATS_PASSWORD
    for shown in (repr(cfg), str(cfg), repr(cfg.nats), str(cfg.nats), cfg.model_dump_json()):
        assert NATS_PASSWORD not in shown
    env = build(environ={"VIGIL_NATS__PASSWORD": NATS_PASSWORD})
    assert NATS_PASSWORD not in repr(env)


def test_nats_config_checks_tls_files_together(tmp_path: Path, pki: Pki) -> None:
    with pytest.raises(ConfigError) as err:
        build({"nats": {"tls_ca": str(tmp_path / "missing-ca.pem"), "tls_cert": str(pki.client_cert)}})
    where = {p.split(":")[0] for p in err.value.problems}
    assert where == {"nats.tls_ca", "nats.tls_key"}, err.value.problems
