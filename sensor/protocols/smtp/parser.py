"""SMTP (RFC 5321) pieces as pure functions: what a session's first bytes look like, the addresses in
MAIL/RCPT arguments and address headers, a message's top-level header block, the user name inside an
AUTH exchange, and the end of a message's DATA.

Address extraction follows Zeek's base/utils/email.zeek so smtp.log's mailfrom, rcptto, to and cc read
the same; header names are matched case-insensitively, as Zeek's MIME analyzer does.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import re
from dataclasses import dataclass, field

from sensor.protocols.lines import text

# End of a message's DATA: the line holding a single dot (RFC 5321 section 4.1.1.4).
END_OF_DATA = b"\r\n.\r\n"
# Header block bytes kept to read the headers; a longer block is cut at its last whole line.
MAX_HEADER_BLOCK = 64 * 1024
# Distinct addresses kept per list (rcptto, to, cc); Zeek allows 1000, a message with more is a flood.
MAX_ADDRESSES = 256

# An address inside free text: local part, "@", domain, between delimiters (Zeek's email.zeek pattern).
_ADDRESS = re.compile(r"(?:^|[<,: \t])([^<,: \t@]+@[^>,; \t]+)(?=[>,; \t]|$)")
_ADDRESS_JUNK = re.compile(r"[<>,:; \t]")
_ORCPT = re.compile(r"ORCPT=rfc822;?")
# A comma-separated header list, where a quoted display name may hold commas (Zeek's pattern misses the
# quotes after the space that follows a comma, and splits such a name in two).
_HEADER_ADDRESS = re.compile(r'[ \t]*(?:"[^"]*")?[^,]+')
_IPV4 = re.compile(r"(?<![0-9.])(?:[0-9]{1,3}\.){3}[0-9]{1,3}(?![0-9.])")
_IPV6 = re.compile(r"(?<![0-9A-Fa-f:])(?:[0-9A-Fa-f]{0,4}:){2,7}[0-9A-Fa-f]{0,4}(?![0-9A-Fa-f:])")


def looks_like_greeting(payload: bytes) -> bool:
    """A server's first bytes: a 220 greeting naming (E)SMTP (RFC 5321 section 4.2 leaves the text free,
    but servers announce the protocol there; FTP servers greet with 220 as well and do not say SMTP)."""
    if payload[:3] != b"220" or payload[3:4] not in (b" ", b"-"):
        return False
    return b"SMTP" in payload[:512].split(b"\n", 1)[0].upper()


def looks_like_hello(payload: bytes) -> bool:
    """A client's first bytes: EHLO or HELO with a name."""
    head = payload[:5].upper()
    return head in (b"EHLO ", b"HELO ") and b"\n" in payload[:1024]


def addresses(arg: str) -> list[str]:
    """The addresses in a MAIL/RCPT argument or free text, in order, each once."""
    out: list[str] = []
    for m in _ADDRESS.finditer(arg):
        addr = _ORCPT.sub("", _ADDRESS_JUNK.sub("", m.group(1)))
        if addr and addr not in out:
            out.append(addr)
    return out


def first_address(arg: str) -> str:
    found = addresses(arg)
    return found[0] if found else ""


def header_addresses(value: str) -> list[str]:
    """The entries of an address header (To, Cc) as written, display names included, each once."""
    out: list[str] = []
    for m in _HEADER_ADDRESS.finditer(value):
        part = m.group(0).strip()
        if part and part not in out:
            out.append(part)
    return out


def first_ip(value: str) -> bytes:
    """The first IPv4 or IPv6 address in a header value, as 4 or 16 bytes (b"" when there is none)."""
    hits = [(m.start(), m.group(0)) for pattern in (_IPV4, _IPV6) for m in pattern.finditer(value)]
    for _, candidate in sorted(hits):
        try:
            return ipaddress.ip_address(candidate).packed
        except ValueError:
            continue
    return b""


@dataclass
class Headers:
    """The header fields smtp.log reports, from a message's top-level header block."""

    date: str = ""
    from_header: str = ""
    to: list[str] = field(default_factory=list)
    cc: list[str] = field(default_factory=list)
    reply_to: str = ""
    msg_id: str = ""
    in_reply_to: str = ""
    subject: str = ""
    x_originating_ip: bytes = b""
    # The topmost Received headers as Zeek keeps them: first_received is the last one in the block
    # (the earliest hop), second_received the one before it.
    first_received: str = ""
    second_received: str = ""
    user_agent: str = ""


