"""DHCP parser and the cross-connection exchange table: byte-built RFC 2131/2132 messages."""

from __future__ import annotations

import contextlib
import struct

from hypothesis import given, settings
from hypothesis import strategies as st

from sensor.protocols.base import ConnContext, ParseError
from sensor.protocols.dhcp import DhcpSessionFactory, TransactionTable, parser
from sensor.protocols.dhcp.zeek import to_zeek
from vigil.sensor.v1 import sensor_pb2

MAC = bytes.fromhex("90b11c994929")


def _msg(op: int, xid: int, msg_type: int, yiaddr: str = "0.0.0.0", options: bytes = b"") -> bytes:
    fixed = struct.pack("!BBBBIHH", op, 1, 6, 0, xid, 0, 0x8000)
    fixed += bytes(4) + bytes(int(x) for x in yiaddr.split(".")) + bytes(8)
    fixed += MAC + bytes(10) + bytes(64) + bytes(128)
    return fixed + parser.MAGIC_COOKIE + bytes([53, 1, msg_type]) + options + b"\xff"


def _opt(code: int, value: bytes) -> bytes:
    return bytes([code, len(value)]) + value


def test_parse_discover_options() -> None:
    opts = _opt(12, b"laptop") + _opt(50, bytes([10, 0, 0, 7])) + _opt(55, bytes([1, 3, 6, 15]))
    opts += _opt(60, b"MSFT 5.0") + _opt(81, b"\x00\x00\x00laptop.corp")
    msg = parser.parse_message(_msg(1, 0xABCD, 1, options=opts))
    assert msg.msg_type_name == "DISCOVER" and msg.xid == 0xABCD and msg.chaddr == MAC
    assert msg.host_name == "laptop" and msg.requested_addr == bytes([10, 0, 0, 7])
    assert msg.param_request_list == (1, 3, 6, 15) and msg.vendor_class == "MSFT 5.0"
    assert msg.client_fqdn == "laptop.corp"


def test_fqdn_in_dns_wire_format() -> None:
    msg = parser.parse_message(_msg(1, 1, 3, options=_opt(81, b"\x05\x00\x00\x02pc\x04corp\x00")))
    assert msg.client_fqdn == "pc.corp"


def test_exchange_spanning_connections_is_one_record() -> None:
    table = TransactionTable()
    factory = DhcpSessionFactory(table)
    out: list[sensor_pb2.Record] = []
    bcast = ConnContext("C1", "0.0.0.0", 68, "255.255.255.255", 67, "udp")
    unicast = ConnContext("C2", "10.0.0.7", 68, "10.0.0.1", 67, "udp")
    s1 = factory(bcast, out.append, lambda p, r: None)
    s2 = factory(unicast, out.append, lambda p, r: None)
    s1.data(True, 1.0, _msg(1, 77, 1, options=_opt(12, b"laptop")))
    server = _opt(54, bytes([10, 0, 0, 1])) + _opt(51, struct.pack("!I", 3600)) + _opt(15, b"corp")
    s2.data(False, 1.1, _msg(2, 77, 2, "10.0.0.7", server))
    s1.data(True, 1.2, _msg(1, 77, 3, options=_opt(50, bytes([10, 0, 0, 7]))))
    s2.data(False, 1.3, _msg(2, 77, 5, "10.0.0.7", server))
    assert out == [] and len(table) == 1
    s1.finish(2.0)
    assert out == []  # C2 is still open and may carry more of the exchange
    s2.finish(2.0)
    assert len(out) == 1
    row = to_zeek(out[0].dhcp)
    assert row["msg_types"] == ["DISCOVER", "OFFER", "REQUEST", "ACK"]
    assert row["uids"] == ["C1", "C2"]
    assert row["assigned_addr"] == "10.0.0.7" and row["server_addr"] == "10.0.0.1"
    assert row["lease_time"] == 3600.0 and row["domain"] == "corp" and row["host_name"] == "laptop"
    assert row["mac"] == "90:b1:1c:99:49:29" and abs(row["duration"] - 0.3) < 1e-9
    assert out[0].dhcp.trans_id == 77


def test_exchange_expires_by_event_time_and_table_is_bounded() -> None:
    table = TransactionTable(watch_time=10.0, max_entries=2)
    out: list[sensor_pb2.Record] = []
    s = DhcpSessionFactory(table)(ConnContext("C", "0.0.0.0", 68, "255.255.255.255", 67, "udp"),
                                  out.append, lambda p, r: None)  # fmt: skip
    for xid in (1, 2, 3):
        s.data(True, float(xid), _msg(1, xid, 1))
    assert len(out) == 1 and out[0].dhcp.trans_id == 1  # evicted as the oldest
    s.data(True, 20.0, _msg(1, 9, 1))
    assert [r.dhcp.trans_id for r in out] == [1, 2, 3]  # expired by age
    table.flush()
    assert [r.dhcp.trans_id for r in out] == [1, 2, 3, 9]


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=400))
def test_parser_raises_only_parse_error(data: bytes) -> None:
    with contextlib.suppress(ParseError):
        parser.parse_message(data)


@settings(max_examples=300, deadline=None)
@given(st.integers(min_value=0, max_value=300), st.integers(min_value=0, max_value=255), st.booleans())
def test_mutated_messages_never_escape_a_session(pos: int, value: int, is_orig: bool) -> None:
    raw = bytearray(_msg(1, 5, 3, options=_opt(12, b"h") + _opt(81, b"\x04\x00\x00\x01a\x00")))
    if pos < len(raw):
        raw[pos] = value
    errors: list[str] = []
    s = DhcpSessionFactory(TransactionTable())(ConnContext("C", "0.0.0.0", 68, "255.255.255.255", 67, "udp"),
                                               lambda r: None, lambda p, r: errors.append(r))  # fmt: skip
    s.data(is_orig, 1.0, bytes(raw))
    s.finish(2.0)
