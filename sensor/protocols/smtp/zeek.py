"""SmtpRecord -> Zeek smtp.log row. Empty values are left out (unset).

A record of a session that only authenticated (``transaction_seen`` false) has no smtp.log row: Zeek
writes none for it. ``path`` (the hosts of the Received headers) and ``fuids`` (file analysis) are not
written. The AUTH columns and ``data_bytes`` are not Zeek's; they keep the record's names.
"""

from __future__ import annotations

import ipaddress
from typing import Any

from vigil.flow.v1 import smtp_pb2


def to_zeek(rec: smtp_pb2.SmtpRecord) -> dict[str, Any] | None:
    if not rec.transaction_seen:
        return None
    row: dict[str, Any] = {"trans_depth": rec.trans_depth}
    for column, value in (
        ("helo", rec.helo),
        ("mailfrom", rec.mailfrom),
        ("rcptto", list(rec.rcptto)),
        ("date", rec.date),
        ("from", rec.from_header),
        ("to", list(rec.to)),
        ("cc", list(rec.cc)),
        ("reply_to", rec.reply_to),
        ("msg_id", rec.msg_id),
        ("in_reply_to", rec.in_reply_to),
        ("subject", rec.subject),
        ("x_originating_ip", str(ipaddress.ip_address(rec.x_originating_ip)) if rec.x_originating_ip else ""),
        ("first_received", rec.first_received),
        ("second_received", rec.second_received),
        ("last_reply", rec.last_reply),
        ("user_agent", rec.user_agent),
    ):
        if value:
            row[column] = value
    row["tls"] = rec.tls
    if rec.auth_mechanism:
        row["auth_mechanism"] = rec.auth_mechanism
        if rec.auth_user:
            row["auth_user"] = rec.auth_user
        if rec.HasField("auth_success"):
            row["auth_success"] = rec.auth_success
    if rec.data_bytes:
        row["data_bytes"] = rec.data_bytes
    return row
