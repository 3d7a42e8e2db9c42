"""SMB per-connection state over NetBIOS session service / direct TCP (139, 445).

Frames: a 4-byte header (type, 24-bit length; RFC 1002 4.3, MS-SMB2 2.1). Only each frame's first
``PREFIX`` bytes are kept: every header and fixed command body we read fits, and READ/WRITE payloads
beyond it are skipped by length without being buffered.
Requests and responses are paired by MessageId (SMB2) or MID (SMB1).
"""

from __future__ import annotations

import struct
from collections import Counter
from dataclasses import dataclass

from sensor.protocols.base import ConnContext, Emit, ErrorCounter, ParseError, Session, set_time
from sensor.protocols.dce_rpc.session import PipeCalls
from sensor.protocols.kerberos import parser as krb_parser
from sensor.protocols.kerberos.session import ap_record, ap_request_in
from sensor.protocols.ntlm import parser as ntlm_parser
from sensor.protocols.ntlm.session import NtlmTracker
from sensor.protocols.smb import parser
from sensor.protocols.smb.files import FILE_READ, FILE_WRITE, FileRows
from vigil.flow.v1 import smb_pb2
from vigil.sensor.v1 import sensor_pb2

PROTOCOL = "smb"
PREFIX = 16 * 1024
MAX_PENDING = 1024
_NBSS_MESSAGE = 0x00
# What a resynchronisation after a gap accepts as the next frame: a session message (type 0x00) whose
# length fits NetBIOS's 17 bits and an SMB message's minimum (an SMB1 header with empty words and data),
# followed at once by an SMB1, SMB2 or SMB3-transform signature.
_RESYNC_MIN_LENGTH = 35
_RESYNC_MAX_LENGTH = 0x1FFFF
_RESYNC_SIGNATURE_BYTES = frozenset(
    m[0] for m in (parser.SMB1_MAGIC, parser.SMB2_MAGIC, parser.TRANSFORM_MAGIC)
)
_RESYNC_PROBE = 8  # NetBIOS header + signature
# A READ answered with these carries data (a pipe message longer than the read asked for: the first part).
_DATA_STATUSES = frozenset({parser.STATUS_SUCCESS, parser.STATUS_BUFFER_OVERFLOW})


def next_frame_start(data: bytes) -> int:
    """Offset of the first plausible NetBIOS session message + SMB signature in ``data``, or -1.

    Scans for the "SMB" that ends every signature (a C-speed find), then checks the five bytes before it."""
    pos = data.find(b"SMB", 5)
    while pos >= 0:
        start = pos - 5
        if (
            data[pos - 1] in _RESYNC_SIGNATURE_BYTES
            and data[start] == _NBSS_MESSAGE
            and not data[start + 1] & 0xFE
        ):
            length = int.from_bytes(data[start + 1 : start + 4], "big")
            if _RESYNC_MIN_LENGTH <= length <= _RESYNC_MAX_LENGTH:
                return start
        pos = data.find(b"SMB", pos + 1)
    return -1


@dataclass(slots=True)
class _Request:
    ts: float
    command: int
    tree_path: str = ""
    # The tree's share type ("DISK", "PIPE", "PRINT"; "" when its connect was not seen).
    share: str = ""
    name: str = ""
    options: int = 0
    offered: tuple[str, ...] = ()
    service: str = ""
    mech: str = ""
    # Who logs on (session setup): SMB1 AccountName / PrimaryDomain, or the NTLMSSP AUTHENTICATE's.
    user: str = ""
    domain: str = ""
    ap: krb_parser.ApRequest | None = None
    # READ / IOCTL / SMB1 transaction: the file its answer belongs to.
    file_id: bytes = b""


