"""TLS handshake messages (RFC 8446, RFC 5246), JA3/JA3S/JA4 fingerprints, minimal X.509 Name decoding.

Pure functions over bytes; only :class:`ParseError` escapes.
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass

from sensor.protocols.base import ParseError

PROTOCOL = "tls"

CONTENT_CCS = 20
CONTENT_ALERT = 21
CONTENT_HANDSHAKE = 22
CONTENT_APPDATA = 23
CONTENT_HEARTBEAT = 24

HS_CLIENT_HELLO = 1
HS_SERVER_HELLO = 2
HS_CERTIFICATE = 11
HS_SERVER_KEY_EXCHANGE = 12
HS_SERVER_HELLO_DONE = 14
HS_FINISHED = 20

EXT_SERVER_NAME = 0
EXT_SUPPORTED_GROUPS = 10
EXT_EC_POINT_FORMATS = 11
EXT_SIGNATURE_ALGORITHMS = 13
EXT_ALPN = 16
EXT_PRE_SHARED_KEY = 41
EXT_SUPPORTED_VERSIONS = 43
EXT_KEY_SHARE = 51

VERSION_NAMES = {
    0x0002: "SSLv2", 0x0300: "SSLv3", 0x0301: "TLSv10", 0x0302: "TLSv11", 0x0303: "TLSv12", 0x0304: "TLSv13",
    0xFEFF: "DTLSv10", 0xFEFD: "DTLSv12", 0xFEFC: "DTLSv13",
}  # fmt: skip

GROUP_NAMES = {
    1: "sect163k1", 2: "sect163r1", 3: "sect163r2", 4: "sect193r1", 5: "sect193r2", 6: "sect233k1",
    7: "sect233r1", 8: "sect239k1", 9: "sect283k1", 10: "sect283r1", 11: "sect409k1", 12: "sect409r1",
    13: "sect571k1", 14: "sect571r1", 15: "secp160k1", 16: "secp160r1", 17: "secp160r2", 18: "secp192k1",
    19: "secp192r1", 20: "secp224k1", 21: "secp224r1", 22: "secp256k1", 23: "secp256r1", 24: "secp384r1",
    25: "secp521r1", 26: "brainpoolP256r1", 27: "brainpoolP384r1", 28: "brainpoolP512r1", 29: "x25519",
    30: "x448", 256: "ffdhe2048", 257: "ffdhe3072", 258: "ffdhe4096", 259: "ffdhe6144", 260: "ffdhe8192",
    31: "brainpoolP256r1tls13", 32: "brainpoolP384r1tls13", 33: "brainpoolP512r1tls13", 34: "GC256A",
    35: "GC256B", 36: "GC256C", 37: "GC256D", 38: "GC512A", 39: "GC512B", 40: "GC512C", 41: "curveSM2",
    512: "MLKEM512", 513: "MLKEM768", 514: "MLKEM1024", 0x11EB: "SecP256r1MLKEM768", 0x11EC: "X25519MLKEM768",
    0x11ED: "SecP384r1MLKEM1024", 0x11EE: "curveSM2MLKEM768", 0x4138: "CECPQ2",
    0x6399: "X25519Kyber768Draft00", 0x639A: "SecP256r1Kyber768Draft00",
    0xFF01: "arbitrary_explicit_prime_curves", 0xFF02: "arbitrary_explicit_char2_curves",
}  # fmt: skip

# Zeek's ssl_history letter for each handshake message type (lower case; the client's are capitalised).
# A ServerHello carrying the HelloRetryRequest random is "j" too; unlisted types are "z".
HISTORY_LETTERS = {
    0: "h", 1: "c", 2: "s", 3: "v", 4: "t", 5: "e", 6: "j", 8: "o", 11: "x", 12: "k", 13: "r", 14: "n",
    15: "y", 16: "g", 20: "f", 21: "w", 22: "u", 23: "a", 24: "p", 254: "m",
}  # fmt: skip
HISTORY_CCS = "i"
HISTORY_ALERT = "l"
HISTORY_HEARTBEAT = "b"
HISTORY_FLIPPED = "^"
MAX_HISTORY = 100  # as Zeek's SSL::max_ssl_history_length

# RFC 8446 4.1.3: a ServerHello with this random is a HelloRetryRequest.
HELLO_RETRY_RANDOM = bytes.fromhex("cf21ad74e59a6111be1d8c021e65b891c2a211167abb8c5e079e09e2c8a8339c")

# TLS alert descriptions by code (RFC 5246 7.2, RFC 8446 6), named as Zeek's ssl.log last_alert does.
ALERT_NAMES = {
    0: "close_notify", 10: "unexpected_message", 20: "bad_record_mac", 21: "decryption_failed",
    22: "record_overflow", 30: "decompression_failure", 40: "handshake_failure", 41: "no_certificate",
    42: "bad_certificate", 43: "unsupported_certificate", 44: "certificate_revoked",
    45: "certificate_expired", 46: "certificate_unknown", 47: "illegal_parameter", 48: "unknown_ca",
    49: "access_denied", 50: "decode_error", 51: "decrypt_error", 60: "export_restriction",
    70: "protocol_version", 71: "insufficient_security", 80: "internal_error", 86: "inappropriate_fallback",
    90: "user_canceled", 100: "no_renegotiation", 110: "unsupported_extension",
    111: "certificate_unobtainable", 112: "unrecognized_name", 113: "bad_certificate_status_response",
    114: "bad_certificate_hash_value", 115: "unknown_psk_identity", 116: "certificate_required",
    117: "general_error", 120: "no_application_protocol", 121: "ech_required",
}  # fmt: skip


def alert_name(code: int) -> str:
    return ALERT_NAMES.get(code, f"unknown-{code}")


CIPHER_NAMES = {
    0x0000: "TLS_NULL_WITH_NULL_NULL", 0x0004: "TLS_RSA_WITH_RC4_128_MD5", 0x0005: "TLS_RSA_WITH_RC4_128_SHA",
    0x000A: "TLS_RSA_WITH_3DES_EDE_CBC_SHA", 0x0016: "TLS_DHE_RSA_WITH_3DES_EDE_CBC_SHA",
    0x002F: "TLS_RSA_WITH_AES_128_CBC_SHA", 0x0032: "TLS_DHE_DSS_WITH_AES_128_CBC_SHA",
    0x0033: "TLS_DHE_RSA_WITH_AES_128_CBC_SHA", 0x0035: "TLS_RSA_WITH_AES_256_CBC_SHA",
    0x0038: "TLS_DHE_DSS_WITH_AES_256_CBC_SHA", 0x0039: "TLS_DHE_RSA_WITH_AES_256_CBC_SHA",
    0x003C: "TLS_RSA_WITH_AES_128_CBC_SHA256", 0x003D: "TLS_RSA_WITH_AES_256_CBC_SHA256",
    0x0041: "TLS_RSA_WITH_CAMELLIA_128_CBC_SHA", 0x0045: "TLS_DHE_RSA_WITH_CAMELLIA_128_CBC_SHA",
    0x0067: "TLS_DHE_RSA_WITH_AES_128_CBC_SHA256", 0x006B: "TLS_DHE_RSA_WITH_AES_256_CBC_SHA256",
    0x0084: "TLS_RSA_WITH_CAMELLIA_256_CBC_SHA", 0x0088: "TLS_DHE_RSA_WITH_CAMELLIA_256_CBC_SHA",
    0x009C: "TLS_RSA_WITH_AES_128_GCM_SHA256", 0x009D: "TLS_RSA_WITH_AES_256_GCM_SHA384",
    0x009E: "TLS_DHE_RSA_WITH_AES_128_GCM_SHA256", 0x009F: "TLS_DHE_RSA_WITH_AES_256_GCM_SHA384",
    0x00FF: "TLS_EMPTY_RENEGOTIATION_INFO_SCSV",
    0x1301: "TLS_AES_128_GCM_SHA256", 0x1302: "TLS_AES_256_GCM_SHA384",
    0x1303: "TLS_CHACHA20_POLY1305_SHA256",
    0x1304: "TLS_AES_128_CCM_SHA256", 0x1305: "TLS_AES_128_CCM_8_SHA256", 0x5600: "TLS_FALLBACK_SCSV",
    0xC007: "TLS_ECDHE_ECDSA_WITH_RC4_128_SHA", 0xC009: "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA",
    0xC00A: "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA", 0xC011: "TLS_ECDHE_RSA_WITH_RC4_128_SHA",
    0xC012: "TLS_ECDHE_RSA_WITH_3DES_EDE_CBC_SHA", 0xC013: "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA",
    0xC014: "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA", 0xC023: "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256",
    0xC024: "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA384", 0xC027: "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256",
    0xC028: "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA384", 0xC02B: "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
    0xC02C: "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384", 0xC02F: "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
    0xC030: "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
    0xCCA8: "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256",
    0xCCA9: "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256",
    0xCCAA: "TLS_DHE_RSA_WITH_CHACHA20_POLY1305_SHA256",
    0xCC13: "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256_OLD",
    0xCC14: "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256_OLD",
}  # fmt: skip


def cipher_name(code: int) -> str:
    return CIPHER_NAMES.get(code, f"unknown-{code}")


def is_grease(value: int) -> bool:
    """RFC 8701 GREASE values (0x0a0a, 0x1a1a, ...): random noise that fingerprints must ignore."""
    return (value & 0x0F0F) == 0x0A0A and (value >> 8) == (value & 0xFF)


@dataclass(frozen=True, slots=True)
class Extension:
    type: int
    data: bytes


@dataclass(frozen=True, slots=True)
class ClientHello:
    legacy_version: int
    session_id: bytes
    ciphers: tuple[int, ...]
    extensions: tuple[Extension, ...]
    server_name: str = ""
    groups: tuple[int, ...] = ()
    point_formats: tuple[int, ...] = ()
    signature_algorithms: tuple[int, ...] = ()
    alpn: tuple[str, ...] = ()
    supported_versions: tuple[int, ...] = ()


@dataclass(frozen=True, slots=True)
class ServerHello:
    legacy_version: int
    session_id: bytes
    cipher: int
    extensions: tuple[Extension, ...]
    # From supported_versions when present (TLS 1.3), else the legacy version.
    version: int
    alpn: str = ""
    key_share_group: int | None = None
    psk_accepted: bool = False
    retry_request: bool = False


@dataclass(frozen=True, slots=True)
class Handshake:
    type: int
    body: bytes


class _Reader:
    __slots__ = ("data", "pos", "what")

    def __init__(self, data: bytes, what: str) -> None:
        self.data = data
        self.pos = 0
        self.what = what

    def take(self, n: int) -> bytes:
        pos = self.pos
        end = pos + n
        if end > len(self.data):
            raise ParseError(PROTOCOL, f"{self.what}_truncated")
        self.pos = end
        return self.data[pos:end]

    def u8(self) -> int:
        pos = self.pos
        if pos >= len(self.data):
            raise ParseError(PROTOCOL, f"{self.what}_truncated")
        self.pos = pos + 1
        return self.data[pos]

    def u16(self) -> int:
        return int.from_bytes(self.take(2), "big")

    def u24(self) -> int:
        return int.from_bytes(self.take(3), "big")

    def vec(self, len_bytes: int) -> bytes:
        # Length prefix and body in one step: hellos are dozens of small vectors.
        data, pos = self.data, self.pos
        body = pos + len_bytes
        if body > len(data):
            raise ParseError(PROTOCOL, f"{self.what}_truncated")
        end = body + int.from_bytes(data[pos:body], "big")
        if end > len(data):
            raise ParseError(PROTOCOL, f"{self.what}_truncated")
        self.pos = end
        return data[body:end]

    @property
    def left(self) -> int:
        return len(self.data) - self.pos


_U16_STRUCTS: dict[int, struct.Struct] = {}


def _u16_list(data: bytes, what: str) -> tuple[int, ...]:
    n = len(data)
    if n % 2:
        raise ParseError(PROTOCOL, f"{what}_odd_length")
    # One C-level unpack instead of a slice and int.from_bytes per value; formats are cached per length.
    fmt = _U16_STRUCTS.get(n)
    if fmt is None:
        fmt = struct.Struct(f"!{n // 2}H")
        if n <= 1024:  # bounded cache: odd huge lengths from hostile input are not kept
            _U16_STRUCTS[n] = fmt
    values: tuple[int, ...] = fmt.unpack(data)
    return values


def _extensions(r: _Reader) -> tuple[Extension, ...]:
    if r.left == 0:
        return ()
    block = r.vec(2)
    size = len(block)
    out = []
    pos = 0
    # Type and length read by index rather than through a _Reader: a hello has a dozen or more
    # extensions, and any overrun is the one "extensions_truncated" error either way.
    while pos < size:
        body = pos + 4
        if body > size:
            raise ParseError(PROTOCOL, "extensions_truncated")
        end = body + ((block[pos + 2] << 8) | block[pos + 3])
        if end > size:
            raise ParseError(PROTOCOL, "extensions_truncated")
        out.append(Extension((block[pos] << 8) | block[pos + 1], block[body:end]))
        pos = end
    return tuple(out)


def split_handshakes(data: bytes) -> tuple[list[Handshake], int]:
    """Complete handshake messages at the start of ``data`` and how many bytes they used."""
    out: list[Handshake] = []
    pos = 0
    while len(data) - pos >= 4:
        length = int.from_bytes(data[pos + 1 : pos + 4], "big")
        if len(data) - pos - 4 < length:
            break
        out.append(Handshake(data[pos], data[pos + 4 : pos + 4 + length]))
        pos += 4 + length
    return out, pos


def parse_client_hello(body: bytes) -> ClientHello:
    # legacy_version and random: fixed-size, read by index (any shortfall is the same truncation).
    if len(body) < 34:
        raise ParseError(PROTOCOL, "client_hello_truncated")
    version = (body[0] << 8) | body[1]
    r = _Reader(body, "client_hello")
    r.pos = 34
    session_id = r.vec(1)
    ciphers = _u16_list(r.vec(2), "ciphers")
    r.vec(1)  # compression methods
    exts = _extensions(r)
    sni = ""
    groups: tuple[int, ...] = ()
    formats: tuple[int, ...] = ()
    sigs: tuple[int, ...] = ()
    alpn: list[str] = []
    versions: tuple[int, ...] = ()
    for ext in exts:
        etype, data = ext.type, ext.data
        if etype == EXT_SERVER_NAME and data:
            names = _Reader(_Reader(data, "sni").vec(2), "sni")
            while names.left:
                kind, name = names.u8(), names.vec(2)
                if kind == 0 and not sni:
                    sni = name.decode("latin-1")
        elif etype == EXT_SUPPORTED_GROUPS:
            groups = _u16_list(_Reader(data, "groups").vec(2), "groups")
        elif etype == EXT_EC_POINT_FORMATS:
            formats = tuple(_Reader(data, "point_formats").vec(1))
        elif etype == EXT_SIGNATURE_ALGORITHMS:
            sigs = _u16_list(_Reader(data, "sigalgs").vec(2), "sigalgs")
        elif etype == EXT_ALPN:
            protos = _Reader(_Reader(data, "alpn").vec(2), "alpn")
            while protos.left:
                alpn.append(protos.vec(1).decode("latin-1"))
        elif etype == EXT_SUPPORTED_VERSIONS:
            versions = _u16_list(_Reader(data, "versions").vec(1), "versions")
    return ClientHello(version, session_id, ciphers, exts, sni, groups, formats, sigs, tuple(alpn), versions)


def parse_server_hello(body: bytes) -> ServerHello:
    r = _Reader(body, "server_hello")
    legacy = r.u16()
    retry = r.take(32) == HELLO_RETRY_RANDOM
    session_id = r.vec(1)
    cipher = r.u16()
    r.u8()  # compression method
    exts = _extensions(r)
    version = legacy
    alpn = ""
    group: int | None = None
    psk = False
    for ext in exts:
        if ext.type == EXT_SUPPORTED_VERSIONS and len(ext.data) == 2:
            version = int.from_bytes(ext.data, "big")
        elif ext.type == EXT_ALPN and ext.data:
            protos = _Reader(_Reader(ext.data, "alpn").vec(2), "alpn")
            alpn = protos.vec(1).decode("latin-1")
        elif ext.type == EXT_KEY_SHARE and len(ext.data) >= 2:
            group = int.from_bytes(ext.data[:2], "big")
        elif ext.type == EXT_PRE_SHARED_KEY:
            psk = True
    return ServerHello(legacy, session_id, cipher, exts, version, alpn, group, psk, retry)


def parse_certificate_chain(body: bytes, tls13: bool = False) -> list[bytes]:
    r = _Reader(body, "certificate")
    if tls13:
        r.vec(1)  # certificate_request_context
    chain = _Reader(r.vec(3), "certificate")
    out = []
    while chain.left:
        out.append(chain.vec(3))
        if tls13:
            chain.vec(2)  # per-certificate extensions
    return out


def server_key_exchange_curve(body: bytes) -> int | None:
    """Named group of an ECDHE ServerKeyExchange (curve_type 3 = named_curve), else None."""
    if len(body) >= 3 and body[0] == 3:
        return int.from_bytes(body[1:3], "big")
    return None


# -- fingerprints -------------------------------------------------------------------------------------------


def ja3_string(hello: ClientHello) -> str:
    def dash(values: tuple[int, ...] | list[int]) -> str:
        return "-".join(str(v) for v in values if not is_grease(v))

    return ",".join((
        str(hello.legacy_version),
        dash(hello.ciphers),
        dash([e.type for e in hello.extensions]),
        dash(hello.groups),
        "-".join(str(v) for v in hello.point_formats),
    ))  # fmt: skip


def ja3(hello: ClientHello) -> tuple[str, str]:
    text = ja3_string(hello)
    return hashlib.md5(text.encode(), usedforsecurity=False).hexdigest(), text


# Bound of each fingerprint memo: a flood of distinct hellos cannot grow it without limit.
_FP_CACHE_MAX = 4096
_JA3S_CACHE: dict[tuple[object, ...], tuple[str, str]] = {}


def ja3s(hello: ServerHello) -> tuple[str, str]:
    """(ja3s, ja3s_string), memoised like :func:`fingerprints`: servers answer with few distinct hellos."""
    key = (hello.legacy_version, hello.cipher, tuple(e.type for e in hello.extensions))
    hit = _JA3S_CACHE.get(key)
    if hit is None:
        hit = _ja3s(hello)
        if len(_JA3S_CACHE) >= _FP_CACHE_MAX:
            _JA3S_CACHE.clear()
        _JA3S_CACHE[key] = hit
    return hit


def _ja3s(hello: ServerHello) -> tuple[str, str]:
    text = ",".join((
        str(hello.legacy_version),
        str(hello.cipher),
        "-".join(str(e.type) for e in hello.extensions if not is_grease(e.type)),
    ))  # fmt: skip
    return hashlib.md5(text.encode(), usedforsecurity=False).hexdigest(), text


_JA4_VERSIONS = {0x0304: "13", 0x0303: "12", 0x0302: "11", 0x0301: "10", 0x0300: "s3", 0x0002: "s2",
                 0xFEFF: "d1", 0xFEFD: "d2", 0xFEFC: "d3"}  # fmt: skip


def _sha12(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:12] if text else "000000000000"


def ja4(hello: ClientHello, transport: str = "t") -> tuple[str, str]:
    """JA4 fingerprint and its raw (unhashed, original-order-free) form ``ja4_r``-like string."""
    versions = [v for v in hello.supported_versions if not is_grease(v)]
    version = max(versions) if versions else hello.legacy_version
    ciphers = [c for c in hello.ciphers if not is_grease(c)]
    exts = [e.type for e in hello.extensions if not is_grease(e.type)]
    alpn = hello.alpn[0] if hello.alpn else ""
    if not alpn:
        alpn_code = "00"
    elif alpn[0].isascii() and alpn[0].isalnum() and alpn[-1].isascii() and alpn[-1].isalnum():
        alpn_code = alpn[0] + alpn[-1]
    else:
        # Non-alphanumeric first/last bytes are represented by the hex of those bytes' outer nibbles.
        raw = alpn.encode("latin-1").hex()
        alpn_code = raw[0] + raw[-1]
    part_a = (
        f"{transport}{_JA4_VERSIONS.get(version, '00')}{'d' if hello.server_name else 'i'}"
        f"{min(len(ciphers), 99):02d}{min(len(exts), 99):02d}{alpn_code}"
    )
    cipher_list = ",".join(f"{c:04x}" for c in sorted(ciphers))
    ext_list = ",".join(f"{e:04x}" for e in sorted(exts) if e not in (EXT_SERVER_NAME, EXT_ALPN))
    sig_list = ",".join(f"{s:04x}" for s in hello.signature_algorithms if not is_grease(s))
    part_c_source = f"{ext_list}_{sig_list}" if sig_list else ext_list
    raw_form = f"{part_a}_{cipher_list}_{part_c_source}"
    return f"{part_a}_{_sha12(cipher_list)}_{_sha12(part_c_source)}", raw_form


_FP_CACHE: dict[tuple[object, ...], tuple[str, str, str]] = {}


def fingerprints(hello: ClientHello, transport: str = "t") -> tuple[str, str, str]:
    """(ja3, ja3_string, ja4) of a ClientHello, memoised on exactly the fields they are computed from.

    A network sees few distinct client stacks, so most hellos repeat one of a handful of fingerprints;
    formatting and hashing them once each saves most of the per-connection TLS cost.
    """
    key = (
        transport,
        hello.legacy_version,
        hello.ciphers,
        tuple(e.type for e in hello.extensions),
        hello.groups,
        hello.point_formats,
        hello.signature_algorithms,
        hello.alpn[:1],
        hello.supported_versions,
        bool(hello.server_name),
    )
    hit = _FP_CACHE.get(key)
    if hit is None:
        j3, j3s = ja3(hello)
        hit = (j3, j3s, ja4(hello, transport)[0])
        if len(_FP_CACHE) >= _FP_CACHE_MAX:
            _FP_CACHE.clear()
        _FP_CACHE[key] = hit
    return hit


def looks_like_client_hello(payload: bytes) -> bool:
    """A handshake record (22), version 3.x, whose first message is a ClientHello (1)."""
    return (
        len(payload) >= 6
        and payload[0] == CONTENT_HANDSHAKE
        and payload[1] == 3
        and payload[2] <= 4
        and payload[5] == HS_CLIENT_HELLO
    )
