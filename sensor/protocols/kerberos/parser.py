"""Kerberos V5 messages (RFC 4120 section 5): KDC-REQ/KDC-REP/KRB-ERROR and AP-REQ/AP-REP.

Pure functions: bytes -> dataclasses; only :class:`ParseError` escapes. Encrypted parts are never
decrypted; only their encryption type is read, and of tickets a SHA-256 of the ciphertext (it names a
ticket without revealing anything: the same ticket shown from two hosts is the same hash).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from sensor.protocols import asn1
from sensor.protocols.base import ParseError
from sensor.protocols.x509 import certificate_names

PROTOCOL = "kerberos"

AS_REQ = 10
AS_REP = 11
TGS_REQ = 12
TGS_REP = 13
AP_REQ = 14
AP_REP = 15
KRB_ERROR = 30

# RFC 4120 7.5.9 error codes, named as the RFC (and Zeek) do.
ERROR_NAMES: dict[int, str] = {
    0: "KDC_ERR_NONE",
    1: "KDC_ERR_NAME_EXP",
    2: "KDC_ERR_SERVICE_EXP",
    3: "KDC_ERR_BAD_PVNO",
    4: "KDC_ERR_C_OLD_MAST_KVNO",
    5: "KDC_ERR_S_OLD_MAST_KVNO",
    6: "KDC_ERR_C_PRINCIPAL_UNKNOWN",
    7: "KDC_ERR_S_PRINCIPAL_UNKNOWN",
    8: "KDC_ERR_PRINCIPAL_NOT_UNIQUE",
    9: "KDC_ERR_NULL_KEY",
    10: "KDC_ERR_CANNOT_POSTDATE",
    11: "KDC_ERR_NEVER_VALID",
    12: "KDC_ERR_POLICY",
    13: "KDC_ERR_BADOPTION",
    14: "KDC_ERR_ETYPE_NOSUPP",
    15: "KDC_ERR_SUMTYPE_NOSUPP",
    16: "KDC_ERR_PADATA_TYPE_NOSUPP",
    17: "KDC_ERR_TRTYPE_NOSUPP",
    18: "KDC_ERR_CLIENT_REVOKED",
    19: "KDC_ERR_SERVICE_REVOKED",
    20: "KDC_ERR_TGT_REVOKED",
    21: "KDC_ERR_CLIENT_NOTYET",
    22: "KDC_ERR_SERVICE_NOTYET",
    23: "KDC_ERR_KEY_EXPIRED",
    24: "KDC_ERR_PREAUTH_FAILED",
    25: "KDC_ERR_PREAUTH_REQUIRED",
    26: "KDC_ERR_SERVER_NOMATCH",
    27: "KDC_ERR_MUST_USE_USER2USER",
    28: "KDC_ERR_PATH_NOT_ACCEPTED",
    29: "KDC_ERR_SVC_UNAVAILABLE",
    31: "KRB_AP_ERR_BAD_INTEGRITY",
    32: "KRB_AP_ERR_TKT_EXPIRED",
    33: "KRB_AP_ERR_TKT_NYV",
    34: "KRB_AP_ERR_REPEAT",
    35: "KRB_AP_ERR_NOT_US",
    36: "KRB_AP_ERR_BADMATCH",
    37: "KRB_AP_ERR_SKEW",
    38: "KRB_AP_ERR_BADADDR",
    39: "KRB_AP_ERR_BADVERSION",
    40: "KRB_AP_ERR_MSG_TYPE",
    41: "KRB_AP_ERR_MODIFIED",
    42: "KRB_AP_ERR_BADORDER",
    44: "KRB_AP_ERR_BADKEYVER",
    45: "KRB_AP_ERR_NOKEY",
    46: "KRB_AP_ERR_MUT_FAIL",
    47: "KRB_AP_ERR_BADDIRECTION",
    48: "KRB_AP_ERR_METHOD",
    49: "KRB_AP_ERR_BADSEQ",
    50: "KRB_AP_ERR_INAPP_CKSUM",
    51: "KRB_AP_PATH_NOT_ACCEPTED",
    52: "KRB_ERR_RESPONSE_TOO_BIG",
    60: "KRB_ERR_GENERIC",
    61: "KRB_ERR_FIELD_TOOLONG",
    62: "KDC_ERROR_CLIENT_NOT_TRUSTED",
    63: "KDC_ERROR_KDC_NOT_TRUSTED",
    64: "KDC_ERROR_INVALID_SIG",
    65: "KDC_ERR_KEY_TOO_WEAK",
    66: "KDC_ERR_CERTIFICATE_MISMATCH",
    67: "KRB_AP_ERR_NO_TGT",
    68: "KDC_ERR_WRONG_REALM",
    69: "KRB_AP_ERR_USER_TO_USER_REQUIRED",
    70: "KDC_ERR_CANT_VERIFY_CERTIFICATE",
    71: "KDC_ERR_INVALID_CERTIFICATE",
    72: "KDC_ERR_REVOKED_CERTIFICATE",
    73: "KDC_ERR_REVOCATION_STATUS_UNKNOWN",
    74: "KDC_ERR_REVOCATION_STATUS_UNAVAILABLE",
    75: "KDC_ERR_CLIENT_NAME_MISMATCH",
    76: "KDC_ERR_KDC_NAME_MISMATCH",
}

# Encryption types (RFC 3961 8, RFC 4757, RFC 8009), with the names MIT Kerberos and Zeek print.
CIPHER_NAMES: dict[int, str] = {
    1: "des-cbc-crc",
    2: "des-cbc-md4",
    3: "des-cbc-md5",
    5: "des3-cbc-md5",
    7: "des3-cbc-sha1",
    16: "des3-cbc-sha1-kd",
    17: "aes128-cts-hmac-sha1-96",
    18: "aes256-cts-hmac-sha1-96",
    19: "aes128-cts-hmac-sha256-128",
    20: "aes256-cts-hmac-sha384-192",
    23: "rc4-hmac",
    24: "rc4-hmac-exp",
    25: "camellia128-cts-cmac",
    26: "camellia256-cts-cmac",
}

# KDCOptions bit numbers (RFC 4120 5.4.1); bit 0 is the most significant bit of the first octet.
_OPT_FORWARDABLE = 1
_OPT_RENEWABLE = 8


@dataclass(frozen=True, slots=True)
class Principal:
    name_type: int
    names: tuple[str, ...]

    def render(self) -> str:
        return "/".join(self.names)


@dataclass(frozen=True, slots=True)
class KdcRequest:
    msg_type: int
    realm: str
    cname: Principal | None
    sname: Principal | None
    from_time: float | None
    till: float | None
    forwardable: bool
    renewable: bool
    etypes: tuple[int, ...]
    # PKINIT (RFC 4556): the subject of the first certificate the client sent in PA-PK-AS-REQ, or "".
    cert_subject: str = ""
    # A TGS-REQ: the SHA-256 (hex) of the ciphertext of the ticket in its PA-TGS-REQ, the ticket the
    # request is made with; "" when there is none.
    auth_ticket_sha256: str = ""


@dataclass(frozen=True, slots=True)
class KdcReply:
    msg_type: int
    crealm: str
    cname: Principal | None
    ticket_realm: str
    ticket_sname: Principal | None
    ticket_etype: int | None
    enc_etype: int | None
    # PKINIT: the subject of the first certificate the KDC sent in PA-PK-AS-REP, or "".
    cert_subject: str = ""
    # SHA-256 (hex) of the ciphertext of the ticket the KDC returned.
    ticket_sha256: str = ""


@dataclass(frozen=True, slots=True)
class KrbError:
    error_code: int
    realm: str
    sname: Principal | None
    crealm: str
    cname: Principal | None
    e_text: str


@dataclass(frozen=True, slots=True)
class ApRequest:
    ticket_realm: str
    ticket_sname: Principal | None
    ticket_etype: int | None
    # SHA-256 (hex) of the ticket's ciphertext.
    ticket_sha256: str = ""


@dataclass(frozen=True, slots=True)
class ApReply:
    enc_etype: int | None


Message = KdcRequest | KdcReply | KrbError | ApRequest | ApReply


def _fields(tlv: asn1.Tlv) -> dict[int, asn1.Tlv]:
    """A SEQUENCE of context-tagged fields -> {tag: inner element}.

    Accepts the SEQUENCE itself or an APPLICATION-tagged wrapper holding exactly one SEQUENCE.
    """
    if tlv.is_(asn1.CLASS_UNIVERSAL, asn1.TAG_SEQUENCE):
        seq = tlv
    else:
        inner = asn1.children(tlv)
        if len(inner) != 1 or not inner[0].is_(asn1.CLASS_UNIVERSAL, asn1.TAG_SEQUENCE):
            raise ParseError(PROTOCOL, "not_a_sequence")
        seq = inner[0]
    out: dict[int, asn1.Tlv] = {}
    for item in asn1.children(seq):
        if item.cls != asn1.CLASS_CONTEXT or not item.constructed:
            raise ParseError(PROTOCOL, "bad_field_tag")
        inner = asn1.children(item)
        if len(inner) != 1:
            raise ParseError(PROTOCOL, "bad_field")
        out[item.tag] = inner[0]
    return out


def _principal(tlv: asn1.Tlv | None) -> Principal | None:
    if tlv is None:
        return None
    fields = _fields(tlv)
    name_type = asn1.as_int(fields[0]) if 0 in fields else 0
    names: tuple[str, ...] = ()
    if 1 in fields:
        names = tuple(asn1.as_str(part) for part in asn1.children(fields[1])[:16])
    return Principal(name_type, names)


def _str(fields: dict[int, asn1.Tlv], tag: int) -> str:
    return asn1.as_str(fields[tag]) if tag in fields else ""


def _etype_of(tlv: asn1.Tlv | None) -> int | None:
    """EncryptedData.etype."""
    if tlv is None:
        return None
    fields = _fields(tlv)
    return asn1.as_int(fields[0]) if 0 in fields else None


@dataclass(frozen=True, slots=True)
class _Ticket:
    realm: str = ""
    sname: Principal | None = None
    etype: int | None = None
    sha256: str = ""


def _ticket(tlv: asn1.Tlv | None) -> _Ticket:
    """Ticket (RFC 4120 5.3): realm, service name, and of its EncryptedData the type and a SHA-256 of the
    cipher."""
    if tlv is None:
        return _Ticket()
    if not tlv.is_(asn1.CLASS_APPLICATION, 1):
        raise ParseError(PROTOCOL, "bad_ticket")
    fields = _fields(tlv)
    enc = fields.get(3)
    digest = ""
    if enc is not None:
        enc_fields = _fields(enc)
        if 2 in enc_fields:
            digest = hashlib.sha256(asn1.as_bytes(enc_fields[2])).hexdigest()
    return _Ticket(_str(fields, 1), _principal(fields.get(2)), _etype_of(enc), digest)


def _ap_request(tlv: asn1.Tlv) -> ApRequest:
    ticket = _ticket(_fields(tlv).get(3))
    return ApRequest(ticket.realm, ticket.sname, ticket.etype, ticket.sha256)


def _option(bits: bytes, bit: int) -> bool:
    index = bit // 8
    return index < len(bits) and bool(bits[index] & (0x80 >> (bit % 8)))


def _kdc_req(msg_type: int, tlv: asn1.Tlv) -> KdcRequest:
    fields = _fields(tlv)
    if 4 not in fields:
        raise ParseError(PROTOCOL, "missing_req_body")
    body = _fields(fields[4])
    options = asn1.as_bitstring(body[0]) if 0 in body else b""
    etypes: tuple[int, ...] = ()
    if 8 in body:
        etypes = tuple(asn1.as_int(e) for e in asn1.children(body[8])[:64])
    return KdcRequest(
        msg_type=msg_type,
        realm=_str(body, 2),
        cname=_principal(body.get(1)),
        sname=_principal(body.get(3)),
        from_time=asn1.as_time(body[4]) if 4 in body else None,
        till=asn1.as_time(body[5]) if 5 in body else None,
        forwardable=_option(options, _OPT_FORWARDABLE),
        renewable=_option(options, _OPT_RENEWABLE),
        etypes=etypes,
        cert_subject=_pkinit_subject(fields.get(3), PA_PK_AS_REQ),
        auth_ticket_sha256=_tgs_ticket_sha256(fields.get(3)),
    )


def _kdc_rep(msg_type: int, tlv: asn1.Tlv) -> KdcReply:
    fields = _fields(tlv)
    ticket = _ticket(fields.get(5))
    return KdcReply(
        msg_type=msg_type,
        crealm=_str(fields, 3),
        cname=_principal(fields.get(4)),
        ticket_realm=ticket.realm,
        ticket_sname=ticket.sname,
        ticket_etype=ticket.etype,
        enc_etype=_etype_of(fields.get(6)),
        cert_subject=_pkinit_subject(fields.get(2), PA_PK_AS_REP),
        ticket_sha256=ticket.sha256,
    )


PA_TGS_REQ = 1


def _tgs_ticket_sha256(padata: asn1.Tlv | None) -> str:
    """The ticket hash of the AP-REQ in a PA-TGS-REQ (RFC 4120 5.2.7.1), or "" when there is none or it
    does not parse (a damaged pre-authentication never fails the request it came with)."""
    if padata is None:
        return ""
    for item in asn1.children(padata)[:16]:
        try:
            fields = _fields(item)
            if 1 not in fields or 2 not in fields or asn1.as_int(fields[1]) != PA_TGS_REQ:
                continue
            ap = asn1.read_all(asn1.as_bytes(fields[2]))
            return _ap_request(ap).ticket_sha256 if ap.is_(asn1.CLASS_APPLICATION, AP_REQ) else ""
        except ParseError:
            return ""
    return ""


# PKINIT pre-authentication data (RFC 4556): both carry a CMS SignedData (OID 1.2.840.113549.1.7.2) whose
# certificates set holds the sender's certificate.
PA_PK_AS_REQ = 16
PA_PK_AS_REP = 17
_SIGNED_DATA = "1.2.840.113549.1.7.2"
_PKINIT_MAX_DEPTH = 6


def _pkinit_subject(padata: asn1.Tlv | None, wanted: int) -> str:
    """The subject of the first certificate in the PKINIT pre-authentication data of type ``wanted``, or ""
    when there is none or it does not parse (a bad certificate never fails the Kerberos message)."""
    if padata is None:
        return ""
    for item in asn1.children(padata)[:16]:
        try:
            fields = _fields(item)
            if 1 not in fields or 2 not in fields or asn1.as_int(fields[1]) != wanted:
                continue
            cert = _first_certificate(asn1.read_all(asn1.as_bytes(fields[2])), 0)
            return certificate_names(cert)[0] if cert is not None else ""
        except ParseError:
            return ""
    return ""


def _first_certificate(tlv: asn1.Tlv, depth: int) -> bytes | None:
    """Walk down to a ContentInfo of SignedData (in an OCTET STRING or an implicitly tagged one, as the
    request and the reply each wrap it) and return its first certificate, DER-encoded."""
    if depth > _PKINIT_MAX_DEPTH:
        return None
    if tlv.constructed:
        inner = asn1.children(tlv, limit=16)
        if (
            tlv.is_(asn1.CLASS_UNIVERSAL, asn1.TAG_SEQUENCE)
            and len(inner) == 2
            and inner[0].is_(asn1.CLASS_UNIVERSAL, asn1.TAG_OID)
            and asn1.as_oid(inner[0]) == _SIGNED_DATA
        ):
            return _signed_data_certificate(inner[1])
        for child in inner:
            found = _first_certificate(child, depth + 1)
            if found is not None:
                return found
        return None
    if tlv.value[:1] == b"\x30":
        try:
            return _first_certificate(asn1.read_all(tlv.value), depth + 1)
        except ParseError:
            return None
    return None


def _signed_data_certificate(content: asn1.Tlv) -> bytes | None:
    """The first certificate of ``[0] EXPLICIT SignedData``: its ``certificates [0] IMPLICIT SET``."""
    inner = asn1.children(content, limit=2)
    if len(inner) != 1 or not inner[0].is_(asn1.CLASS_UNIVERSAL, asn1.TAG_SEQUENCE):
        return None
    for part in asn1.children(inner[0], limit=8):
        if part.cls == asn1.CLASS_CONTEXT and part.tag == 0 and part.constructed:
            certs = asn1.children(part, limit=64)
            if certs and certs[0].is_(asn1.CLASS_UNIVERSAL, asn1.TAG_SEQUENCE):
                return _der_sequence(certs[0].value)
    return None


def _der_sequence(value: bytes) -> bytes:
    """A SEQUENCE's DER encoding from its content octets (the decoder keeps only the content)."""
    n = len(value)
    if n < 0x80:
        return b"\x30" + bytes([n]) + value
    size = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return b"\x30" + bytes([0x80 | len(size)]) + size + value


