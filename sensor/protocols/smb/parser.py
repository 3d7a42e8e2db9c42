"""SMB1 (MS-CIFS/MS-SMB) and SMB2/3 (MS-SMB2) message parsing for the fields our logs need.

Pure functions: bytes -> dataclasses; only :class:`ParseError` escapes. Every offset read from the
wire is checked against the buffer before it is used. READ/WRITE data is never touched.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

from sensor.protocols.base import ParseError

PROTOCOL = "smb"

SMB1_MAGIC = b"\xffSMB"
SMB2_MAGIC = b"\xfeSMB"
TRANSFORM_MAGIC = b"\xfdSMB"  # SMB3 encrypted message
COMPRESSED_MAGIC = b"\xfcSMB"  # SMB 3.1.1 compressed message

STATUS_SUCCESS = 0x00000000
STATUS_MORE_PROCESSING_REQUIRED = 0xC0000016
STATUS_LOGON_FAILURE = 0xC000006D

# Zeek's names for NT status codes it reports (a few common ones; others are printed as hex).
STATUS_NAMES: dict[int, str] = {
    0x00000000: "SUCCESS",
    0xC0000016: "MORE_PROCESSING_REQUIRED",
    0xC000006D: "LOGON_FAILURE",
    0xC0000022: "ACCESS_DENIED",
    0xC0000034: "OBJECT_NAME_NOT_FOUND",
    0x80000006: "NO_MORE_FILES",
    0xC00000CC: "BAD_NETWORK_NAME",
    0xC0000072: "ACCOUNT_DISABLED",
    0xC0000193: "ACCOUNT_EXPIRED",
    0xC0000234: "ACCOUNT_LOCKED_OUT",
    0xC0000071: "PASSWORD_EXPIRED",
}

# -- SMB2 ---------------------------------------------------------------------------------------

SMB2_NEGOTIATE = 0
SMB2_SESSION_SETUP = 1
SMB2_LOGOFF = 2
SMB2_TREE_CONNECT = 3
SMB2_TREE_DISCONNECT = 4
SMB2_CREATE = 5
SMB2_CLOSE = 6
SMB2_READ = 8
SMB2_WRITE = 9
SMB2_SET_INFO = 17

SMB2_COMMAND_NAMES: dict[int, str] = {
    0: "NEGOTIATE_PROTOCOL",
    1: "SESSION_SETUP",
    2: "LOGOFF",
    3: "TREE_CONNECT",
    4: "TREE_DISCONNECT",
    5: "CREATE",
    6: "CLOSE",
    7: "FLUSH",
    8: "READ",
    9: "WRITE",
    10: "LOCK",
    11: "IOCTL",
    12: "CANCEL",
    13: "ECHO",
    14: "QUERY_DIRECTORY",
    15: "CHANGE_NOTIFY",
    16: "QUERY_INFO",
    17: "SET_INFO",
    18: "OPLOCK_BREAK",
}

# MS-SMB2 2.2.3 dialect revisions, named as Microsoft documents them.
SMB2_DIALECT_NAMES: dict[int, str] = {
    0x0202: "SMB 2.0.2",
    0x0210: "SMB 2.1",
    0x0222: "SMB 2.2.2",  # pre-release name of 3.0, seen from old Windows 8 betas
    0x0224: "SMB 2.2.4",
    0x0300: "SMB 3.0",
    0x0302: "SMB 3.0.2",
    0x0310: "SMB 3.1.0",
    0x0311: "SMB 3.1.1",
    0x02FF: "SMB 2.???",  # the "wildcard" a server answers to a multi-protocol SMB1 negotiate
}

SMB2_FLAG_RESPONSE = 0x00000001
SMB2_FLAG_ASYNC = 0x00000002
SMB2_HEADER_SIZE = 64

SHARE_TYPE_NAMES = {1: "DISK", 2: "PIPE", 3: "PRINT"}
FILE_DELETE_ON_CLOSE = 0x00001000
FILE_RENAME_INFORMATION = 10
FILE_DISPOSITION_INFORMATION = 13
FILE_DISPOSITION_INFORMATION_EX = 64
SMB2_0_INFO_FILE = 1
# CREATE dispositions whose success replaces/creates rather than opens (MS-SMB2 2.2.14 CreateAction).
CREATE_ACTION_OVERWRITTEN = 3


def dialect_name(code: int) -> str:
    return SMB2_DIALECT_NAMES.get(code, f"SMB2 0x{code:04x}")


def version_of_dialect(code: int) -> int:
    """1, 2 or 3 (the contract's SmbVersion numbers)."""
    return 3 if code >= 0x0300 else 2


@dataclass(frozen=True, slots=True)
class Smb2Header:
    command: int
    status: int
    flags: int
    next_command: int
    message_id: int
    tree_id: int
    session_id: int

    @property
    def is_response(self) -> bool:
        return bool(self.flags & SMB2_FLAG_RESPONSE)


@dataclass(frozen=True, slots=True)
class Smb2Message:
    """One SMB2 message of a (possibly compounded) chain; ``data`` starts at its own header."""

    header: Smb2Header
    data: bytes


def _u16(data: bytes, at: int) -> int:
    if at + 2 > len(data):
        raise ParseError(PROTOCOL, "truncated")
    return int(struct.unpack_from("<H", data, at)[0])


def _u32(data: bytes, at: int) -> int:
    if at + 4 > len(data):
        raise ParseError(PROTOCOL, "truncated")
    return int(struct.unpack_from("<I", data, at)[0])


def _u64(data: bytes, at: int) -> int:
    if at + 8 > len(data):
        raise ParseError(PROTOCOL, "truncated")
    return int(struct.unpack_from("<Q", data, at)[0])


def _slice(data: bytes, offset: int, length: int, reason: str) -> bytes:
    if length == 0:
        return b""
    if offset < 0 or offset + length > len(data):
        raise ParseError(PROTOCOL, reason)
    return data[offset : offset + length]


def _utf16(raw: bytes) -> str:
    return raw.decode("utf-16-le", "replace").rstrip("\x00")


def parse_smb2_header(data: bytes) -> Smb2Header:
    if len(data) < SMB2_HEADER_SIZE or data[:4] != SMB2_MAGIC:
        raise ParseError(PROTOCOL, "bad_smb2_header")
    if _u16(data, 4) != SMB2_HEADER_SIZE:
        raise ParseError(PROTOCOL, "bad_smb2_structure_size")
    flags = _u32(data, 16)
    return Smb2Header(
        command=_u16(data, 12),
        status=_u32(data, 8),
        flags=flags,
        next_command=_u32(data, 20),
        message_id=_u64(data, 24),
        # Async messages carry an AsyncId where sync ones have Reserved+TreeId.
        tree_id=0 if flags & SMB2_FLAG_ASYNC else _u32(data, 36),
        session_id=_u64(data, 40),
    )


def split_smb2(data: bytes, limit: int = 64) -> list[Smb2Message]:
    """Split a compounded SMB2 transport message at each NextCommand (MS-SMB2 3.2.4.1.4)."""
    out: list[Smb2Message] = []
    pos = 0
    while len(out) < limit:
        header = parse_smb2_header(data[pos:])
        nxt = header.next_command
        if nxt == 0:
            out.append(Smb2Message(header, data[pos:]))
            return out
        # Each compounded message is 8-byte aligned and must lie within the frame.
        if nxt < SMB2_HEADER_SIZE or nxt % 8 or pos + nxt > len(data):
            raise ParseError(PROTOCOL, "bad_next_command")
        out.append(Smb2Message(header, data[pos : pos + nxt]))
        pos += nxt
    raise ParseError(PROTOCOL, "too_many_compounded")


def smb2_negotiate_request(data: bytes) -> list[int]:
    count = _u16(data, SMB2_HEADER_SIZE + 2)
    base = SMB2_HEADER_SIZE + 36
    if base + 2 * count > len(data):
        raise ParseError(PROTOCOL, "truncated_dialects")
    return [_u16(data, base + 2 * i) for i in range(count)]


@dataclass(frozen=True, slots=True)
class Smb2NegotiateResponse:
    dialect: int
    security_blob: bytes


def smb2_negotiate_response(data: bytes) -> Smb2NegotiateResponse:
    body = SMB2_HEADER_SIZE
    dialect = _u16(data, body + 4)
    offset, length = _u16(data, body + 56), _u16(data, body + 58)
    return Smb2NegotiateResponse(dialect, _slice(data, offset, length, "blob_out_of_bounds"))


def smb2_session_setup_request(data: bytes) -> bytes:
    body = SMB2_HEADER_SIZE
    return _slice(data, _u16(data, body + 12), _u16(data, body + 14), "blob_out_of_bounds")


def smb2_session_setup_response(data: bytes) -> bytes:
    body = SMB2_HEADER_SIZE
    # Error responses use the 9-byte ERROR body, which has no security buffer.
    if _u16(data, body) != 9 or len(data) < body + 8:
        return b""
    return _slice(data, _u16(data, body + 4), _u16(data, body + 6), "blob_out_of_bounds")


def smb2_tree_connect_request(data: bytes) -> str:
    body = SMB2_HEADER_SIZE
    return _utf16(_slice(data, _u16(data, body + 4), _u16(data, body + 6), "path_out_of_bounds"))


def smb2_tree_connect_response(data: bytes) -> int:
    body = SMB2_HEADER_SIZE
    if _u16(data, body) != 16:
        return 0
    return data[body + 2] if len(data) > body + 2 else 0


@dataclass(frozen=True, slots=True)
class Smb2CreateRequest:
    name: str
    create_options: int
    disposition: int


def smb2_create_request(data: bytes) -> Smb2CreateRequest:
    body = SMB2_HEADER_SIZE
    name = _utf16(_slice(data, _u16(data, body + 44), _u16(data, body + 46), "name_out_of_bounds"))
    return Smb2CreateRequest(name, _u32(data, body + 40), _u32(data, body + 36))


@dataclass(frozen=True, slots=True)
class MacTimes:
    """A file's four times as FILETIMEs (100 ns units since 1601-01-01 UTC), as the server sent them."""

    modified: int
    accessed: int
    created: int
    changed: int


@dataclass(frozen=True, slots=True)
class Smb2CreateResponse:
    create_action: int
    end_of_file: int
    file_id: bytes
    times: MacTimes


def smb2_create_response(data: bytes) -> Smb2CreateResponse | None:
    """CREATE response (MS-SMB2 2.2.14): CreateAction at 4, CreationTime, LastAccessTime, LastWriteTime,
    ChangeTime at 8/16/24/32, EndofFile at 48, FileId at 64."""
    body = SMB2_HEADER_SIZE
    if _u16(data, body) != 89:
        return None
    file_id = _slice(data, body + 64, 16, "truncated")
    times = MacTimes(
        modified=_u64(data, body + 24), accessed=_u64(data, body + 16),
        created=_u64(data, body + 8), changed=_u64(data, body + 32),
    )  # fmt: skip
    return Smb2CreateResponse(_u32(data, body + 4), _u64(data, body + 48), file_id, times)


def smb2_file_id(data: bytes, at: int) -> bytes:
    """The 16-byte FileId at ``at`` bytes into the body (READ/WRITE: 16, CLOSE: 8, SET_INFO: 16)."""
    return _slice(data, SMB2_HEADER_SIZE + at, 16, "truncated")


@dataclass(frozen=True, slots=True)
class Smb2SetInfo:
    info_type: int
    info_class: int
    file_id: bytes
    buffer: bytes


def smb2_set_info_request(data: bytes) -> Smb2SetInfo:
    body = SMB2_HEADER_SIZE
    if len(data) < body + 32:
        raise ParseError(PROTOCOL, "truncated_set_info")
    info_type, info_class = data[body + 2], data[body + 3]
    length, offset = _u32(data, body + 4), _u16(data, body + 8)
    buffer = _slice(data, offset, min(length, MAX_SET_INFO_BUFFER), "buffer_out_of_bounds") if length else b""
    return Smb2SetInfo(info_type, info_class, smb2_file_id(data, 16), buffer)


# Enough for a rename target of 2,000 UTF-16 characters; longer ones are cut (the frame prefix is 16 KiB).
MAX_SET_INFO_BUFFER = 4096
_RENAME_NAME_AT = 20  # ReplaceIfExists, 7 reserved bytes, RootDirectory (8), FileNameLength (4)


def smb2_rename_target(buffer: bytes) -> str:
    """The new name of a FileRenameInformation buffer (MS-FSCC 2.4.37.2), as far as the buffer holds it."""
    length = _u32(buffer, _RENAME_NAME_AT - 4)
    return _utf16(buffer[_RENAME_NAME_AT : _RENAME_NAME_AT + length])


# -- SMB1 ---------------------------------------------------------------------------------------

SMB1_NEGOTIATE = 0x72
SMB1_SESSION_SETUP_ANDX = 0x73
SMB1_TREE_CONNECT_ANDX = 0x75
SMB1_NT_CREATE_ANDX = 0xA2
SMB1_NO_ANDX = 0xFF

SMB1_COMMAND_NAMES: dict[int, str] = {
    0x00: "CREATE_DIRECTORY",
    0x01: "DELETE_DIRECTORY",
    0x02: "OPEN",
    0x03: "CREATE",
    0x04: "CLOSE",
    0x05: "FLUSH",
    0x06: "DELETE",
    0x07: "RENAME",
    0x08: "QUERY_INFORMATION",
    0x09: "SET_INFORMATION",
    0x0A: "READ",
    0x0B: "WRITE",
    0x10: "CHECK_DIRECTORY",
    0x24: "LOCKING_ANDX",
    0x25: "TRANSACTION",
    0x26: "TRANSACTION_SECONDARY",
    0x2B: "ECHO",
    0x2D: "OPEN_ANDX",
    0x2E: "READ_ANDX",
    0x2F: "WRITE_ANDX",
    0x32: "TRANSACTION2",
    0x33: "TRANSACTION2_SECONDARY",
    0x34: "FIND_CLOSE2",
    0x70: "TREE_CONNECT",
    0x71: "TREE_DISCONNECT",
    0x72: "NEGOTIATE",
    0x73: "SESSION_SETUP_ANDX",
    0x74: "LOGOFF_ANDX",
    0x75: "TREE_CONNECT_ANDX",
    0xA0: "NT_TRANSACT",
    0xA1: "NT_TRANSACT_SECONDARY",
    0xA2: "NT_CREATE_ANDX",
    0xA4: "NT_CANCEL",
    0xA5: "NT_RENAME",
}

SMB1_FLAGS_REPLY = 0x80
SMB1_FLAGS2_UNICODE = 0x8000
SMB1_FLAGS2_NT_STATUS = 0x4000
SMB1_FLAGS2_EXTENDED_SECURITY = 0x0800
# Without SMB1_FLAGS2_NT_STATUS the status field is ErrorClass (1 byte), reserved, ErrorCode (2 bytes)
# (MS-CIFS 2.2.3.1). The DOS errors a logon or tree connect can get, mapped to the NT status MS-CIFS 2.2.2.4
# pairs them with; others become STATUS_UNSUCCESSFUL, a failure all the same.
ERRDOS, ERRSRV = 0x01, 0x02
STATUS_UNSUCCESSFUL = 0xC0000001
DOS_TO_NT_STATUS: dict[tuple[int, int], int] = {
    (ERRDOS, 0x0002): 0xC0000034,  # ERRbadfile -> OBJECT_NAME_NOT_FOUND
    (ERRDOS, 0x0003): 0xC000003A,  # ERRbadpath -> OBJECT_PATH_NOT_FOUND
    (ERRDOS, 0x0005): 0xC0000022,  # ERRnoaccess -> ACCESS_DENIED
    (ERRDOS, 0x0008): 0xC0000017,  # ERRnomem -> NO_MEMORY
    (ERRDOS, 0x0057): 0xC000000D,  # ERRinvalidparam -> INVALID_PARAMETER
    (ERRSRV, 0x0001): STATUS_UNSUCCESSFUL,  # ERRerror
    (ERRSRV, 0x0002): STATUS_LOGON_FAILURE,  # ERRbadpw
    (ERRSRV, 0x0004): 0xC0000022,  # ERRaccess -> ACCESS_DENIED
    (ERRSRV, 0x0006): 0xC00000CC,  # ERRinvnetname -> BAD_NETWORK_NAME
    (ERRSRV, 0x005B): 0xC0000203,  # ERRbaduid -> USER_SESSION_DELETED
    (ERRSRV, 0x08BF): 0xC0000193,  # ERRaccountExpired -> ACCOUNT_EXPIRED
    (ERRSRV, 0x08C0): 0xC000006F,  # ERRbadLogonTime -> INVALID_LOGON_HOURS
    (ERRSRV, 0x08C1): 0xC0000070,  # ERRbadClient -> INVALID_WORKSTATION
    (ERRSRV, 0x08C2): 0xC0000071,  # ERRpasswordExpired -> PASSWORD_EXPIRED
}
SMB1_HEADER_SIZE = 32
# SMB1 tree connect service strings (MS-CIFS 2.2.4.55.2) -> Zeek's share type.
SMB1_SERVICE_TYPES = {"A:": "DISK", "LPT1:": "PRINTER", "IPC": "PIPE", "COMM": "COMM", "?????": "DISK"}


@dataclass(frozen=True, slots=True)
class Smb1Header:
    command: int
    status: int
    flags: int
    flags2: int
    tid: int
    uid: int
    mid: int

    @property
    def is_response(self) -> bool:
        return bool(self.flags & SMB1_FLAGS_REPLY)

    @property
    def unicode(self) -> bool:
        return bool(self.flags2 & SMB1_FLAGS2_UNICODE)


@dataclass(frozen=True, slots=True)
class Smb1Block:
    """One command of an AndX chain: its parameter words and data bytes, plus the byte offset of the data
    (relative to the SMB header, which Unicode string alignment is computed against)."""

    command: int
    words: bytes
    data: bytes
    data_offset: int


@dataclass(frozen=True, slots=True)
class Smb1Message:
    header: Smb1Header
    blocks: list[Smb1Block] = field(default_factory=list)


_ANDX_COMMANDS = frozenset({0x24, 0x2D, 0x2E, 0x2F, 0x73, 0x74, 0x75, 0xA2})


def _smb1_block(data: bytes, command: int, at: int) -> tuple[Smb1Block, int]:
    if at >= len(data):
        raise ParseError(PROTOCOL, "truncated_smb1_words")
    word_count = data[at]
    words_end = at + 1 + 2 * word_count
    byte_count = _u16(data, words_end)
    data_start = words_end + 2
    # Some servers send ByteCount larger than what they put on the wire; keep what is there.
    raw = data[data_start : data_start + byte_count]
    return Smb1Block(command, data[at + 1 : words_end], raw, data_start), word_count


def smb1_status(raw: bytes, flags2: int) -> int:
    """The NT status of an SMB1 header's 4-byte status field, whichever of the two forms it is in."""
    if flags2 & SMB1_FLAGS2_NT_STATUS:
        return int.from_bytes(raw, "little")
    error_class, code = raw[0], int.from_bytes(raw[2:4], "little")
    if error_class == 0:
        return STATUS_SUCCESS
    return DOS_TO_NT_STATUS.get((error_class, code), STATUS_UNSUCCESSFUL)


def parse_smb1(data: bytes, max_chain: int = 8) -> Smb1Message:
    if len(data) < SMB1_HEADER_SIZE + 1 or data[:4] != SMB1_MAGIC:
        raise ParseError(PROTOCOL, "bad_smb1_header")
    flags2 = _u16(data, 10)
    header = Smb1Header(
        command=data[4],
        status=smb1_status(data[5:9], flags2),
        flags=data[9],
        flags2=flags2,
        tid=_u16(data, 24),
        uid=_u16(data, 28),
        mid=_u16(data, 30),
    )
    msg = Smb1Message(header)
    command = header.command
    at = SMB1_HEADER_SIZE
    for _ in range(max_chain):
        block, word_count = _smb1_block(data, command, at)
        msg.blocks.append(block)
        if command not in _ANDX_COMMANDS or word_count < 2:
            break
        next_command, next_offset = block.words[0], _u16(block.words, 2)
        # Chained commands must move forward through the message (MS-CIFS 2.2.3.4).
        if next_command == SMB1_NO_ANDX or next_offset <= at or next_offset >= len(data):
            break
        command, at = next_command, next_offset
    return msg


def smb1_negotiate_request(block: Smb1Block) -> list[str]:
    # Dialects: 0x02 BufferFormat then a NUL-terminated OEM string, repeated (MS-CIFS 2.2.4.52.1).
    out: list[str] = []
    parts = block.data.split(b"\x00")
    for part in parts[:64]:
        if part.startswith(b"\x02"):
            out.append(part[1:].decode("latin-1"))
    return out


def smb1_negotiate_response(block: Smb1Block) -> int:
    """The index of the dialect the server chose (0xFFFF: none)."""
    return _u16(block.words, 0)


def _smb1_string(block: Smb1Block, at: int, unicode: bool) -> tuple[str, int]:
    """A NUL-terminated string in the data bytes at ``at``; returns (text, offset after it)."""
    data = block.data
    if unicode:
        # Unicode strings are 2-byte aligned relative to the start of the SMB header.
        if (block.data_offset + at) % 2:
            at += 1
        end = at
        while end + 1 < len(data) and (data[end] or data[end + 1]):
            end += 2
        return data[at:end].decode("utf-16-le", "replace"), min(end + 2, len(data))
    end = data.find(b"\x00", at)
    if end < 0:
        end = len(data)
    return data[at:end].decode("latin-1"), end + 1


def smb1_session_setup_request(block: Smb1Block) -> bytes:
    """The security blob of an extended-security request (WordCount 12); b"" for the old forms."""
    if len(block.words) != 24:
        return b""
    length = _u16(block.words, 14)
    return block.data[:length]


@dataclass(frozen=True, slots=True)
class Smb1SessionSetup:
    """A Session Setup AndX request without extended security (WordCount 13, MS-CIFS 2.2.4.53.1): who
    logs on, and the shape of the two password fields. The password bytes themselves are not kept."""

    account: str
    domain: str
    oem_length: int
    nt_length: int
    # Both fields hold the same bytes (a client that puts its NTLM response in the LM slot too).
    identical: bool
    # The NTLM field carries an NTLMv2 client challenge (blob header 0x01 0x01 after the 16-byte proof).
    ntlmv2_blob: bool
    # The OEM field is empty or one NUL byte: no password at all.
    oem_empty: bool

    @property
    def mechanism(self) -> str:
        """The mechanism as far as the request shows it (see ``smb1_logon_mechanism``)."""
        return smb1_logon_mechanism(self, encrypted_passwords=True)


RESPONSE_LENGTH_V1 = 24  # LM and NTLMv1 responses (MS-NLMP 3.3.1)
_NTLMV2_MIN_LENGTH = 16 + 28  # NTProofStr + the fixed part of the client challenge (MS-NLMP 2.2.2.7)


def smb1_session_setup_andx(block: Smb1Block, unicode: bool) -> Smb1SessionSetup | None:
    """Account, domain and password shape of a non-extended-security Session Setup AndX request; None for
    other forms. The strings follow the two password fields (MS-CIFS 2.2.4.53.1 SMB_Data)."""
    if len(block.words) != 26:
        return None
    oem_length, nt_length = _u16(block.words, 14), _u16(block.words, 16)
    data = block.data
    oem = data[:oem_length]
    nt = data[oem_length : oem_length + nt_length]
    after = oem_length + nt_length
    if after > len(data):
        raise ParseError(PROTOCOL, "session_setup_passwords_out_of_bounds")
    account, after = _smb1_string(block, after, unicode)
    domain, _ = _smb1_string(block, after, unicode) if after < len(data) else ("", after)
    return Smb1SessionSetup(
        account=account,
        domain=domain,
        oem_length=oem_length,
        nt_length=nt_length,
        identical=bool(nt) and oem == nt,
        ntlmv2_blob=nt_length >= _NTLMV2_MIN_LENGTH and nt[16:18] == b"\x01\x01",
        oem_empty=oem in (b"", b"\x00"),
    )


def smb1_logon_mechanism(setup: Smb1SessionSetup, encrypted_passwords: bool) -> str:
    """The logon's mechanism from the password fields' shape and whether the server's negotiate asked for
    challenge/response: "anonymous", "lm", "ntlmv1", "ntlmv2" or "plaintext" ("" for a named account with
    no password at all)."""
    if setup.oem_empty and setup.nt_length == 0:
        return "" if setup.account else "anonymous"
    if not encrypted_passwords:
        return "plaintext"
    if setup.ntlmv2_blob:
        return "ntlmv2"
    if setup.oem_length == RESPONSE_LENGTH_V1 and (setup.nt_length == 0 or setup.identical):
        return "lm"
    if setup.nt_length == RESPONSE_LENGTH_V1:
        return "ntlmv1"
    # Lengths no challenge/response has: the client sent its password in clear.
    return "plaintext"


def smb1_negotiate_encrypts(block: Smb1Block) -> bool:
    """Whether an NT LM 0.12 negotiate response asks for challenge/response (SecurityMode bit 0x02,
    MS-CIFS 2.2.4.52.2); True when the response is too short to say."""
    if len(block.words) < 3:
        return True
    return bool(block.words[2] & 0x02)


def smb1_session_setup_response(block: Smb1Block) -> bytes:
    if len(block.words) != 8:
        return b""
    length = _u16(block.words, 6)
    return block.data[:length]


def smb1_tree_connect_request(block: Smb1Block, unicode: bool) -> tuple[str, str]:
    """(path, service) of a TREE_CONNECT_ANDX request."""
    if len(block.words) < 8:
        raise ParseError(PROTOCOL, "short_tree_connect")
    password_length = _u16(block.words, 6)
    path, after = _smb1_string(block, password_length, unicode)
    service, _ = _smb1_string(block, after, False)
    return path, service


def smb1_tree_connect_response(block: Smb1Block, unicode: bool) -> tuple[str, str]:
    """(service, native file system) of a TREE_CONNECT_ANDX response."""
    if not block.words:
        return "", ""
    service, after = _smb1_string(block, 0, False)
    native, _ = _smb1_string(block, after, unicode) if after < len(block.data) else ("", 0)
    return service, native


def smb1_nt_create_request(block: Smb1Block, unicode: bool) -> tuple[str, int]:
    """(file name, create options) of an NT_CREATE_ANDX request."""
    if len(block.words) < 48:
        raise ParseError(PROTOCOL, "short_nt_create")
    options = _u32(block.words, 39)
    name, _ = _smb1_string(block, 0, unicode)
    return name, options


@dataclass(frozen=True, slots=True)
class Smb1Created:
    fid: int
    end_of_file: int
    times: MacTimes


def smb1_nt_create_response(block: Smb1Block) -> Smb1Created | None:
    """FID, end of file and times of a successful NT_CREATE_ANDX response (MS-CIFS 2.2.4.64.2): FID at 5,
    CreateTime, LastAccessTime, LastWriteTime, LastChangeTime at 11/19/27/35, EndOfFile at 55."""
    if len(block.words) < 68:
        return None
    words = block.words
    times = MacTimes(
        modified=_u64(words, 27), accessed=_u64(words, 19), created=_u64(words, 11), changed=_u64(words, 35)
    )
    return Smb1Created(_u16(words, 5), _u64(words, 55), times)


# -- named pipes: the bytes DCE-RPC rides on ------------------------------------------------------
# Frames are kept only up to a prefix (session.PREFIX), so each reader returns the payload it could see
# and how many announced bytes it could not ("missing"), for the pipe's reader to skip.

SMB2_IOCTL = 11
FSCTL_PIPE_TRANSCEIVE = 0x0011C017
# A pipe message longer than the read asked for: the data is valid, the rest follows in another read.
STATUS_BUFFER_OVERFLOW = 0x80000005
SMB1_CLOSE = 0x04
SMB1_TRANSACTION = 0x25
SMB1_READ_ANDX = 0x2E
SMB1_WRITE_ANDX = 0x2F
TRANS_TRANSACT_NMPIPE = 0x0026


@dataclass(frozen=True, slots=True)
class PipeIo:
    file_id: bytes
    data: bytes
    missing: int


def _payload(data: bytes, offset: int, length: int) -> tuple[bytes, int]:
    """``length`` bytes at ``offset`` as far as ``data`` holds them, and how many it does not."""
    if length <= 0 or offset < 0:
        return b"", 0
    seen = data[offset : offset + length] if offset < len(data) else b""
    return seen, length - len(seen)


def smb2_write_request(data: bytes) -> PipeIo:
    """WRITE request (MS-SMB2 2.2.21): DataOffset u16 at 2, Length u32 at 4, FileId at 16."""
    body = SMB2_HEADER_SIZE
    payload, missing = _payload(data, _u16(data, body + 2), _u32(data, body + 4))
    return PipeIo(smb2_file_id(data, 16), payload, missing)


def smb2_read_response(data: bytes) -> tuple[bytes, int]:
    """READ response (2.2.20): DataOffset u8 at 2, DataLength u32 at 4."""
    body = SMB2_HEADER_SIZE
    if len(data) < body + 8 or _u16(data, body) != 17:
        return b"", 0
    return _payload(data, data[body + 2], _u32(data, body + 4))


@dataclass(frozen=True, slots=True)
class Smb2Ioctl:
    ctl_code: int
    file_id: bytes
    data: bytes
    missing: int


def smb2_ioctl(data: bytes, response: bool) -> Smb2Ioctl:
    """IOCTL request (2.2.31) or response (2.2.32): CtlCode at 4, FileId at 8, the request's input buffer
    (offset/count at 24/28) or the response's output buffer (offset/count at 32/36)."""
    body = SMB2_HEADER_SIZE
    at = 32 if response else 24
    payload, missing = _payload(data, _u32(data, body + at), _u32(data, body + at + 4))
    return Smb2Ioctl(_u32(data, body + 4), smb2_file_id(data, 8), payload, missing)


def _smb1_payload(block: Smb1Block, offset: int, length: int) -> tuple[bytes, int]:
    # SMB1 data offsets count from the start of the SMB header, as Smb1Block.data_offset does.
    return _payload(block.data, offset - block.data_offset, length)


def smb1_fid(block: Smb1Block) -> int:
    """FID of READ_ANDX / WRITE_ANDX requests (after AndXCommand, reserved and AndXOffset)."""
    return _u16(block.words, 4)


def smb1_write_andx_request(block: Smb1Block) -> tuple[int, bytes, int]:
    """(FID, data, missing) of WRITE_ANDX (MS-CIFS 2.2.4.43.1): DataLength at 20, DataOffset at 22."""
    if len(block.words) < 24:
        raise ParseError(PROTOCOL, "short_write_andx")
    data, missing = _smb1_payload(block, _u16(block.words, 22), _u16(block.words, 20))
    return smb1_fid(block), data, missing


def smb1_read_andx_response(block: Smb1Block) -> tuple[bytes, int]:
    """(data, missing) of READ_ANDX (2.2.4.42.2): DataLength at 10, DataOffset at 12, DataLengthHigh at 14."""
    if len(block.words) < 16:
        return b"", 0
    length = _u16(block.words, 10) | _u16(block.words, 14) << 16
    return _smb1_payload(block, _u16(block.words, 12), length)


def smb1_transact_nmpipe_request(block: Smb1Block) -> tuple[int, bytes, int] | None:
    """(FID, data, missing) of a TRANSACTION request whose subcommand is TransactNmPipe (2.2.4.33.1,
    2.2.5.6): DataCount at 22, DataOffset at 24, SetupCount at 26, Setup (subcommand, FID) at 28."""
    if len(block.words) < 32 or block.words[26] < 2 or _u16(block.words, 28) != TRANS_TRANSACT_NMPIPE:
        return None
    data, missing = _smb1_payload(block, _u16(block.words, 24), _u16(block.words, 22))
    return _u16(block.words, 30), data, missing


def smb1_transaction_response(block: Smb1Block) -> tuple[bytes, int]:
    """(data, missing) of a TRANSACTION response (2.2.4.33.2): DataCount at 12, DataOffset at 14."""
    if len(block.words) < 20:
        return b"", 0
    return _smb1_payload(block, _u16(block.words, 14), _u16(block.words, 12))
