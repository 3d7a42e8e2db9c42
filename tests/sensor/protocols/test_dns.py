"""DNS parser and session: byte-built messages per RFC 1035/3596, TCP framing, hostile input."""

from __future__ import annotations

import contextlib
import struct
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from sensor.protocols.base import ConnContext, ParseError
from sensor.protocols.dns import FACTORY, parser
from sensor.protocols.dns.zeek import to_zeek
from tests.sensor import golden
from vigil.sensor.v1 import sensor_pb2


def _name(name: str) -> bytes:
    return b"".join(bytes([len(p)]) + p.encode() for p in name.split(".") if p) + b"\x00"


def _query(tid: int, name: str, qtype: int = 1, flags: int = 0x0100) -> bytes:
    return struct.pack("!HHHHHH", tid, flags, 1, 0, 0, 0) + _name(name) + struct.pack("!HH", qtype, 1)


def _reply(tid: int, name: str, answers: list[tuple[int, int, bytes]], rcode: int = 0) -> bytes:
    # Answers point back at the question name (offset 12) — exercising name compression.
    out = (
        struct.pack("!HHHHHH", tid, 0x8180 | rcode, 1, len(answers), 0, 0) + _name(name) + b"\x00\x01\x00\x01"
    )
    for rtype, ttl, rdata in answers:
        out += b"\xc0\x0c" + struct.pack("!HHIH", rtype, 1, ttl, len(rdata)) + rdata
    return out


CTX_UDP = ConnContext("Cudp", "10.0.0.1", 40000, "10.0.0.53", 53, "udp")
CTX_TCP = ConnContext("Ctcp", "10.0.0.1", 40000, "10.0.0.53", 53, "tcp")


def _run(
    ctx: ConnContext, chunks: list[tuple[bool, float, bytes]]
) -> tuple[list[sensor_pb2.Record], list[str]]:
    records: list[sensor_pb2.Record] = []
    errors: list[str] = []
    session = FACTORY(ctx, records.append, lambda p, r: errors.append(r))
    for is_orig, ts, data in chunks:
        session.data(is_orig, ts, data)
    session.finish(99.0)
    return records, errors


def test_parse_a_query_and_compressed_answers() -> None:
    reply = _reply(0x1234, "www.Example.com", [(5, 300, b"\xc0\x10"), (1, 60, bytes([93, 184, 216, 34]))])
    msg = parser.parse_message(reply)
    assert msg.is_response and msg.trans_id == 0x1234 and msg.recursion_available
    assert msg.questions[0] == parser.Question("www.example.com", 1, 1)
    assert [a.rendered for a in msg.answers] == ["example.com", "93.184.216.34"]
    assert [a.ttl for a in msg.answers] == [300, 60]


def test_aaaa_ptr_txt_rendering() -> None:
    aaaa = bytes.fromhex("20010db8000000000000000000000001")
    txt = b"\x05hello\x03abc"
    reply = _reply(7, "x.test", [(28, 1, aaaa), (12, 2, _name("host.example")), (16, 3, txt)])
    assert [a.rendered for a in parser.parse_message(reply).answers] == [
        "2001:db8::1",
        "host.example",
        "TXT 5 hello TXT 3 abc",
    ]


def test_pointer_loop_is_a_parse_error() -> None:
    msg = struct.pack("!HHHHHH", 1, 0, 1, 0, 0, 0) + b"\xc0\x0c" + b"\x00\x01\x00\x01"
    try:
        parser.parse_message(msg)
    except ParseError as exc:
        assert exc.reason == "name_pointer_loop"
    else:
        raise AssertionError("loop not detected")


def test_udp_query_reply_pairing_and_rtt() -> None:
    recs, errors = _run(CTX_UDP, [
        (True, 1.0, _query(42, "example.com")),
        (False, 1.25, _reply(42, "example.com", [(1, 60, b"\x01\x02\x03\x04")])),
        (True, 2.0, _query(43, "unanswered.example", qtype=12)),
    ])  # fmt: skip
    assert errors == []
    first, second = (r.dns for r in recs)
    assert first.query == "example.com" and first.rcode == 0 and first.recursion_desired
    assert abs(first.rtt_ms - 250.0) < 1e-6
    assert [a.value for a in first.answers] == ["1.2.3.4"]
    assert second.qtype == 12 and not second.HasField("rcode")
    row = to_zeek(first)
    assert row["qtype_name"] == "A" and row["rcode_name"] == "NOERROR" and row["TTLs"] == [60.0]