def _krb_error(tlv: asn1.Tlv) -> KrbError:
    fields = _fields(tlv)
    if 6 not in fields:
        raise ParseError(PROTOCOL, "missing_error_code")
    return KrbError(
        error_code=asn1.as_int(fields[6]),
        realm=_str(fields, 9),
        sname=_principal(fields.get(10)),
        crealm=_str(fields, 7),
        cname=_principal(fields.get(8)),
        e_text=_str(fields, 11),
    )


def parse(data: bytes) -> Message:
    """Parse one Kerberos message (one UDP datagram or one TCP record without its length prefix)."""
    try:
        tlv = asn1.read_all(data)
        if tlv.cls != asn1.CLASS_APPLICATION or not tlv.constructed:
            raise ParseError(PROTOCOL, "not_application")
        if tlv.tag in (AS_REQ, TGS_REQ):
            return _kdc_req(tlv.tag, tlv)
        if tlv.tag in (AS_REP, TGS_REP):
            return _kdc_rep(tlv.tag, tlv)
        if tlv.tag == KRB_ERROR:
            return _krb_error(tlv)
        if tlv.tag == AP_REQ:
            return _ap_request(tlv)
        if tlv.tag == AP_REP:
            return ApReply(_etype_of(_fields(tlv).get(2)))
    except ParseError as exc:
        if exc.protocol == "asn1":
            raise ParseError(PROTOCOL, f"ber_{exc.reason}") from None
        raise
    raise ParseError(PROTOCOL, "unknown_message_type")


def parse_prefix(data: bytes) -> Message:
    """Like :func:`parse` but ignores bytes after the first element (GSS tokens may carry trailers)."""
    try:
        _tlv, after = asn1.read_tlv(data)
    except ParseError as exc:
        raise ParseError(PROTOCOL, f"ber_{exc.reason}") from None
    return parse(data[:after])
