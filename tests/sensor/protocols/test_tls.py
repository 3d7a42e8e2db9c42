"""TLS hello parsing, JA3/JA3S/JA4 on a hand-built ClientHello, X.509 names, record reassembly."""

from __future__ import annotations

import contextlib
import hashlib
import struct

from hypothesis import given, settings
from hypothesis import strategies as st

from sensor.protocols.base import ConnContext, ParseError
from sensor.protocols.tls import FACTORY, heuristic, parser
from sensor.protocols.x509 import certificate_names
from vigil.flow.v1 import tls_pb2
from vigil.sensor.v1 import sensor_pb2

CTX = ConnContext("Ctls", "10.0.0.3", 52000, "10.0.0.43", 443, "tcp")


def _ext(etype: int, data: bytes) -> bytes:
    return struct.pack("!HH", etype, len(data)) + data


def _u16s(values: list[int], len_bytes: int = 2) -> bytes:
    raw = b"".join(struct.pack("!H", v) for v in values)
    return len(raw).to_bytes(len_bytes, "big") + raw


def _client_hello() -> bytes:
    sni = b"\x00" + struct.pack("!H", 11) + b"example.com"
    alpn = b"".join(bytes([len(p)]) + p for p in (b"h2", b"http/1.1"))
    exts = b"".join([
        _ext(0x1A1A, b""),  # GREASE: ignored by every fingerprint
        _ext(0, struct.pack("!H", len(sni)) + sni),
        _ext(10, _u16s([0x0A0A, 29, 23])),
        _ext(11, b"\x01\x00"),
        _ext(13, _u16s([0x0403, 0x0804])),
        _ext(16, struct.pack("!H", len(alpn)) + alpn),
        _ext(43, _u16s([0x2A2A, 0x0304, 0x0303], 1)),
    ])  # fmt: skip
    body = b"\x03\x03" + bytes(32) + b"\x00" + _u16s([0x0A0A, 0x1301, 0x1302, 0xC02B]) + b"\x01\x00"
    body += struct.pack("!H", len(exts)) + exts
    return b"\x01" + len(body).to_bytes(3, "big") + body


def _server_hello_12(cipher: int = 0xC02F) -> bytes:
    exts = _ext(0xFF01, b"\x00") + _ext(11, b"\x01\x00")
    body = b"\x03\x03" + bytes(32) + b"\x00" + struct.pack("!H", cipher) + b"\x00"
    body += struct.pack("!H", len(exts)) + exts
    return b"\x02" + len(body).to_bytes(3, "big") + body


def _tlv(tag: int, content: bytes) -> bytes:
    if len(content) < 128:
        return bytes([tag, len(content)]) + content
    return bytes([tag, 0x82]) + len(content).to_bytes(2, "big") + content


def _rdn(oid: bytes, value: str) -> bytes:
    return _tlv(0x31, _tlv(0x30, _tlv(0x06, oid) + _tlv(0x0C, value.encode())))


OID_CN, OID_O, OID_C = b"\x55\x04\x03", b"\x55\x04\x0a", b"\x55\x04\x06"


def _certificate() -> bytes:
    issuer = _tlv(0x30, _rdn(OID_C, "US") + _rdn(OID_O, "Test CA") + _rdn(OID_CN, "Test Root"))
    subject = _tlv(0x30, _rdn(OID_C, "US") + _rdn(OID_O, "Acme, Inc.") + _rdn(OID_CN, "www.example.com"))
    alg = _tlv(0x30, _tlv(0x06, b"\x2a\x86\x48\x86\xf7\x0d\x01\x01\x0b") + b"\x05\x00")
    validity = _tlv(0x30, b"")
    tbs = _tlv(
        0x30, _tlv(0xA0, _tlv(0x02, b"\x02")) + _tlv(0x02, b"\x01") + alg + issuer + validity + subject
    )
    return _tlv(0x30, tbs + alg + _tlv(0x03, b"\x00"))


def _record(ctype: int, body: bytes) -> bytes:
    return struct.pack("!BHH", ctype, 0x0303, len(body)) + body


