"""WebSocket (RFC 6455) after an HTTP Upgrade: the handshake record, frame reading (lengths, masking,
fragments, control frames between fragments) and the hand-over of the frames' payload to the analyzer
it belongs to (TLS here); hostile frames are counted, never raised."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import struct

from google.protobuf.message import Message
from hypothesis import given, settings
from hypothesis import strategies as st

from sensor.analyzers import default_registry
from sensor.protocols import tls
from sensor.protocols.base import ConnContext, ParseError, Session
from sensor.protocols.websocket import parser
from sensor.protocols.websocket.zeek import to_zeek
from tests.sensor.protocols.test_tls import _client_hello, _record, _server_hello_12
from vigil.flow.v1 import tls_pb2
from vigil.sensor.v1 import sensor_pb2

CTX = ConnContext("Cws", "10.0.0.2", 51000, "10.0.0.80", 8888, "tcp")
# RFC 6455 section 1.3's example key and the accept value it derives.
KEY = "dGhlIHNhbXBsZSBub25jZQ=="
ACCEPT = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
UPGRADE = (
    b"GET /tunnel?x=%41 HTTP/1.1\r\nHost: ws.example:8888\r\nUser-Agent: t/1\r\nUpgrade: websocket\r\n"
    b"Connection: Upgrade\r\nSec-WebSocket-Key: " + KEY.encode() + b"\r\nSec-WebSocket-Version: 13\r\n"
    b"Sec-WebSocket-Protocol: v1, chat\r\nSec-WebSocket-Protocol: other\r\n"
    b"Sec-WebSocket-Extensions: x-one; a=1, x-two\r\n\r\n"
)
SWITCHED = (
    b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Accept: " + ACCEPT.encode() + b"\r\nSec-WebSocket-Protocol: v1\r\n"
    b"Sec-WebSocket-Extensions: x-one\r\n\r\n"
)
MASK = b"\x37\xfa\x21\x3d"
HELLO = _record(22, _client_hello())
SERVER_HELLO = _record(22, _server_hello_12())


def frame(opcode: int, payload: bytes, fin: bool = True, mask: bytes | None = MASK, rsv: int = 0) -> bytes:
    head = bytes([(0x80 if fin else 0) | rsv << 4 | opcode])
    size = len(payload)
    bit = 0x80 if mask is not None else 0
    if size < 126:
        head += bytes([bit | size])
    elif size < 1 << 16:
        head += bytes([bit | 126]) + struct.pack("!H", size)
    else:
        head += bytes([bit | 127]) + struct.pack("!Q", size)
    if mask is None:
        return head + payload
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


def server(opcode: int, payload: bytes, fin: bool = True) -> bytes:
    return frame(opcode, payload, fin, mask=None)


def run(
    chunks: list[tuple[bool, bytes]], step: int = 0
) -> tuple[dict[str, list[sensor_pb2.Record]], list[str], Session]:
    """The chunks through the HTTP analyzer of the default registry (the one that hands over to
    WebSocket); records by kind, the error reasons counted, the session."""
    out: list[sensor_pb2.Record] = []
    errors: list[str] = []
    http = next(a for a in default_registry().analyzers if a.name == "http")
    session = http.factory(CTX, out.append, lambda protocol, reason: errors.append(f"{protocol}:{reason}"))
    ts = 1.0
    for is_orig, data in chunks:
        pieces = [data[i : i + step] for i in range(0, len(data), step)] if step else [data]
        for piece in pieces:
            ts += 0.001
            session.data(is_orig, ts, piece)
    session.finish(ts + 1)
    kinds: dict[str, list[sensor_pb2.Record]] = {}
    for r in out:
        kinds.setdefault(r.WhichOneof("kind") or "", []).append(r)
    return kinds, errors, session


# --- parser ----------------------------------------------------------------------------------------


def test_accept_is_derived_from_the_key_as_rfc_6455_says() -> None:
    assert parser.accept_for(KEY) == ACCEPT
    # Derived independently: SHA-1 of the key and the protocol's GUID, in base64.
    guid = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
    assert parser.accept_for("abc") == base64.b64encode(hashlib.sha1(b"abc" + guid).digest()).decode()


def test_frame_headers_of_every_length_form() -> None:
    for size in (0, 125, 126, 65535, 65536):
        raw = frame(2, bytes(size))
        head = parser.frame_header(raw[:14])
        assert head is not None
        assert (head.fin, head.opcode, head.length, head.mask) == (True, 2, size, MASK)
        assert head.size == len(raw) - size
        assert parser.frame_header(raw[: head.size - 1]) is None  # not complete yet
    head = parser.frame_header(server(9, b"hi", fin=True))
    assert head is not None and head.mask is None and head.is_control


def test_malformed_frame_headers_raise_parse_error() -> None:
    for raw, reason in (
        (bytes([0x83, 0x80]) + MASK, "bad_opcode"),  # 3 is reserved
        (bytes([0x8B, 0x00]), "bad_opcode"),  # 0xB is reserved
        (bytes([0x09, 0x00]), "fragmented_control_frame"),  # ping without FIN
        (bytes([0x89, 126, 0, 126]), "control_frame_too_long"),
        (bytes([0x82, 127]) + struct.pack("!Q", 1 << 63), "bad_length"),
    ):
        try:
            parser.frame_header(raw)
        except ParseError as exc:
            assert exc.reason == reason, raw
        else:
            raise AssertionError(f"{raw!r} was accepted")


def test_unmasking_from_any_offset_inside_a_frame() -> None:
    payload = bytes(range(200))
    masked = frame(2, payload)[-len(payload) :]
    for cut in (0, 1, 3, 4, 7, 199):
        assert parser.unmask(masked[:cut], MASK, 0) + parser.unmask(masked[cut:], MASK, cut) == payload


def test_extension_lists_split_at_commas_and_keep_parameters() -> None:
    assert parser.split_list(["v1, chat", "other"]) == ["v1", "chat", "other"]
    assert parser.split_list(["x-one; a=1, x-two"]) == ["x-one; a=1", "x-two"]
    assert parser.split_list([]) == []


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=40))
def test_frame_header_raises_only_parse_error(data: bytes) -> None:
    with contextlib.suppress(ParseError):
        head = parser.frame_header(data)
        assert head is None or head.size <= len(data)


# --- the session: handshake, frames, TLS inside -------------------------------------------------------


def tls_exchange() -> list[tuple[bool, bytes]]:
    """The ClientHello in two fragments with a ping between them, the ServerHello in one frame, then
    ChangeCipherSpec from each side (the handshake turns opaque: TLS 1.2 is established)."""
    cut = 20
    return [
        (True, UPGRADE),
        (False, SWITCHED),
        (True, frame(2, HELLO[:cut], fin=False) + frame(9, b"ping") + frame(0, HELLO[cut:])),
        (False, server(10, b"ping") + server(2, SERVER_HELLO)),
        (True, frame(2, _record(20, b"\x01"))),
        (False, server(2, _record(20, b"\x01"))),
    ]


def test_tls_inside_websocket_is_read_and_the_handshake_logged() -> None:
    kinds, errors, session = run(tls_exchange())
    assert errors == []
    assert [r.http.status_code for r in kinds["http"]] == [101]
    (ws,) = (r.websocket for r in kinds["websocket"])
    assert ws.uid == "Cws" and ws.accept_valid
    assert to_zeek(ws) == {
        "host": "ws.example:8888",
        "uri": "/tunnel?x=A",
        "user_agent": "t/1",
        "subprotocol": "v1",
        "client_protocols": ["v1", "chat", "other"],
        "server_extensions": ["x-one"],
        "client_extensions": ["x-one; a=1", "x-two"],
    }
    (tls,) = (r.tls for r in kinds["tls"])
    assert (tls.server_name, tls.version, tls.established) == ("example.com", "TLSv12", True)
    # The same record the same TLS bytes make over plain TCP (times aside: they come from the frames).
    assert _without_time(tls) == _without_time(plain_tls(tls_exchange()[2:]))
    # conn.log's service names every analyzer the connection went through, as Zeek's "http,ssl,websocket".
    assert set(getattr(session, "inner_services", ())) == {"websocket", "ssl"}
    assert session.done  # TLS turned opaque: nothing left to read


def plain_tls(frames: list[tuple[bool, bytes]]) -> tls_pb2.TlsRecord:
    """The TLS record of the frames' payloads sent over TCP without WebSocket."""
    out: list[sensor_pb2.Record] = []
    session = tls.FACTORY(CTX, out.append, lambda protocol, reason: None)
    for is_orig, data in frames:
        at = 0
        while at < len(data):
            head = parser.frame_header(data[at:])
            assert head is not None
            body = data[at + head.size : at + head.size + head.length]
            if not head.is_control:
                session.data(is_orig, 1.0, parser.unmask(body, head.mask, 0) if head.mask else body)
            at += head.size + head.length
    session.finish(2.0)
    (rec,) = out
    return rec.tls


