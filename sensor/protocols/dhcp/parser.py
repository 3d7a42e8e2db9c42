"""DHCP messages (RFC 2131 BOOTP frame, RFC 2132 options, RFC 4702 client FQDN).

Pure functions: bytes in, :class:`DhcpMessage` out, :class:`ParseError` on anything malformed.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sensor.protocols.base import ParseError

PROTOCOL = "dhcp"

FIXED_LEN = 236
MAGIC_COOKIE = b"\x63\x82\x53\x63"

OP_REQUEST = 1
OP_REPLY = 2

OPT_PAD = 0
OPT_HOST_NAME = 12
OPT_DOMAIN = 15
OPT_REQUESTED_ADDR = 50
OPT_LEASE_TIME = 51
OPT_OVERLOAD = 52
OPT_MSG_TYPE = 53
OPT_SERVER_ID = 54
OPT_PARAM_LIST = 55
OPT_MESSAGE = 56
OPT_VENDOR_CLASS = 60
OPT_CLIENT_ID = 61
OPT_CLIENT_FQDN = 81
OPT_END = 255

MSG_TYPES = {
    1: "DISCOVER", 2: "OFFER", 3: "REQUEST", 4: "DECLINE", 5: "ACK", 6: "NAK", 7: "RELEASE", 8: "INFORM",
    9: "FORCERENEW", 10: "LEASEQUERY", 11: "LEASEUNASSIGNED", 12: "LEASEUNKNOWN", 13: "LEASEACTIVE",
    14: "BULKLEASEQUERY", 15: "LEASEQUERYDONE", 16: "ACTIVELEASEQUERY", 17: "LEASEQUERYSTATUS", 18: "TLS",
}  # fmt: skip


@dataclass(frozen=True, slots=True)
class DhcpMessage:
    op: int
    htype: int
    xid: int
    secs: int
    flags: int
    ciaddr: bytes
    yiaddr: bytes
    siaddr: bytes
    giaddr: bytes
    # Client hardware address, trimmed to hlen (6 bytes for Ethernet).
    chaddr: bytes
    # Option 53; 0 for plain BOOTP without it.
    msg_type: int = 0
    host_name: str = ""
    domain: str = ""
    client_fqdn: str = ""
    requested_addr: bytes = b""
    lease_time: int | None = None
    server_id: bytes = b""
    message: str = ""
    vendor_class: str = ""
    client_id: bytes = b""
    param_request_list: tuple[int, ...] = ()
    # Every option as seen (last one wins for duplicates); lets callers look at what we do not model.
    options: dict[int, bytes] = field(default_factory=dict)

    @property
    def msg_type_name(self) -> str:
        return MSG_TYPES.get(self.msg_type, f"UNKNOWN-{self.msg_type}") if self.msg_type else "BOOTP"


def _fail(reason: str) -> ParseError:
    return ParseError(PROTOCOL, reason)


def _text(raw: bytes) -> str:
    # Hosts pad names with NULs; the rest is usually ASCII, but never trust it to be.
    return raw.rstrip(b"\x00").decode("utf-8", errors="backslashreplace")


def _walk_options(data: bytes, into: dict[int, bytes]) -> None:
    pos = 0
    while pos < len(data):
        code = data[pos]
        if code == OPT_END:
            return
        if code == OPT_PAD:
            pos += 1
            continue
        if pos + 1 >= len(data):
            raise _fail("option_truncated")
        length = data[pos + 1]
        if pos + 2 + length > len(data):
            raise _fail("option_truncated")
        # RFC 3396: a long option may be split into several instances that are concatenated.
        into[code] = into.get(code, b"") + data[pos + 2 : pos + 2 + length]
        pos += 2 + length


def _fqdn(raw: bytes) -> str:
    """RFC 4702 option 81: flags, two obsolete rcodes, then the name (DNS wire format if E is set)."""
    if len(raw) < 3:
        raise _fail("fqdn_truncated")
    flags, name = raw[0], raw[3:]
    if not flags & 0x04:
        return _text(name)
    labels: list[str] = []
    pos = 0
    while pos < len(name):
        n = name[pos]
        if n == 0:
            break
        if n & 0xC0 or pos + 1 + n > len(name):
            raise _fail("fqdn_bad_name")
        labels.append(name[pos + 1 : pos + 1 + n].decode("latin-1"))
        pos += 1 + n
    return ".".join(labels)


def parse_message(data: bytes) -> DhcpMessage:
    if len(data) < FIXED_LEN:
        raise _fail("short_header")
    op = data[0]
    if op not in (OP_REQUEST, OP_REPLY):
        raise _fail("bad_op")
    hlen = data[2]
    if hlen > 16:
        raise _fail("bad_hlen")
    options: dict[int, bytes] = {}
    if len(data) >= FIXED_LEN + 4:
        if data[FIXED_LEN : FIXED_LEN + 4] != MAGIC_COOKIE:
            raise _fail("bad_magic_cookie")
        _walk_options(data[FIXED_LEN + 4 :], options)
        overload = options.get(OPT_OVERLOAD, b"\x00")[:1]
        # Option 52 moves further options into the 'file' (1) and/or 'sname' (2) fields.
        if overload and overload[0] & 1:
            _walk_options(data[108:236], options)
        if overload and overload[0] & 2:
            _walk_options(data[44:108], options)

    def addr(code: int) -> bytes:
        raw = options.get(code, b"")
        if raw and len(raw) != 4:
            raise _fail("bad_address_option")
        return raw

    lease = options.get(OPT_LEASE_TIME)
    if lease is not None and len(lease) != 4:
        raise _fail("bad_lease_time")
    msg_type = options.get(OPT_MSG_TYPE, b"")
    if len(msg_type) > 1:
        raise _fail("bad_msg_type")
    return DhcpMessage(
        op=op,
        htype=data[1],
        xid=int.from_bytes(data[4:8], "big"),
        secs=int.from_bytes(data[8:10], "big"),
        flags=int.from_bytes(data[10:12], "big"),
        ciaddr=data[12:16],
        yiaddr=data[16:20],
        siaddr=data[20:24],
        giaddr=data[24:28],
        chaddr=data[28 : 28 + hlen],
        msg_type=msg_type[0] if msg_type else 0,
        host_name=_text(options.get(OPT_HOST_NAME, b"")),
        domain=_text(options.get(OPT_DOMAIN, b"")),
        client_fqdn=_fqdn(options[OPT_CLIENT_FQDN]) if OPT_CLIENT_FQDN in options else "",
        requested_addr=addr(OPT_REQUESTED_ADDR),
        lease_time=int.from_bytes(lease, "big") if lease is not None else None,
        server_id=addr(OPT_SERVER_ID),
        message=_text(options.get(OPT_MESSAGE, b"")),
        vendor_class=_text(options.get(OPT_VENDOR_CLASS, b"")),
        client_id=options.get(OPT_CLIENT_ID, b""),
        param_request_list=tuple(options.get(OPT_PARAM_LIST, b"")),
        options=options,
    )
