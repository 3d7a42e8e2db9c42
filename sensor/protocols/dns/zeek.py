"""DnsRecord -> Zeek dns.log row (field names and value conventions of Zeek's JSON writer).

Unset fields are left out, intervals are float seconds, vectors are lists. The writer adds ts, uid,
id.* and ``proto`` (udp/tcp) from the connection.
"""

from __future__ import annotations

from typing import Any

from sensor.protocols.base import FLIP_ROLES
from sensor.protocols.dns import parser
from vigil.flow.v1 import dns_pb2


def to_zeek(rec: dns_pb2.DnsRecord) -> dict[str, Any]:
    row: dict[str, Any] = {"trans_id": rec.trans_id}
    if rec.roles_flipped:
        # Zeek flipped the connection (its first message was a response): the logwriter swaps id.*.
        row[FLIP_ROLES] = True
    if rec.HasField("rtt_ms"):
        row["rtt"] = rec.rtt_ms / 1000.0
    if rec.query:
        row["query"] = rec.query
    if rec.qclass:
        row["qclass"] = rec.qclass
        row["qclass_name"] = parser.CLASS_NAMES.get(rec.qclass, f"qclass-{rec.qclass}")
    if rec.qtype:
        row["qtype"] = rec.qtype
        row["qtype_name"] = parser.type_name(rec.qtype)
    if rec.HasField("rcode"):
        row["rcode"] = rec.rcode
        row["rcode_name"] = parser.RCODE_NAMES.get(rec.rcode, f"rcode-{rec.rcode}")
    row["AA"] = rec.authoritative
    row["TC"] = rec.truncated
    row["RD"] = rec.recursion_desired
    row["RA"] = rec.recursion_available
    row["Z"] = rec.z
    if rec.answers:
        row["answers"] = [a.value for a in rec.answers]
        row["TTLs"] = [float(a.ttl_seconds) for a in rec.answers]
    row["rejected"] = rec.rejected
    row["opcode"] = rec.opcode
    row["opcode_name"] = parser.OPCODE_NAMES.get(rec.opcode, f"opcode-{rec.opcode}")
    return row
