"""Property tests: random and mutated bytes into every parser and session of asn1/ntlm/smb/ldap/kerberos.

Parsers may only raise ParseError; sessions never raise and report problems through count_error.
"""

from __future__ import annotations

import contextlib

from hypothesis import given, settings
from hypothesis import strategies as st

from sensor.protocols import asn1, dce_rpc, kerberos, ldap, smb
from sensor.protocols.base import ConnContext, ParseError
from sensor.protocols.kerberos import parser as krb_parser
from sensor.protocols.ldap import parser as ldap_parser
from sensor.protocols.ntlm import parser as ntlm_parser
from sensor.protocols.smb import parser as smb_parser
from tests.sensor.protocols.test_kerberos import AS_REQ_BYTES
from tests.sensor.protocols.test_ldap import SEARCH_BYTES
from tests.sensor.protocols.test_ntlm import AUTHENTICATE_BYTES, CHALLENGE_BYTES
from tests.sensor.protocols.test_smb import smb2_frame

SEEDS = [AS_REQ_BYTES, SEARCH_BYTES, AUTHENTICATE_BYTES, CHALLENGE_BYTES, smb2_frame()[4:]]


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    base = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(0, 6))):
        if not base:
            break
        i = draw(st.integers(0, len(base) - 1))
        base[i] = draw(st.integers(0, 255))
    cut = draw(st.integers(0, len(base)))
    return bytes(base[:cut]) if draw(st.booleans()) else bytes(base)


payloads = st.one_of(st.binary(max_size=512), mutated())


def _only_parse_errors(fn: object, data: bytes) -> None:
    with contextlib.suppress(ParseError):
        fn(data)  # type: ignore[operator]


@settings(max_examples=300, deadline=None)
@given(payloads)
def test_parsers_raise_only_parse_error(data: bytes) -> None:
    for fn in (
        asn1.read_all,
        ntlm_parser.parse,
        ntlm_parser.unwrap,
        krb_parser.parse,
        ldap_parser.parse_message,
        smb_parser.parse_smb1,
        smb_parser.split_smb2,
    ):
        _only_parse_errors(fn, data)


def _ctx(transport: str) -> ConnContext:
    return ConnContext("Cfuzz", "10.0.0.1", 50000, "10.0.0.2", 445, transport)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.booleans(), payloads), max_size=6), st.sampled_from(["tcp", "udp"]))
def test_sessions_never_raise(chunks: list[tuple[bool, bytes]], transport: str) -> None:
    errors: list[tuple[str, str]] = []
    for package in (smb, ldap, kerberos, dce_rpc):
        if transport not in package.TRANSPORTS:
            continue
        session = package.FACTORY(_ctx(transport), lambda rec: None, lambda p, r: errors.append((p, r)))
        for is_orig, data in chunks:
            # NBSS/length-prefix the data half of the time so fuzz reaches the message parsers.
            framed = len(data).to_bytes(4, "big") + data if is_orig else data
            session.data(is_orig, 1.0, framed)
        session.gap(True, 2.0, 10)
        session.finish(3.0)
        assert isinstance(session.done, bool)
    assert all(isinstance(r, str) and len(r) < 64 for _p, r in errors)