class SmbSession:
    protocol = PROTOCOL

    def __init__(self, ctx: ConnContext, emit: Emit, count_error: ErrorCounter) -> None:
        self._ctx = ctx
        self._emit = emit
        self._count_error = count_error
        self._ntlm = NtlmTracker(ctx, emit, count_error, "smb")
        # DCE-RPC over the named pipes of this connection (dce_rpc.log).
        self._pipes = PipeCalls(ctx, emit, count_error)
        self._encrypted = False
        self._buf = {True: bytearray(), False: bytearray()}
        self._need = {True: 0, False: 0}  # bytes of the current frame not yet seen
        self._keep = {True: 0, False: 0}  # of which we still want to keep
        self._dead = {True: False, False: False}
        # Framing lost to a gap: scan for the next frame; ``_carry`` keeps the last bytes of a chunk in
        # case a frame header straddles two.
        self._lost = {True: False, False: False}
        self._carry = {True: b"", False: b""}
        self._pending: dict[tuple[int, int], _Request] = {}
        self._trees: dict[int, str] = {}
        self._shares: dict[int, str] = {}
        self._files = FileRows(ctx.uid, emit)
        self._counts: Counter[str] = Counter()
        self._version = 0
        self._offered: tuple[str, ...] = ()
        self._smb1_offered = False
        # Whether the SMB1 server asked for challenge/response passwords (its negotiate's SecurityMode).
        self._smb1_encrypts = True
        self._negotiated = False
        self._done = False
        self._last_ts = 0.0

    @property
    def done(self) -> bool:
        return self._done

    # -- framing -------------------------------------------------------------------------------

    def data(self, is_orig: bool, ts: float, payload: bytes) -> None:
        try:
            self._last_ts = ts
            if not self._dead[is_orig] and not self._done:
                self._stream(is_orig, ts, memoryview(payload))
        except Exception:  # an analyzer bug must not escape into the flow table
            self._count_error(PROTOCOL, "internal_error")
            self._dead[is_orig] = True

    def _stream(self, is_orig: bool, ts: float, view: memoryview) -> None:
        buf = self._buf[is_orig]
        while view:
            if self._lost[is_orig]:
                view = self._resync(is_orig, view)
                continue
            if self._need[is_orig]:
                take = min(self._need[is_orig], len(view))
                keep = min(self._keep[is_orig], take)
                buf += view[:keep]
                self._keep[is_orig] -= keep
                self._need[is_orig] -= take
                view = view[take:]
                if self._need[is_orig] == 0:
                    frame = bytes(buf)
                    buf.clear()
                    self._frame(is_orig, ts, frame)
                continue
            # Collect the 4-byte NBSS header.
            want = 4 - len(buf)
            buf += view[:want]
            view = view[want:]
            if len(buf) < 4:
                return
            kind = buf[0]
            (length,) = struct.unpack_from(">I", b"\x00" + bytes(buf[1:4]))
            buf.clear()
            if kind != _NBSS_MESSAGE:
                # Session request/response/keep-alive: fixed, tiny, nothing to log.
                if length > 1024:
                    self._lose(is_orig, "bad_nbss_type")
                    return
                self._need[is_orig] = length
                self._keep[is_orig] = 0
                if length == 0:
                    continue
                continue
            if length == 0:
                continue
            self._need[is_orig] = length
            self._keep[is_orig] = min(length, PREFIX)

    def _resync(self, is_orig: bool, view: memoryview) -> memoryview:
        """The stream from the next plausible frame on (counted as a resync), or nothing yet."""
        data = self._carry[is_orig] + bytes(view)
        start = next_frame_start(data)
        if start < 0:
            self._carry[is_orig] = data[-(_RESYNC_PROBE - 1) :]
            return memoryview(b"")
        self._carry[is_orig] = b""
        self._lost[is_orig] = False
        self._count_error(PROTOCOL, "resync")
        return memoryview(data)[start:]

    def _lose_framing(self, is_orig: bool) -> None:
        self._lost[is_orig] = True
        self._carry[is_orig] = b""
        self._buf[is_orig].clear()
        self._need[is_orig] = self._keep[is_orig] = 0

    def _lose(self, is_orig: bool, reason: str) -> None:
        self._count_error(PROTOCOL, reason)
        self._dead[is_orig] = True
        self._buf[is_orig].clear()

    def _frame(self, is_orig: bool, ts: float, frame: bytes) -> None:
        if not frame:
            return
        magic = frame[:4]
        try:
            if magic == parser.SMB2_MAGIC:
                for msg in parser.split_smb2(frame):
                    self._smb2(ts, msg)
            elif magic == parser.SMB1_MAGIC:
                self._smb1(ts, parser.parse_smb1(frame))
            elif magic in (parser.TRANSFORM_MAGIC, parser.COMPRESSED_MAGIC):
                # Encrypted or compressed: unreadable, but other sessions/trees on the connection may
                # still talk in clear, so keep going.
                self._counts["ENCRYPTED" if magic == parser.TRANSFORM_MAGIC else "COMPRESSED"] += 1
                if magic == parser.TRANSFORM_MAGIC and not self._encrypted:
                    # Noted once: named-pipe calls (DCE-RPC) inside are not seen, and not guessed at.
                    self._encrypted = True
                    self._count_error(PROTOCOL, "encrypted_session")
            else:
                self._count_error(PROTOCOL, "not_smb")
        except ParseError as exc:
            self._count_error(PROTOCOL, exc.reason)

    # -- SMB2 ----------------------------------------------------------------------------------

    def _remember(self, key: tuple[int, int], req: _Request) -> None:
        if len(self._pending) >= MAX_PENDING:
            self._pending.pop(next(iter(self._pending)))
        self._pending[key] = req

    def _smb2(self, ts: float, msg: parser.Smb2Message) -> None:
        hdr, data = msg.header, msg.data
        key = (2, hdr.message_id)
        if not hdr.is_response:
            self._counts[parser.SMB2_COMMAND_NAMES.get(hdr.command, f"UNKNOWN_{hdr.command}")] += 1
            req = _Request(
                ts, hdr.command, self._trees.get(hdr.tree_id, ""), self._shares.get(hdr.tree_id, "")
            )
            if hdr.command == parser.SMB2_NEGOTIATE:
                req.offered = tuple(parser.dialect_name(d) for d in parser.smb2_negotiate_request(data))
            elif hdr.command == parser.SMB2_SESSION_SETUP:
                self._client_blob(ts, req, parser.smb2_session_setup_request(data))
            elif hdr.command == parser.SMB2_TREE_CONNECT:
                req.name = parser.smb2_tree_connect_request(data)
            elif hdr.command == parser.SMB2_CREATE:
                create = parser.smb2_create_request(data)
                req.name, req.options = create.name, create.create_options
            elif hdr.command == parser.SMB2_READ:
                req.file_id = parser.smb2_file_id(data, 16)
                self._files.read(ts, req.file_id)
            elif hdr.command == parser.SMB2_WRITE:
                io = parser.smb2_write_request(data)
                self._files.written(ts, io.file_id)
                if io.data or io.missing:
                    self._files.data(ts, io.file_id, FILE_WRITE)
            elif hdr.command == parser.SMB2_SET_INFO:
                self._set_info(ts, parser.smb2_set_info_request(data))
            elif hdr.command == parser.SMB2_CLOSE:
                self._files.closed(ts, parser.smb2_file_id(data, 8))
            self._remember(key, req)
            self._pipe_request2(ts, hdr, data, req)
            return
        # Interim async responses (STATUS_PENDING) are followed by the real one.
        if hdr.status == 0x00000103:
            return
        pending = self._pending.pop(key, None)
        if pending is None:
            # Servers answer a multi-protocol SMB1 negotiate (MID 0) with an SMB2 response.
            if hdr.command == parser.SMB2_NEGOTIATE:
                pending = self._pending.pop((1, 0), None)
            if pending is None:
                return
        self._pipe_response2(ts, hdr, data, pending)
        if hdr.command == parser.SMB2_NEGOTIATE:
            if hdr.status == parser.STATUS_SUCCESS:
                resp = parser.smb2_negotiate_response(data)
                self._negotiate(ts, pending, parser.dialect_name(resp.dialect),
                                parser.version_of_dialect(resp.dialect))  # fmt: skip
        elif hdr.command == parser.SMB2_SESSION_SETUP:
            self._session_setup(ts, pending, hdr.status, parser.smb2_session_setup_response(data))
        elif hdr.command == parser.SMB2_TREE_CONNECT:
            share_type = parser.smb2_tree_connect_response(data) if hdr.status == 0 else 0
            share = parser.SHARE_TYPE_NAMES.get(share_type, "")
            if hdr.status == 0:
                self._trees[hdr.tree_id] = pending.name
                self._shares[hdr.tree_id] = share
            self._tree(ts, pending.name, share_type=share, service="", native="", status=hdr.status)
        elif hdr.command == parser.SMB2_CREATE and hdr.status == 0:
            created = parser.smb2_create_response(data)
            if created is not None:
                self._files.opened(
                    ts, created.file_id, name=pending.name, path=pending.tree_path, share=pending.share,
                    size=created.end_of_file, times=created.times,
                    delete_on_close=bool(pending.options & parser.FILE_DELETE_ON_CLOSE),
                )  # fmt: skip
        elif hdr.command == parser.SMB2_READ and pending.file_id and hdr.status in _DATA_STATUSES:
            payload, missing = parser.smb2_read_response(data)
            if payload or missing:
                self._files.data(ts, pending.file_id, FILE_READ)

    def _set_info(self, ts: float, info: parser.Smb2SetInfo) -> None:
        """Deletes (FileDispositionInformation with DeletePending) and renames of a file."""
        if info.info_type != parser.SMB2_0_INFO_FILE:
            return
        if info.info_class in (parser.FILE_DISPOSITION_INFORMATION, parser.FILE_DISPOSITION_INFORMATION_EX):
            if info.buffer[:1] not in (b"", b"\x00"):
                self._files.deleted(ts, info.file_id)
        elif info.info_class == parser.FILE_RENAME_INFORMATION:
            self._files.renamed(ts, info.file_id, parser.smb2_rename_target(info.buffer))

    # -- SMB1 ----------------------------------------------------------------------------------

    def _smb1(self, ts: float, msg: parser.Smb1Message) -> None:
        hdr = msg.header
        if not self._negotiated:
            self._version = self._version or 1
        key = (1, hdr.mid)
        if not hdr.is_response:
            req = _Request(ts, hdr.command, self._trees.get(hdr.tid, ""), self._shares.get(hdr.tid, ""))
            for block in msg.blocks:
                self._counts[parser.SMB1_COMMAND_NAMES.get(block.command, f"SMB1_0x{block.command:02x}")] += 1
                if block.command == parser.SMB1_NEGOTIATE:
                    req.offered = tuple(parser.smb1_negotiate_request(block))
                elif block.command == parser.SMB1_SESSION_SETUP_ANDX:
                    self._client_blob(ts, req, parser.smb1_session_setup_request(block))
                    self._smb1_logon(req, block, hdr.unicode)
                elif block.command == parser.SMB1_TREE_CONNECT_ANDX:
                    req.name, req.service = parser.smb1_tree_connect_request(block, hdr.unicode)
                elif block.command == parser.SMB1_NT_CREATE_ANDX:
                    req.name, req.options = parser.smb1_nt_create_request(block, hdr.unicode)
            self._remember(key, req)
            self._file_request1(ts, msg, req)
            self._pipe_request1(ts, msg, req)
            return
        pending = self._pending.pop(key, None)
        if pending is None:
            return
        self._pipe_response1(ts, msg, pending)
        for block in msg.blocks:
            if block.command == parser.SMB1_NEGOTIATE and pending.offered:
                index = parser.smb1_negotiate_response(block) if block.words else 0xFFFF
                chosen = pending.offered[index] if index < len(pending.offered) else ""
                self._smb1_encrypts = parser.smb1_negotiate_encrypts(block)
                self._negotiate(ts, pending, chosen, 1)
            elif block.command == parser.SMB1_SESSION_SETUP_ANDX:
                blob = parser.smb1_session_setup_response(block) if block.words else b""
                self._session_setup(ts, pending, hdr.status, blob)
            elif block.command == parser.SMB1_TREE_CONNECT_ANDX:
                service, native = parser.smb1_tree_connect_response(block, hdr.unicode)
                if hdr.status == 0:
                    self._trees[hdr.tid] = pending.name
                    # Zeek tells SMB1 pipe trees from the rest by the IPC service alone.
                    self._shares[hdr.tid] = "PIPE" if service == "IPC" else "DISK"
                share_type = parser.SMB1_SERVICE_TYPES.get(service, "")
                self._tree(ts, pending.name, share_type=share_type, service=service, native=native,
                           status=hdr.status)  # fmt: skip
            elif block.command == parser.SMB1_NT_CREATE_ANDX and hdr.status == 0:
                created = parser.smb1_nt_create_response(block)
                if created is not None:
                    file_id = struct.pack("<HH", hdr.tid, created.fid)
                    self._files.opened(
                        ts, file_id, name=pending.name, path=pending.tree_path, share=pending.share,
                        size=created.end_of_file, times=created.times, smb1=True,
                    )  # fmt: skip
            elif block.command == parser.SMB1_READ_ANDX and pending.file_id and hdr.status in _DATA_STATUSES:
                payload, missing = parser.smb1_read_andx_response(block)
                if payload or missing:
                    self._files.data(ts, pending.file_id, FILE_READ)

    def _file_request1(self, ts: float, msg: parser.Smb1Message, req: _Request) -> None:
        """SMB1 reads, writes and closes of files (smb_files.log)."""
        tid = msg.header.tid
        try:
            for block in msg.blocks:
                if block.command == parser.SMB1_READ_ANDX and len(block.words) >= 6:
                    req.file_id = struct.pack("<HH", tid, parser.smb1_fid(block))
                    self._files.read(ts, req.file_id, req.tree_path)
                elif block.command == parser.SMB1_WRITE_ANDX:
                    fid, payload, missing = parser.smb1_write_andx_request(block)
                    file_id = struct.pack("<HH", tid, fid)
                    self._files.written(ts, file_id, req.tree_path)
                    if payload or missing:
                        self._files.data(ts, file_id, FILE_WRITE)
                elif block.command == parser.SMB1_CLOSE and len(block.words) >= 2:
                    fid = int.from_bytes(block.words[:2], "little")
                    self._files.closed(ts, struct.pack("<HH", tid, fid), req.tree_path)
        except ParseError as exc:
            self._count_error(PROTOCOL, exc.reason)

    # -- named pipes (DCE-RPC) ------------------------------------------------------------------
    # What clients write to pipes and servers answer goes to PipeCalls, keyed by the file id (SMB1:
    # tree id + FID, as files are). Only IPC$ trees carry pipes; a tree whose connect the capture missed
    # may too, and PipeCalls starts a pipe only on data that opens with a DCE-RPC header.

    @staticmethod
    def _pipe_tree(path: str) -> bool:
        return not path or path.upper().endswith("IPC$")

    def _pipe_request2(self, ts: float, hdr: parser.Smb2Header, data: bytes, req: _Request) -> None:
        if not self._pipe_tree(req.tree_path):
            return
        try:
            if hdr.command == parser.SMB2_WRITE:
                io = parser.smb2_write_request(data)
                self._pipes.client_data(io.file_id, ts, io.data, io.missing)
            elif hdr.command == parser.SMB2_READ:
                req.file_id = parser.smb2_file_id(data, 16)
            elif hdr.command == parser.SMB2_IOCTL:
                ioctl = parser.smb2_ioctl(data, response=False)
                if ioctl.ctl_code == parser.FSCTL_PIPE_TRANSCEIVE:
                    req.file_id = ioctl.file_id
                    self._pipes.client_data(ioctl.file_id, ts, ioctl.data, ioctl.missing)
            elif hdr.command == parser.SMB2_CLOSE:
                self._pipes.closed(parser.smb2_file_id(data, 8))
        except ParseError as exc:
            self._count_error(PROTOCOL, exc.reason)

    def _pipe_response2(self, ts: float, hdr: parser.Smb2Header, data: bytes, req: _Request) -> None:
        if not self._pipe_tree(req.tree_path):
            return
        ok = hdr.status in (parser.STATUS_SUCCESS, parser.STATUS_BUFFER_OVERFLOW)
        try:
            if hdr.command == parser.SMB2_CREATE and hdr.status == parser.STATUS_SUCCESS and req.tree_path:
                created = parser.smb2_create_response(data)
                if created is not None:
                    self._pipes.opened(created.file_id, req.name)
            elif hdr.command == parser.SMB2_READ and ok and req.file_id:
                payload, missing = parser.smb2_read_response(data)
                self._pipes.server_data(req.file_id, ts, payload, missing)
            elif hdr.command == parser.SMB2_IOCTL and ok and req.file_id:
                ioctl = parser.smb2_ioctl(data, response=True)
                self._pipes.server_data(req.file_id, ts, ioctl.data, ioctl.missing)
        except ParseError as exc:
            self._count_error(PROTOCOL, exc.reason)

    def _pipe_request1(self, ts: float, msg: parser.Smb1Message, req: _Request) -> None:
        hdr = msg.header
        if not self._pipe_tree(req.tree_path):
            return
        try:
            for block in msg.blocks:
                if block.command == parser.SMB1_TRANSACTION:
                    found = parser.smb1_transact_nmpipe_request(block)
                    if found is not None:
                        fid, payload, missing = found
                        req.file_id = struct.pack("<HH", hdr.tid, fid)
                        self._pipes.client_data(req.file_id, ts, payload, missing)
                elif block.command == parser.SMB1_WRITE_ANDX:
                    fid, payload, missing = parser.smb1_write_andx_request(block)
                    self._pipes.client_data(struct.pack("<HH", hdr.tid, fid), ts, payload, missing)
                elif block.command == parser.SMB1_READ_ANDX and len(block.words) >= 6:
                    req.file_id = struct.pack("<HH", hdr.tid, parser.smb1_fid(block))
                elif block.command == parser.SMB1_CLOSE and len(block.words) >= 2:
                    self._pipes.closed(struct.pack("<HH", hdr.tid, int.from_bytes(block.words[:2], "little")))
        except ParseError as exc:
            self._count_error(PROTOCOL, exc.reason)

    def _pipe_response1(self, ts: float, msg: parser.Smb1Message, req: _Request) -> None:
        hdr = msg.header
        if not self._pipe_tree(req.tree_path):
            return
        ok = hdr.status in (parser.STATUS_SUCCESS, parser.STATUS_BUFFER_OVERFLOW)
        try:
            for block in msg.blocks:
                if block.command == parser.SMB1_NT_CREATE_ANDX and hdr.status == 0 and req.tree_path:
                    created = parser.smb1_nt_create_response(block)
                    if created is not None:
                        self._pipes.opened(struct.pack("<HH", hdr.tid, created.fid), req.name)
                elif not ok or not req.file_id:
                    continue
                elif block.command == parser.SMB1_TRANSACTION:
                    payload, missing = parser.smb1_transaction_response(block)
                    self._pipes.server_data(req.file_id, ts, payload, missing)
                elif block.command == parser.SMB1_READ_ANDX:
                    payload, missing = parser.smb1_read_andx_response(block)
                    self._pipes.server_data(req.file_id, ts, payload, missing)
        except ParseError as exc:
            self._count_error(PROTOCOL, exc.reason)

    # -- shared semantics ----------------------------------------------------------------------

    def _negotiate(self, ts: float, req: _Request, chosen: str, version: int) -> None:
        self._negotiated = True
        self._version = version
        smb1 = any(not d.startswith("SMB 2") and not d.startswith("SMB 3") for d in req.offered) and (
            req.command == parser.SMB1_NEGOTIATE
        )
        rec = smb_pb2.SmbNegotiate(
            uid=self._ctx.uid,
            offered_dialects=list(req.offered),
            negotiated_dialect=chosen,
            version=smb_pb2.SmbVersion.ValueType(version),
            smb1_offered=smb1,
        )
        set_time(rec.time, req.ts)
        self._emit(sensor_pb2.Record(smb_negotiate=rec))

    def _client_blob(self, ts: float, req: _Request, blob: bytes) -> None:
        if not blob:
            return
        try:
            token = ntlm_parser.unwrap(blob)
        except ParseError as exc:
            self._count_error("ntlm", exc.reason)
            return
        req.mech = token.mech
        if token.mech == "ntlm":
            msg = self._ntlm.client_token(ts, blob)
            if isinstance(msg, ntlm_parser.Authenticate):
                req.user, req.domain = msg.user, msg.domain
        elif token.mech == "kerberos" and token.token:
            ap = ap_request_in(token.token, self._count_error)
            if ap is not None:
                req.ap = ap

    def _smb1_logon(self, req: _Request, block: parser.Smb1Block, unicode: bool) -> None:
        """A logon without extended security names its account and domain in clear."""
        logon = parser.smb1_session_setup_andx(block, unicode)
        if logon is not None:
            req.user, req.domain = logon.account, logon.domain
            req.mech = parser.smb1_logon_mechanism(logon, self._smb1_encrypts)

    def _session_setup(self, ts: float, req: _Request, status: int, blob: bytes) -> None:
        if blob:
            self._ntlm.server_token(ts, blob)
        if req.ap is not None:
            rec = ap_record(self._ctx.uid, req.ts, req.ap, status == parser.STATUS_SUCCESS)
            self._emit(sensor_pb2.Record(kerberos=rec))
        if status == parser.STATUS_MORE_PROCESSING_REQUIRED:
            return
        if req.mech == "ntlm":
            self._ntlm.outcome(ts, status == parser.STATUS_SUCCESS, status)
        setup = smb_pb2.SmbSessionSetup(
            uid=self._ctx.uid,
            version=smb_pb2.SmbVersion.ValueType(self._version),
            status=status,
            auth_mechanism=req.mech,
            username=req.user,
            domain=req.domain,
        )
        set_time(setup.time, ts)
        self._emit(sensor_pb2.Record(smb_session_setup=setup))

    def _tree(self, ts: float, path: str, *, share_type: str, service: str, native: str, status: int) -> None:
        rec = smb_pb2.SmbTreeConnect(
            uid=self._ctx.uid, path=path, share_type=share_type, service=service,
            native_file_system=native, status=status,
        )  # fmt: skip
        set_time(rec.time, ts)
        self._emit(sensor_pb2.Record(smb_tree_connect=rec))

    def gap(self, is_orig: bool, ts: float, length: int) -> None:
        # Inside a frame we are skipping anyway, a gap costs nothing; elsewhere framing is lost.
        if self._need[is_orig] and self._keep[is_orig] == 0 and length <= self._need[is_orig]:
            self._need[is_orig] -= length
            if self._need[is_orig] == 0:
                frame = bytes(self._buf[is_orig])
                self._buf[is_orig].clear()
                self._frame(is_orig, ts, frame)
            return
        if self._lost[is_orig]:
            self._carry[is_orig] = b""  # the bytes either side of a hole do not join
            return
        # Framing is lost: count the gap, then look for the next frame in what follows.
        self._count_error(PROTOCOL, "gap")
        self._lose_framing(is_orig)

    def finish(self, ts: float) -> None:
        try:
            self._ntlm.finish(ts)
            self._pipes.finish()
            if self._counts:
                rec = smb_pb2.SmbCommandCounts(
                    uid=self._ctx.uid, version=smb_pb2.SmbVersion.ValueType(self._version)
                )
                set_time(rec.time, ts)
                for name, count in self._counts.items():
                    rec.requests[name] = count
                self._emit(sensor_pb2.Record(smb_command_counts=rec))
                self._counts.clear()
        except Exception:
            self._count_error(PROTOCOL, "internal_error")


def new_session(ctx: ConnContext, emit: Emit, count_error: ErrorCounter) -> Session:
    return SmbSession(ctx, emit, count_error)
