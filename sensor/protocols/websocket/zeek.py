"""WebSocketRecord -> Zeek websocket.log row (unset fields left out, lists as arrays)."""

from __future__ import annotations

from typing import Any

from vigil.flow.v1 import websocket_pb2


def to_zeek(rec: websocket_pb2.WebSocketRecord) -> dict[str, Any]:
    row: dict[str, Any] = {}
    for column, text in (
        ("host", rec.host),
        ("uri", rec.uri),
        ("user_agent", rec.user_agent),
        ("subprotocol", rec.subprotocol),
    ):
        if text:
            row[column] = text
    for column, items in (
        ("client_protocols", rec.client_protocols),
        ("server_extensions", rec.server_extensions),
        ("client_extensions", rec.client_extensions),
    ):
        if items:
            row[column] = list(items)
    return row
