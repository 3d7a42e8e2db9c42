"""DTLS: a real OpenSSL DTLS 1.2 handshake recorded in the lab (cookie exchange, certificate in three
fragments, session ticket) read into one ssl record and checked against tshark's own dissection; the
fragment reassembly; garbage that only ever counts."""

from __future__ import annotations

import contextlib
import shutil
import subprocess
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from sensor.analyzers import default_registry
from sensor.capture import read_capture
from sensor.pipeline import SensorPipeline
from sensor.protocols.base import ConnContext, ParseError
from sensor.protocols.dtls import FACTORY, heuristic, parser
from sensor.protocols.dtls.session import _Handshake
from vigil.config import SensorConfig
from vigil.sensor.v1 import sensor_pb2

CAPTURE = Path(__file__).resolve().parents[2] / "data" / "dtls-openssl.pcap"
CTX = ConnContext("Cdtls", "10.0.0.5", 50000, "10.0.0.6", 443, "udp")


def _records() -> list[sensor_pb2.Record]:
    errors: list[tuple[str, str]] = []
    pipe = SensorPipeline(SensorConfig(), default_registry(), seed=1)
    pipe.table.count_error = lambda p, r: errors.append((p, r))
    out = [r for block in read_capture(CAPTURE) for r in pipe.feed(block)] + pipe.flush()
    assert errors == []
    return out


def test_openssl_dtls12_handshake_is_one_ssl_record() -> None:
    records = _records()
    tls = [r.tls for r in records if r.WhichOneof("kind") == "tls"]
    flows = [r.flow for r in records if r.WhichOneof("kind") == "flow" and r.flow.ip_proto == 17]
    assert len(tls) == 1 and [list(f.service) for f in flows] == [["dtls"]]
    rec = tls[0]
    assert (rec.version, rec.server_name, rec.cipher, rec.curve) == (
        "DTLSv12",
        "dtls.vigil.test",
        "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
        "x25519",
    )
    assert rec.subject == rec.issuer == "O=Vigil Lab,CN=dtls.vigil.test"  # self-signed, RFC 4514 order
    # ClientHello, HelloVerifyRequest, ClientHello with the cookie, the server's flight (certificate
    # reassembled from three fragments), ClientKeyExchange, both CCS with a ticket in between.
    assert rec.ssl_history == "CvCsxknGIti" and rec.established
    assert rec.ja4.startswith("dd2d")  # JA4: DTLS carrier, DTLS 1.2, SNI present
    if shutil.which("tshark") is None:
        return
    fields = ["dtls.handshake.ja3", "dtls.handshake.ja3_full", "dtls.handshake.ja3s"]
    hellos = "dtls.handshake.type == 1 or dtls.handshake.type == 2"
    cmd = ["tshark", "-n", "-r", str(CAPTURE), "-Y", hellos, "-T", "fields"]
    for f in fields:
        cmd += ["-e", f]
    run = subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=60)
    rows = [line.split("\t") for line in run.stdout.splitlines()]
    # The first ClientHello (without cookie) is what JA3 is taken from here, as in tshark's first row.
    assert (rows[0][0], rows[0][1]) == (rec.ja3, rec.ja3_string)
    assert rec.ja3s in {row[2] for row in rows}


def _fragment(seq: int, msg: bytes, offset: int, size: int, msg_type: int = 11) -> parser.Fragment:
    return parser.Fragment(msg_type, len(msg), seq, offset, msg[offset : offset + size])


def test_messages_come_out_whole_in_order_and_once() -> None:
    hs = _Handshake()
    first, second = bytes(range(40)), bytes(range(100, 130))
    assert hs.add(_fragment(1, second, 0, 30, msg_type=14)) == []  # waits for message 0
    assert hs.add(_fragment(0, first, 20, 20)) == []
    assert hs.add(_fragment(0, first, 0, 10)) == []  # a hole at 10..20 remains
    out = hs.add(_fragment(0, first, 5, 20))  # overlapping, fills the hole
    assert out == [(11, first), (14, second)]
    assert hs.add(_fragment(0, first, 0, 40)) == []  # a retransmission after release


def test_cookie_is_removed_from_the_client_hello() -> None:
    body = b"\xfe\xfd" + bytes(32) + b"\x02\xaa\xbb" + b"\x03\x01\x02\x03" + b"\x00\x02\x13\x01\x01\x00"
    without = b"\xfe\xfd" + bytes(32) + b"\x02\xaa\xbb" + b"\x00\x02\x13\x01\x01\x00"
    assert parser.client_hello_as_tls(body) == without
    assert heuristic(b"\x16\xfe\xff" + bytes(10) + b"\x01" + bytes(20), True)
    assert not heuristic(b"\x16\x03\x01" + bytes(30), True)  # TLS, not DTLS


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=600))
def test_parsers_raise_only_parse_error(data: bytes) -> None:
    for fn in (parser.records, parser.fragments, parser.client_hello_as_tls):
        with contextlib.suppress(ParseError):
            fn(data)


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(st.booleans(), st.binary(min_size=1, max_size=600)), max_size=8))
def test_session_never_raises(datagrams: list[tuple[bool, bytes]]) -> None:
    s = FACTORY(CTX, lambda r: None, lambda p, r: None)
    for is_orig, data in datagrams:
        s.data(is_orig, 1.0, b"\x16\xfe\xfd" + bytes(8) + len(data).to_bytes(2, "big") + data)
        s.data(is_orig, 1.0, data)
    s.finish(2.0)


def test_pending_handshake_bytes_are_bounded() -> None:
    """Messages that claim to be large and never complete cannot make a connection hold more than the
    bound, however many message sequence numbers they use."""
    hs = _Handshake()
    big = 40_000
    hs.add(parser.Fragment(11, big, 1, 0, b"x"))
    try:
        hs.add(parser.Fragment(11, big, 2, 0, b"y"))
    except ParseError as exc:
        assert exc.reason == "handshake_too_large"
    else:
        raise AssertionError("a second 40 kB message was accepted")
