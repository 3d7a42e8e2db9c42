"""RdpRecord -> Zeek rdp.log row (Zeek's JSON writer conventions: unset fields left out)."""

from __future__ import annotations

from typing import Any

from vigil.flow.v1 import rdp_pb2


def to_zeek(rec: rdp_pb2.RdpRecord) -> dict[str, Any]:
    row: dict[str, Any] = {}
    for column, text in (
        ("cookie", rec.cookie),
        ("result", rec.result),
        ("security_protocol", rec.security_protocol),
        ("client_name", rec.client_name),
        ("client_build", rec.client_build),
        ("keyboard_layout", rec.keyboard_layout),
    ):
        if text:
            row[column] = text
    if rec.requested_protocols:
        # Not a column of Zeek's base rdp.log; kept under our record's name so the information is not lost.
        row["requested_protocols"] = list(rec.requested_protocols)
    return row