def _without_time(msg: Message) -> bytes:
    copy = type(msg)()
    copy.CopyFrom(msg)
    copy.ClearField("time")
    return copy.SerializeToString(deterministic=True)


def test_byte_by_byte_delivery_gives_the_same_records() -> None:
    whole, _, _ = run(tls_exchange())
    split, errors, _ = run(tls_exchange(), step=1)
    assert errors == []
    for kind in ("http", "websocket", "tls"):
        assert len(split[kind]) == len(whole[kind]) == 1, kind
        assert _without_time(getattr(split[kind][0], kind)) == _without_time(getattr(whole[kind][0], kind))


def test_client_frames_sent_before_the_answer_wait_for_it() -> None:
    chunks = tls_exchange()
    chunks[0] = (True, UPGRADE + chunks[2][1])
    del chunks[2]
    kinds, errors, _ = run(chunks)
    assert errors == []
    assert [r.tls.server_name for r in kinds["tls"]] == ["example.com"]


def test_a_refused_upgrade_leaves_the_connection_http() -> None:
    refused = b"HTTP/1.1 426 Upgrade Required\r\nContent-Length: 2\r\n\r\nno"
    again = b"GET /next HTTP/1.1\r\nHost: h\r\n\r\n"
    kinds, errors, session = run([(True, UPGRADE + again), (False, refused + b"HTTP/1.1 200 OK\r\n\r\n")])
    assert errors == []
    assert [(r.http.uri, r.http.status_code) for r in kinds["http"]] == [("/tunnel?x=A", 426), ("/next", 200)]
    assert "websocket" not in kinds
    assert tuple(getattr(session, "inner_services", ())) == ()


