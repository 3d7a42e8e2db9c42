"""HTTP/1.x framing and pairing: pipelining, chunked bodies, split heads, hostile streams."""

from __future__ import annotations

import base64
import contextlib

from hypothesis import given, settings
from hypothesis import strategies as st

from sensor.protocols.base import ConnContext, ParseError
from sensor.protocols.http import FACTORY, heuristic, looks_like, parser
from sensor.protocols.http.zeek import to_zeek
from tests.conftest import CORPUS
from tests.sensor.records import capture_records
from vigil.sensor.v1 import sensor_pb2

CTX = ConnContext("Chttp", "10.0.0.2", 51000, "10.0.0.80", 80, "tcp")


def _run(chunks: list[tuple[bool, bytes]], step: int = 0) -> tuple[list[sensor_pb2.Record], list[str], bool]:
    out: list[sensor_pb2.Record] = []
    errors: list[str] = []
    s = FACTORY(CTX, out.append, lambda p, r: errors.append(r))
    ts = 1.0
    for is_orig, data in chunks:
        pieces = [data[i : i + step] for i in range(0, len(data), step)] if step else [data]
        for piece in pieces:
            ts += 0.001
            s.data(is_orig, ts, piece)
    done = s.done
    s.finish(ts + 1)
    return [r for r in out if r.WhichOneof("kind") == "http"], errors, done


REQ1 = b"GET /a HTTP/1.1\r\nHost: example.com\r\nUser-Agent: t/1\r\nReferer: http://r/\r\n\r\n"
REQ2 = b"POST /b HTTP/1.1\r\nHost: example.com\r\nContent-Length: 5\r\nContent-Type: text/plain\r\n\r\nhello"
RESP1 = b"HTTP/1.1 200 OK\r\nContent-Length: 20\r\n\r\n<html><b>hi</b></h>!"
RESP2 = (b"HTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\n\r\n"
         b"4;ext=1\r\n\x89PNG\r\n6\r\n\r\n\x1a\n\x00\x00\r\n0\r\nX-Trailer: y\r\n\r\n")  # fmt: skip


def test_pipelined_requests_pair_in_order() -> None:
    recs, errors, _ = _run([(True, REQ1 + REQ2), (False, RESP1 + RESP2)])
    assert errors == []
    a, b = (r.http for r in recs)
    assert (a.trans_depth, a.method, a.uri, a.host, a.user_agent, a.referrer) == (
        1,
        "GET",
        "/a",
        "example.com",
        "t/1",
        "http://r/",
    )
    assert a.status_code == 200 and a.response_body_len == 20 and list(a.resp_mime_types) == ["text/html"]
    assert (b.trans_depth, b.method, b.request_body_len, b.status_code, b.status_msg) == (
        2,
        "POST",
        5,
        201,
        "Created",
    )
    assert b.response_body_len == 10 and list(b.resp_mime_types) == ["image/png"]
    assert list(b.orig_mime_types) == ["text/plain"] and b.request_content_type == "text/plain"


def test_byte_by_byte_delivery_gives_the_same_records() -> None:
    whole, _, _ = _run([(True, REQ1 + REQ2), (False, RESP1 + RESP2)])
    split, errors, _ = _run([(True, REQ1 + REQ2), (False, RESP1 + RESP2)], step=1)
    assert errors == []
    assert [r.http.response_body_len for r in split] == [r.http.response_body_len for r in whole]
    assert [to_zeek(r.http) for r in split] == [to_zeek(r.http) for r in whole]


def test_head_interim_and_read_until_close() -> None:
    req = b"HEAD / HTTP/1.1\r\nHost: h\r\n\r\nGET /x HTTP/1.0\r\n\r\n"
    resp = (b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 999\r\n\r\n"
            b"HTTP/1.0 200 OK\r\n\r\nplain text until the server closes")  # fmt: skip
    recs, errors, _ = _run([(True, req), (False, resp)])
    assert errors == []
    assert [(r.http.method, r.http.response_body_len) for r in recs] == [("HEAD", 0), ("GET", 34)]


def test_basic_username_never_password() -> None:
    auth = base64.b64encode(b"alice:s3cret").decode()
    req = f"GET / HTTP/1.1\r\nAuthorization: Basic {auth}\r\n\r\n".encode()
    recs, _, _ = _run([(True, req), (False, b"HTTP/1.1 204 No Content\r\n\r\n")])
    assert recs[0].http.username == "alice"
    assert b"s3cret" not in recs[0].SerializeToString()


def test_connect_tunnel_makes_the_session_done() -> None:
    recs, _, done = _run(
        [(True, b"CONNECT h:443 HTTP/1.1\r\n\r\n"), (False, b"HTTP/1.1 200 OK\r\n\r\n\x16\x03")]
    )
    assert done and recs[0].http.method == "CONNECT"


def test_heuristic_on_request_lines() -> None:
    assert looks_like(b"GET /nice%20ports%2C/Tri%6Eity.txt%2ebak HTTP/1.0\r\n\r\n")
    assert looks_like(b"OPTIONS * HTTP/1.1\r\n")
    assert heuristic(b"POST /x HTTP/1.1\r\nHost: a\r\n", True)
    assert not heuristic(b"POST /x HTTP/1.1\r\n", False)
    assert not looks_like(b"\x16\x03\x01\x00\xa5\x01")
    assert not looks_like(b"GETTING STARTED")


