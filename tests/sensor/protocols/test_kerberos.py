"""Kerberos parser and session tests with messages built per RFC 4120."""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path

import pytest

from sensor.protocols.base import ConnContext
from sensor.protocols.kerberos import FACTORY, zeek
from sensor.protocols.kerberos import parser as p
from sensor.protocols.kerberos.session import GssApTracker, ap_record
from tests.sensor import golden
from tests.sensor.protocols.test_asn1 import tlv
from vigil.sensor.v1 import sensor_pb2


def ctx_field(n: int, content: bytes) -> bytes:
    return tlv(0xA0 + n, content)


def principal(*names: str) -> bytes:
    parts = b"".join(tlv(0x1B, n.encode()) for n in names)
    return tlv(0x30, ctx_field(0, tlv(0x02, b"\x01")) + ctx_field(1, tlv(0x30, parts)))


def integer(v: int) -> bytes:
    return tlv(0x02, v.to_bytes(2, "big", signed=True).lstrip(b"\x00") or b"\x00")


def as_req(user: str = "alice", realm: str = "CORP.LOCAL", start: bytes = b"") -> bytes:
    body = tlv(
        0x30,
        ctx_field(0, tlv(0x03, b"\x00\x40\x81\x00\x10"))  # forwardable, renewable, ...
        + ctx_field(1, principal(user))
        + ctx_field(2, tlv(0x1B, realm.encode()))
        + ctx_field(3, principal("krbtgt", realm))
        + (ctx_field(4, tlv(0x18, start)) if start else b"")
        + ctx_field(5, tlv(0x18, b"20370913024805Z"))
        + ctx_field(7, integer(1234))
        + ctx_field(8, tlv(0x30, integer(18) + integer(23))),
    )
    return tlv(0x6A, tlv(0x30, ctx_field(1, integer(5)) + ctx_field(2, integer(10)) + ctx_field(4, body)))


def enc(etype: int) -> bytes:
    return tlv(0x30, ctx_field(0, integer(etype)) + ctx_field(2, tlv(0x04, b"\x00" * 8)))


def as_rep(realm: str = "CORP.LOCAL") -> bytes:
    ticket = tlv(
        0x61,
        tlv(
            0x30,
            ctx_field(0, integer(5))
            + ctx_field(1, tlv(0x1B, realm.encode()))
            + ctx_field(2, principal("krbtgt", realm))
            + ctx_field(3, enc(18)),
        ),
    )
    return tlv(
        0x6B,
        tlv(
            0x30,
            ctx_field(0, integer(5))
            + ctx_field(1, integer(11))
            + ctx_field(3, tlv(0x1B, realm.encode()))
            + ctx_field(4, principal("alice"))
            + ctx_field(5, ticket)
            + ctx_field(6, enc(23)),
        ),
    )


def krb_error(code: int, text: str = "") -> bytes:
    inner = (
        ctx_field(0, integer(5))
        + ctx_field(1, integer(30))
        + ctx_field(4, tlv(0x18, b"20240101000000Z"))
        + ctx_field(5, integer(0))
        + ctx_field(6, integer(code))
        + ctx_field(9, tlv(0x1B, b"CORP.LOCAL"))
        + ctx_field(10, principal("krbtgt", "CORP.LOCAL"))
    )
    if text:
        inner += ctx_field(11, tlv(0x1B, text.encode()))
    return tlv(0x7E, tlv(0x30, inner))


AS_REQ_BYTES = as_req()


def test_parse_as_req() -> None:
    msg = p.parse(AS_REQ_BYTES)
    assert isinstance(msg, p.KdcRequest)
    assert msg.cname is not None and msg.cname.render() == "alice"
    assert msg.sname is not None and msg.sname.render() == "krbtgt/CORP.LOCAL"
    assert msg.forwardable and msg.renewable and msg.etypes == (18, 23)
    assert msg.till == 2136422885.0


def _session(transport: str) -> tuple[object, list[sensor_pb2.Record]]:
    out: list[sensor_pb2.Record] = []
    ctx = ConnContext("C1", "10.0.0.1", 5000, "10.0.0.2", 88, transport)
    return FACTORY(ctx, out.append, lambda _p, _r: None), out