def test_tcp_length_prefixed_messages_in_odd_chunks() -> None:
    q = _query(9, "split.example")
    r = _reply(9, "split.example", [(1, 5, b"\x0a\x00\x00\x01")])
    client = struct.pack("!H", len(q)) + q
    server = struct.pack("!H", len(r)) + r + struct.pack("!H", len(r)) + r  # duplicate reply
    chunks = [(True, 1.0, client[i : i + 3]) for i in range(0, len(client), 3)]
    chunks += [(False, 1.1, server[:1]), (False, 1.1, server[1:20]), (False, 1.2, server[20:])]
    recs, errors = _run(CTX_TCP, chunks)
    assert errors == []
    assert len(recs) == 2
    assert recs[0].dns.HasField("rtt_ms") and recs[0].dns.qtype == 1
    assert recs[1].dns.query == "split.example" and recs[1].dns.qtype == 0  # reply without a query


def test_garbage_is_counted_not_raised() -> None:
    recs, errors = _run(CTX_UDP, [(True, 1.0, b"\x00\x01garbage")])
    assert recs == [] and errors == ["short_header"]


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=600))
def test_parser_raises_only_parse_error(data: bytes) -> None:
    with contextlib.suppress(ParseError):
        parser.parse_message(data)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.tuples(st.booleans(), st.binary(max_size=300)), max_size=8),
    st.sampled_from([CTX_UDP, CTX_TCP]),
)
def test_session_never_raises(chunks: list[tuple[bool, bytes]], ctx: ConnContext) -> None:
    _run(ctx, [(o, 1.0, d) for o, d in chunks])


@settings(max_examples=200, deadline=None)
@given(st.integers(min_value=0, max_value=200), st.integers(min_value=0, max_value=255))
def test_mutated_reply_never_escapes(pos: int, value: int) -> None:
    reply = bytearray(_reply(5, "m.example", [(1, 1, b"\x01\x02\x03\x04"), (16, 1, b"\x02hi")]))
    if pos < len(reply):
        reply[pos] = value
    with contextlib.suppress(ParseError):
        parser.parse_message(bytes(reply))
    _run(CTX_UDP, [(False, 1.0, bytes(reply))])


def test_z_bits_come_from_the_query_header() -> None:
    """Zeek's dns.log Z is the query's three reserved-turned-AD/CD bits; a reply alone leaves it 0."""
    recs, errors = _run(CTX_UDP, [
        (True, 1.0, _query(7, "signed.example", flags=0x0100 | 0x0020)),  # RD + AD (Z = 0b010)
        (False, 1.1, _reply(7, "signed.example", [(1, 60, b"\x01\x02\x03\x04")])),
        (False, 2.0, _reply(8, "orphan.example", [])),
    ])  # fmt: skip
    assert errors == []
    asked, orphan = (r.dns for r in recs)
    assert asked.z == 2 and to_zeek(asked)["Z"] == 2
    assert orphan.z == 0 and to_zeek(orphan)["Z"] == 0


# Zeek flips a connection's roles when the first DNS message it sees there is a response sent by the
# originator (the query was missed): dns53.pcap holds one packet, a response from 207.158.192.40:53 to
# 10.20.1.31:53 (`tshark -r dns53.pcap -T fields -e ip.src -e dns.flags.response` -> 207.158.192.40 1),
# and Zeek's dns.log (btest dns.flip) has orig 10.20.1.31.
def test_response_first_flips_the_rows_roles() -> None:
    recs, _ = _run(CTX_UDP, [(True, 1.0, _reply(7, "a.example", [(1, 60, b"\x01\x02\x03\x04")]))])
    assert [r.dns.roles_flipped for r in recs] == [True]
    recs, _ = _run(CTX_UDP, [(True, 1.0, _query(7, "a.example")), (False, 1.1, _reply(7, "a.example", []))])
    assert [r.dns.roles_flipped for r in recs] == [False]
    # Only the first message decides: a later unanswered response from the originator does not flip.
    recs, _ = _run(CTX_UDP, [(True, 1.0, _query(7, "a.example")), (True, 1.1, _reply(9, "b.example", []))])
    assert [r.dns.roles_flipped for r in recs] == [False, False]


def test_flipped_row_swaps_its_connection_in_dns_log(corpus: Path) -> None:
    logs = golden.run(corpus / "zeek/dns53.pcap", verified_checksums=True).logs
    assert [(r["id.orig_h"], r["id.resp_h"]) for r in logs["dns"]] == [("10.20.1.31", "207.158.192.40")]
