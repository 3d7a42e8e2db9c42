"""KerberosRecord -> Zeek kerberos.log row. Unset fields are left out."""

from __future__ import annotations

from typing import Any

from google.protobuf.timestamp_pb2 import Timestamp

from vigil.flow.v1 import kerberos_pb2


def _epoch(ts: Timestamp) -> float:
    return float(ts.seconds) + ts.nanos / 1e9


def to_zeek(rec: kerberos_pb2.KerberosRecord) -> dict[str, Any]:
    row: dict[str, Any] = {"request_type": rec.request_type}
    if rec.client:
        row["client"] = rec.client
    if rec.service:
        row["service"] = rec.service
    if rec.HasField("success"):
        row["success"] = rec.success
    if rec.error_msg:
        row["error_msg"] = rec.error_msg
    if rec.HasField("error_code"):
        row["error_code"] = rec.error_code
    if rec.HasField("from_time"):
        row["from"] = _epoch(rec.from_time)
    if rec.HasField("till_time"):
        row["till"] = _epoch(rec.till_time)
    if rec.cipher:
        row["cipher"] = rec.cipher
    if rec.client_cert_subject:
        row["client_cert_subject"] = rec.client_cert_subject
    if rec.server_cert_subject:
        row["server_cert_subject"] = rec.server_cert_subject
    # Columns of Zeek's policy script protocols/krb/ticket-logging.
    if rec.auth_ticket_sha256:
        row["auth_ticket_sha256"] = rec.auth_ticket_sha256
    if rec.new_ticket_sha256:
        row["new_ticket_sha256"] = rec.new_ticket_sha256
    if rec.request_type != "AP":
        # Zeek only knows the KDC options of KDC requests.
        row["forwardable"] = rec.forwardable
        row["renewable"] = rec.renewable
    return row
