"""FTP (RFC 959, RFC 2428) pieces as pure functions: data-channel addresses in PORT/EPRT commands and
PASV/EPSV replies, which pending command a reply answers, the working directory and the file URLs that
Zeek's ftp.log writes.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

# Zeek's ftp.log rows: one per command of this set (with its final reply).
LOGGED_COMMANDS = frozenset({"APPE", "DELE", "RETR", "STOR", "STOU", "ACCT", "PORT", "PASV", "EPRT", "EPSV"})
# Commands whose argument names a file or directory: ftp.log writes it as a URL.
FILE_COMMANDS = frozenset(
    {"APPE", "CWD", "DELE", "MKD", "RETR", "RMD", "RNFR", "RNTO", "STOR", "STOU", "REST", "SIZE", "MDTM"}
)
UPLOAD_COMMANDS = frozenset({"STOR", "STOU", "APPE"})
TRANSFER_COMMANDS = UPLOAD_COMMANDS | {"RETR"}

# The reply codes each command may get (RFC 959 section 5.4, and the extensions' RFCs); the pending
# command a reply answers is the one it fits best (Zeek's FTP::cmd_reply_code, the same facts).
_TRANSFER = (110, 125, 150, 226, 250, 421, 425, 426, 451, 450, 500, 501, 530, 550)
_STORE = (*_TRANSFER, 551, 552, 532, 452, 553)
_LISTING = (125, 150, 226, 250, 421, 425, 426, 451, 450, 500, 501, 502, 530, 550)
REPLY_CODES: dict[str, frozenset[int]] = {
    cmd: frozenset(codes)
    for cmd, codes in {
        "<init>": (120, 220, 421, 0),
        "USER": (230, 331, 332, 421, 530, 500, 501),
        "PASS": (230, 202, 332, 421, 530, 500, 501, 503),
        "ACCT": (230, 202, 421, 530, 500, 501, 503),
        "CWD": (250, 421, 500, 501, 502, 530, 550),
        "CDUP": (200, 250, 421, 500, 501, 502, 530, 550),
        "SMNT": (202, 250, 421, 500, 501, 502, 530, 550),
        "REIN": (120, 220, 421, 500, 502),
        "QUIT": (221, 500, 0),
        "PORT": (200, 421, 500, 501, 530),
        "PASV": (227, 421, 500, 501, 502, 530),
        "MODE": (200, 421, 500, 501, 502, 504, 530),
        "TYPE": (200, 421, 500, 501, 504, 530),
        "STRU": (200, 421, 500, 501, 504, 530),
        "ALLO": (200, 202, 421, 500, 501, 504, 530),
        "REST": (200, 350, 421, 500, 501, 502, 530),
        "STOR": _STORE,
        "STOU": _STORE,
        "RETR": _TRANSFER,
        "LIST": _LISTING,
        "NLST": _LISTING,
        "APPE": (*_STORE, 502),
        "RNFR": (350, 421, 450, 550, 500, 501, 502, 530),
        "RNTO": (250, 421, 532, 553, 500, 501, 502, 503, 530),
        "DELE": (250, 421, 450, 550, 500, 501, 502, 530),
        "RMD": (250, 421, 500, 501, 502, 530, 550),
        "MKD": (257, 421, 500, 501, 502, 530, 550),
        "PWD": (257, 421, 500, 501, 502, 550),
        "ABOR": (225, 226, 421, 500, 501, 502),
        "SYST": (215, 421, 500, 501, 502, 530),
        "STAT": (211, 212, 213, 421, 450, 500, 501, 502, 530),
        "HELP": (200, 211, 214, 421, 500, 501, 502),
        "SITE": (200, 202, 214, 500, 501, 502, 530),
        "NOOP": (200, 421, 500),
        "LPRT": (500, 501, 521),
        "FEAT": (211, 500, 502),
        "OPTS": (200, 451, 501),
        "EPSV": (229, 500, 501),
        "EPRT": (200, 500, 501, 522),
        "SIZE": (213, 500, 501, 550),
        "MDTM": (213, 500, 501, 550),
        "MLST": (150, 226, 250, 500, 501, 550),
        "MLSD": (150, 226, 250, 500, 501, 550),
        "CLNT": (200, 500),
        "MACB": (200, 500, 550),
        "<missing>": (0,),
    }.items()
}


@dataclass(frozen=True, slots=True)
class Endpoint:
    """A data-channel address as announced: ``ip`` as text ("::" when EPSV leaves it to the peer)."""

    ip: str
    port: int


_SIX_NUMBERS = re.compile(r"(\d{1,3}),(\d{1,3}),(\d{1,3}),(\d{1,3}),(\d{1,3}),(\d{1,3})")
_EPSV = re.compile(r"\((.)\1\1(\d{1,5})\1\)")
_NUMBER = re.compile(r"\d+")


def _six(text: str) -> Endpoint | None:
    m = _SIX_NUMBERS.search(text)
    if m is None:
        return None
    nums = [int(g) for g in m.groups()]
    if any(n > 255 for n in nums):
        return None
    port = nums[4] * 256 + nums[5]
    return Endpoint(".".join(map(str, nums[:4])), port) if port else None


def parse_port(arg: str) -> Endpoint | None:
    """PORT h1,h2,h3,h4,p1,p2 (RFC 959 section 4.1.2)."""
    return _six(arg)


def parse_pasv(msg: str) -> Endpoint | None:
    """227 Entering Passive Mode (h1,h2,h3,h4,p1,p2): the six numbers, with or without parentheses."""
    return _six(msg)


def parse_epsv(msg: str) -> Endpoint | None:
    """229 Entering Extended Passive Mode (|||port|) (RFC 2428 section 3): the port; the address is
    the control connection's, written "::" here."""
    m = _EPSV.search(msg)
    if m is None or not 0 < int(m.group(2)) < 65536:
        return None
    return Endpoint("::", int(m.group(2)))