def test_a_wrong_accept_is_noted_and_the_frames_still_read() -> None:
    chunks = tls_exchange()
    chunks[1] = (False, SWITCHED.replace(ACCEPT.encode(), base64.b64encode(bytes(20))))
    kinds, errors, _ = run(chunks)
    assert errors == []
    assert [r.websocket.accept_valid for r in kinds["websocket"]] == [False]
    assert [r.tls.server_name for r in kinds["tls"]] == ["example.com"]


def test_payload_that_is_no_known_protocol_ends_the_analysis_quietly() -> None:
    kinds, errors, session = run(
        [(True, UPGRADE), (False, SWITCHED), (True, frame(1, b"hello there")), (False, server(1, b"hi"))]
    )
    assert errors == []
    assert len(kinds["websocket"]) == 1 and "tls" not in kinds
    assert session.done
    assert tuple(getattr(session, "inner_services", ())) == ("websocket",)


def test_protocol_violations_are_counted_and_never_raised() -> None:
    cases = {
        "reserved opcode": (frame(3, b"x"), "websocket:bad_opcode"),
        "continuation with no message": (frame(0, b"x"), "websocket:orphan_continuation"),
        "new message inside a fragmented one": (
            frame(2, b"a", fin=False) + frame(2, b"b"),
            "websocket:interrupted_message",
        ),
        "RSV bits without an extension": (frame(2, b"x", rsv=2), "websocket:reserved_bits"),
        "data after close": (frame(8, b"\x03\xe8") + frame(2, b"x"), "websocket:data_after_close"),
        "unmasked client frame": (frame(2, HELLO, mask=None), "websocket:unmasked_client_frame"),
    }
    for name, (data, reason) in cases.items():
        switched = SWITCHED.replace(b"Sec-WebSocket-Extensions: x-one\r\n", b"")
        kinds, errors, _ = run([(True, UPGRADE), (False, switched), (True, data)])
        assert errors == [reason], name
        assert len(kinds["websocket"]) == 1, name
    # A client that does not mask is noted, but what it sends is still read.
    switched = SWITCHED.replace(b"Sec-WebSocket-Extensions: x-one\r\n", b"")
    kinds, _, _ = run([(True, UPGRADE), (False, switched), (True, frame(2, HELLO, mask=None))])
    assert [r.tls.server_name for r in kinds["tls"]] == ["example.com"]


def test_compressed_messages_are_not_handed_on() -> None:
    # permessage-deflate: RSV1 marks a compressed message; its bytes are no TLS record to read.
    switched = SWITCHED.replace(b"x-one", b"permessage-deflate")
    kinds, errors, session = run([(True, UPGRADE), (False, switched), (True, frame(2, b"\x01\x02", rsv=4))])
    assert errors == []
    assert "tls" not in kinds and session.done


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.booleans(), st.binary(max_size=120)), max_size=8))
def test_random_frames_after_the_handshake_never_escape(chunks: list[tuple[bool, bytes]]) -> None:
    _, errors, _ = run([(True, UPGRADE), (False, SWITCHED), *chunks])
    assert all(e.startswith(("websocket:", "tls:", "http:")) for e in errors)
    assert not [e for e in errors if e.endswith("internal_error")]


@settings(max_examples=200, deadline=None)
@given(st.integers(min_value=0, max_value=600), st.integers(min_value=0, max_value=255), st.integers(1, 7))
def test_mutated_exchanges_never_escape(pos: int, value: int, step: int) -> None:
    chunks = tls_exchange()[2:]
    stream = bytearray(b"".join(data for _, data in chunks))
    if pos < len(stream):
        stream[pos] = value
    cut = len(chunks[0][1])
    mutated = [(True, UPGRADE), (False, SWITCHED), (True, bytes(stream[:cut])), (False, bytes(stream[cut:]))]
    _, errors, _ = run(mutated, step=step)
    assert not [e for e in errors if e.endswith("internal_error")]
