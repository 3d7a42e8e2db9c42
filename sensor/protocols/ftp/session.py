"""FTP control connection state: commands, replies, logons, and the data connections they announce.

Rows follow Zeek's ftp.log: a command waits in a pending table (up to 20, Zeek's limit) until it is
answered; the answered command is written when the next command arrives, when a reply resolves one of
several pending commands, or when the connection ends; only the commands of
:data:`parser.LOGGED_COMMANDS` make rows, plus one row for a session that named a user and made none
(the row Zeek writes since zeek/zeek#5579 for login-only sessions, with their last command: a password
guess shows). The reply code and text on a row are the session's latest, as Zeek keeps them.

PASV/EPSV answers and PORT/EPRT commands announce a data connection: it is registered in the
registry's table of expected connections with the "ftp-data" analyzer, whose session counts the
transfer's bytes for the STOR or RETR row, and whose connection is named "ftp-data" as Zeek names it.

Passwords are never stored: PASS only sets ``password_seen``. Zeek logs "<hidden>" for them, but the
password itself for the user names it deems anonymous (often an e-mail address, sometimes a real
password typed into the wrong prompt); keeping none at all is the safer rule.

AUTH TLS answered with 234 hands the connection to a TLS session of its own (its ssl record).
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

from sensor.protocols.base import ConnContext, Emit, ErrorCounter, ParseError, Session, set_time
from sensor.protocols.ftp import parser
from sensor.protocols.lines import (
    Dialogue,
    Reply,
    is_command_verb,
    split_command,
)
from sensor.registry import Analyzer, ExpectedConnections
from vigil.flow.v1 import ftp_pb2
from vigil.sensor.v1 import sensor_pb2

PROTOCOL = "ftp"
DATA_PROTOCOL = "ftp-data"
# Zeek's FTP::max_pending_commands, max_user_length, max_arg_length and max_reply_msg_length.
MAX_PENDING = 20
MAX_USER = 128
MAX_ARG = 4096
MAX_REPLY_MSG = 4096
# Consecutive lines that are not FTP after which a direction is given up.
MAX_BAD_LINES = 8
# Replies that end a working-directory change (Zeek's directory_cmds).
_DIRECTORY_REPLIES = frozenset({("CWD", 250), ("CDUP", 200), ("CDUP", 250), ("PWD", 257), ("XPWD", 257)})
# An inner line of a multi-line reply that still reads like a reply of its own (a server that opened a
# "230-" inside a transfer and closed it with "226 "): Zeek matches it to a command all the same.
_REPLY_LIKE = re.compile(r"^[1-9][0-9]{2} [\x20-\x7e]{10}")


class DataChannel:
    """The byte count of one announced data connection, shared by the control session (which reads it
    for the transfer that used the channel) and the data connection's session (which adds to it)."""

    __slots__ = ("bytes",)

    def __init__(self) -> None:
        self.bytes = 0


class FtpDataSession:
    """An announced data connection: counts the bytes it carries, parses nothing."""

    protocol = DATA_PROTOCOL
    done = False

    def __init__(self, channel: DataChannel) -> None:
        self._channel = channel

    def data(self, is_orig: bool, ts: float, payload: bytes) -> None:
        self._channel.bytes += len(payload)

    def gap(self, is_orig: bool, ts: float, length: int) -> None:
        self._channel.bytes += length  # transferred, only not captured

    def finish(self, ts: float) -> None:
        pass


def data_analyzer(channel: DataChannel) -> Analyzer:
    """The analyzer an announced data connection gets: named "ftp-data", counting into ``channel``."""

    def factory(ctx: ConnContext, emit: Emit, count_error: ErrorCounter) -> Session:
        return FtpDataSession(channel)

    return Analyzer(DATA_PROTOCOL, frozenset({"tcp"}), frozenset(), factory)


@dataclass(slots=True)
class _Command:
    seq: int
    ts: float
    cmd: str
    # None for PASS: the password is not kept (and matches no reply text).
    arg: str | None
    cwd_consumed: bool = False
    # Transfers: the data channel announced before the command, and its byte count at that moment.
    channel: DataChannel | None = None
    bytes_before: int = 0


