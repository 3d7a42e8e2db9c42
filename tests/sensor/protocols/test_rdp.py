"""RDP X.224 connection request/confirm and client core data, built per MS-RDPBCGR."""

from __future__ import annotations

import contextlib
import struct

from hypothesis import given, settings
from hypothesis import strategies as st

from sensor.protocols.base import ConnContext, ParseError
from sensor.protocols.rdp import FACTORY, parser
from vigil.sensor.v1 import sensor_pb2

CTX = ConnContext("Crdp", "10.0.0.5", 50000, "10.0.0.9", 3389, "tcp")


def _tpkt(x224: bytes) -> bytes:
    return struct.pack("!BBH", 3, 0, 4 + len(x224)) + x224


def _cr(cookie: bytes, requested: int | None) -> bytes:
    var = cookie + (struct.pack("<BBHI", 1, 0, 8, requested) if requested is not None else b"")
    return _tpkt(bytes([6 + len(var), 0xE0, 0, 0, 0, 0, 0]) + var)


def _cc(kind: int, value: int) -> bytes:
    var = struct.pack("<BBHI", kind, 0, 8, value)
    return _tpkt(bytes([6 + len(var), 0xD0, 0, 0, 0x12, 0x34, 0]) + var)


def _core(name: str, build: int, layout: int) -> bytes:
    body = struct.pack("<IHHHHII", 0x00080004, 1024, 768, 0xCA01, 0xAA03, layout, build)
    body += name.encode("utf-16-le").ljust(32, b"\x00") + bytes(212 - 56)
    block = struct.pack("<HH", 0xC001, len(body) + 4) + body
    # Stand-in for the BER/PER wrapping: the scanner only needs the block itself.
    return _tpkt(b"\x02\xf0\x80" + b"\x7f\x65\x82\x01\x00" + block)


def _run(chunks: list[tuple[bool, bytes]]) -> tuple[list[sensor_pb2.Record], list[str]]:
    out: list[sensor_pb2.Record] = []
    errors: list[str] = []
    s = FACTORY(CTX, out.append, lambda p, r: errors.append(r))
    for is_orig, data in chunks:
        s.data(is_orig, 1.0, data)
    s.finish(2.0)
    return out, errors


def test_cookie_and_negotiation_to_hybrid() -> None:
    req = parser.parse_connection_request(_cr(b"Cookie: mstshash=alice\r\n", 0x0B))
    assert req.cookie == "alice" and parser.protocol_names(req.requested or 0) == [
        "SSL",
        "HYBRID",
        "HYBRID_EX",
    ]
    out, errors = _run([(True, _cr(b"Cookie: mstshash=alice\r\n", 3)), (False, _cc(2, 2))])
    assert errors == []
    rec = out[0].rdp
    assert rec.cookie == "alice" and rec.security_protocol == "HYBRID" and rec.result == "encrypted"
    assert list(rec.requested_protocols) == ["SSL", "HYBRID"]


def test_negotiation_failure() -> None:
    out, _ = _run([(True, _cr(b"", 0)), (False, _cc(3, 5))])
    assert out[0].rdp.result == "HYBRID_REQUIRED_BY_SERVER"


def test_standard_security_reads_client_core_split_across_chunks() -> None:
    core = _core("WORKSTATION7", 7601, 0x409)
    chunks = [(True, _cr(b"Cookie: mstshash=bob\r\n", None)), (False, _cc(2, 0))]
    chunks += [(True, core[i : i + 7]) for i in range(0, len(core), 7)]
    out, errors = _run(chunks)
    assert errors == []
    rec = out[0].rdp
    assert (rec.client_name, rec.client_build, rec.keyboard_layout) == (
        "WORKSTATION7",
        "RDP 7.1",
        "English - United States",
    )
    assert rec.security_protocol == "RDP" and rec.result == "Success"


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_parsers_raise_only_parse_error(data: bytes) -> None:
    for fn in (parser.parse_connection_request, parser.parse_connection_confirm):
        with contextlib.suppress(ParseError):
            fn(data)
    parser.find_client_core(data)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.booleans(), st.binary(max_size=100)), max_size=6))
def test_session_never_raises(chunks: list[tuple[bool, bytes]]) -> None:
    _run([(True, _cr(b"Cookie: mstshash=x\r\n", 1)), *chunks])
