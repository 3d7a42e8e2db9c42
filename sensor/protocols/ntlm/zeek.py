"""NtlmRecord -> Zeek ntlm.log row. Empty strings and unknown outcomes are left out (Zeek's unset).

Zeek's success is the server's SPNEGO verdict only (its gssapi_neg_result), so it is written from
``spnego_success``: a raw NTLMSSP exchange, or a failed SMB logon (no security blob in the answer), has
none, whatever the carrier said.
"""

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
    if rec.HasField("spnego_success"):
        row["success"] = rec.spnego_success
    return row
