"""TlsRecord -> Zeek ssl.log row (plus the ja3/ja3s/ja4 columns Zeek's fingerprint packages add)."""

from __future__ import annotations

from typing import Any

from vigil.flow.v1 import tls_pb2


def to_zeek(rec: tls_pb2.TlsRecord) -> dict[str, Any]:
    row: dict[str, Any] = {}
    for column, text in (
        ("version", rec.version),
        ("cipher", rec.cipher),
        ("curve", rec.curve),
        ("server_name", rec.server_name),
        ("last_alert", rec.last_alert),
        ("next_protocol", rec.next_protocol),
        ("subject", rec.subject),
        ("issuer", rec.issuer),
        ("ja3", rec.ja3),
        ("ja3s", rec.ja3s),
        ("ja4", rec.ja4),
    ):
        if text:
            row[column] = text
    row["resumed"] = rec.resumed
    row["established"] = rec.established
    # Zeek always logs ssl_history (its default is the empty string).
    row["ssl_history"] = rec.ssl_history
    return row
