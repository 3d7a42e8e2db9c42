"""NTLMSSP messages (MS-NLMP 2.2.1) and the GSS-API / SPNEGO wrappers that carry them (RFC 2743, RFC 4178).

Pure functions: bytes -> dataclasses; only :class:`ParseError` escapes.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

from sensor.protocols import asn1
from sensor.protocols.base import ParseError

PROTOCOL = "ntlm"
SIGNATURE = b"NTLMSSP\x00"

NEGOTIATE = 1
CHALLENGE = 2
AUTHENTICATE = 3

# NegotiateFlags bits we act on (MS-NLMP 2.2.2.5).
FLAG_UNICODE = 0x00000001
FLAG_OEM = 0x00000002
FLAG_DOMAIN_SUPPLIED = 0x00001000
FLAG_WORKSTATION_SUPPLIED = 0x00002000
FLAG_TARGET_INFO = 0x00800000

# AV_PAIR ids (MS-NLMP 2.2.2.1).
AV_EOL = 0
AV_NB_COMPUTER = 1
AV_NB_DOMAIN = 2
AV_DNS_COMPUTER = 3
AV_DNS_DOMAIN = 4
AV_DNS_TREE = 5

# An AV list longer than this is not something a server sends.
_MAX_AV_PAIRS = 64

OID_SPNEGO = "1.3.6.1.5.5.2"
OID_NTLMSSP = "1.3.6.1.4.1.311.2.2.10"
OID_KERBEROS = "1.2.840.113554.1.2.2"
OID_KERBEROS_MS = "1.2.840.48018.1.2.2"  # Microsoft's historical (truncated) Kerberos OID
OID_KERBEROS_U2U = "1.2.840.113554.1.2.2.3"


@dataclass(frozen=True, slots=True)
class Negotiate:
    flags: int
    domain: str = ""
    workstation: str = ""


@dataclass(frozen=True, slots=True)
class Challenge:
    flags: int
    target_name: str = ""
    nb_computer_name: str = ""
    nb_domain_name: str = ""
    dns_computer_name: str = ""
    dns_domain_name: str = ""
    dns_tree_name: str = ""


@dataclass(frozen=True, slots=True)
class Authenticate:
    flags: int
    domain: str = ""
    user: str = ""
    workstation: str = ""


NtlmMessage = Negotiate | Challenge | Authenticate


def _field(blob: bytes, at: int) -> bytes:
    """A (Len, MaxLen, BufferOffset) descriptor at ``at``, resolved against the message; bounds-checked."""
    if at + 8 > len(blob):
        raise ParseError(PROTOCOL, "truncated_field")
    length, _max, offset = struct.unpack_from("<HHI", blob, at)
    if length == 0:
        return b""
    if offset + length > len(blob):
        raise ParseError(PROTOCOL, "field_out_of_bounds")
    return blob[offset : offset + length]


def _text(raw: bytes, flags: int) -> str:
    # Unicode (UTF-16LE) when negotiated, otherwise the OEM code page, which we cannot know: Latin-1
    # keeps every byte visible instead of failing.
    if flags & FLAG_UNICODE:
        return raw.decode("utf-16-le", "replace")
    return raw.decode("latin-1")


def parse_av_pairs(raw: bytes) -> dict[int, str]:
    """TargetInfo AV pairs; string-valued ones decoded (always UTF-16LE per 2.2.2.1)."""
    out: dict[int, str] = {}
    pos = 0
    for _ in range(_MAX_AV_PAIRS):
        if pos + 4 > len(raw):
            raise ParseError(PROTOCOL, "truncated_av_pair")
        av_id, av_len = struct.unpack_from("<HH", raw, pos)
        pos += 4
        if av_id == AV_EOL:
            return out
        if pos + av_len > len(raw):
            raise ParseError(PROTOCOL, "av_pair_out_of_bounds")
        if AV_NB_COMPUTER <= av_id <= AV_DNS_TREE:
            out[av_id] = raw[pos : pos + av_len].decode("utf-16-le", "replace")
        pos += av_len
    raise ParseError(PROTOCOL, "too_many_av_pairs")


def parse(blob: bytes) -> NtlmMessage:
    """Parse one NTLMSSP message."""
    if len(blob) < 12 or blob[:8] != SIGNATURE:
        raise ParseError(PROTOCOL, "bad_signature")
    (kind,) = struct.unpack_from("<I", blob, 8)
    if kind == NEGOTIATE:
        if len(blob) < 16:
            raise ParseError(PROTOCOL, "truncated_negotiate")
        (flags,) = struct.unpack_from("<I", blob, 12)
        domain = workstation = ""
        # The optional fields are only meaningful when their "supplied" flags are set; old clients
        # send a 16-byte message without them.
        if flags & FLAG_DOMAIN_SUPPLIED and len(blob) >= 24:
            domain = _field(blob, 16).decode("latin-1")
        if flags & FLAG_WORKSTATION_SUPPLIED and len(blob) >= 32:
            workstation = _field(blob, 24).decode("latin-1")
        return Negotiate(flags, domain, workstation)
    if kind == CHALLENGE:
        if len(blob) < 32:
            raise ParseError(PROTOCOL, "truncated_challenge")
        (flags,) = struct.unpack_from("<I", blob, 20)
        target = _text(_field(blob, 12), flags)
        avs: dict[int, str] = {}
        if flags & FLAG_TARGET_INFO and len(blob) >= 48:
            avs = parse_av_pairs(_field(blob, 40))
        return Challenge(
            flags,
            target,
            avs.get(AV_NB_COMPUTER, ""),
            avs.get(AV_NB_DOMAIN, ""),
            avs.get(AV_DNS_COMPUTER, ""),
            avs.get(AV_DNS_DOMAIN, ""),
            avs.get(AV_DNS_TREE, ""),
        )
    if kind == AUTHENTICATE:
        if len(blob) < 52:
            raise ParseError(PROTOCOL, "truncated_authenticate")
        # NegotiateFlags sits at 60 in every version that has it; very old clients omit it, and
        # then the strings are Unicode when the domain field is even-sized, which we approximate
        # by assuming Unicode.
        flags = struct.unpack_from("<I", blob, 60)[0] if len(blob) >= 64 else FLAG_UNICODE
        return Authenticate(
            flags,
            _text(_field(blob, 28), flags),
            _text(_field(blob, 36), flags),
            _text(_field(blob, 44), flags),
        )
    raise ParseError(PROTOCOL, "unknown_message_type")


# ---------------------------------------------------------------------------------------------
# GSS-API / SPNEGO


@dataclass(frozen=True, slots=True)
class GssToken:
    """What a security blob carries once the wrappers are removed.

    ``mech``: "ntlm", "kerberos" or "" (unknown or no inner token, e.g. a bare negState answer).
    ``token``: the inner mechanism token (an NTLMSSP message or a Kerberos AP-REQ/AP-REP/KRB-ERROR,
    without the RFC 1964 token-id prefix).
    ``neg_state``: SPNEGO negState when present (0 accept-completed, 1 accept-incomplete, 2 reject,
    3 request-mic).
    """

    mech: str
    token: bytes = b""
    neg_state: int | None = None
    mech_types: tuple[str, ...] = field(default=())


def _relabel(exc: ParseError) -> ParseError:
    return ParseError(PROTOCOL, f"spnego_{exc.reason}") if exc.protocol == "asn1" else exc


def _mech_of(oid: str) -> str:
    if oid == OID_NTLMSSP:
        return "ntlm"
    if oid in (OID_KERBEROS, OID_KERBEROS_MS, OID_KERBEROS_U2U):
        return "kerberos"
    return ""


def _inner(token: bytes, hint: str) -> GssToken:
    """Classify an inner token: raw NTLMSSP, a framed Kerberos GSS token, or a bare Kerberos message."""
    if token.startswith(SIGNATURE):
        return GssToken("ntlm", token)
    if token[:1] == b"\x60":
        return unwrap(token)
    if hint == "kerberos" or token[:1] in (b"\x6e", b"\x6f", b"\x7e"):
        # AP-REQ [APPLICATION 14], AP-REP [15] and KRB-ERROR [30] sent without the GSS framing.
        return GssToken("kerberos", token)
    return GssToken(hint, token)


def _neg_token_init(tlv: asn1.Tlv) -> GssToken:
    seq = asn1.children(tlv)
    if len(seq) != 1 or not seq[0].is_(asn1.CLASS_UNIVERSAL, asn1.TAG_SEQUENCE):
        raise ParseError(PROTOCOL, "spnego_bad_init")
    mechs: list[str] = []
    token = b""
    for item in asn1.children(seq[0]):
        if item.cls != asn1.CLASS_CONTEXT or not item.constructed:
            continue
        inner = asn1.children(item)
        if not inner:
            continue
        if item.tag == 0:
            mechs = [asn1.as_oid(oid) for oid in asn1.children(inner[0])]
        elif item.tag == 2:
            token = asn1.as_bytes(inner[0])
    first = _mech_of(mechs[0]) if mechs else ""
    if not token:
        return GssToken(first, b"", None, tuple(mechs))
    found = _inner(token, first)
    return GssToken(found.mech, found.token, None, tuple(mechs))


def _neg_token_resp(tlv: asn1.Tlv) -> GssToken:
    seq = asn1.children(tlv)
    if len(seq) != 1 or not seq[0].is_(asn1.CLASS_UNIVERSAL, asn1.TAG_SEQUENCE):
        raise ParseError(PROTOCOL, "spnego_bad_resp")
    state: int | None = None
    mech = ""
    token = b""
    for item in asn1.children(seq[0]):
        if item.cls != asn1.CLASS_CONTEXT or not item.constructed:
            continue
        inner = asn1.children(item)
        if not inner:
            continue
        if item.tag == 0:
            state = asn1.as_int(inner[0])
        elif item.tag == 1:
            mech = _mech_of(asn1.as_oid(inner[0]))
        elif item.tag == 2:
            token = asn1.as_bytes(inner[0])
    if not token:
        return GssToken(mech, b"", state)
    found = _inner(token, mech)
    return GssToken(found.mech or mech, found.token, state)


def unwrap(blob: bytes) -> GssToken:
    """Find the mechanism token inside a security blob (raw NTLMSSP, GSS-API framed, or SPNEGO)."""
    if blob.startswith(SIGNATURE):
        return GssToken("ntlm", blob)
    try:
        tlv, _after = asn1.read_tlv(blob)
        if tlv.is_(asn1.CLASS_APPLICATION, 0) and tlv.constructed:
            # InitialContextToken (RFC 2743 3.1): thisMech OID, then the mechanism's own bytes,
            # which are not necessarily one BER element, so slice them rather than parse them.
            oid_tlv, after = asn1.read_tlv(tlv.value)
            if not oid_tlv.is_(asn1.CLASS_UNIVERSAL, asn1.TAG_OID):
                raise ParseError(PROTOCOL, "gss_bad_oid")
            oid = asn1.as_oid(oid_tlv)
            rest = tlv.value[after:]
            if oid == OID_SPNEGO:
                return unwrap(rest)
            mech = _mech_of(oid)
            if mech == "kerberos":
                # RFC 1964 1.1: a two-byte TOK_ID precedes the Kerberos message.
                return GssToken("kerberos", rest[2:])
            if mech == "ntlm":
                return GssToken("ntlm", rest)
            return GssToken("", rest)
        if tlv.is_(asn1.CLASS_CONTEXT, 0) and tlv.constructed:
            return _neg_token_init(tlv)
        if tlv.is_(asn1.CLASS_CONTEXT, 1) and tlv.constructed:
            return _neg_token_resp(tlv)
    except ParseError as exc:
        raise _relabel(exc) from None
    raise ParseError(PROTOCOL, "unknown_security_blob")
