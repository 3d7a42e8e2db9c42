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
from sensor.protocols.kerberos import parser as krb_parser
from sensor.protocols.kerberos.session import ap_record, ap_request_in
from sensor.protocols.ntlm import parser as ntlm_parser
from sensor.protocols.ntlm.session import NtlmTracker
from sensor.protocols.smb import parser
from vigil.flow.v1 import smb_pb2
from vigil.sensor.v1 import sensor_pb2

PROTOCOL = "smb"
PREFIX = 16 * 1024
MAX_PENDING = 1024
MAX_FILES = 4096
_NBSS_MESSAGE = 0x00


@dataclass(slots=True)
class _Request:
    ts: float
    command: int
    tree_path: str = ""
    name: str = ""
    options: int = 0
    offered: tuple[str, ...] = ()
    service: str = ""
    mech: str = ""
    ap: krb_parser.ApRequest | None = None


@dataclass(slots=True)
class _File:
    name: str
    path: str
    size: int
    read: bool = False
    written: bool = False
    deleted: bool = False


class SmbSession:
    protocol = PROTOCOL

    def __init__(self, ctx: ConnContext, emit: Emit, count_error: ErrorCounter) -> None:
        self._ctx = ctx
        self._emit = emit
        self._count_error = count_error
        self._ntlm = NtlmTracker(ctx, emit, count_error, "smb")
        self._buf = {True: bytearray(), False: bytearray()}
        self._need = {True: 0, False: 0}  # bytes of the current frame not yet seen
        self._keep = {True: 0, False: 0}  # of which we still want to keep
        self._dead = {True: False, False: False}
        self._pending: dict[tuple[int, int], _Request] = {}
        self._trees: dict[int, str] = {}
        self._files: dict[bytes, _File] = {}
        self._counts: Counter[str] = Counter()
        self._version = 0
        self._offered: tuple[str, ...] = ()
        self._smb1_offered = False
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
            req = _Request(ts, hdr.command, self._trees.get(hdr.tree_id, ""))
            if hdr.command == parser.SMB2_NEGOTIATE:
                req.offered = tuple(parser.dialect_name(d) for d in parser.smb2_negotiate_request(data))
            elif hdr.command == parser.SMB2_SESSION_SETUP:
                self._client_blob(ts, req, parser.smb2_session_setup_request(data))
            elif hdr.command == parser.SMB2_TREE_CONNECT:
                req.name = parser.smb2_tree_connect_request(data)
            elif hdr.command == parser.SMB2_CREATE:
                create = parser.smb2_create_request(data)
                req.name, req.options = create.name, create.create_options
            elif hdr.command in (parser.SMB2_READ, parser.SMB2_WRITE):
                self._file_io(ts, parser.smb2_file_id(data, 16), hdr.command == parser.SMB2_WRITE)
            elif hdr.command == parser.SMB2_SET_INFO:
                info = parser.smb2_set_info_request(data)
                if (
                    info.info_type == parser.SMB2_0_INFO_FILE
                    and info.info_class in (parser.FILE_DISPOSITION_INFORMATION,
                                            parser.FILE_DISPOSITION_INFORMATION_EX)
                    and info.buffer[:1] not in (b"", b"\x00")
                ):  # fmt: skip
                    self._file_delete(ts, info.file_id)
            self._remember(key, req)
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
        if hdr.command == parser.SMB2_NEGOTIATE:
            if hdr.status == parser.STATUS_SUCCESS:
                resp = parser.smb2_negotiate_response(data)
                self._negotiate(ts, pending, parser.dialect_name(resp.dialect),
                                parser.version_of_dialect(resp.dialect))  # fmt: skip
        elif hdr.command == parser.SMB2_SESSION_SETUP:
            self._session_setup(ts, pending, hdr.status, parser.smb2_session_setup_response(data))
        elif hdr.command == parser.SMB2_TREE_CONNECT:
            share_type = parser.smb2_tree_connect_response(data) if hdr.status == 0 else 0
            if hdr.status == 0:
                self._trees[hdr.tree_id] = pending.name
            self._tree(ts, pending.name, share_type=parser.SHARE_TYPE_NAMES.get(share_type, ""), service="",
                       native="", status=hdr.status)  # fmt: skip
        elif hdr.command == parser.SMB2_CREATE and hdr.status == 0:
            created = parser.smb2_create_response(data)
            if created is not None:
                self._opened(ts, created.file_id, pending, created.end_of_file)

    # -- SMB1 ----------------------------------------------------------------------------------

    def _smb1(self, ts: float, msg: parser.Smb1Message) -> None:
        hdr = msg.header
        if not self._negotiated:
            self._version = self._version or 1
        key = (1, hdr.mid)
        if not hdr.is_response:
            req = _Request(ts, hdr.command, self._trees.get(hdr.tid, ""))
            for block in msg.blocks:
                self._counts[parser.SMB1_COMMAND_NAMES.get(block.command, f"SMB1_0x{block.command:02x}")] += 1
                if block.command == parser.SMB1_NEGOTIATE:
                    req.offered = tuple(parser.smb1_negotiate_request(block))
                elif block.command == parser.SMB1_SESSION_SETUP_ANDX:
                    self._client_blob(ts, req, parser.smb1_session_setup_request(block))
                elif block.command == parser.SMB1_TREE_CONNECT_ANDX:
                    req.name, req.service = parser.smb1_tree_connect_request(block, hdr.unicode)
                elif block.command == parser.SMB1_NT_CREATE_ANDX:
                    req.name, req.options = parser.smb1_nt_create_request(block, hdr.unicode)
            self._remember(key, req)
            return
        pending = self._pending.pop(key, None)
        if pending is None:
            return
        for block in msg.blocks:
            if block.command == parser.SMB1_NEGOTIATE and pending.offered:
                index = parser.smb1_negotiate_response(block) if block.words else 0xFFFF
                chosen = pending.offered[index] if index < len(pending.offered) else ""
                self._negotiate(ts, pending, chosen, 1)
            elif block.command == parser.SMB1_SESSION_SETUP_ANDX:
                blob = parser.smb1_session_setup_response(block) if block.words else b""
                self._session_setup(ts, pending, hdr.status, blob)
            elif block.command == parser.SMB1_TREE_CONNECT_ANDX:
                service, native = parser.smb1_tree_connect_response(block, hdr.unicode)
                if hdr.status == 0:
                    self._trees[hdr.tid] = pending.name
                share_type = parser.SMB1_SERVICE_TYPES.get(service, "")
                self._tree(ts, pending.name, share_type=share_type, service=service, native=native,
                           status=hdr.status)  # fmt: skip
            elif block.command == parser.SMB1_NT_CREATE_ANDX and hdr.status == 0:
                created = parser.smb1_nt_create_response(block)
                if created is not None:
                    fid, eof = created
                    self._opened(ts, struct.pack("<HH", hdr.tid, fid), pending, eof)

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
            self._ntlm.client_token(ts, blob)
        elif token.mech == "kerberos" and token.token:
            ap = ap_request_in(token.token, self._count_error)
            if ap is not None:
                req.ap = ap

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

    def _file_record(self, ts: float, action: str, file: _File) -> None:
        rec = smb_pb2.SmbFile(uid=self._ctx.uid, action=action, name=file.name, path=file.path,
                              size_bytes=file.size)  # fmt: skip
        set_time(rec.time, ts)
        self._emit(sensor_pb2.Record(smb_file=rec))

    def _opened(self, ts: float, file_id: bytes, req: _Request, size: int) -> None:
        file = _File(req.name or "<share_root>", req.tree_path, size)
        if len(self._files) >= MAX_FILES:
            self._files.pop(next(iter(self._files)))
        self._files[file_id] = file
        self._file_record(ts, "SMB::FILE_OPEN", file)
        if req.options & parser.FILE_DELETE_ON_CLOSE:
            self._file_delete(ts, file_id)

    def _file_io(self, ts: float, file_id: bytes, write: bool) -> None:
        file = self._files.get(file_id)
        if file is None:
            return
        # One row per file and direction: the log says a file was read or written, not how often.
        if write and not file.written:
            file.written = True
            self._file_record(ts, "SMB::FILE_WRITE", file)
        elif not write and not file.read:
            file.read = True
            self._file_record(ts, "SMB::FILE_READ", file)

    def _file_delete(self, ts: float, file_id: bytes) -> None:
        file = self._files.get(file_id)
        if file is not None and not file.deleted:
            file.deleted = True
            self._file_record(ts, "SMB::FILE_DELETE", file)

    def gap(self, is_orig: bool, ts: float, length: int) -> None:
        # Inside a frame we are skipping anyway, a gap costs nothing; elsewhere framing is lost.
        if self._need[is_orig] and self._keep[is_orig] == 0 and length <= self._need[is_orig]:
            self._need[is_orig] -= length
            if self._need[is_orig] == 0:
                frame = bytes(self._buf[is_orig])
                self._buf[is_orig].clear()
                self._frame(is_orig, ts, frame)
            return
        self._lose(is_orig, "gap")

    def finish(self, ts: float) -> None:
        try:
            self._ntlm.finish(ts)
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
