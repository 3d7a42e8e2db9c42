"""HTTP/1.x message heads (RFC 9112), chunk-size lines, a small MIME sniffer, the port-independent heuristic.

Pure functions over bytes; only :class:`ParseError` escapes.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass

from sensor.protocols.base import ParseError

PROTOCOL = "http"

# RFC 9110 token characters: what a method may consist of.
_TOKEN = re.compile(rb"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")
_VERSION = re.compile(rb"^HTTP/(\d)\.(\d)$")
# Methods a request line must start with for the heuristic; real clients (and nmap probes) use these.
_HEURISTIC_METHODS = (
    b"GET ", b"POST ", b"HEAD ", b"PUT ", b"DELETE ", b"OPTIONS ", b"CONNECT ", b"TRACE ", b"PATCH ",
    b"PROPFIND ", b"PROPPATCH ", b"MKCOL ", b"COPY ", b"MOVE ", b"LOCK ", b"UNLOCK ", b"SEARCH ",
    b"REPORT ", b"SUBSCRIBE ", b"NOTIFY ", b"M-SEARCH ", b"CCM_POST ", b"RPC_IN_DATA ", b"RPC_OUT_DATA ",
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class RequestLine:
    method: str
    # The target with its percent-escapes decoded, as Zeek logs it (unescape_uri).
    uri: str
    # "1.1", "1.0", or "0.9" for a two-token line.
    version: str


@dataclass(frozen=True, slots=True)
class StatusLine:
    version: str
    code: int
    reason: str


def _fail(reason: str) -> ParseError:
    return ParseError(PROTOCOL, reason)


def _text(raw: bytes) -> str:
    return raw.decode("latin-1")


_HEX = frozenset(b"0123456789abcdefABCDEF")


def unescape_uri(raw: bytes) -> str:
    """The request target with its percent-escapes decoded, as Zeek's http.log writes ``uri``.

    Zeek's rules, each a way attackers hide a path from a sensor: ``%XY`` (two hex digits) is the byte;
    ``%uABCD`` (IIS) is the byte AB, left out when 00, then the byte CD; in ``%%`` the first ``%`` is
    dropped and the second starts the escape; any other ``%`` stays together with the character after
    it, as does a ``%`` (with at most one character) at the end. ``+`` is not decoded. Bytes come back
    as latin-1 characters, like the raw target, so nothing is lost.
    """
    out = bytearray()
    i, end = 0, len(raw)
    while i < end:
        byte = raw[i]
        i += 1
        if byte != 0x25:  # "%"
            out.append(byte)
            continue
        if end - i < 2:
            # "%" or "%c" closing the target: kept as written.
            out += raw[i - 1 :]
            break
        if raw[i] == 0x25:
            # "%%": this "%" is dropped; the next one is read as an escape.
            continue
        if raw[i] in _HEX and raw[i + 1] in _HEX:
            out.append(int(raw[i : i + 2], 16))
            i += 2
        elif raw[i] == 0x75 and end - i >= 5 and all(b in _HEX for b in raw[i + 1 : i + 5]):  # "%uABCD"
            high, low = int(raw[i + 1 : i + 3], 16), int(raw[i + 3 : i + 5], 16)
            if high:
                out.append(high)
            out.append(low)
            i += 5
        else:
            out += raw[i - 1 : i + 1]
            i += 1
    return out.decode("latin-1")


# Memos of the start-line tokens (methods, "HTTP/x.y"): a network uses a handful of each, and a hit
# skips a regex match, a decode and some formatting. Bounded against hostile input, like _NAME_CACHE.
_METHOD_CACHE: dict[bytes, str] = {}
_VERSION_CACHE: dict[bytes, str | None] = {}
_TOKEN_CACHE_MAX = 1024


def _method_text(raw: bytes) -> str:
    method = _METHOD_CACHE.get(raw)
    if method is None:
        if not _TOKEN.match(raw):
            raise _fail("bad_request_line")
        method = _text(raw)
        if len(_METHOD_CACHE) >= _TOKEN_CACHE_MAX:
            _METHOD_CACHE.clear()
        _METHOD_CACHE[raw] = method
    return method


def _version_text(raw: bytes) -> str | None:
    """``"1.1"`` for ``b"HTTP/1.1"``; None unless ``raw`` is exactly ``HTTP/<digit>.<digit>``."""
    if raw in _VERSION_CACHE:
        return _VERSION_CACHE[raw]
    version = _VERSION.match(raw)
    text = f"{_text(version[1])}.{_text(version[2])}" if version else None
    if len(_VERSION_CACHE) >= _TOKEN_CACHE_MAX:
        _VERSION_CACHE.clear()
    _VERSION_CACHE[raw] = text
    return text


def parse_request_line(line: bytes) -> RequestLine:
    parts = line.split(b" ")
    if len(parts) < 2:
        raise _fail("bad_request_line")
    method = _method_text(parts[0])
    if len(parts) == 2 and not parts[1].startswith(b"HTTP/"):
        return RequestLine(method, unescape_uri(parts[1]), "0.9")
    if not parts[-1].startswith(b"HTTP/"):
        raise _fail("bad_request_version")
    # A garbled version ("HTTP/1.") leaves the version to the response, as Zeek does.
    version = _version_text(parts[-1])
    # Unencoded spaces inside the target are malformed but common; keep them rather than drop the request.
    uri = parts[1] if len(parts) == 3 else b" ".join(parts[1:-1])
    return RequestLine(method, unescape_uri(uri), version or "")


def parse_status_line(line: bytes) -> StatusLine:
    parts = line.split(b" ", 2)
    version = _version_text(parts[0])
    if version is None or len(parts) < 2 or not parts[1].isdigit() or len(parts[1]) != 3:
        raise _fail("bad_status_line")
    reason = _text(parts[2]) if len(parts) == 3 else ""
    return StatusLine(version, int(parts[1]), reason)


# Header names seen so far (raw text -> lower-cased name): a network repeats a few dozen names, so
# most fields skip the strip, the token check and the lower-casing. Bounded against hostile input.
_NAME_CACHE: dict[str, str] = {}
_NAME_CACHE_MAX = 4096
# What bytes.strip() removes (ASCII whitespace), for the same stripping on latin-1 text.
_WS = " \t\n\r\x0b\x0c"
_TOKEN_TEXT = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")


def _field_name(raw: str) -> str:
    name = _NAME_CACHE.get(raw)
    if name is None:
        stripped = raw.strip(_WS)
        if not raw or not _TOKEN_TEXT.match(stripped):
            raise _fail("bad_header_field")
        name = stripped.lower()
        if len(_NAME_CACHE) >= _NAME_CACHE_MAX:
            _NAME_CACHE.clear()
        _NAME_CACHE[raw] = name
    return name


def split_head(head: bytes) -> tuple[bytes, list[tuple[str, str]]]:
    """Split a message head (start line + fields, without the blank line) into the start line and fields.

    Field names are lower-cased; obsolete line folding is joined with a space.
    """
    nl = head.find(b"\n")
    if nl < 0:
        return head.rstrip(b"\r"), []
    start = head[:nl].rstrip(b"\r")
    fields: list[tuple[str, str]] = []
    # Decoded once (latin-1 maps byte for byte) and split on LF; a CR before each LF is dropped by the
    # rstrip, so this equals normalising CRLF first.
    for raw in head[nl + 1 :].decode("latin-1").split("\n"):
        line = raw.rstrip("\r")
        if not line:
            continue
        if line[0] in " \t" and fields:
            prev_name, prev_value = fields[-1]
            fields[-1] = (prev_name, prev_value + " " + line.strip(_WS))
            continue
        raw_name, sep, raw_value = line.partition(":")
        if not sep:
            raise _fail("bad_header_field")
        fields.append((_field_name(raw_name), raw_value.strip(_WS)))
    return start, fields


def parse_chunk_size(line: bytes) -> int:
    size = line.split(b";", 1)[0].strip()
    if not size or len(size) > 16:
        raise _fail("bad_chunk_size")
    try:
        return int(size, 16)
    except ValueError:
        raise _fail("bad_chunk_size") from None


def basic_username(value: str) -> str:
    """User name from ``Authorization: Basic <b64>``; the password is never returned."""
    scheme, _, token = value.strip().partition(" ")
    if scheme.lower() != "basic":
        return ""
    try:
        decoded = base64.b64decode(token.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise _fail("bad_basic_auth") from None
    return decoded.split(b":", 1)[0].decode("utf-8", errors="backslashreplace")


def looks_like(payload: bytes) -> bool:
    """Does this first client payload start like an HTTP request line, whatever the port?"""
    if not payload.startswith(_HEURISTIC_METHODS):
        return False
    line = payload.split(b"\n", 1)[0].rstrip(b"\r")
    parts = line.split(b" ")
    if len(parts) == 2:
        return b"\n" in payload  # HTTP/0.9: a complete two-token line
    return len(parts) >= 3 and (_VERSION.match(parts[-1]) is not None or len(line) == len(payload))


# (prefix, offset, mime): the handful of types worth knowing on a network sensor.
_MAGIC: tuple[tuple[bytes, int, str], ...] = (
    (b"\x89PNG\r\n\x1a\n", 0, "image/png"),
    (b"GIF87a", 0, "image/gif"),
    (b"GIF89a", 0, "image/gif"),
    (b"\xff\xd8\xff", 0, "image/jpeg"),
    (b"%PDF-", 0, "application/pdf"),
    (b"PK\x03\x04", 0, "application/zip"),
    (b"\x1f\x8b", 0, "application/x-gzip"),
    (b"MZ", 0, "application/x-dosexec"),
    (b"\x7fELF", 0, "application/x-executable"),
    (b"\xca\xfe\xba\xbe", 0, "application/x-java-applet"),
    (b"Rar!\x1a\x07", 0, "application/x-rar"),
    (b"7z\xbc\xaf\x27\x1c", 0, "application/x-7z-compressed"),
    (b"CWS", 0, "application/x-shockwave-flash"),
    (b"FWS", 0, "application/x-shockwave-flash"),
    (b"OggS", 0, "application/ogg"),
    (b"ID3", 0, "audio/mpeg"),
    (b"ftyp", 4, "video/mp4"),
    (b"RIFF", 0, "application/x-riff"),
    (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", 0, "application/vnd.ms-office"),
)
# The same magics grouped by offset, for one startswith() per offset before the ordered scan.
_MAGIC_BY_OFFSET = tuple(
    (at, tuple(magic for magic, offset, _ in _MAGIC if offset == at))
    for at in sorted({offset for _, offset, _ in _MAGIC})
)
_HTML_MARKERS = (b"<!doctype html", b"<html", b"<head", b"<body", b"<title", b"<script", b"<iframe", b"<h1",
                 b"<div", b"<table", b"<a href", b"<meta", b"<style", b"<br")  # fmt: skip


_PRINTABLE = bytes(range(0x20, 0x7F)) + b"\t\n\r"


def sniff_mime(data: bytes) -> str:
    """Best-effort content type of a body from its first bytes; "" when unknown."""
    if not data:
        return ""
    # One C-level prefix test rules out every magic for most bodies; the ordered loop only decides
    # between candidates.
    for at, magics in _MAGIC_BY_OFFSET:
        if data.startswith(magics, at):
            for magic, offset, mime in _MAGIC:
                if data[offset : offset + len(magic)] == magic:
                    return mime
            break
    head = data[:512].lstrip().lower()
    if head.startswith(b"<?xml"):
        return "text/html" if b"<html" in head else "application/xml"
    # Markup counts only at the start: a text body that merely contains a tag is still text.
    if head.startswith(_HTML_MARKERS):
        return "text/html"
    if head[:1] in (b"{", b"[") and head.rstrip()[-1:] in (b"}", b"]", b'"', b","):
        return "application/json"
    # Count printable bytes with one C-level pass: translate() deletes them, what is left is binary.
    window = data[:512]
    text = len(window) - len(window.translate(None, _PRINTABLE))
    if text >= len(window) * 0.95:
        return "text/plain"
    return ""
