"""DNS wire format (RFC 1035, AAAA from RFC 3596, OPT from RFC 6891, UPDATE sections from RFC 2136).

Pure functions: bytes in, dataclasses out, :class:`ParseError` on anything malformed.
Names are returned lower-cased because the Zeek log (and our models) treat them case-insensitively.
"""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass, field

from sensor.protocols.base import ParseError

PROTOCOL = "dns"

HEADER_LEN = 12
# A name is at most 255 octets on the wire; pointer chains longer than this must be loops.
MAX_NAME_LEN = 255
MAX_POINTERS = 64
# More records than this in one message is an attack on the sensor, not DNS.
MAX_RECORDS = 1000

TYPE_A = 1
TYPE_NS = 2
TYPE_CNAME = 5
TYPE_SOA = 6
TYPE_PTR = 12
TYPE_HINFO = 13
TYPE_MX = 15
TYPE_TXT = 16
TYPE_AAAA = 28
TYPE_SRV = 33
TYPE_NAPTR = 35
TYPE_DNAME = 39
TYPE_OPT = 41
TYPE_DS = 43
TYPE_RRSIG = 46
TYPE_NSEC = 47
TYPE_DNSKEY = 48
TYPE_NSEC3 = 50
TYPE_NSEC3PARAM = 51
TYPE_SPF = 99
TYPE_TKEY = 249
TYPE_TSIG = 250
TYPE_ANY = 255
TYPE_CAA = 257

CLASS_IN = 1
CLASS_NONE = 254
CLASS_ANY = 255

OPCODE_UPDATE = 5


@dataclass(frozen=True, slots=True)
class Question:
    name: str
    qtype: int
    qclass: int


@dataclass(frozen=True, slots=True)
class ResourceRecord:
    name: str
    rtype: int
    rclass: int
    ttl: int
    # Raw RDATA plus the whole message, because RDATA names may point anywhere in it.
    rdata: bytes
    rendered: str


# Not frozen: its section lists are filled after construction (so it was never hashable or deeply
# immutable), and a frozen __init__ pays an object.__setattr__ per field on every DNS packet.
@dataclass(slots=True)
class Message:
    trans_id: int
    is_response: bool
    opcode: int
    authoritative: bool
    truncated: bool
    recursion_desired: bool
    recursion_available: bool
    # RFC 1035's three-bit Z field (now AD/CD bits plus one reserved), as Zeek logs it.
    z: int
    rcode: int
    questions: list[Question] = field(default_factory=list)
    answers: list[ResourceRecord] = field(default_factory=list)
    authority: list[ResourceRecord] = field(default_factory=list)
    additional: list[ResourceRecord] = field(default_factory=list)


def _fail(reason: str, detail: str = "") -> ParseError:
    return ParseError(PROTOCOL, reason, detail)


def read_name(msg: bytes, offset: int) -> tuple[str, int]:
    """Decode a possibly compressed name at ``offset``; return it and the offset just past it."""
    labels: list[bytes] = []
    total = 0
    end = -1
    pointers = 0
    pos = offset
    size = len(msg)
    while True:
        if pos >= size:
            raise _fail("name_truncated")
        length = msg[pos]
        if length < 0x40:
            # Plain label (the common case first): collect raw bytes, decode once at the end.
            pos += 1
            if length == 0:
                break
            stop = pos + length
            if stop > size:
                raise _fail("name_truncated")
            total += length + 1
            if total > MAX_NAME_LEN:
                raise _fail("name_too_long")
            labels.append(msg[pos:stop])
            pos = stop
            continue
        if length & 0xC0 != 0xC0:
            # 0x40 (extended label, RFC 6891 obsoleted it) and 0x80 are not in use.
            raise _fail("name_bad_label_type")
        if pos + 1 >= size:
            raise _fail("name_truncated")
        pointers += 1
        if pointers > MAX_POINTERS:
            raise _fail("name_pointer_loop")
        if end < 0:
            end = pos + 2
        pos = ((length & 0x3F) << 8) | msg[pos + 1]
    if end < 0:
        end = pos
    # Joining bytes then decoding equals decoding each label (latin-1 maps byte for byte).
    return b".".join(labels).decode("latin-1").lower(), end


def _u16(msg: bytes, off: int) -> int:
    if off + 2 > len(msg):
        raise _fail("truncated")
    return (msg[off] << 8) | msg[off + 1]


def _character_strings(data: bytes) -> list[bytes]:
    out: list[bytes] = []
    pos = 0
    while pos < len(data):
        n = data[pos]
        if pos + 1 + n > len(data):
            raise _fail("txt_truncated")
        out.append(data[pos + 1 : pos + 1 + n])
        pos += 1 + n
    return out