def test_udp_exchange_success() -> None:
    session, out = _session("udp")
    session.data(True, 1.0, AS_REQ_BYTES)  # type: ignore[attr-defined]
    session.data(False, 1.1, as_rep())  # type: ignore[attr-defined]
    session.finish(2.0)  # type: ignore[attr-defined]
    assert len(out) == 1
    row = zeek.to_zeek(out[0].kerberos)
    assert row == {
        "request_type": "AS",
        "client": "alice/CORP.LOCAL",
        "service": "krbtgt/CORP.LOCAL",
        "success": True,
        "till": 2136422885.0,
        "cipher": "aes256-cts-hmac-sha1-96",
        "forwardable": True,
        "renewable": True,
        # The returned ticket's cipher is eight zero bytes (as_rep above).
        "new_ticket_sha256": hashlib.sha256(bytes(8)).hexdigest(),
    }


def test_tcp_chunked_error() -> None:
    session, out = _session("tcp")
    stream = len(AS_REQ_BYTES).to_bytes(4, "big") + AS_REQ_BYTES
    for i in range(0, len(stream), 7):
        session.data(True, 1.0, stream[i : i + 7])  # type: ignore[attr-defined]
    reply = krb_error(6)
    session.data(False, 1.1, len(reply).to_bytes(4, "big") + reply)  # type: ignore[attr-defined]
    session.finish(2.0)  # type: ignore[attr-defined]
    assert len(out) == 1
    rec = out[0].kerberos
    assert (rec.success, rec.error_msg, rec.error_code) == (False, "KDC_ERR_C_PRINCIPAL_UNKNOWN", 6)


def test_preauth_challenge_not_logged() -> None:
    session, out = _session("udp")
    session.data(True, 1.0, AS_REQ_BYTES)  # type: ignore[attr-defined]
    session.data(False, 1.1, krb_error(25, "NEEDED_PREAUTH"))  # type: ignore[attr-defined]
    session.finish(2.0)  # type: ignore[attr-defined]
    assert out == []


def test_kdc_request_from_time_is_logged() -> None:
    # kinit -s asks for a postdated ticket: KDC-REQ-BODY "from" [4] (kinit.pcap's 15 AS exchanges of
    # `tshark -Y "kerberos.from"`), which Zeek's kerberos.log writes as "from".
    req = as_req(start=b"20150119230005Z")
    session, out = _session("udp")
    session.data(True, 1.0, req)  # type: ignore[attr-defined]
    session.data(False, 1.1, as_rep())  # type: ignore[attr-defined]
    session.finish(2.0)  # type: ignore[attr-defined]
    assert zeek.to_zeek(out[0].kerberos)["from"] == 1421708405.0


def test_ap_request_without_an_answer_leaves_success_unset() -> None:
    # Zeek's "AP" row learns success only from an AP-REP (or KRB-ERROR) handed back to it.
    ap = p.ApRequest(ticket_realm="CORP.LOCAL", ticket_sname=p.Principal(2, ("cifs", "srv")), ticket_etype=18)
    row = zeek.to_zeek(ap_record("C1", 1.0, ap, None))
    assert "success" not in row
    assert zeek.to_zeek(ap_record("C1", 1.0, ap, True))["success"] is True


def test_ap_exchange_in_a_dce_rpc_bind_is_logged(corpus: Path) -> None:
    # kerberos135_auth.pcapng: frame 5 binds ISystemActivator with a SPNEGO auth verifier holding an
    # AP-REQ for RPCSS/BLACKCLOVER-DC.SRT-AD.local (auth_type 9, kerberos.msg_type 14); frame 7, the
    # bind_ack, answers with the AP-REP (msg_type 15) (`tshark -T fields -e frame.number -e
    # dcerpc.auth_type -e kerberos.msg_type`). Zeek's kerberos.log (btest spnego-gssapi-kerberos):
    # one AP row, success T. The ticket that authorized the bind is the AP-REQ's: SHA-256 of its cipher
    # (the first kerberos.cipher tshark shows in frame 5), as the ticket-logging policy script logs it.
    run = golden.run(corpus / "zeek/dce-rpc/kerberos135_auth.pcapng")
    rows = [zeek.to_zeek(r.kerberos) for r in run.records if r.WhichOneof("kind") == "kerberos"]
    assert rows == [
        {
            "request_type": "AP",
            "client": "/SRT-AD.LOCAL",
            "service": "RPCSS/BLACKCLOVER-DC.SRT-AD.local",
            "success": True,
            "cipher": "aes256-cts-hmac-sha1-96",
            "auth_ticket_sha256": "d1d7b0c7f0c8b9219847755091585e4d33e9fb7ac8a229aee56ca3e3d5b545af",
        }
    ]
    assert run.parse_errors == {}


