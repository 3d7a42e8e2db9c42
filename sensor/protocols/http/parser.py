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


def parse_request_line(line: bytes) -> RequestLine:
    parts = line.split(b" ")
    if len(parts) < 2 or not _TOKEN.match(parts[0]):
        raise _fail("bad_request_line")
    if len(parts) == 2 and not parts[1].startswith(b"HTTP/"):
        return RequestLine(_text(parts[0]), _text(parts[1]), "0.9")
    if not parts[-1].startswith(b"HTTP/"):
        raise _fail("bad_request_version")
    # A garbled version ("HTTP/1.") leaves the version to the response, as Zeek does.
    version = _VERSION.match(parts[-1])
    # Unencoded spaces inside the target are malformed but common; keep them rather than drop the request.
    uri = b" ".join(parts[1:-1])
    return RequestLine(
        _text(parts[0]), _text(uri), f"{_text(version[1])}.{_text(version[2])}" if version else ""
    )


def parse_status_line(line: bytes) -> StatusLine:
    parts = line.split(b" ", 2)
    version = _VERSION.match(parts[0])
    if version is None or len(parts) < 2 or not parts[1].isdigit() or len(parts[1]) != 3:
        raise _fail("bad_status_line")
    reason = _text(parts[2]) if len(parts) == 3 else ""
    return StatusLine(f"{_text(version[1])}.{_text(version[2])}", int(parts[1]), reason)


def split_head(head: bytes) -> tuple[bytes, list[tuple[str, str]]]:
    """Split a message head (start line + fields, without the blank line) into the start line and fields.

    Field names are lower-cased; obsolete line folding is joined with a space.
    """
    lines = head.replace(b"\r\n", b"\n").split(b"\n")
    start = lines[0].rstrip(b"\r")
    fields: list[tuple[str, str]] = []
    for raw in lines[1:]:
        line = raw.rstrip(b"\r")
        if not line:
            continue
        if line[:1] in (b" ", b"\t") and fields:
            prev_name, prev_value = fields[-1]
            fields[-1] = (prev_name, prev_value + " " + _text(line.strip()))
            continue
        raw_name, sep, raw_value = line.partition(b":")
        if not sep or not raw_name or not _TOKEN.match(raw_name.strip()):
            raise _fail("bad_header_field")
        fields.append((_text(raw_name.strip()).lower(), _text(raw_value.strip())))
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
_HTML_MARKERS = (b"<!doctype html", b"<html", b"<head", b"<body", b"<title", b"<script", b"<iframe", b"<h1",
                 b"<div", b"<table", b"<a href", b"<meta", b"<style", b"<br")  # fmt: skip


_PRINTABLE = bytes(range(0x20, 0x7F)) + b"\t\n\r"


def sniff_mime(data: bytes) -> str:
    """Best-effort content type of a body from its first bytes; "" when unknown."""
    if not data:
        return ""
    for magic, offset, mime in _MAGIC:
        if data[offset : offset + len(magic)] == magic:
            return mime
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
