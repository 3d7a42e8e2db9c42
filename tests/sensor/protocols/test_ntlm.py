"""NTLMSSP / SPNEGO parser and NtlmTracker tests with messages built per MS-NLMP and RFC 4178."""

from __future__ import annotations

import struct

import pytest

from sensor.protocols.base import ConnContext, ParseError
from sensor.protocols.ntlm import NtlmTracker, zeek
from sensor.protocols.ntlm import parser as p
from tests.sensor.protocols.test_asn1 import tlv
from vigil.sensor.v1 import sensor_pb2


def u16(text: str) -> bytes:
    return text.encode("utf-16-le")


def _challenge() -> bytes:
    avs = b""
    for av_id, value in ((1, "SRV01"), (2, "CORP"), (3, "srv01.corp.local"), (5, "corp.local")):
        avs += struct.pack("<HH", av_id, len(u16(value))) + u16(value)
    avs += struct.pack("<HH", 0, 0)
    target = u16("CORP")
    head_len = 56
    flags = p.FLAG_UNICODE | p.FLAG_TARGET_INFO
    head = p.SIGNATURE + struct.pack("<I", 2)
    head += struct.pack("<HHI", len(target), len(target), head_len)
    head += struct.pack("<I", flags) + b"\x11" * 8 + b"\x00" * 8
    head += struct.pack("<HHI", len(avs), len(avs), head_len + len(target)) + b"\x00" * 8
    assert len(head) == head_len
    return head + target + avs


def _authenticate(user: str = "alice", domain: str = "CORP", host: str = "WS1") -> bytes:
    fields = [b"", b"", u16(domain), u16(user), u16(host), b""]
    offset = 72
    head = p.SIGNATURE + struct.pack("<I", 3)
    body = b""
    for value in fields:
        head += struct.pack("<HHI", len(value), len(value), offset + len(body))
        body += value
    head += struct.pack("<I", p.FLAG_UNICODE) + b"\x00" * 8
    assert len(head) == offset
    return head + body


CHALLENGE_BYTES = _challenge()
AUTHENTICATE_BYTES = _authenticate()
NEGOTIATE_BYTES = p.SIGNATURE + struct.pack("<II", 1, 0x00000207)


def test_parse_challenge_av_pairs() -> None:
    msg = p.parse(CHALLENGE_BYTES)
    assert isinstance(msg, p.Challenge)
    assert (msg.nb_computer_name, msg.dns_computer_name, msg.dns_tree_name) == (
        "SRV01",
        "srv01.corp.local",
        "corp.local",
    )


def test_parse_authenticate() -> None:
    msg = p.parse(AUTHENTICATE_BYTES)
    assert isinstance(msg, p.Authenticate)
    assert (msg.user, msg.domain, msg.workstation) == ("alice", "CORP", "WS1")


def test_oem_strings() -> None:
    raw = bytearray(AUTHENTICATE_BYTES)
    struct.pack_into("<I", raw, 60, p.FLAG_OEM)
    msg = p.parse(bytes(raw))
    assert isinstance(msg, p.Authenticate)
    assert msg.user == "a\x00l\x00i\x00c\x00e\x00"  # OEM: bytes shown as they are


def test_offset_out_of_bounds() -> None:
    raw = bytearray(AUTHENTICATE_BYTES)
    struct.pack_into("<I", raw, 40, 10_000)
    with pytest.raises(ParseError) as info:
        p.parse(bytes(raw))
    assert info.value.reason == "field_out_of_bounds"


def spnego_init(token: bytes) -> bytes:
    mech_types = tlv(0xA0, tlv(0x30, tlv(0x06, bytes.fromhex("2b06010401823702020a"))))
    init = tlv(0xA0, tlv(0x30, mech_types + tlv(0xA2, tlv(0x04, token))))
    return tlv(0x60, tlv(0x06, bytes.fromhex("2b0601050502")) + init)


def spnego_resp(token: bytes, state: int = 1) -> bytes:
    return tlv(0xA1, tlv(0x30, tlv(0xA0, tlv(0x0A, bytes([state]))) + tlv(0xA2, tlv(0x04, token))))