class FtpSession(Dialogue):
    protocol = PROTOCOL

    def __init__(
        self, ctx: ConnContext, emit: Emit, count_error: ErrorCounter, expected: ExpectedConnections
    ) -> None:
        super().__init__(ctx, emit, count_error, PROTOCOL)
        self._expected = expected
        self._started = False
        self._seq = 0
        self._pending: dict[int, _Command] = {}
        self._current: _Command | None = None
        self._reply_code: int | None = None
        self._reply_msg = ""
        self._user = ""
        self._password_seen = False
        self._cwd = "."
        self._file_size: int | None = None
        self._data_channel: ftp_pb2.FtpDataChannel | None = None
        self._channel: DataChannel | None = None
        self._logged = False
        self._logon_success: bool | None = None
        self._failed_logons = 0

    # -- Session interface -------------------------------------------------------------------------------

    def data(self, is_orig: bool, ts: float, payload: bytes) -> None:
        if not self._still_ours(is_orig, ts, payload):
            return
        try:
            reader = self._lines[is_orig]
            for line in reader.feed(payload):
                if is_orig:
                    self._command_line(ts, line)
                else:
                    self._reply_line(ts, line)
                if self._tls is not None:
                    self._to_tls(ts, is_orig, payload[reader.consumed :])
                    return
                if self._dead[is_orig]:
                    return
        except ParseError as exc:
            self._count_error(PROTOCOL, exc.reason)
            self._dead[is_orig] = True
        # A sensor must survive any input: an analyzer bug becomes a counted error, never a crash.
        except Exception:
            self._count_error(PROTOCOL, "internal_error")
            self._dead[is_orig] = True

    def gap(self, is_orig: bool, ts: float, length: int) -> None:
        if self._tls is not None:
            self._tls.gap(is_orig, ts, length)
        else:
            self._lines[is_orig].resync()

    def finish(self, ts: float) -> None:
        try:
            for command in list(self._pending.values()):
                self._current = command
                self._message(command)
            self._pending.clear()
            if self._user and not self._logged and self._current is not None:
                self._emit(sensor_pb2.Record(ftp=self._row(self._current)))
        except Exception:  # see data()
            self._count_error(PROTOCOL, "internal_error")
        if self._tls is not None:
            self._tls.finish(ts)

    # -- commands ----------------------------------------------------------------------------------------

    def _command_line(self, ts: float, line: bytes) -> None:
        verb, arg = split_command(line)
        if not is_command_verb(verb):
            self._bad_line(True, "bad_command")
            return
        self._bad[True] = 0
        current = self._current
        if current is not None and self._reply_code is not None and current.seq in self._pending:
            # The previous command was answered: its row is complete.
            del self._pending[current.seq]
            self._message(current)
        self._start(ts)
        if len(self._pending) < MAX_PENDING:
            self._add_pending(ts, verb, None if verb == "PASS" else arg)
        else:
            self._count_error(PROTOCOL, "too_many_pending_commands")
        if verb == "USER":
            self._user = arg[:MAX_USER]
        elif verb == "PASS":
            self._password_seen = True
        elif verb in ("PORT", "EPRT"):
            target = parser.parse_port(arg) if verb == "PORT" else parser.parse_eprt(arg)
            if target is None:
                self._count_error(PROTOCOL, "bad_port_argument")
            else:
                # Active mode: the server connects to the address the client gave.
                self._announce(ts, False, self._ctx.resp_ip, target.ip, target.port, self._ctx.orig_ip)

    def _add_pending(self, ts: float, verb: str, arg: str | None) -> None:
        self._seq += 1
        command = _Command(self._seq, ts, verb, arg)
        if verb in parser.TRANSFER_COMMANDS and self._channel is not None:
            command.channel = self._channel
            command.bytes_before = self._channel.bytes
        self._pending[command.seq] = command

    def _start(self, ts: float) -> None:
        if not self._started:
            self._started = True
            # A shim the server's greeting answers (Zeek's "<init>").
            self._add_pending(ts, "<init>", "")

    # -- replies -----------------------------------------------------------------------------------------

    def _reply_line(self, ts: float, line: bytes) -> None:
        reply = self._replies.read(line)
        if reply is None:
            self._bad_line(False, "bad_reply")
            return
        self._bad[False] = 0
        self._start(ts)
        inner_line = reply.more and reply.code == 0 and self._reply_code is not None
        if inner_line and not _REPLY_LIKE.match(reply.text):
            return
        if not self._pending:
            self._count_error(PROTOCOL, "reply_without_command")
            return
        pending = list(self._pending.values())
        command = pending[parser.best_pending([(c.cmd, c.arg) for c in pending], reply.code, reply.text)]
        self._current = command
        self._reply_code = reply.code
        self._reply_msg = reply.text
        if reply.more:
            return  # only the first line of a multi-line reply is read for its meaning
        self._answered(ts, command, reply)
        if len(self._pending) > 1:
            del self._pending[command.seq]
            self._message(command)

    def _answered(self, ts: float, command: _Command, reply: Reply) -> None:
        code, cmd = reply.code, command.cmd
        if cmd in ("USER", "PASS") and (code == 230 or 400 <= code < 600):
            self._logon_success = code == 230
            if code != 230:
                self._failed_logons += 1
        if (code == 150 and cmd == "RETR") or (code == 213 and cmd == "SIZE"):
            self._file_size = parser.last_count(reply.text)
        elif code in (227, 229) and cmd in ("PASV", "EPSV"):
            target = parser.parse_pasv(reply.text) if code == 227 else parser.parse_epsv(reply.text)
            if target is None:
                self._count_error(PROTOCOL, "bad_passive_reply")
            else:
                ip = self._ctx.resp_ip if target.ip == "::" else target.ip
                # Passive mode: the client connects to the address the server gave.
                self._announce(ts, True, self._ctx.orig_ip, ip, target.port, self._ctx.resp_ip)
        if (cmd, code) in _DIRECTORY_REPLIES and not command.cwd_consumed:
            command.cwd_consumed = True
            self._cwd = parser.change_directory(self._cwd, cmd, command.arg or "", reply.text)
        if cmd == "AUTH" and code == 234:
            self._start_tls()

    def _announce(
        self, ts: float, passive: bool, orig_ip: str, resp_ip: str, port: int, peer_ip: str
    ) -> None:
        """A data connection from ``orig_ip`` to ``resp_ip``:``port`` is coming; ``peer_ip`` is the other
        control endpoint, which the data connection reaches instead when the announced address is one a
        NAT rewrote (a server behind NAT announcing its private address)."""
        self._data_channel = ftp_pb2.FtpDataChannel(
            passive=passive, orig_ip=_packed(orig_ip), resp_ip=_packed(resp_ip), resp_port=port
        )
        self._channel = DataChannel()
        analyzer = data_analyzer(self._channel)
        self._expected.expect("tcp", orig_ip, resp_ip, port, analyzer, ts)
        if resp_ip != peer_ip:
            self._expected.expect("tcp", orig_ip, peer_ip, port, analyzer, ts)

    def _to_tls(self, ts: float, is_orig: bool, rest: bytes) -> None:
        assert self._tls is not None
        other = self._lines[not is_orig].rest()
        if other:
            self._tls.data(not is_orig, ts, other)
        if rest:
            self._tls.data(is_orig, ts, rest)

    # -- rows --------------------------------------------------------------------------------------------

    def _message(self, command: _Command) -> None:
        """Zeek's ftp_message: a row for a logged command; the transfer fields end with the command."""
        if command.cmd in parser.LOGGED_COMMANDS:
            self._emit(sensor_pb2.Record(ftp=self._row(command)))
            self._logged = True
        self._file_size = None
        self._data_channel = None

    def _row(self, command: _Command) -> ftp_pb2.FtpRecord:
        rec = ftp_pb2.FtpRecord(
            uid=self._ctx.uid,
            user=self._user,
            password_seen=self._password_seen,
            command=command.cmd,
            reply_code=self._reply_code or 0,
            reply_msg=self._reply_msg[:MAX_REPLY_MSG],
            failed_logons_count=self._failed_logons,
            upload=command.cmd in parser.UPLOAD_COMMANDS,
        )
        set_time(rec.time, command.ts)
        if command.arg is not None:
            arg = command.arg
            if command.cmd in parser.FILE_COMMANDS:
                arg = parser.file_url(self._ctx.resp_ip, self._cwd, arg)
            rec.arg = arg[:MAX_ARG]
        if self._file_size is not None:
            rec.file_size = self._file_size
        if self._data_channel is not None:
            rec.data_channel.CopyFrom(self._data_channel)
        if self._logon_success is not None:
            rec.logon_success = self._logon_success
        if command.channel is not None:
            rec.data_bytes = command.channel.bytes - command.bytes_before
        return rec

    # -- malformed input ---------------------------------------------------------------------------------

    def _bad_line(self, is_orig: bool, reason: str) -> None:
        self._count_error(PROTOCOL, reason)
        self._bad[is_orig] += 1
        if self._bad[is_orig] >= MAX_BAD_LINES:
            self._count_error(PROTOCOL, "not_ftp")
            self._dead[is_orig] = True
            self._lines[is_orig].rest()


def _packed(ip: str) -> bytes:
    return ipaddress.ip_address(ip).packed


class FtpSessionFactory:
    """Builds FTP sessions that announce their data connections in ``expected`` (the registry's table)."""

    def __init__(self, expected: ExpectedConnections) -> None:
        self.expected = expected

    def __call__(self, ctx: ConnContext, emit: Emit, count_error: ErrorCounter) -> Session:
        return FtpSession(ctx, emit, count_error, self.expected)
