"""What the line-oriented command/reply protocols (SMTP, FTP) share: bounded line framing and the reply
line ``ddd text`` / ``ddd-text`` (RFC 5321 section 4.2, RFC 959 section 4.2).

Framing only, no protocol knowledge: each protocol's session decides what a line means.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

from sensor.protocols.base import ConnContext, Emit, ErrorCounter
from sensor.protocols.tls.session import TlsSession

# RFC 5321 allows 512 octets per command or reply line and 1000 per text line, extensions a little
# more; a line past this is not a command a server would take, so it is dropped, not buffered.
MAX_LINE = 4096


@dataclass(frozen=True, slots=True)
class Reply:
    """One reply line: its code (0 when the line has none), its text, and whether the reply goes on
    (``ddd-`` or a line without a code inside a multi-line reply)."""

    code: int
    text: str
    more: bool


class LineReader:
    """Splits one direction's stream into lines (CRLF or bare LF), never holding more than
    ``max_line`` bytes: a longer line is dropped whole and counted in ``overlong`` (its bytes are
    skipped up to the next newline, so the lines after it are read again).

    While :meth:`feed` yields a line, ``consumed`` is the offset in ``data`` just past that line: a
    session whose framing changes after a line (SMTP's BDAT chunk, STARTTLS) stops iterating and takes
    ``data[consumed:]`` itself.
    """

    __slots__ = ("_buf", "_discarding", "_on_overlong", "consumed", "max_line", "overlong")

    def __init__(self, max_line: int = MAX_LINE, on_overlong: Callable[[], None] | None = None) -> None:
        self.max_line = max_line
        self._buf = bytearray()
        self._discarding = False
        # Called once per dropped line (a session counts it as a parse error).
        self._on_overlong = on_overlong
        self.overlong = 0
        self.consumed = 0

    def feed(self, data: bytes) -> Iterator[bytes]:
        """The complete lines in ``data`` (with what was held before), without their line ending."""
        start = 0
        end = len(data)
        while start < end:
            newline = data.find(b"\n", start)
            if newline < 0:
                self._hold(data[start:])
                self.consumed = end
                return
            self.consumed = newline + 1
            if self._discarding:
                self._discarding = False
            else:
                line = bytes(self._buf) + data[start:newline] if self._buf else data[start:newline]
                self._buf.clear()
                if len(line) <= self.max_line:
                    yield line[:-1] if line.endswith(b"\r") else line
                else:
                    self._dropped()
            start = newline + 1

    @property
    def held(self) -> int:
        """Bytes held for an incomplete line (never more than ``max_line``)."""
        return len(self._buf)

    def resync(self) -> None:
        """Bytes went missing (a capture gap): drop the partial line and start again at the next one."""
        self._buf.clear()
        self._discarding = True

    def rest(self) -> bytes:
        """Bytes held after the last complete line (a stream that changes framing takes them over)."""
        held = bytes(self._buf)
        self._buf.clear()
        return held

    def _hold(self, tail: bytes) -> None:
        if self._discarding:
            return
        if len(self._buf) + len(tail) > self.max_line:
            self._buf.clear()
            self._discarding = True
            self._dropped()
            return
        self._buf += tail

    def _dropped(self) -> None:
        self.overlong += 1
        if self._on_overlong is not None:
            self._on_overlong()


def text(raw: bytes) -> str:
    """A protocol line as text: UTF-8 where it is (SMTPUTF8, UTF8 FTP paths), Latin-1 otherwise, so
    every byte maps to one character and nothing raises."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


class ReplyReader:
    """Reply lines of one server, with the multi-line state between them.

    ``ddd-text`` opens a multi-line reply; it ends with a line of the same code followed by a space. Inner
    lines need no code (FTP's FEAT lists its features indented, Pure-FTPd repeats ``220-`` on each line)
    and have ``more`` set, as the opening line has. A line that is none of these is not a reply (None).
    """

    __slots__ = ("_open_code",)

    def __init__(self) -> None:
        self._open_code = 0

    def read(self, line: bytes) -> Reply | None:
        head = line[:3]
        code = int(head) if len(head) == 3 and head.isdigit() and head[:1] != b"0" else 0
        sep = line[3:4]
        if self._open_code:
            if code == self._open_code and sep == b" ":
                self._open_code = 0
                return Reply(code, text(line[4:]), False)
            if code and sep in (b" ", b"-"):
                return Reply(code, text(line[4:]), True)
            return Reply(0, text(line), True)
        if not code or sep not in (b"", b" ", b"-"):
            return None
        if sep == b"-":
            self._open_code = code
        return Reply(code, text(line[4:]), sep == b"-")


def split_command(line: bytes) -> tuple[str, str]:
    """A command line as (verb upper-cased, argument): ``MAIL FROM:<a@b>`` -> ("MAIL", "FROM:<a@b>")."""
    verb, _, arg = text(line).strip(" ").partition(" ")
    return verb.upper(), arg.strip(" ")


def is_command_verb(verb: str) -> bool:
    """A plausible command verb: 1 to 10 ASCII letters (digits allowed after the first: XMD5, X-...)."""
    return 0 < len(verb) <= 10 and verb[:1].isalpha() and verb.isascii() and verb.replace("-", "").isalnum()


def starts_like_dialogue(payload: bytes, is_orig: bool) -> bool:
    """First bytes of a command/reply protocol: a client's command verb, or a server's reply code. Used
    to give up a connection that arrived on the protocol's port but speaks something else."""
    if is_orig:
        verb = payload[:16].split(b" ", 1)[0].split(b"\r", 1)[0].split(b"\n", 1)[0]
        return is_command_verb(text(verb)) and len(verb) < len(payload[:16])
    return len(payload) >= 3 and payload[:3].isdigit()


class Dialogue:
    """What SMTP and FTP sessions share: per-direction line readers, a command/reply reader, the sides
    given up on, the port guess judged by the first payload, and a hand-over to TLS (STARTTLS, AUTH TLS)
    after which every byte is the TLS session's."""

    def __init__(self, ctx: ConnContext, emit: Emit, count_error: ErrorCounter, protocol: str) -> None:
        self._ctx = ctx
        self._emit = emit
        self._count_error = count_error
        self._lines = {
            True: LineReader(on_overlong=lambda: count_error(protocol, "line_too_long")),
            False: LineReader(on_overlong=lambda: count_error(protocol, "line_too_long")),
        }
        self._replies = ReplyReader()
        self._bad = {True: 0, False: 0}
        self._dead = {True: False, False: False}
        self._seen_payload = False
        self._rejected = False
        self._tls: TlsSession | None = None

    @property
    def done(self) -> bool:
        if self._tls is not None:
            return self._tls.done
        return self._dead[True] and self._dead[False]

    @property
    def rejected(self) -> bool:
        """The connection came by port and its first bytes are no command/reply dialogue."""
        return self._rejected

    @property
    def inner_services(self) -> tuple[str, ...]:
        return ("ssl",) if self._tls is not None else ()

    def _still_ours(self, is_orig: bool, ts: float, payload: bytes) -> bool:
        """Whether ``payload`` is for the dialogue to read: not after a hand-over to TLS (which gets it),
        nor on a side given up; the first payload also judges the port's guess."""
        if self._tls is not None:
            self._tls.data(is_orig, ts, payload)
            return False
        if self._dead[is_orig]:
            return False
        if not self._seen_payload:
            self._seen_payload = True
            self._rejected = not starts_like_dialogue(payload, is_orig)
        return True

    def _start_tls(self) -> TlsSession:
        self._tls = TlsSession(self._ctx, self._emit, self._count_error)
        return self._tls