def header_fields(block: bytes) -> list[tuple[str, str]]:
    """(NAME upper-cased, value) of each field of a header block, continuation lines unfolded."""
    fields: list[tuple[str, str]] = []
    for raw in block.split(b"\n"):
        line = raw[:-1] if raw.endswith(b"\r") else raw
        if line.startswith(b".."):
            line = line[1:]  # dot-stuffing (RFC 5321 section 4.5.2)
        if not line:
            break
        if line[:1] in (b" ", b"\t"):
            if fields:
                last_name, last_value = fields[-1]
                fields[-1] = (last_name, last_value + text(line))
            continue
        raw_name, colon, raw_value = line.partition(b":")
        if colon and raw_name and b" " not in raw_name.strip():
            fields.append((text(raw_name).strip().upper(), text(raw_value).strip(" \t")))
    return fields


def parse_headers(block: bytes) -> Headers:
    headers = Headers()
    for name, value in header_fields(block):
        if name == "DATE":
            headers.date = value
        elif name == "FROM":
            headers.from_header = value
        elif name in ("TO", "CC"):
            listed = headers.to if name == "TO" else headers.cc
            listed.extend(a for a in header_addresses(value) if a not in listed)
            del listed[MAX_ADDRESSES:]
        elif name == "REPLY-TO":
            headers.reply_to = value
        elif name == "MESSAGE-ID":
            headers.msg_id = value
        elif name == "IN-REPLY-TO":
            headers.in_reply_to = value
        elif name == "SUBJECT":
            headers.subject = value
        elif name == "X-ORIGINATING-IP":
            headers.x_originating_ip = first_ip(value) or headers.x_originating_ip
        elif name == "RECEIVED":
            headers.second_received = headers.first_received
            headers.first_received = value
        elif name in ("X-MAILER", "USER-AGENT", "X-USER-AGENT"):
            headers.user_agent = value
    return headers


def header_block_end(head: bytes | bytearray) -> int:
    """Length of the header block at the start of a message, through the empty line that ends it; -1
    while that line has not arrived. A message starting with an empty line has an empty block."""
    if head.startswith(b"\r\n"):
        return 2
    if head.startswith(b"\n"):
        return 1
    ends = [i + len(sep) for sep in (b"\r\n\r\n", b"\n\n") if (i := head.find(sep)) >= 0]
    return min(ends) if ends else -1


# -- AUTH (RFC 4954) ----------------------------------------------------------------------------------


def decode_sasl(line: str) -> bytes | None:
    """A base64 SASL response or initial response; None when it is not base64 ("=" is an empty one)."""
    if line == "=":
        return b""
    try:
        return base64.b64decode(line.strip(), validate=True)
    except (binascii.Error, ValueError):
        return None


def auth_user(mechanism: str, response: bytes) -> str:
    """The user name in a client's first SASL response (the AUTH line's initial response, else the line
    after the first 334), for mechanisms that carry one in clear; never the password or token, which
    this function does not return or keep.

    LOGIN: the first response is the user name (the password comes second). PLAIN (RFC 4616): authzid
    NUL authcid NUL password; the authentication identity, else the authorisation one. CRAM-MD5
    (RFC 2195): "user digest". XOAUTH2: "user=name^Aauth=Bearer token^A^A".
    """
    if mechanism == "LOGIN":
        return text(response)
    if mechanism == "PLAIN":
        parts = response.split(b"\x00")
        if len(parts) >= 3:
            return text(parts[1] or parts[0])
        return ""
    if mechanism == "CRAM-MD5":
        return text(response.rpartition(b" ")[0])
    if mechanism == "XOAUTH2":
        for item in response.split(b"\x01"):
            if item.startswith(b"user="):
                return text(item[5:])
    return ""


def bdat_size(arg: str) -> tuple[int, bool] | None:
    """BDAT's chunk size and LAST flag (RFC 3030), or None when the argument is not that."""
    size, _, rest = arg.partition(" ")
    if not size.isdigit() or len(size) > 12 or rest.strip().upper() not in ("", "LAST"):
        return None
    return int(size), rest.strip().upper() == "LAST"
