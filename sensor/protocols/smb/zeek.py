"""SmbTreeConnect / SmbFile -> Zeek smb_mapping.log / smb_files.log rows. Empty values are left out."""

from __future__ import annotations

from typing import Any

from vigil.flow.v1 import smb_pb2


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


def file_to_zeek(rec: smb_pb2.SmbFile) -> dict[str, Any]:
    row: dict[str, Any] = {"action": rec.action}
    if rec.path:
        row["path"] = rec.path
    if rec.name:
        row["name"] = rec.name
    row["size"] = rec.size_bytes
    return row