def test_gss_tracker_ignores_an_answer_without_a_request() -> None:
    out: list[sensor_pb2.Record] = []
    ctx = ConnContext("C1", "10.0.0.1", 5000, "10.0.0.2", 135, "tcp")
    tracker = GssApTracker(ctx, out.append, lambda _p, _r: None)
    tracker.server_token(1.0, b"\x00garbage")
    tracker.finish(2.0)
    assert out == []


def test_the_encryption_types_a_client_offered_are_recorded() -> None:
    """kerbrute's AS-REQs each offer aes256, aes128, rc4 (tshark -Y "kerberos.msg_type == 10" -T fields
    -e kerberos.ENCTYPE: "18,17,23" on every one)."""
    from tests.conftest import CORPUS

    capture = CORPUS / "wild/sbousseaden__PCAP-ATTACK/CA_kerbrute_passwordspray_kerberos_AS-REQ.pcapng"
    if not capture.is_file():
        pytest.skip(f"wild corpus not found at {capture.parent}")
    from sensor.logwriter import pipeline_records
    from vigil.config import SensorConfig

    records = [
        r.kerberos for r in pipeline_records(SensorConfig(), [capture], seed=1) if r.HasField("kerberos")
    ]
    as_requests = [r for r in records if r.request_type == "AS"]
    assert as_requests
    assert {tuple(r.client_ciphers) for r in as_requests} == {
        ("aes256-cts-hmac-sha1-96", "aes128-cts-hmac-sha1-96", "rc4-hmac")
    }


def test_pkinit_certificate_subjects_are_recorded(corpus: Path) -> None:
    """Zeek's kinit.pcap: PKINIT AS exchanges whose PA-PK-AS-REQ carries the client's certificate
    (CN=test_pkinit) and whose PA-PK-AS-REP carries the KDC's (CN=vladg.net), as Zeek's baseline logs."""
    from sensor.logwriter import pipeline_records
    from vigil.config import SensorConfig

    capture = corpus / "zeek/krb/kinit.pcap"
    records = [
        r.kerberos for r in pipeline_records(SensorConfig(), [capture], seed=1) if r.HasField("kerberos")
    ]
    clients = {r.client_cert_subject for r in records} - {""}
    servers = {r.server_cert_subject for r in records} - {""}
    assert clients == {"CN=test_pkinit,O=Bro Testing\\, LLC,L=Champaign,ST=Illinois,C=US"}
    assert servers == {"CN=vladg.net,O=Bro Testing\\, LLC,L=Champaign,ST=Illinois,C=US"}


def test_a_damaged_pkinit_certificate_leaves_the_message_parsed() -> None:
    """A PA-PK-AS-REQ whose content is garbage gives no subject, and the AS-REQ is still read."""
    from sensor.protocols.asn1 import read_all

    garbage = p._pkinit_subject(
        read_all(
            tlv(
                0x30,
                tlv(0x30, tlv(0xA1, tlv(0x02, b"\x10")) + tlv(0xA2, tlv(0x04, b"\x30\x03\x01\x01"))),
            )
        ),
        16,
    )
    assert garbage == ""


def _tshark_ticket_hashes(pcap: Path, msg_type: int) -> list[str]:
    """SHA-256 of the first EncryptedData cipher tshark decodes in each message of ``msg_type``: the
    ticket's (in a TGS-REQ the ticket of its PA-TGS-REQ comes before the authenticator; in a reply the
    ticket comes before the reply's own encrypted part)."""
    out = subprocess.run(
        ["tshark", "-n", "-r", str(pcap), "-Y", f"kerberos.msg_type == {msg_type}", "-T", "fields",
         "-e", "kerberos.cipher"],
        capture_output=True, text=True, check=True,
    ).stdout.split()  # fmt: skip
    return [hashlib.sha256(bytes.fromhex(line.split(",")[0])).hexdigest() for line in out]


