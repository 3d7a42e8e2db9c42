"""DceRpcRecord -> Zeek dce_rpc.log row. Unset rtt and empty strings are left out (Zeek's unset)."""

from __future__ import annotations

from typing import Any

from sensor.protocols.dce_rpc import names
from vigil.flow.v1 import dce_rpc_pb2


def to_zeek(rec: dce_rpc_pb2.DceRpcRecord) -> dict[str, Any] | None:
    """The row, or None for an operation Zeek's default configuration does not log (routine registry and
    printer-handle calls: ``DCE_RPC::ignored_operations``) or a DCOM call whose bind was not seen (no
    interface to name)."""
    if not rec.endpoint or rec.operation in names.ZEEK_IGNORED_OPERATIONS.get(rec.endpoint, ()):
        return None
    row: dict[str, Any] = {}
    if rec.HasField("rtt"):
        row["rtt"] = rec.rtt.ToNanoseconds() / 1e9
    for key, value in (
        ("named_pipe", rec.named_pipe),
        ("endpoint", rec.endpoint),
        ("operation", rec.operation),
    ):
        if value:
            row[key] = value
    return row
