"""NtlmRecord -> Zeek ntlm.log row. Empty strings and unknown outcomes are left out (Zeek's unset)."""

from __future__ import annotations

from typing import Any

from vigil.flow.v1 import ntlm_pb2


def to_zeek(rec: ntlm_pb2.NtlmRecord) -> dict[str, Any]:
    row: dict[str, Any] = {}
    for key, value in (
        ("username", rec.username),
        ("hostname", rec.hostname),
        ("domainname", rec.domain),
        ("server_nb_computer_name", rec.server_nb_computer_name),
        ("server_dns_computer_name", rec.server_dns_computer_name),
        ("server_tree_name", rec.server_tree_name),
    ):
        if value:
            row[key] = value
    if rec.HasField("success"):
        row["success"] = rec.success
    return row