def parse_eprt(arg: str) -> Endpoint | None:
    """EPRT |af|address|port| (RFC 2428 section 2); af 1 is IPv4, 2 IPv6."""
    if len(arg) < 2:
        return None
    parts = arg.split(arg[0])
    if len(parts) < 5 or parts[1] not in ("1", "2") or not parts[3].isdigit():
        return None
    try:
        ip = ipaddress.ip_address(parts[2])
    except ValueError:
        return None
    if ip.version != (4 if parts[1] == "1" else 6) or not 0 < int(parts[3]) < 65536:
        return None
    return Endpoint(str(ip), int(parts[3]))


def last_count(msg: str) -> int | None:
    """The last number in a reply's text: the size in "150 Opening data connection for f (1234 bytes)",
    or a 213 answer to SIZE."""
    numbers = _NUMBER.findall(msg)
    return int(numbers[-1]) if numbers and len(numbers[-1]) <= 19 else None


def best_pending(pending: list[tuple[str, str | None]], code: int, msg: str) -> int:
    """Index of the pending (command, argument) a reply answers: the oldest whose command may get this
    code (500, a syntax error, fits every command), preferring one the reply's text names. An argument
    of None (a password, not kept) names nothing."""
    best, best_score = 0, -1
    for i, (cmd, arg) in enumerate(pending):
        score = 100 if code == 500 or code in REPLY_CODES.get(cmd, ()) else 0
        if cmd in msg:
            score += 20
        # An empty argument is "in" every text, so a command without one scores here too (as in Zeek).
        if arg is not None and arg in msg:
            score += 10
        if score > best_score:
            best, best_score = i, score
    return best


# -- paths and URLs -------------------------------------------------------------------------------------

_QUOTED_PATH = re.compile(r'"((?:/|[A-Za-z]:[\\/])[^"]*)"')
_PATH = re.compile(r"(?:/|[A-Za-z]:[\\/])(?:[^\" ]|\\ )*")
_ABSOLUTE = re.compile(r"(?:/|[A-Za-z]:[\\/])")


def extract_path(msg: str) -> str:
    """The directory a 257 answer to PWD names: the first quoted absolute path, else the first absolute
    path in the text; "" when there is none."""
    m = _QUOTED_PATH.search(msg) or _PATH.search(msg)
    if m is None:
        return ""
    return m.group(1) if m.re is _QUOTED_PATH else m.group(0)


def build_path(directory: str, name: str) -> str:
    """``name`` inside ``directory`` ("" or an absolute name: ``name`` itself)."""
    if directory == "" or _ABSOLUTE.match(name):
        return name
    return directory + ("" if directory.endswith("/") else "/") + name


def compress_path(path: str) -> str:
    """A path without "//", "/./" and "dir/..", as Zeek's compress_path writes it: left as it is when
    it has none of those, but a trailing slash goes."""
    if "/." not in path and "//" not in path:
        return path[:-1] if len(path) > 1 and path.endswith("/") else path
    parts: list[str] = []
    for i, part in enumerate(path.split("/")):
        if part == "" or (part == "." and i > 0):
            continue
        if part == ".." and parts and parts[-1] not in (".", ".."):
            parts.pop()
            continue
        parts.append(part)
    out = ("/" if path.startswith("/") else "") + "/".join(parts)
    return out or "/"


def file_url(server_ip: str, cwd: str, arg: str) -> str:
    """ftp.log's ``arg`` for file commands: ftp://<server>/<cwd>/<name>, the path compressed."""
    path = compress_path(build_path(cwd, arg))
    if not path.startswith("/"):
        path = "/" + path
    host = f"[{server_ip}]" if ":" in server_ip else server_ip
    return f"ftp://{host}{path}"


def change_directory(cwd: str, command: str, arg: str, msg: str) -> str:
    """The working directory after a successful CWD, CDUP, PWD or XPWD."""
    if command == "CWD":
        return compress_path(build_path(cwd, arg))
    if command == "CDUP":
        return compress_path(cwd + "/..")
    return extract_path(msg) or cwd
