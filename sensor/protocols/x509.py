"""X.509 certificates, just enough DER for their subject and issuer as RFC 4514 strings (Zeek's spelling).

Read from TLS handshakes (sensor/protocols/tls) and from Kerberos PKINIT pre-authentication
(sensor/protocols/kerberos). Malformed input raises ParseError; the caller counts it under its protocol.
"""

from __future__ import annotations

from sensor.protocols.base import ParseError

PROTOCOL = "x509"

_ATTR_NAMES = {
    "2.5.4.3": "CN", "2.5.4.6": "C", "2.5.4.7": "L", "2.5.4.8": "ST", "2.5.4.9": "STREET", "2.5.4.10": "O",
    "2.5.4.11": "OU", "2.5.4.5": "serialNumber", "2.5.4.4": "SN", "2.5.4.42": "GN", "2.5.4.12": "title",
    "2.5.4.17": "postalCode", "2.5.4.15": "businessCategory", "0.9.2342.19200300.100.1.25": "DC",
    "0.9.2342.19200300.100.1.1": "UID", "1.2.840.113549.1.9.1": "emailAddress",
    "1.3.6.1.4.1.311.60.2.1.3": "jurisdictionC", "1.3.6.1.4.1.311.60.2.1.2": "jurisdictionST",
    "1.3.6.1.4.1.311.60.2.1.1": "jurisdictionL",
}  # fmt: skip


def _der(data: bytes, pos: int) -> tuple[int, int, int]:
    """(tag, content start, content end) of the DER element at ``pos``."""
    if pos + 2 > len(data):
        raise ParseError(PROTOCOL, "der_truncated")
    tag = data[pos]
    if tag & 0x1F == 0x1F:
        raise ParseError(PROTOCOL, "der_long_tag")
    length = data[pos + 1]
    pos += 2
    if length & 0x80:
        n = length & 0x7F
        if n == 0 or n > 4 or pos + n > len(data):
            raise ParseError(PROTOCOL, "der_bad_length")
        length = int.from_bytes(data[pos : pos + n], "big")
        pos += n
    if pos + length > len(data):
        raise ParseError(PROTOCOL, "der_truncated")
    return tag, pos, pos + length


def _children(data: bytes, start: int, end: int) -> list[tuple[int, int, int]]:
    out = []
    pos = start
    while pos < end:
        tag, s, e = _der(data, pos)
        if e > end:
            raise ParseError(PROTOCOL, "der_overrun")
        out.append((tag, s, e))
        pos = e
    return out


def _oid(raw: bytes) -> str:
    if not raw:
        raise ParseError(PROTOCOL, "der_bad_oid")
    parts = [raw[0] // 40, raw[0] % 40] if raw[0] < 80 else [2, raw[0] - 80]
    value = 0
    for b in raw[1:]:
        value = (value << 7) | (b & 0x7F)
        if not b & 0x80:
            parts.append(value)
            value = 0
    return ".".join(str(p) for p in parts)


def _escape(value: str) -> str:
    out = []
    for i, ch in enumerate(value):
        if ch in ',+"\\<>;' or (ch == "#" and i == 0) or (ch == " " and i in (0, len(value) - 1)):
            out.append("\\" + ch)
        elif ord(ch) < 0x20:
            out.append(f"\\{ord(ch):02X}")
        else:
            out.append(ch)
    return "".join(out)


def _string(tag: int, raw: bytes) -> str:
    if tag == 0x1E:  # BMPString
        return raw.decode("utf-16-be", errors="replace")
    if tag == 0x1C:  # UniversalString
        return raw.decode("utf-32-be", errors="replace")
    if tag == 0x0C:
        return raw.decode("utf-8", errors="replace")
    return raw.decode("latin-1")


def _name(data: bytes, start: int, end: int) -> str:
    rdns = []
    for tag, s, e in _children(data, start, end):
        if tag != 0x31:
            raise ParseError(PROTOCOL, "x509_bad_rdn")
        atoms = []
        for atag, a_s, a_e in _children(data, s, e):
            if atag != 0x30:
                raise ParseError(PROTOCOL, "x509_bad_attribute")
            parts = _children(data, a_s, a_e)
            if len(parts) != 2 or parts[0][0] != 0x06:
                raise ParseError(PROTOCOL, "x509_bad_attribute")
            oid = _oid(data[parts[0][1] : parts[0][2]])
            vtag, v_s, v_e = parts[1]
            atoms.append(f"{_ATTR_NAMES.get(oid, oid)}={_escape(_string(vtag, data[v_s:v_e]))}")
        rdns.append("+".join(atoms))
    # RFC 4514 writes the most specific RDN first: the reverse of the DER order.
    return ",".join(reversed(rdns))


def certificate_names(der: bytes) -> tuple[str, str]:
    """(subject, issuer) of a DER X.509 certificate, RFC 4514 strings."""
    tag, s, _e = _der(der, 0)
    if tag != 0x30:
        raise ParseError(PROTOCOL, "x509_not_sequence")
    tbs_tag, t_s, t_e = _der(der, s)
    if tbs_tag != 0x30:
        raise ParseError(PROTOCOL, "x509_bad_tbs")
    fields = _children(der, t_s, t_e)
    if fields and fields[0][0] == 0xA0:  # explicit [0] version
        fields = fields[1:]
    # serialNumber, signature, issuer, validity, subject
    if len(fields) < 5 or fields[2][0] != 0x30 or fields[4][0] != 0x30:
        raise ParseError(PROTOCOL, "x509_bad_tbs")
    issuer = _name(der, fields[2][1], fields[2][2])
    subject = _name(der, fields[4][1], fields[4][2])
    return subject, issuer