def test_spnego_unwrap() -> None:
    found = p.unwrap(spnego_init(NEGOTIATE_BYTES))
    assert found.mech == "ntlm" and found.token == NEGOTIATE_BYTES
    answer = p.unwrap(spnego_resp(CHALLENGE_BYTES))
    assert (answer.mech, answer.neg_state) == ("ntlm", 1)


def _tracker() -> tuple[NtlmTracker, list[sensor_pb2.Record]]:
    out: list[sensor_pb2.Record] = []
    ctx = ConnContext("C1", "10.0.0.1", 1, "10.0.0.2", 445, "tcp")
    return NtlmTracker(ctx, out.append, lambda _p, _r: None, "smb"), out


def test_tracker_emits_once_with_outcome() -> None:
    tracker, out = _tracker()
    tracker.client_token(1.0, spnego_init(NEGOTIATE_BYTES))
    tracker.server_token(1.1, spnego_resp(CHALLENGE_BYTES))
    tracker.client_token(1.2, spnego_resp(AUTHENTICATE_BYTES))
    assert out == []
    tracker.outcome(1.3, False, 0xC000006D)
    tracker.finish(2.0)
    assert len(out) == 1
    rec = out[0].ntlm
    assert (rec.username, rec.domain, rec.hostname, rec.server_nb_computer_name) == (
        "alice",
        "CORP",
        "WS1",
        "SRV01",
    )
    assert rec.HasField("success") and not rec.success and rec.status == 0xC000006D and rec.carrier == "smb"


def test_tracker_flushes_at_finish_without_outcome() -> None:
    tracker, out = _tracker()
    tracker.client_token(1.0, NEGOTIATE_BYTES)
    tracker.server_token(1.1, CHALLENGE_BYTES)
    tracker.finish(2.0)
    assert len(out) == 1 and not out[0].ntlm.HasField("success") and out[0].ntlm.username == ""


# Zeek's ntlm.log sets success only from the server's SPNEGO verdict (negState accept-completed or
# reject; accept-incomplete is ignored). A failed SMB logon carries no security blob at all
# (suricata-verify smb2-ntlmssp-negotiateflags: `tshark -Y "smb2.cmd==1 && smb2.nt_status==0xc000006d"
# -e smb2.security_blob` is empty in frames 710, 720, 730, 740, 766), and raw NTLMSSP (LDAP SASL
# "NTLM", DCE-RPC) has no verdict either: there the log's success stays unset, while the record keeps
# the carrier's verdict for the master.
def test_zeek_success_comes_from_the_spnego_verdict_only() -> None:
    tracker, out = _tracker()
    tracker.client_token(1.0, spnego_init(NEGOTIATE_BYTES))
    tracker.server_token(1.1, spnego_resp(CHALLENGE_BYTES))
    tracker.client_token(1.2, spnego_resp(AUTHENTICATE_BYTES))
    tracker.server_token(1.3, tlv(0xA1, tlv(0x30, tlv(0xA0, tlv(0x0A, b"\x00")))))
    tracker.outcome(1.3, True, 0)
    rec = out[0].ntlm
    assert rec.success and rec.spnego_success
    assert zeek.to_zeek(rec)["success"] is True


def test_zeek_success_stays_unset_without_a_spnego_verdict() -> None:
    tracker, out = _tracker()
    tracker.client_token(1.0, NEGOTIATE_BYTES)
    tracker.server_token(1.1, CHALLENGE_BYTES)
    tracker.client_token(1.2, AUTHENTICATE_BYTES)
    tracker.outcome(1.3, False, 0xC000006D)
    rec = out[0].ntlm
    assert rec.HasField("success") and not rec.success
    assert not rec.HasField("spnego_success")
    assert "success" not in zeek.to_zeek(rec)


def test_spnego_reject_is_a_failure_and_incomplete_no_verdict() -> None:
    tracker, out = _tracker()
    tracker.client_token(1.0, spnego_init(NEGOTIATE_BYTES))
    tracker.server_token(1.1, spnego_resp(CHALLENGE_BYTES, state=1))
    tracker.client_token(1.2, spnego_resp(AUTHENTICATE_BYTES))
    tracker.server_token(1.3, tlv(0xA1, tlv(0x30, tlv(0xA0, tlv(0x0A, b"\x02")))))
    tracker.finish(2.0)
    assert zeek.to_zeek(out[0].ntlm)["success"] is False
