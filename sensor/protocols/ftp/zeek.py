"""FtpRecord -> Zeek ftp.log row. Empty values are left out (unset).

``password`` is "<hidden>" whenever the client sent PASS, and a PASS row's ``arg`` too: Vigil keeps no
password, not even the anonymous users' that Zeek writes out. ``mime_type`` and ``fuid`` come from
Zeek's file analysis of the data connection and are not written. The logon and transfer columns are not
Zeek's; they keep the record's names.
"""

from __future__ import annotations

import ipaddress
from typing import Any

from vigil.flow.v1 import ftp_pb2

HIDDEN = "<hidden>"
# Zeek's user column when no USER was seen.
UNKNOWN_USER = "<unknown>"


def to_zeek(rec: ftp_pb2.FtpRecord) -> dict[str, Any]:
    row: dict[str, Any] = {"user": rec.user or UNKNOWN_USER}
    if rec.password_seen:
        row["password"] = HIDDEN
    row["command"] = rec.command
    arg = HIDDEN if rec.command == "PASS" else rec.arg
    if arg:
        row["arg"] = arg
    if rec.HasField("file_size"):
        row["file_size"] = rec.file_size
    if rec.reply_code:
        row["reply_code"] = rec.reply_code
        row["reply_msg"] = rec.reply_msg
    if rec.HasField("data_channel"):
        channel = rec.data_channel
        row["data_channel.passive"] = channel.passive
        row["data_channel.orig_h"] = str(ipaddress.ip_address(channel.orig_ip))
        row["data_channel.resp_h"] = str(ipaddress.ip_address(channel.resp_ip))
        row["data_channel.resp_p"] = channel.resp_port
    if rec.HasField("logon_success"):
        row["logon_success"] = rec.logon_success
    if rec.failed_logons_count:
        row["failed_logons_count"] = rec.failed_logons_count
    if rec.upload:
        row["upload"] = True
    if rec.data_bytes:
        row["data_bytes"] = rec.data_bytes
    return row