def _printable(raw: bytes) -> str:
    # Zeek escapes non-printable bytes as \xNN; keep the same so values compare.
    return "".join(chr(b) if 0x20 <= b < 0x7F else f"\\x{b:02x}" for b in raw)


def render_rdata(msg: bytes, rtype: int, start: int, length: int) -> str:
    """Render RDATA the way Zeek's dns.log ``answers`` column does."""
    rdata = msg[start : start + length]
    if rtype == TYPE_A:
        if length != 4:
            raise _fail("a_bad_length")
        # Same text as ipaddress.IPv4Address, without building an object per answer.
        return f"{rdata[0]}.{rdata[1]}.{rdata[2]}.{rdata[3]}"
    if rtype == TYPE_AAAA:
        if length != 16:
            raise _fail("aaaa_bad_length")
        return str(ipaddress.IPv6Address(rdata))
    if rtype in (TYPE_NS, TYPE_CNAME, TYPE_PTR, TYPE_DNAME):
        return read_name(msg, start)[0]
    if rtype == TYPE_MX:
        _u16(msg, start)
        return read_name(msg, start + 2)[0]
    if rtype == TYPE_SRV:
        if length < 7:
            raise _fail("srv_truncated")
        return read_name(msg, start + 6)[0]
    if rtype == TYPE_SOA:
        return read_name(msg, start)[0]
    if rtype in (TYPE_TXT, TYPE_SPF):
        label = "TXT" if rtype == TYPE_TXT else "SPF"
        return " ".join(f"{label} {len(s)} {_printable(s)}" for s in _character_strings(rdata))
    if rtype == TYPE_RRSIG:
        if length < 18:
            raise _fail("rrsig_truncated")
        covered = _u16(msg, start)
        signer = read_name(msg, start + 18)[0]
        return f"RRSIG {covered} {signer}"
    if rtype == TYPE_DNSKEY:
        if length < 4:
            raise _fail("dnskey_truncated")
        return f"DNSKEY {rdata[3]}"
    if rtype == TYPE_DS:
        if length < 4:
            raise _fail("ds_truncated")
        return f"DS {rdata[2]} {rdata[3]}"
    if rtype == TYPE_NSEC:
        return f"NSEC {read_name(msg, start)[0]}"
    if rtype == TYPE_NSEC3:
        return "NSEC3"
    if rtype == TYPE_HINFO:
        return " ".join(_printable(s) for s in _character_strings(rdata))
    if rtype == TYPE_CAA:
        if length < 2 or 2 + rdata[1] > length:
            raise _fail("caa_truncated")
        tag = rdata[2 : 2 + rdata[1]]
        return f"{rdata[0]} {_printable(tag)} {_printable(rdata[2 + rdata[1] :])}"
    return f"<unknown type={rtype}>"


def _read_question(msg: bytes, off: int) -> tuple[Question, int]:
    name, off = read_name(msg, off)
    if off + 4 > len(msg):
        raise _fail("truncated")
    return Question(name, (msg[off] << 8) | msg[off + 1], (msg[off + 2] << 8) | msg[off + 3]), off + 4


_RR_FIXED = struct.Struct("!HHIH")
_HEADER = struct.Struct("!6H")


def _read_rr(msg: bytes, off: int) -> tuple[ResourceRecord, int]:
    name, off = read_name(msg, off)
    if off + 10 > len(msg):
        raise _fail("truncated")
    # type, class, TTL and RDATA length in one unpack (was four bounds-checked reads).
    rtype, rclass, ttl, rdlen = _RR_FIXED.unpack_from(msg, off)
    start = off + 10
    if start + rdlen > len(msg):
        raise _fail("rdata_truncated")
    # UPDATE deletions and prerequisites carry no RDATA; there is nothing to render.
    rendered = render_rdata(msg, rtype, start, rdlen) if rdlen else ""
    return ResourceRecord(name, rtype, rclass, ttl, msg[start : start + rdlen], rendered), start + rdlen


