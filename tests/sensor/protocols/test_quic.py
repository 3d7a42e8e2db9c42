"""QUIC Initial packets: RFC 9001's key vectors, protection removed from packets built here, the CRYPTO
stream reassembled across packets and read by the TLS session, and garbage that only ever counts."""

from __future__ import annotations

import contextlib
import functools
import struct

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from hypothesis import given, settings
from hypothesis import strategies as st

from sensor.protocols.base import ConnContext, ParseError
from sensor.protocols.quic import FACTORY, QuicSession, heuristic, parser
from tests.sensor.protocols.test_tls import _client_hello, _server_hello_13
from vigil.sensor.v1 import sensor_pb2

CTX = ConnContext("Cquic", "10.0.0.4", 53241, "192.0.2.10", 443, "udp")
DCID = bytes.fromhex("8394c8f03e515708")


def test_initial_keys_match_rfc9001_appendix_a() -> None:
    client, server = parser.initial_keys(DCID)
    assert (client.key.hex(), client.iv.hex(), client.hp.hex()) == (
        "1f369613dd76d5467730efcbe3b1a22d",
        "fa044b2f42a3fd3b46fb255c",
        "9f50449e04a0e810283a1e9933adedd2",
    )
    assert (server.key.hex(), server.iv.hex(), server.hp.hex()) == (
        "cf3a5331653c364c88f0f379b6067e37",
        "0ac1493ca1905853b0bba03e",
        "c206b8d9b9f0f37644430b490eeaa314",
    )


def _varint(v: int) -> bytes:
    if v < 0x40:
        return bytes([v])
    if v < 0x4000:
        return struct.pack("!H", 0x4000 | v)
    return struct.pack("!I", 0x80000000 | v)


def _crypto(offset: int, data: bytes) -> bytes:
    return b"\x06" + _varint(offset) + _varint(len(data)) + data


def _initial(
    keys: parser.InitialKeys, dcid: bytes, scid: bytes, pn: int, frames: bytes, pad_to: int = 0
) -> bytes:
    """A protected version 1 Initial packet, as a sender builds it (RFC 9001 5.3, 5.4)."""
    pn_bytes = struct.pack("!H", pn)  # a two-byte packet number
    payload_len = max(len(frames) + 16, pad_to)
    frames = frames + bytes(payload_len - len(frames) - 16)  # PADDING frames
    length = _varint(len(pn_bytes) + payload_len)
    first = 0xC0 | (len(pn_bytes) - 1)
    header = bytes([first]) + b"\x00\x00\x00\x01" + bytes([len(dcid)]) + dcid + bytes([len(scid)]) + scid
    header += b"\x00" + length  # no token
    pn_offset = len(header)
    header += pn_bytes
    nonce = (int.from_bytes(keys.iv, "big") ^ pn).to_bytes(12, "big")
    sealed = AESGCM(keys.key).encrypt(nonce, frames, header)
    packet = bytearray(header + sealed)
    sample = bytes(packet[pn_offset + 4 : pn_offset + 20])
    enc = Cipher(algorithms.AES(keys.hp), modes.ECB()).encryptor()
    mask = enc.update(sample) + enc.finalize()
    packet[0] ^= mask[0] & 0x0F
    for i in range(len(pn_bytes)):
        packet[pn_offset + i] ^= mask[1 + i]
    return bytes(packet)


def _ack() -> bytes:
    return b"\x02" + _varint(0) + _varint(0) + _varint(0) + _varint(0)


def test_hellos_across_out_of_order_initials_make_one_ssl_record() -> None:
    client_keys, server_keys = parser.initial_keys(DCID)
    hello = _client_hello()
    half = len(hello) // 2
    # The ClientHello in two CRYPTO frames, second half first, plus a retransmission of the first.
    second = _initial(client_keys, DCID, b"\x01\x02", 1, b"\x01" + _crypto(half, hello[half:]), pad_to=1200)
    first = _initial(client_keys, DCID, b"\x01\x02", 0, _crypto(0, hello[:half]), pad_to=1200)
    again = _initial(client_keys, DCID, b"\x01\x02", 2, _crypto(0, hello[:half]), pad_to=1200)
    # The server's Initial coalesced with a Handshake packet this sensor cannot (and need not) read.
    server = _initial(server_keys, b"\x01\x02", b"\x0a\x0b", 0, _ack() + _crypto(0, _server_hello_13()))
    handshake = bytes([0xE0]) + b"\x00\x00\x00\x01\x02\x01\x02\x02\x0a\x0b" + _varint(20) + bytes(20)
    out: list[sensor_pb2.Record] = []
    errors: list[str] = []
    s = QuicSession(CTX, out.append, lambda p, r: errors.append(r))
    assert heuristic(second, True) and not heuristic(server, False)
    for is_orig, datagram in ((True, second), (True, first), (True, again), (False, server + handshake)):
        s.data(is_orig, 1.0, datagram)
    assert errors == [] and s.done
    assert s.inner_services == ("ssl",)
    s.finish(2.0)
    assert len(out) == 1
    rec = out[0].tls
    assert rec.server_name == "example.com" and rec.ja4.startswith("q13d0306h2_")
    assert (rec.version, rec.cipher, rec.curve) == ("TLSv13", "TLS_AES_256_GCM_SHA384", "x25519")
    assert rec.ssl_history == "Cs" and not rec.established