def test_ja3_and_ja4_on_a_hand_computed_example() -> None:
    hello = parser.parse_client_hello(_client_hello()[4:])
    assert hello.server_name == "example.com" and hello.alpn == ("h2", "http/1.1")
    # JA3: version, ciphers, extensions, groups, point formats; GREASE dropped, decimal, '-' joined.
    ja3_text = "771,4865-4866-49195,0-10-11-13-16-43,29-23,0"
    assert parser.ja3(hello) == (hashlib.md5(ja3_text.encode()).hexdigest(), ja3_text)
    # JA4_a: TCP, TLS 1.3 (highest supported_versions), SNI present, 3 ciphers, 6 extensions, ALPN h2.
    # JA4_b: sorted cipher hex. JA4_c: sorted extensions without SNI/ALPN, '_', sigalgs in wire order.
    b_src, c_src = "1301,1302,c02b", "000a,000b,000d,002b_0403,0804"
    expected = (
        f"t13d0306h2_{hashlib.sha256(b_src.encode()).hexdigest()[:12]}"
        f"_{hashlib.sha256(c_src.encode()).hexdigest()[:12]}"
    )
    assert parser.ja4(hello) == (expected, f"t13d0306h2_{b_src}_{c_src}")


def test_ja3s() -> None:
    sh = parser.parse_server_hello(_server_hello_12()[4:])
    text = "771,49199,65281-11"
    assert parser.ja3s(sh) == (hashlib.md5(text.encode()).hexdigest(), text)


def test_certificate_names_rfc4514() -> None:
    subject, issuer = certificate_names(_certificate())
    assert subject == "CN=www.example.com,O=Acme\\, Inc.,C=US"
    assert issuer == "CN=Test Root,O=Test CA,C=US"


def test_tls12_session_with_records_split_across_segments() -> None:
    cert = _certificate()
    chain = len(cert).to_bytes(3, "big") + cert
    cert_msg = b"\x0b" + (len(chain) + 3).to_bytes(3, "big") + len(chain).to_bytes(3, "big") + chain
    ske = b"\x0c" + (4).to_bytes(3, "big") + b"\x03\x00\x17\x00"
    server = _record(22, _server_hello_12() + cert_msg[:20]) + _record(22, cert_msg[20:] + ske)
    server += _record(22, b"\x0e\x00\x00\x00") + _record(20, b"\x01")
    client = _record(22, _client_hello()) + _record(20, b"\x01")
    out: list[sensor_pb2.Record] = []
    errors: list[str] = []
    s = FACTORY(CTX, out.append, lambda p, r: errors.append(r))
    hello_part, ccs_part = client[:-6], client[-6:]  # the client's CCS arrives last
    for i in range(0, len(hello_part), 7):
        s.data(True, 1.0, hello_part[i : i + 7])
    for i in range(0, len(server), 5):
        s.data(False, 1.1, server[i : i + 5])
    s.data(True, 1.2, ccs_part)
    assert errors == [] and s.done
    s.finish(2.0)
    assert len(out) == 1
    rec = out[0].tls
    assert (rec.version, rec.cipher, rec.curve, rec.server_name) == (
        "TLSv12",
        "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
        "secp256r1",
        "example.com",
    )
    assert rec.subject.startswith("CN=www.example.com") and rec.established and not rec.resumed
    assert list(rec.client_alpn) == ["h2", "http/1.1"] and rec.ja4.startswith("t13d0306h2_")


def test_heuristic() -> None:
    assert heuristic(_record(22, _client_hello())[:6], True)
    assert not heuristic(b"GET / HTTP/1.1\r\n", True)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=400))
def test_parsers_raise_only_parse_error(data: bytes) -> None:
    for fn in (parser.parse_client_hello, parser.parse_server_hello, parser.parse_certificate_chain,
               certificate_names):  # fmt: skip
        with contextlib.suppress(ParseError):
            fn(data)
    parser.split_handshakes(data)


@settings(max_examples=300, deadline=None)
@given(st.integers(min_value=0, max_value=300), st.integers(min_value=0, max_value=255), st.integers(1, 40))
def test_mutated_handshakes_never_escape(pos: int, value: int, step: int) -> None:
    client = bytearray(_record(22, _client_hello()))
    server = bytearray(_record(22, _server_hello_12()) + _record(22, b"\x0b\x00\x01\x00" + _certificate()))
    target = client if pos < len(client) else server
    target[pos % len(target)] = value
    s = FACTORY(CTX, lambda r: None, lambda p, r: None)
    for i in range(0, len(client), step):
        s.data(True, 1.0, bytes(client[i : i + step]))
    for i in range(0, len(server), step):
        s.data(False, 1.0, bytes(server[i : i + step]))
    s.finish(2.0)
    with contextlib.suppress(ParseError):
        certificate_names(bytes(target))


