"""The files of one SMB connection and the SmbFile records (smb_files.log rows) their actions make.

The rules are those Zeek's smb_files.log follows, established by reading its reference logs against the
captures (tests/data/golden, tests/sensor/protocols/test_smb_files.py):

* A row is made by a successful open (SMB2 CREATE / SMB1 NT_CREATE_ANDX response), a read or write
  request, a delete (a CREATE asking for delete-on-close, right after the open's row; a SET_INFO
  FileDispositionInformation with DeletePending) and a rename (SET_INFO FileRenameInformation: the row
  names the new name and keeps the old one as ``prev_name``). An open of nothing is the share root,
  "<share_root>". Failed opens make none; nor do actions on a file whose open was not seen.
* The action depends on the tree: on a named-pipe tree (IPC$) SMB2 opens, reads and writes are pipe
  actions, on a printer tree print actions, on a disk tree or one whose connect was not seen file
  actions. Deletes and renames are file actions everywhere. Zeek logs only file opens, renames and
  deletes and print opens and closes unless told to log reads and writes too; the row mapping
  (zeek.py) filters, so this module makes records only for actions one of the two logs.
* SMB1 differs: every NT_CREATE_ANDX open is a file open, pipes too, and carries no path; the tree's
  path is attached at the file's first read, write or close. A WRITE_ANDX request makes no row itself.
* ``size`` and the times are the open's (the response's EndOfFile and MAC times), never updated. The
  times are left unset when the last-write time is not after 1970 (pipes report zeros).
* A row equal to one the connection wrote in the last three minutes (action, name, path, size and
  times but the access time, which reads move) is not written again. Rows without times are not
  compared, so each is written.
* When a file's bytes first flow (a read answered with data, a write carrying data) the row is written
  once more: Zeek's file analysis then attaches its id (fuid) to it. Those records have ``data_seen``.
  Pipes carry DCE-RPC, not files, and make no such row.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

from google.protobuf.timestamp_pb2 import Timestamp

from sensor.protocols.base import Emit, set_time
from sensor.protocols.smb.parser import MacTimes
from vigil.flow.v1 import smb_pb2
from vigil.sensor.v1 import sensor_pb2

FILE_OPEN, FILE_READ, FILE_WRITE = "SMB::FILE_OPEN", "SMB::FILE_READ", "SMB::FILE_WRITE"
FILE_DELETE, FILE_RENAME = "SMB::FILE_DELETE", "SMB::FILE_RENAME"
PRINT_OPEN, PRINT_CLOSE = "SMB::PRINT_OPEN", "SMB::PRINT_CLOSE"
SHARE_ROOT = "<share_root>"
PIPE, PRINT = "PIPE", "PRINT"

FILETIME_UNIX_EPOCH = 116_444_736_000_000_000  # 1970-01-01T00:00:00Z in 100 ns units since 1601
_FILETIME_PER_SECOND = 10_000_000
# The last second a protobuf Timestamp can hold (9999-12-31T23:59:59Z); later FILETIMEs are garbage.
_TIMESTAMP_MAX_SECONDS = 253_402_300_799
# How long an identical row stays suppressed after it was last asked about, in network time.
FORGET_AFTER = 180.0
MAX_FILES = 4096
MAX_REMEMBERED_ROWS = 4096


@dataclass(slots=True)
class OpenFile:
    name: str
    path: str
    size: int
    times: MacTimes | None
    share: str  # the tree's share type ("DISK", "PIPE", "PRINT"), "" when its connect was not seen
    smb1: bool
    prev_name: str = ""


def file_times(times: MacTimes) -> MacTimes | None:
    """The times a row carries, or None when the last-write time is not after 1970 or any time is past
    what a Timestamp holds."""
    if times.modified <= FILETIME_UNIX_EPOCH:
        return None
    latest = (_TIMESTAMP_MAX_SECONDS + 1) * _FILETIME_PER_SECOND + FILETIME_UNIX_EPOCH
    if max(times.modified, times.accessed, times.created, times.changed) >= latest:
        return None
    return times


def set_filetime(ts: Timestamp, filetime: int) -> None:
    since_1970 = filetime - FILETIME_UNIX_EPOCH
    ts.seconds, rest = divmod(since_1970, _FILETIME_PER_SECOND)
    ts.nanos = rest * 100


def filetime_of(ts: Timestamp) -> int:
    return ts.seconds * _FILETIME_PER_SECOND + ts.nanos // 100 + FILETIME_UNIX_EPOCH


class FileRows:
    """Files opened on one connection (by file id) and the records their actions make."""

    def __init__(self, uid: str, emit: Emit) -> None:
        self._uid = uid
        self._emit = emit
        self._files: dict[bytes, OpenFile] = {}
        # Row identity -> network time it was last asked about (see FORGET_AFTER).
        self._written: OrderedDict[tuple[object, ...], float] = OrderedDict()

    def opened(
        self, ts: float, file_id: bytes, *, name: str, path: str, share: str, size: int, times: MacTimes,
        delete_on_close: bool = False, smb1: bool = False,
    ) -> None:  # fmt: skip
        if not smb1 and share == PIPE:
            return
        file = OpenFile(name or SHARE_ROOT, "" if smb1 else path, size, file_times(times), share, smb1)
        if len(self._files) >= MAX_FILES:
            self._files.pop(next(iter(self._files)))
        self._files[file_id] = file
        self._row(ts, PRINT_OPEN if share == PRINT and not smb1 else FILE_OPEN, file)
        if delete_on_close:
            self._row(ts, FILE_DELETE, file)

    def read(self, ts: float, file_id: bytes, tree_path: str = "") -> None:
        file = self._known(file_id, tree_path)
        if file is not None and file.share != PRINT:
            self._row(ts, FILE_READ, file)

    def written(self, ts: float, file_id: bytes, tree_path: str = "") -> None:
        file = self._known(file_id, tree_path)
        if file is not None and file.share != PRINT and not file.smb1:
            self._row(ts, FILE_WRITE, file)

    def data(self, ts: float, file_id: bytes, action: str) -> None:
        """The file's bytes flowed (``action``: FILE_READ or FILE_WRITE)."""
        file = self._files.get(file_id)
        if file is not None and file.share not in (PIPE, PRINT):
            self._row(ts, action, file, data_seen=True)

    def deleted(self, ts: float, file_id: bytes) -> None:
        file = self._files.get(file_id)
        if file is not None:
            self._row(ts, FILE_DELETE, file)

    def renamed(self, ts: float, file_id: bytes, new_name: str) -> None:
        file = self._files.get(file_id)
        if file is not None:
            file.prev_name, file.name = file.name, new_name
            self._row(ts, FILE_RENAME, file)

    def closed(self, ts: float, file_id: bytes, tree_path: str = "") -> None:
        file = self._known(file_id, tree_path)
        self._files.pop(file_id, None)
        if file is not None and file.share == PRINT and not file.smb1:
            self._row(ts, PRINT_CLOSE, file)

    def _known(self, file_id: bytes, tree_path: str) -> OpenFile | None:
        file = self._files.get(file_id)
        if file is not None and not file.path and tree_path:
            file.path = tree_path  # SMB1 opens learn their tree's path late
        return file

    def _row(self, ts: float, action: str, file: OpenFile, data_seen: bool = False) -> None:
        if file.times is not None or data_seen:
            ident = self._identity(action, file, data_seen)
            last = self._written.pop(ident, None)
            self._written[ident] = ts
            if last is not None and ts - last <= FORGET_AFTER:
                return
            if len(self._written) > MAX_REMEMBERED_ROWS:
                self._written.popitem(last=False)
        rec = smb_pb2.SmbFile(
            uid=self._uid, action=action, name=file.name, path=file.path, size_bytes=file.size,
            prev_name=file.prev_name, data_seen=data_seen,
        )  # fmt: skip
        if file.times is not None:
            for field, value in (
                (rec.times.modified, file.times.modified),
                (rec.times.accessed, file.times.accessed),
                (rec.times.created, file.times.created),
                (rec.times.changed, file.times.changed),
            ):
                set_filetime(field, value)
        set_time(rec.time, ts)
        self._emit(sensor_pb2.Record(smb_file=rec))

    @staticmethod
    def _identity(action: str, file: OpenFile, data_seen: bool) -> tuple[object, ...]:
        times = file.times
        stamps = (times.modified, times.created, times.changed) if times is not None else ()
        return (action, data_seen, file.name, file.path, file.size, stamps)
