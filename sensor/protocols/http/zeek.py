"""HttpRecord -> Zeek http.log row (Zeek's JSON writer conventions: unset fields left out)."""

from __future__ import annotations

from typing import Any

from vigil.flow.v1 import http_pb2

# HttpTag -> the name Zeek's http.log writes for the tag.
_TAG_NAMES = {http_pb2.HTTP_TAG_URI_SQLI: "HTTP::URI_SQLI"}


def to_zeek(rec: http_pb2.HttpRecord) -> dict[str, Any]:
    row: dict[str, Any] = {"trans_depth": rec.trans_depth}
    for column, text in (
        ("method", rec.method),
        ("host", rec.host),
        ("referrer", rec.referrer),
        ("version", rec.version),
        ("user_agent", rec.user_agent),
        ("username", rec.username),
    ):
        if text:
            row[column] = text
    if rec.method:
        # Zeek logs an empty target as an empty string, but no target at all for an unparsable request.
        row["uri"] = rec.uri
    row["request_body_len"] = rec.request_body_len
    row["response_body_len"] = rec.response_body_len
    if rec.status_code or rec.status_msg:
        row["status_code"] = rec.status_code
        row["status_msg"] = rec.status_msg
    row["tags"] = [_TAG_NAMES[t] for t in rec.tags if t in _TAG_NAMES]
    if rec.orig_mime_types:
        row["orig_mime_types"] = list(rec.orig_mime_types)
    if rec.resp_mime_types:
        row["resp_mime_types"] = list(rec.resp_mime_types)
    return row