def _server_hello_13(random: bytes = bytes(32)) -> bytes:
    exts = _ext(43, b"\x03\x04") + _ext(51, struct.pack("!HH", 29, 32) + bytes(32))
    body = b"\x03\x03" + random + b"\x00" + struct.pack("!H", 0x1302) + b"\x00"
    body += struct.pack("!H", len(exts)) + exts
    return b"\x02" + len(body).to_bytes(3, "big") + body


def _session_record(exchange: list[tuple[bool, bytes]]) -> tls_pb2.TlsRecord | None:
    """Feeds (is_orig, bytes) in order; the one TLS record written, if any."""
    out: list[sensor_pb2.Record] = []
    errors: list[str] = []
    s = FACTORY(CTX, out.append, lambda p, r: errors.append(r))
    for is_orig, data in exchange:
        s.data(is_orig, 1.0, data)
    s.finish(2.0)
    assert errors == []
    assert len(out) <= 1
    return out[0].tls if out else None


def test_ssl_history_of_a_full_tls12_handshake() -> None:
    cert = _certificate()
    chain = len(cert).to_bytes(3, "big") + cert
    cert_msg = b"\x0b" + (len(chain) + 3).to_bytes(3, "big") + len(chain).to_bytes(3, "big") + chain
    ske = b"\x0c" + (4).to_bytes(3, "big") + b"\x03\x00\x17\x00"
    cke = b"\x10" + (3).to_bytes(3, "big") + b"\x02\xab\xcd"
    encrypted_finished = _record(22, bytes(40))  # after its sender's CCS: opaque, no letter
    rec = _session_record([
        (True, _record(22, _client_hello())),
        (False, _record(22, _server_hello_12() + cert_msg + ske + b"\x0e\x00\x00\x00")),
        (True, _record(22, cke) + _record(20, b"\x01") + encrypted_finished),
        (False, _record(20, b"\x01") + encrypted_finished),
    ])  # fmt: skip
    assert rec is not None
    # Client letters upper case: ClientHello, ClientKeyExchange, CCS; the server's lower case.
    assert rec.ssl_history == "CsxknGIi"
    assert rec.established and rec.last_alert == ""


def test_plaintext_alert_is_history_and_last_alert() -> None:
    rec = _session_record([
        (True, _record(22, _client_hello())),
        (False, _record(21, b"\x02\x28")),  # fatal handshake_failure
    ])  # fmt: skip
    assert rec is not None
    assert rec.ssl_history == "Cl"
    assert rec.last_alert == "handshake_failure" and not rec.established
    assert parser.alert_name(250) == "unknown-250"


def test_hello_retry_request_then_the_real_server_hello() -> None:
    """TLS 1.3 with a HelloRetryRequest: "j", a second ClientHello in clear, then the ServerHello that
    counts (before, the retry request was taken as the ServerHello and the real one read as encrypted)."""
    rec = _session_record([
        (True, _record(22, _client_hello())),
        (False, _record(22, _server_hello_13(parser.HELLO_RETRY_RANDOM)) + _record(20, b"\x01")),
        (True, _record(20, b"\x01") + _record(22, _client_hello())),
        (False, _record(22, _server_hello_13()) + _record(23, bytes(50))),
        (True, _record(23, bytes(30))),
    ])  # fmt: skip
    assert rec is not None
    assert rec.ssl_history == "CjiICs"
    assert (rec.version, rec.cipher, rec.curve) == ("TLSv13", "TLS_AES_256_GCM_SHA384", "x25519")
    assert rec.established


def test_client_hello_from_the_responder_flips_the_history() -> None:
    """Roles follow the first ClientHello, not the direction (DTLS after STUN, a start the sensor
    judged the wrong way round): "^" marks the flip, and the hellos are still read by role."""
    rec = _session_record([
        (False, _record(22, _client_hello())),
        (True, _record(22, _server_hello_12())),
        (True, _record(21, b"\x02\x46")),  # protocol_version, from the side that is the server here
    ])  # fmt: skip
    assert rec is not None
    assert rec.ssl_history == "^Csl"
    assert rec.server_name == "example.com" and rec.version == "TLSv12"
    assert rec.last_alert == "protocol_version"
