"""RDP connection setup (MS-RDPBCGR 2.2.1.1 / 2.2.1.2 X.224 request/confirm, 2.2.1.3.2 client core data).

Pure functions over bytes; only :class:`ParseError` escapes.
"""

from __future__ import annotations

from dataclasses import dataclass

from sensor.protocols.base import ParseError

PROTOCOL = "rdp"

X224_CONNECTION_REQUEST = 0xE0
X224_CONNECTION_CONFIRM = 0xD0
X224_DATA = 0xF0

NEG_REQ = 0x01
NEG_RSP = 0x02
NEG_FAILURE = 0x03

PROTOCOL_FLAGS = ((0x01, "SSL"), (0x02, "HYBRID"), (0x04, "RDSTLS"), (0x08, "HYBRID_EX"), (0x10, "RDSAAD"))

FAILURE_CODES = {
    1: "SSL_REQUIRED_BY_SERVER", 2: "SSL_NOT_ALLOWED_BY_SERVER", 3: "SSL_CERT_NOT_ON_SERVER",
    4: "INCONSISTENT_FLAGS", 5: "HYBRID_REQUIRED_BY_SERVER", 6: "SSL_WITH_USER_AUTH_REQUIRED_BY_SERVER",
}  # fmt: skip

CS_CORE = 0xC001


@dataclass(frozen=True, slots=True)
class ConnectionRequest:
    cookie: str
    # None when the client sent no RDP_NEG_REQ (pre-RDP 5.2 clients: standard RDP security only).
    requested: int | None


@dataclass(frozen=True, slots=True)
class ConnectionConfirm:
    selected: int | None
    failure: int | None


@dataclass(frozen=True, slots=True)
class ClientCore:
    client_name: str
    client_build: int
    keyboard_layout: int


def protocol_names(flags: int) -> list[str]:
    """Names of the security protocols in a requestedProtocols bit set; 0 means standard RDP security."""
    if flags == 0:
        return ["RDP"]
    return [name for bit, name in PROTOCOL_FLAGS if flags & bit]


def selected_name(value: int) -> str:
    return "RDP" if value == 0 else next((n for b, n in PROTOCOL_FLAGS if b == value), f"UNKNOWN-{value}")


def tpkt_length(data: bytes) -> int | None:
    """Total length of the TPKT frame starting ``data`` (RFC 1006), None until 4 bytes are there."""
    if len(data) < 4:
        return None
    if data[0] != 3:
        raise ParseError(PROTOCOL, "bad_tpkt_version")
    length = int.from_bytes(data[2:4], "big")
    if length < 7:
        raise ParseError(PROTOCOL, "bad_tpkt_length")
    return length


def _x224(frame: bytes) -> tuple[int, bytes]:
    """(TPDU code, bytes after the fixed X.224 header) of one whole TPKT frame."""
    if len(frame) < 7:
        raise ParseError(PROTOCOL, "x224_truncated")
    li = frame[4]
    code = frame[5] & 0xF0
    if 4 + 1 + li > len(frame):
        raise ParseError(PROTOCOL, "x224_bad_length")
    if code == X224_DATA:
        return code, frame[7:]
    if li < 6:
        raise ParseError(PROTOCOL, "x224_bad_length")
    # LI counts the header after itself: code, dst-ref(2), src-ref(2), class = 6 bytes, then variable part.
    return code, frame[11 : 5 + li]


def parse_connection_request(frame: bytes) -> ConnectionRequest:
    code, rest = _x224(frame)
    if code != X224_CONNECTION_REQUEST:
        raise ParseError(PROTOCOL, "not_connection_request")
    cookie = ""
    if rest.startswith(b"Cookie: mstshash="):
        end = rest.find(b"\r\n")
        if end < 0:
            raise ParseError(PROTOCOL, "cookie_unterminated")
        cookie = rest[len(b"Cookie: mstshash=") : end].decode("latin-1")
        rest = rest[end + 2 :]
    elif rest.startswith(b"Cookie: "):
        # A load-balancer routing token (msts=...), not a user name.
        end = rest.find(b"\r\n")
        rest = rest[end + 2 :] if end >= 0 else b""
    requested = None
    if len(rest) >= 8 and rest[0] == NEG_REQ:
        requested = int.from_bytes(rest[4:8], "little")
    return ConnectionRequest(cookie, requested)


def parse_connection_confirm(frame: bytes) -> ConnectionConfirm:
    code, rest = _x224(frame)
    if code != X224_CONNECTION_CONFIRM:
        raise ParseError(PROTOCOL, "not_connection_confirm")
    if len(rest) >= 8 and rest[0] == NEG_RSP:
        return ConnectionConfirm(int.from_bytes(rest[4:8], "little"), None)
    if len(rest) >= 8 and rest[0] == NEG_FAILURE:
        return ConnectionConfirm(None, int.from_bytes(rest[4:8], "little"))
    return ConnectionConfirm(None, None)


def find_client_core(frame: bytes) -> ClientCore | None:
    """Client core data (TS_UD_CS_CORE) inside an MCS Connect Initial, or None.

    The block sits inside BER (MCS) and PER (GCC) wrappers whose fields we do not need, so we look for the
    block header itself and accept it only if its version field is one MS-RDPBCGR defines.
    """
    pos = frame.find(b"\x01\xc0")
    while pos >= 0:
        body = frame[pos:]
        if len(body) >= 4:
            length = int.from_bytes(body[2:4], "little")
            version = int.from_bytes(body[4:8], "little") if len(body) >= 8 else 0
            if length >= 132 and len(body) >= 84 and version >> 16 == 0x0008:
                layout = int.from_bytes(body[16:20], "little")
                build = int.from_bytes(body[20:24], "little")
                name = body[24:56].decode("utf-16-le", errors="replace").split("\x00", 1)[0]
                return ClientCore(name, build, layout)
        pos = frame.find(b"\x01\xc0", pos + 1)
    return None


KEYBOARD_LAYOUTS = {
    0x0409: "English - United States", 0x0809: "English - United Kingdom", 0x0407: "German - Germany",
    0x040C: "French - France", 0x0410: "Italian - Italy", 0x0C0A: "Spanish - Spain (Modern Sort)",
    0x0411: "Japanese", 0x0412: "Korean", 0x0419: "Russian", 0x0804: "Chinese (Simplified) - PRC",
    0x0416: "Portuguese - Brazil", 0x0413: "Dutch - Netherlands", 0x041D: "Swedish", 0x0415: "Polish",
}  # fmt: skip

CLIENT_BUILDS = {
    2195: "RDP 5.0", 2600: "RDP 5.1", 3790: "RDP 5.2", 6000: "RDP 6.0", 6001: "RDP 6.1", 6002: "RDP 6.2",
    7600: "RDP 7.0", 7601: "RDP 7.1", 9200: "RDP 8.0", 9600: "RDP 8.1", 10240: "RDP 10.0",
}  # fmt: skip