def test_tampered_initial_is_counted_not_read() -> None:
    client_keys, _ = parser.initial_keys(DCID)
    packet = bytearray(_initial(client_keys, DCID, b"", 0, _crypto(0, _client_hello()), pad_to=1200))
    packet[-1] ^= 1  # the AEAD tag no longer matches
    errors: list[str] = []
    out: list[sensor_pb2.Record] = []
    s = FACTORY(CTX, out.append, lambda p, r: errors.append(r))
    s.data(True, 1.0, bytes(packet))
    s.finish(2.0)
    assert errors == ["decrypt_failed"] and out == []


def test_varints_of_every_size() -> None:
    for value, size in ((37, 1), (15293, 2), (494878333, 4)):
        encoded = _varint(value)
        assert len(encoded) == size and parser.read_varint(encoded, 0) == (value, size)
    assert parser.read_varint(bytes.fromhex("c2197c5eff14e88c"), 0) == (151288809941952652, 8)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=1400))
def test_parsers_raise_only_parse_error(data: bytes) -> None:
    for fn in (parser.initial_packets, parser.crypto_frames):
        with contextlib.suppress(ParseError):
            fn(data)


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(st.booleans(), st.binary(min_size=1, max_size=1400)), max_size=8))
def test_session_never_raises(datagrams: list[tuple[bool, bytes]]) -> None:
    client_keys, _ = parser.initial_keys(DCID)
    s = FACTORY(CTX, lambda r: None, lambda p, r: None)
    s.data(True, 1.0, _initial(client_keys, DCID, b"", 0, _crypto(0, _client_hello()[:40]), pad_to=1200))
    for is_orig, data in datagrams:
        s.data(is_orig, 1.0, data)
    s.finish(2.0)


def test_dtls_or_a_mid_flow_join_is_left_alone_without_errors() -> None:
    dtls_hello = bytes([22, 0xFE, 0xFD]) + bytes(10) + bytes(100)
    short_header = bytes([0x43]) + bytes(60)
    for first in (dtls_hello, short_header):
        errors: list[tuple[str, str]] = []
        s = FACTORY(CTX, lambda r: None, functools.partial(_collect, errors))
        s.data(True, 1.0, first)
        assert s.done and errors == []


def _collect(into: list[tuple[str, str]], protocol: str, reason: str) -> None:
    into.append((protocol, reason))


def test_retry_moves_both_sides_to_the_new_connection_ids_keys() -> None:
    first_keys, _ = parser.initial_keys(DCID)
    new_dcid = bytes.fromhex("0f0e0d0c0b0a0908")
    client_keys, server_keys = parser.initial_keys(new_dcid)
    hello = _crypto(0, _client_hello())
    # A Retry (long header, type 3): to the client's id 0102, from the id the client must use now.
    retry = bytes([0xF0]) + b"\x00\x00\x00\x01\x02\x01\x02" + bytes([len(new_dcid)]) + new_dcid + bytes(24)
    out: list[sensor_pb2.Record] = []
    errors: list[str] = []
    s = QuicSession(CTX, out.append, lambda p, r: errors.append(r))
    s.data(True, 1.0, _initial(first_keys, DCID, b"\x01\x02", 0, hello, pad_to=1200))
    s.data(False, 1.1, retry)
    s.data(True, 1.2, _initial(client_keys, new_dcid, b"\x01\x02", 1, hello, pad_to=1200))
    s.data(False, 1.3, _initial(server_keys, b"\x01\x02", new_dcid, 0, _crypto(0, _server_hello_13())))
    s.finish(2.0)
    assert errors == [] and len(out) == 1
    assert out[0].tls.ssl_history == "Cs" and out[0].tls.cipher == "TLS_AES_256_GCM_SHA384"


def test_crypto_stream_holds_a_bounded_amount_out_of_order() -> None:
    from sensor.protocols.quic.session import MAX_CRYPTO_BYTES, _CryptoStream

    stream = _CryptoStream()
    chunk = bytes(1000)
    with contextlib.suppress(ParseError):
        for offset in range(1, MAX_CRYPTO_BYTES, 7):  # overlapping out-of-order frames, never released
            stream.add(offset, chunk)
        raise AssertionError("no bound")
    assert sum(map(len, stream._pending.values())) <= MAX_CRYPTO_BYTES