def test_request_line_variants() -> None:
    assert parser.parse_request_line(b"GET /HTTP/1.1") == parser.RequestLine("GET", "/HTTP/1.1", "0.9")
    assert parser.parse_request_line(b"GET / HTTP/1.") == parser.RequestLine("GET", "/", "")
    assert parser.parse_request_line(b"OPTIONS HTTP/1.1") == parser.RequestLine("OPTIONS", "", "1.1")


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_parsers_raise_only_parse_error(data: bytes) -> None:
    for fn in (
        parser.parse_request_line,
        parser.parse_status_line,
        parser.split_head,
        parser.parse_chunk_size,
    ):
        with contextlib.suppress(ParseError):
            fn(data)
    with contextlib.suppress(ParseError):
        parser.basic_username(data.decode("latin-1"))
    parser.sniff_mime(data)
    looks_like(data)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.booleans(), st.binary(max_size=200)), max_size=8))
def test_session_never_raises_on_random_streams(chunks: list[tuple[bool, bytes]]) -> None:
    _run(chunks)


@settings(max_examples=200, deadline=None)
@given(st.integers(min_value=0, max_value=400), st.integers(min_value=0, max_value=255), st.integers(1, 9))
def test_session_never_raises_on_mutated_streams(pos: int, value: int, step: int) -> None:
    stream = bytearray(REQ1 + REQ2 + RESP1 + RESP2)
    if pos < len(stream):
        stream[pos] = value
    cut = len(REQ1 + REQ2)
    _run([(True, bytes(stream[:cut])), (False, bytes(stream[cut:]))], step=step)


# --- the URI as Zeek logs it: percent-escapes decoded (HTTP.cc's unescape_URI rules) ---------------


def test_uri_escapes_are_decoded_as_zeek_decodes_them() -> None:
    # Hex pairs in either case become their byte; "+" is not an escape in a path or query.
    assert parser.unescape_uri(b"/a%20b?id=1%27+OR+%271%27%3d%271") == "/a b?id=1'+OR+'1'='1"
    # A "%" not followed by two hex digits stays, with the character after it.
    assert parser.unescape_uri(b"/100%zz") == "/100%zz"
    assert parser.unescape_uri(b"/a%g%41") == "/a%gA"
    # At the very end: "%" alone, or "%" and one character, are kept as they are.
    assert parser.unescape_uri(b"/a%") == "/a%"
    assert parser.unescape_uri(b"/a%4") == "/a%4"
    # "%%" drops the first "%" (an old IDS evasion) and reads the second as the escape.
    assert parser.unescape_uri(b"/%%41") == "/A"
    # IIS-style %uXXXX: the high byte (unless 00), then the low byte.
    assert parser.unescape_uri(b"/%u0041%u263a") == "/A&:"
    # Bytes that are not printable survive as bytes (latin-1 characters), like the raw target.
    assert parser.unescape_uri(b"/%00%ff\xe9") == "/\x00\xff\xe9"


def test_request_record_carries_the_decoded_uri() -> None:
    req = b"GET /dvwa/?id=1%27+UNION+SELECT+NULL%2C+version%28%29+%23&x=%41 HTTP/1.1\r\nHost: h\r\n\r\n"
    recs, errors, _ = _run([(True, req), (False, RESP1)])
    assert errors == []
    assert [r.http.uri for r in recs] == ["/dvwa/?id=1'+UNION+SELECT+NULL,+version()+#&x=A"]


@given(st.binary(max_size=64))
def test_uri_unescaping_never_raises_nor_grows(raw: bytes) -> None:
    out = parser.unescape_uri(raw)
    assert len(out) <= len(raw)


def _http_session(port: int) -> object:
    return FACTORY(
        ConnContext("C1", "10.0.0.1", 40000, "10.0.0.2", port, "tcp"), lambda r: None, lambda p, r: None
    )


def test_binary_first_bytes_are_no_http_and_bad_text_still_is() -> None:
    tls = _http_session(8080)
    tls.data(True, 1.0, bytes.fromhex("16030100630100005f0301"))  # type: ignore[attr-defined]
    assert tls.rejected  # type: ignore[attr-defined]
    # A malformed request line is still text: the HTTP session keeps it (Zeek logs it with the 400).
    bad = _http_session(80)
    bad.data(True, 1.0, b"PUT/ HTTP/1.1\r\nHost: x\r\n\r\n")  # type: ignore[attr-defined]
    assert not bad.rejected  # type: ignore[attr-defined]


def test_tls_on_an_http_port_is_tls() -> None:
    """Meterpreter's reverse HTTPS to 10.0.5.13:8080 (OTRF metasploit_logonpasswords; tshark -d
    tcp.port==8080,tls: five ClientHellos, four certificates, self-signed CN=prosacco.sons.com). The port
    guessed HTTP; the first bytes are a TLS record, so the connection is TLS, as Zeek's protocol detection
    makes it."""
    records, _ = capture_records(
        CORPUS / "wild/OTRF__Security-Datasets/metasploit_logonpasswords_lsass_memory_dump.pcapng"
    )
    on_8080 = [r for r in records if r.resp.port == 8080 or r.flow.resp.port == 8080]
    kinds = [r.WhichOneof("kind") for r in on_8080]
    assert kinds.count("tls") == 5 and "http" not in kinds
    subjects = [r.tls.subject for r in on_8080 if r.WhichOneof("kind") == "tls"]
    assert sum("CN=prosacco.sons.com" in s for s in subjects) == 4
    assert [list(r.flow.service) for r in on_8080 if r.WhichOneof("kind") == "flow"] == [["ssl"]] * 5
