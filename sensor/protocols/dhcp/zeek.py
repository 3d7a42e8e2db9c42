"""DhcpRecord -> Zeek dhcp.log row (Zeek's JSON writer conventions: unset fields left out).

``uids`` is part of the row because one exchange spans several connections; the writer still adds ``ts``.
Option 60 and 55 (vendor class, parameter list) are not dhcp.log columns in Zeek's base scripts, so they
stay in the record only.
"""

from __future__ import annotations

import ipaddress
from typing import Any

from vigil.flow.v1 import dhcp_pb2


def _addr(raw: bytes) -> str | None:
    if len(raw) not in (4, 16):
        return None
    return str(ipaddress.ip_address(raw))


def to_zeek(rec: dhcp_pb2.DhcpRecord) -> dict[str, Any]:
    row: dict[str, Any] = {"uids": list(rec.uids)}
    for column, raw in (
        ("client_addr", rec.client_addr),
        ("server_addr", rec.server_addr),
        ("requested_addr", rec.requested_addr),
        ("assigned_addr", rec.assigned_addr),
    ):
        if (value := _addr(raw)) is not None:
            row[column] = value
    if rec.mac:
        row["mac"] = ":".join(f"{b:02x}" for b in rec.mac)
    for column, text in (
        ("host_name", rec.host_name),
        ("client_fqdn", rec.client_fqdn),
        ("domain", rec.domain),
        ("client_message", rec.client_message),
        ("server_message", rec.server_message),
    ):
        if text:
            row[column] = text
    if rec.HasField("lease_time"):
        row["lease_time"] = rec.lease_time.ToNanoseconds() / 1e9
    row["msg_types"] = list(rec.msg_types)
    row["duration"] = rec.duration.ToNanoseconds() / 1e9
    return row