@pytest.mark.skipif(not golden.have_tshark(), reason="tshark decodes the tickets")
def test_ticket_hashes_are_sha256_of_the_tickets_ciphertext(corpus: Path) -> None:
    """auth.pcap (Zeek's ticket-logging btest): a TGS exchange. auth_ticket_sha256 is the ticket the
    client authorized the request with (in its PA-TGS-REQ), new_ticket_sha256 the one the KDC returned."""
    pcap = corpus / "zeek/krb/auth.pcap"
    run = golden.run(pcap, verified_checksums=True)
    (row,) = [zeek.to_zeek(r.kerberos) for r in run.records if r.WhichOneof("kind") == "kerberos"]
    assert row["request_type"] == "TGS"
    assert [row["auth_ticket_sha256"]] == _tshark_ticket_hashes(pcap, p.TGS_REQ)
    assert [row["new_ticket_sha256"]] == _tshark_ticket_hashes(pcap, p.TGS_REP)


@pytest.mark.skipif(not golden.have_tshark(), reason="tshark decodes the tickets")
def test_an_as_exchange_returns_a_ticket_and_used_none(corpus: Path) -> None:
    pcap = corpus / "zeek/krb/kinit.pcap"
    run = golden.run(pcap, verified_checksums=True)
    rows = [zeek.to_zeek(r.kerberos) for r in run.records if r.WhichOneof("kind") == "kerberos"]
    replies = [r for r in rows if r["request_type"] == "AS" and r.get("success")]
    assert replies and all("auth_ticket_sha256" not in r for r in rows if r["request_type"] == "AS")
    assert sorted(r["new_ticket_sha256"] for r in replies) == sorted(_tshark_ticket_hashes(pcap, p.AS_REP))


def _tgs_req(pa_tgs_req: bytes) -> bytes:
    """A TGS-REQ for krbtgt/CORP.LOCAL whose padata holds one PA-TGS-REQ with ``pa_tgs_req`` as value."""
    pa = tlv(0x30, ctx_field(1, integer(1)) + ctx_field(2, tlv(0x04, pa_tgs_req)))
    body = tlv(
        0x30,
        ctx_field(0, tlv(0x03, b"\x00\x40\x81\x00\x10"))
        + ctx_field(2, tlv(0x1B, b"CORP.LOCAL"))
        + ctx_field(3, principal("krbtgt", "CORP.LOCAL"))
        + ctx_field(5, tlv(0x18, b"20370913024805Z"))
        + ctx_field(7, integer(1234))
        + ctx_field(8, tlv(0x30, integer(18))),
    )
    fields = (
        ctx_field(1, integer(5))
        + ctx_field(2, integer(12))
        + ctx_field(3, tlv(0x30, pa))
        + ctx_field(4, body)
    )
    return tlv(0x6C, tlv(0x30, fields))


def test_the_ticket_of_a_pa_tgs_req_is_hashed_and_a_damaged_one_is_not_fatal() -> None:
    cipher = bytes(range(40))
    encrypted = tlv(0x30, ctx_field(0, integer(18)) + ctx_field(2, tlv(0x04, cipher)))
    ticket = tlv(
        0x61,
        tlv(
            0x30,
            ctx_field(0, integer(5))
            + ctx_field(1, tlv(0x1B, b"CORP.LOCAL"))
            + ctx_field(2, principal("krbtgt", "CORP.LOCAL"))
            + ctx_field(3, encrypted),
        ),
    )
    ap_req = tlv(0x6E, tlv(0x30, ctx_field(0, integer(5)) + ctx_field(1, integer(14)) + ctx_field(3, ticket)))
    good = p.parse(_tgs_req(ap_req))
    assert isinstance(good, p.KdcRequest) and good.msg_type == p.TGS_REQ
    assert good.auth_ticket_sha256 == hashlib.sha256(cipher).hexdigest()
    for garbage in (b"", b"\x6e\x03\x30\x01", b"\x04\x02ab", ap_req[:-3]):
        damaged = p.parse(_tgs_req(garbage))
        assert isinstance(damaged, p.KdcRequest) and damaged.auth_ticket_sha256 == ""
        assert damaged.sname is not None and damaged.sname.render() == "krbtgt/CORP.LOCAL"
