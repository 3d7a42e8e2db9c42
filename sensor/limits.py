"""Field limits for a record too large to travel on the bus on its own.

A batch is split by records until each part fits the server's ``max_payload``; only a single record that
alone does not fit is cut, field by field, to these limits (in characters for text, entries for lists):

=====================================================================  ==========
URIs and paths: ``uri``, ``referrer``, ``path``, LDAP ``filter``/``argument``  8192
headers: ``user_agent``, ``status_msg``, content and MIME types, RDP ``cookie``    1024
names and every other text field (host, query, user, domain, subject, ...)          1024
repeated fields (DNS answers, MIME types, LDAP attributes, dialects, ...)      64 entries
=====================================================================  ==========

Connection keys (``uid``, ``uids``, ``community_id``) and binary fields (addresses, MACs) are never cut:
records must still join, and those have fixed sizes anyway. If the record still does not fit, the text
limits are halved (down to 64 characters) until it does; a record that cannot be made to fit is dropped
and counted. Every cut is counted by field (``vigil_sensor_records_truncated_total``), so an analyst knows
which values are incomplete; an attacker sending 60 KB URIs cannot make the sensor drop or stall anything.
"""

from __future__ import annotations

from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message

from vigil.sensor.v1 import sensor_pb2

URI_LIMIT = 8192
HEADER_LIMIT = 1024
NAME_LIMIT = 1024
REPEATED_LIMIT = 64
# Halving the text limits stops here: below it a value says nothing.
MIN_TEXT_LIMIT = 64

FIELD_LIMITS: dict[str, int] = {
    **dict.fromkeys(("uri", "referrer", "path", "filter", "argument"), URI_LIMIT),
    **dict.fromkeys(
        (
            "user_agent",
            "status_msg",
            "request_content_type",
            "response_content_type",
            "orig_mime_types",
            "resp_mime_types",
            "cookie",
        ),
        HEADER_LIMIT,
    ),
}
# Join keys: cutting them would orphan the record from its connection.
NEVER_CUT = frozenset({"uid", "uids", "community_id"})


def _text_limit(field: FieldDescriptor, scale: int) -> int:
    return max(MIN_TEXT_LIMIT, FIELD_LIMITS.get(field.name, NAME_LIMIT) >> scale)


def _cut(msg: Message, prefix: str, scale: int, cut: set[str]) -> None:
    """Cut ``msg`` in place to the limits (text limits divided by 2**scale); add each cut field's path."""
    for field, value in msg.ListFields():
        if field.name in NEVER_CUT:
            continue
        path = f"{prefix}{field.name}"
        repeated = field.is_repeated
        if repeated and len(value) > REPEATED_LIMIT:
            del value[REPEATED_LIMIT:]
            cut.add(path)
        if field.type == FieldDescriptor.TYPE_MESSAGE:
            for item in value if repeated else [value]:
                _cut(item, path + ".", scale, cut)
        elif field.type == FieldDescriptor.TYPE_STRING:
            limit = _text_limit(field, scale)
            if repeated:
                for i, item in enumerate(value):
                    if len(item) > limit:
                        value[i] = item[:limit]
                        cut.add(path)
            elif len(value) > limit:
                setattr(msg, field.name, value[:limit])
                cut.add(path)


def fit_record(record: sensor_pb2.Record, max_bytes: int) -> tuple[sensor_pb2.Record, list[str]] | None:
    """``record`` itself when it fits in ``max_bytes`` encoded; else a copy cut to the documented limits
    with the paths of the fields that were cut (e.g. ``http.uri``); None when nothing makes it fit."""
    if record.ByteSize() <= max_bytes:
        return record, []
    copy = sensor_pb2.Record()
    copy.CopyFrom(record)
    cut: set[str] = set()
    scale = 0
    while True:
        _cut(copy, "", scale, cut)
        if copy.ByteSize() <= max_bytes:
            return copy, sorted(cut)
        if (NAME_LIMIT >> scale) <= MIN_TEXT_LIMIT and (URI_LIMIT >> scale) <= MIN_TEXT_LIMIT:
            return None
        scale += 1