def parse_message(msg: bytes) -> Message:
    """Parse one DNS message (no TCP length prefix)."""
    if len(msg) < HEADER_LEN:
        raise _fail("short_header")
    trans_id, flags, qdcount, ancount, nscount, arcount = _HEADER.unpack_from(msg)
    if qdcount + ancount + nscount + arcount > MAX_RECORDS:
        raise _fail("too_many_records")
    out = Message(
        trans_id=trans_id,
        is_response=bool(flags & 0x8000),
        opcode=(flags >> 11) & 0xF,
        authoritative=bool(flags & 0x0400),
        truncated=bool(flags & 0x0200),
        recursion_desired=bool(flags & 0x0100),
        recursion_available=bool(flags & 0x0080),
        z=(flags >> 4) & 0x7,
        rcode=flags & 0xF,
    )
    off = HEADER_LEN
    for _ in range(qdcount):
        q, off = _read_question(msg, off)
        out.questions.append(q)
    for count, section in ((ancount, out.answers), (nscount, out.authority), (arcount, out.additional)):
        for _ in range(count):
            rr, off = _read_rr(msg, off)
            section.append(rr)
    return out


def update_summary(rr: ResourceRecord, prerequisite: bool) -> str:
    """Describe an RFC 2136 prerequisite or update RR as Zeek's dns.log does (``pre: ...``, ``add: ...``)."""
    tname = type_name(rr.rtype)
    if prerequisite:
        if rr.rclass == CLASS_ANY:
            return f"pre: InUse {rr.name}" if rr.rtype == TYPE_ANY else f"pre: RRSet {tname} {rr.name}"
        if rr.rclass == CLASS_NONE:
            return f"pre: NotInUse {rr.name}" if rr.rtype == TYPE_ANY else f"pre: NoRRSet {tname} {rr.name}"
        return f"pre: RR {tname} {rr.name} {rr.rendered}"
    if rr.rclass == CLASS_ANY:
        return f"del: All {rr.name}" if rr.rtype == TYPE_ANY else f"del: RRSet {tname}"
    if rr.rclass == CLASS_NONE:
        return f"del: RR {tname} {rr.name} {rr.rendered}"
    return f"add: {tname} {rr.name} {rr.rendered}"


QTYPE_NAMES = {
    1: "A", 2: "NS", 3: "MD", 4: "MF", 5: "CNAME", 6: "SOA", 7: "MB", 8: "MG", 9: "MR", 10: "NULL",
    11: "WKS", 12: "PTR", 13: "HINFO", 14: "MINFO", 15: "MX", 16: "TXT", 17: "RP", 18: "AFSDB",
    19: "X25", 20: "ISDN", 21: "RT", 22: "NSAP", 23: "NSAP-PTR", 24: "SIG", 25: "KEY", 26: "PX",
    27: "GPOS", 28: "AAAA", 29: "LOC", 30: "EID", 31: "NIMLOC", 32: "NB", 33: "SRV", 34: "ATMA",
    35: "NAPTR", 36: "KX", 37: "CERT", 38: "A6", 39: "DNAME", 40: "SINK", 41: "OPT", 42: "APL",
    43: "DS", 44: "SSHFP", 45: "IPSECKEY", 46: "RRSIG", 47: "NSEC", 48: "DNSKEY", 49: "DHCID",
    50: "NSEC3", 51: "NSEC3PARAM", 52: "TLSA", 55: "HIP", 59: "CDS", 60: "CDNSKEY", 61: "OPENPGPKEY",
    62: "CSYNC", 64: "SVCB", 65: "HTTPS", 99: "SPF", 100: "UINFO", 101: "UID", 102: "GID",
    103: "UNSPEC", 249: "TKEY", 250: "TSIG", 251: "IXFR", 252: "AXFR", 253: "MAILB", 254: "MAILA",
    255: "*", 256: "URI", 257: "CAA", 32768: "TA", 32769: "DLV",
}  # fmt: skip

CLASS_NAMES = {1: "C_INTERNET", 2: "C_CSNET", 3: "C_CHAOS", 4: "C_HESOD", 254: "C_NONE", 255: "C_ANY"}

RCODE_NAMES = {
    0: "NOERROR", 1: "FORMERR", 2: "SERVFAIL", 3: "NXDOMAIN", 4: "NOTIMP", 5: "REFUSED", 6: "YXDOMAIN",
    7: "YXRRSET", 8: "NXRRSET", 9: "NOTAUTH", 10: "NOTZONE", 16: "BADVERS", 17: "BADKEY", 18: "BADTIME",
    19: "BADMODE", 20: "BADNAME", 21: "BADALG", 22: "BADTRUNC", 23: "BADCOOKIE",
}  # fmt: skip

OPCODE_NAMES = {0: "query", 1: "inverse-query", 2: "status", 4: "notify", 5: "dynamic-update", 6: "dso"}


def type_name(rtype: int) -> str:
    return QTYPE_NAMES.get(rtype, f"query-{rtype}")
