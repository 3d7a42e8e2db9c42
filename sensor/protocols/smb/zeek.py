"""SmbTreeConnect / SmbFile -> Zeek smb_mapping.log / smb_files.log rows. Empty values are left out."""

from __future__ import annotations

from typing import Any

from google.protobuf.timestamp_pb2 import Timestamp

from sensor.protocols.smb import files
from vigil.flow.v1 import smb_pb2

# Zeek's SMB::logged_file_actions: what it logs by default, and what a configuration that also logs
# reads and writes (``redef SMB::logged_file_actions += { SMB::FILE_READ, SMB::FILE_WRITE }``) adds.
LOGGED_ACTIONS = frozenset({files.FILE_OPEN, files.FILE_RENAME, files.FILE_DELETE, files.PRINT_OPEN,
                            files.PRINT_CLOSE})  # fmt: skip
READ_WRITE_ACTIONS = frozenset({files.FILE_READ, files.FILE_WRITE})
_SECONDS_1601_TO_1970 = 11_644_473_600.0


def mapping_to_zeek(rec: smb_pb2.SmbTreeConnect) -> dict[str, Any]:
    row: dict[str, Any] = {}
    for key, value in (
        ("path", rec.path),
        ("service", rec.service),
        ("native_file_system", rec.native_file_system),
        ("share_type", rec.share_type),
    ):
        if value:
            row[key] = value
    return row


def zeek_file_time(ts: Timestamp) -> float:
    """A file time as Zeek computes it: the FILETIME count converted to a double, divided by 10**7, less
    the seconds from 1601 to 1970. That is what its logs print (e.g. 1549643138.280001 for a time that is
    .2800000 exactly), so it is reproduced, not the exact time."""
    return files.filetime_of(ts) / 1e7 - _SECONDS_1601_TO_1970


def file_to_zeek(rec: smb_pb2.SmbFile, reads_writes: bool = False) -> dict[str, Any] | None:
    """The row, or None for an action Zeek does not log (reads and writes unless ``reads_writes``)."""
    if rec.action not in LOGGED_ACTIONS and not (reads_writes and rec.action in READ_WRITE_ACTIONS):
        return None
    row: dict[str, Any] = {"action": rec.action}
    if rec.path:
        row["path"] = rec.path
    if rec.name:
        row["name"] = rec.name
    row["size"] = rec.size_bytes
    if rec.prev_name:
        row["prev_name"] = rec.prev_name
    if rec.HasField("times"):
        times = rec.times
        row["times.modified"] = zeek_file_time(times.modified)
        row["times.accessed"] = zeek_file_time(times.accessed)
        row["times.created"] = zeek_file_time(times.created)
        row["times.changed"] = zeek_file_time(times.changed)
    return row
