"""LDAPv3 messages (RFC 4511 section 4) -> dataclasses. Only :class:`ParseError` escapes.

Only what the logs need is decoded: binds, searches (with the filter rendered as RFC 4515 text the
way Zeek prints it), results, and the DN/OID of the other operations. Attribute values of entries
are never read.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sensor.protocols import asn1
from sensor.protocols.base import ParseError

PROTOCOL = "ldap"

OP_BIND_REQUEST = 0
OP_BIND_RESPONSE = 1
OP_UNBIND_REQUEST = 2
OP_SEARCH_REQUEST = 3
OP_SEARCH_RESULT_ENTRY = 4
OP_SEARCH_RESULT_DONE = 5
OP_MODIFY_REQUEST = 6
OP_MODIFY_RESPONSE = 7
OP_ADD_REQUEST = 8
OP_ADD_RESPONSE = 9
OP_DEL_REQUEST = 10
OP_DEL_RESPONSE = 11
OP_MODDN_REQUEST = 12
OP_MODDN_RESPONSE = 13
OP_COMPARE_REQUEST = 14
OP_COMPARE_RESPONSE = 15
OP_ABANDON_REQUEST = 16
OP_SEARCH_RESULT_REFERENCE = 19
OP_EXTENDED_REQUEST = 23
OP_EXTENDED_RESPONSE = 24
OP_INTERMEDIATE_RESPONSE = 25

# Request opcode -> the name Zeek logs; responses map to their request's name.
OPCODE_NAMES: dict[int, str] = {
    OP_BIND_REQUEST: "bind",
    OP_UNBIND_REQUEST: "unbind",
    OP_SEARCH_REQUEST: "search",
    OP_MODIFY_REQUEST: "modify",
    OP_ADD_REQUEST: "add",
    OP_DEL_REQUEST: "delete",
    OP_MODDN_REQUEST: "modify_dn",
    OP_COMPARE_REQUEST: "compare",
    OP_ABANDON_REQUEST: "abandon",
    OP_EXTENDED_REQUEST: "extended",
}
RESPONSE_TO_REQUEST: dict[int, int] = {
    OP_BIND_RESPONSE: OP_BIND_REQUEST,
    OP_SEARCH_RESULT_DONE: OP_SEARCH_REQUEST,
    OP_MODIFY_RESPONSE: OP_MODIFY_REQUEST,
    OP_ADD_RESPONSE: OP_ADD_REQUEST,
    OP_DEL_RESPONSE: OP_DEL_REQUEST,
    OP_MODDN_RESPONSE: OP_MODDN_REQUEST,
    OP_COMPARE_RESPONSE: OP_COMPARE_REQUEST,
    OP_EXTENDED_RESPONSE: OP_EXTENDED_REQUEST,
}

# RFC 4511 appendix A result codes (plus RFC 3909/4370/4528 additions), written out the way Zeek logs them.
RESULT_NAMES: dict[int, str] = {
    0: "success",
    1: "operations error",
    2: "protocol error",
    3: "time limit exceeded",
    4: "size limit exceeded",
    5: "compare false",
    6: "compare true",
    7: "auth method not supported",
    8: "stronger auth required",
    10: "referral",
    11: "admin limit exceeded",
    12: "unavailable critical extension",
    13: "confidentiality required",
    14: "SASL bind in progress",
    16: "no such attribute",
    17: "undefined attribute type",
    18: "inappropriate matching",
    19: "constraint violation",
    20: "attribute or value exists",
    21: "invalid attribute syntax",
    32: "no such object",
    33: "alias problem",
    34: "invalid DN syntax",
    36: "alias dereferencing problem",
    48: "inappropriate authentication",
    49: "invalid credentials",
    50: "insufficient access rights",
    51: "busy",
    52: "unavailable",
    53: "unwilling to perform",
    54: "loop detect",
    64: "naming violation",
    65: "object class violation",
    66: "not allowed on non leaf",
    67: "not allowed on RDN",
    68: "entry already exists",
    69: "object class mods prohibited",
    71: "affects multiple DSAs",
    80: "other",
    118: "canceled",
    119: "no such operation",
    120: "too late",
    121: "cannot cancel",
    122: "assertion failed",
    123: "authorization denied",
}
SCOPE_NAMES: dict[int, str] = {0: "base", 1: "single", 2: "tree"}
DEREF_NAMES: dict[int, str] = {0: "never", 1: "search", 2: "find", 3: "always"}
# Well-known extended operations, labelled after the OID as Zeek does.
EXTENDED_NAMES: dict[str, str] = {
    "1.3.6.1.4.1.1466.20037": "StartTLS",
    "1.3.6.1.4.1.4203.1.11.3": "whoami",
    "1.3.6.1.4.1.4203.1.11.1": "passwd_modify",
    "1.3.6.1.1.8": "cancel",
}
OID_STARTTLS = "1.3.6.1.4.1.1466.20037"
MODIFY_OPS: dict[int, str] = {0: "add", 1: "delete", 2: "replace", 3: "increment"}

# Bind authentication choices: simple [0], SASL [3], and Microsoft's "sicily" NTLM choices [9]-[11].
AUTH_SIMPLE = 0
AUTH_SASL = 3
AUTH_SICILY_DISCOVERY = 9
AUTH_SICILY_NEGOTIATE = 10
AUTH_SICILY_RESPONSE = 11

# Filters nest (and/or/not); real ones are a few levels deep.
_MAX_FILTER_DEPTH = 32
_MAX_FILTER_LENGTH = 16_384


@dataclass(frozen=True, slots=True)
class Bind:
    version: int
    name: str
    auth: int
    mechanism: str = ""
    # SASL credentials or the sicily NTLM blob; simple passwords are never kept.
    credentials: bytes = b""


@dataclass(frozen=True, slots=True)
class Search:
    base_object: str
    scope: int
    deref: int
    filter: str
    attributes: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Result:
    code: int
    matched_dn: str
    diagnostic: str
    # BindResponse serverSaslCreds [7]; ExtendedResponse responseName [10].
    sasl_creds: bytes = b""
    response_name: str = ""


@dataclass(frozen=True, slots=True)
class Operation:
    """Any other request: the DN (or OID) it targets and a short summary of its arguments."""

    object: str = ""
    argument: str = ""


@dataclass(frozen=True, slots=True)
class Message:
    message_id: int
    opcode: int
    body: Bind | Search | Result | Operation | None = field(default=None)


def _fail(reason: str) -> ParseError:
    return ParseError(PROTOCOL, reason)


def _escape(value: bytes) -> str:
    # RFC 4515 3: the filter metacharacters and NUL are written as \XX; the rest is shown as text.
    out: list[str] = []
    for ch in value.decode("utf-8", "replace"):
        if ch in "()*\\\x00":
            out.append(f"\\{ord(ch):02x}")
        else:
            out.append(ch)
    return "".join(out)


def _ava(tlv: asn1.Tlv) -> tuple[str, str]:
    parts = asn1.children(tlv)
    if len(parts) != 2:
        raise _fail("bad_assertion")
    return asn1.as_str(parts[0]), _escape(asn1.as_bytes(parts[1]))


def render_filter(tlv: asn1.Tlv, depth: int = 0) -> str:
    """RFC 4515 string form of a Filter (RFC 4511 4.5.1.7)."""
    if depth > _MAX_FILTER_DEPTH:
        raise _fail("filter_too_deep")
    if tlv.cls != asn1.CLASS_CONTEXT:
        raise _fail("bad_filter")
    tag = tlv.tag
    if tag in (0, 1):
        # Zeek prints n-ary and/or as a left-nested chain of binary ones: (&(&(a)(b))(c)).
        op = "&" if tag == 0 else "|"
        items = [render_filter(item, depth + 1) for item in asn1.children(tlv)]
        if len(items) < 2:
            return f"({op}{''.join(items)})"
        text = f"({op}{items[0]}{items[1]})"
        for item in items[2:]:
            text = f"({op}{text}{item})"
        return text
    if tag == 2:
        negated = asn1.children(tlv)
        if len(negated) != 1:
            raise _fail("bad_not_filter")
        return f"(!{render_filter(negated[0], depth + 1)})"
    if tag in (3, 5, 6, 8):
        attr, value = _ava(tlv)
        op = {3: "=", 5: ">=", 6: "<=", 8: "~="}[tag]
        return f"({attr}{op}{value})"
    if tag == 4:
        parts = asn1.children(tlv)
        if len(parts) != 2:
            raise _fail("bad_substrings")
        attr = asn1.as_str(parts[0])
        initial, final = "", ""
        anys: list[str] = []
        for sub in asn1.children(parts[1]):
            text = _escape(asn1.as_bytes(sub))
            if sub.tag == 0:
                initial = text
            elif sub.tag == 1:
                anys.append(text)
            elif sub.tag == 2:
                final = text
        return f"({attr}={initial}*{''.join(a + '*' for a in anys)}{final})"
    if tag == 7:
        return f"({tlv.value.decode('utf-8', 'replace')}=*)"
    if tag == 9:
        rule = attr = value = ""
        dn = False
        for part in asn1.children(tlv):
            if part.tag == 1:
                rule = asn1.as_str(part)
            elif part.tag == 2:
                attr = asn1.as_str(part)
            elif part.tag == 3:
                value = _escape(asn1.as_bytes(part))
            elif part.tag == 4:
                dn = asn1.as_bool(part)
        return f"({attr}{':dn' if dn else ''}{':' + rule if rule else ''}:={value})"
    raise _fail("unknown_filter")


def _bind(tlv: asn1.Tlv) -> Bind:
    parts = asn1.children(tlv)
    if len(parts) < 3:
        raise _fail("short_bind")
    version = asn1.as_int(parts[0])
    name = asn1.as_str(parts[1])
    auth = parts[2]
    if auth.cls != asn1.CLASS_CONTEXT:
        raise _fail("bad_bind_auth")
    if auth.tag == AUTH_SASL:
        sasl = asn1.children(auth)
        if not sasl:
            raise _fail("bad_sasl")
        creds = asn1.as_bytes(sasl[1]) if len(sasl) > 1 else b""
        return Bind(version, name, AUTH_SASL, asn1.as_str(sasl[0]), creds)
    if auth.tag == AUTH_SIMPLE:
        return Bind(version, name, AUTH_SIMPLE)
    return Bind(version, name, auth.tag, "", auth.value if not auth.constructed else b"")


def _search(tlv: asn1.Tlv) -> Search:
    parts = asn1.children(tlv)
    if len(parts) < 8:
        raise _fail("short_search")
    if len(parts[6].value) > _MAX_FILTER_LENGTH:
        raise _fail("filter_too_long")
    attributes = tuple(asn1.as_str(a) for a in asn1.children(parts[7])[:256])
    return Search(
        base_object=asn1.as_str(parts[0]),
        scope=asn1.as_int(parts[1]),
        deref=asn1.as_int(parts[2]),
        filter=render_filter(parts[6]),
        attributes=attributes,
    )


def _result(tlv: asn1.Tlv) -> Result:
    parts = asn1.children(tlv)
    if len(parts) < 3:
        raise _fail("short_result")
    creds = b""
    name = ""
    for extra in parts[3:]:
        if extra.cls == asn1.CLASS_CONTEXT and extra.tag == 7:
            creds = asn1.as_bytes(extra)
        elif extra.cls == asn1.CLASS_CONTEXT and extra.tag == 10:
            name = asn1.as_str(extra)
    return Result(asn1.as_int(parts[0]), asn1.as_str(parts[1]), asn1.as_str(parts[2]), creds, name)


def _modify(tlv: asn1.Tlv) -> Operation:
    parts = asn1.children(tlv)
    if len(parts) < 2:
        raise _fail("short_modify")
    summaries: list[str] = []
    for change in asn1.children(parts[1])[:64]:
        items = asn1.children(change)
        if len(items) != 2:
            raise _fail("bad_modification")
        op = MODIFY_OPS.get(asn1.as_int(items[0]), "unknown")
        attr = asn1.children(items[1])
        if not attr:
            raise _fail("bad_modification")
        values = asn1.children(attr[1]) if len(attr) > 1 else []
        rendered = ",".join(asn1.as_str(v) for v in values[:16])
        name = asn1.as_str(attr[0])
        summaries.append(f"{op}({name}={rendered})" if values else f"{op}({name})")
    return Operation(asn1.as_str(parts[0]), ", ".join(summaries))


def _extended(tlv: asn1.Tlv) -> Operation:
    oid = ""
    for part in asn1.children(tlv):
        if part.cls == asn1.CLASS_CONTEXT and part.tag == 0:
            oid = asn1.as_str(part)
    label = EXTENDED_NAMES.get(oid)
    return Operation(f"{oid} ({label})" if label else oid)


def parse_message(data: bytes) -> Message:
    """Parse one complete LDAPMessage (one BER element)."""
    try:
        tlv = asn1.read_all(data)
        if not tlv.is_(asn1.CLASS_UNIVERSAL, asn1.TAG_SEQUENCE):
            raise _fail("not_a_message")
        parts = asn1.children(tlv)
        if len(parts) < 2 or not parts[0].is_(asn1.CLASS_UNIVERSAL, asn1.TAG_INTEGER):
            raise _fail("bad_message")
        message_id = asn1.as_int(parts[0])
        op = parts[1]
        if op.cls != asn1.CLASS_APPLICATION:
            raise _fail("bad_protocol_op")
        body: Bind | Search | Result | Operation | None = None
        if op.tag == OP_BIND_REQUEST:
            body = _bind(op)
        elif op.tag == OP_SEARCH_REQUEST:
            body = _search(op)
        elif op.tag in RESPONSE_TO_REQUEST:
            body = _result(op)
        elif op.tag == OP_MODIFY_REQUEST:
            body = _modify(op)
        elif op.tag in (OP_DEL_REQUEST,):
            body = Operation(op.value.decode("utf-8", "replace"))
        elif op.tag in (OP_ADD_REQUEST, OP_MODDN_REQUEST, OP_COMPARE_REQUEST):
            body = Operation()
        elif op.tag == OP_EXTENDED_REQUEST:
            body = _extended(op)
        elif op.tag not in (
            OP_UNBIND_REQUEST,
            OP_SEARCH_RESULT_ENTRY,
            OP_SEARCH_RESULT_REFERENCE,
            OP_ABANDON_REQUEST,
            OP_INTERMEDIATE_RESPONSE,
        ):
            raise _fail("unknown_protocol_op")
        return Message(message_id, op.tag, body)
    except ParseError as exc:
        if exc.protocol == "asn1":
            raise _fail(f"ber_{exc.reason}") from None
        raise
