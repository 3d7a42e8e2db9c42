"""Telemetry records → what each internal device did, as catalog feature observations (pure functions).

An observation names the acting device by address (the originator of the flow, or of the connection an
application record rode on) and lists ``(feature, member, example)`` items: ``member`` is the thing a set
feature counts distinct (a host, a ``host:port`` target, a query name), ``None`` for a plain count;
``example`` is what a breach shows an analyst.
"""

from __future__ import annotations

from dataclasses import dataclass

from master.catalog import (
    ADMIN_AUTH_FAILURES,
    ANSWERED_DESTINATIONS,
    AUTH_FAILURES,
    FAILED,
    FAILED_EXTERNAL,
    HALF_OPEN,
    INTERNAL_DESTINATIONS,
    INTERNAL_TARGETS,
    LDAP_BINDS,
    LDAP_SEARCHES,
    PTR_QUERIES,
    RDP_DESTINATIONS,
    RDP_PORT,
    SENSITIVE_PORTS,
    SENSITIVE_TARGETS,
    SMB_DESTINATIONS,
    SMB_PORTS,
    TOOL_REQUESTS,
    UDP_TARGETS,
    UNANSWERED_DESTINATIONS,
    USERNAMES,
)
from master.signatures import is_admin_account, tool_fingerprint
from vigil.flow.v1 import flow_pb2
from vigil.sensor.v1 import sensor_pb2

Item = tuple[str, str | None, str]

DNS_PTR = 12


@dataclass(frozen=True)
class FlowObs:
    t: float
    uid: str
    orig_ip: str
    orig_mac: str | None
    resp_ip: str
    resp_mac: str | None
    resp_port: int
    transport: int
    failed: bool
    answered: bool
    half_open: bool
    orig_internal: bool
    resp_internal: bool


@dataclass(frozen=True)
class Act:
    """One record's contribution to its device's window."""

    t: float
    ip: str
    mac: str | None
    uid: str
    items: tuple[Item, ...]
    # From an application record (the device may not have a flow yet).
    app: bool = False


def is_half_open(history: str) -> bool:
    """SYN, SYN-ACK, then the originator's reset with nothing else from it: a SYN ("stealth") scan probe."""
    return history.startswith("Sh") and "R" in history and not any(c in history for c in "ADF")


def flow_items(f: FlowObs) -> tuple[Item, ...]:
    items: list[Item] = []
    target = f"{f.resp_ip}:{f.resp_port}" if f.resp_port else f.resp_ip
    if f.resp_internal and f.resp_ip != f.orig_ip:
        items.append((INTERNAL_DESTINATIONS, f.resp_ip, target))
        if f.resp_port:
            items.append((INTERNAL_TARGETS, f"{target}/{f.transport}", target))
        if f.answered:
            items.append((ANSWERED_DESTINATIONS, f.resp_ip, ""))
        else:
            items.append((UNANSWERED_DESTINATIONS, f.resp_ip, target))
        if f.transport == flow_pb2.TRANSPORT_TCP:
            if f.resp_port in SENSITIVE_PORTS:
                items.append((SENSITIVE_TARGETS, target, target))
            if f.resp_port in SMB_PORTS:
                items.append((SMB_DESTINATIONS, f.resp_ip, target))
            elif f.resp_port == RDP_PORT:
                items.append((RDP_DESTINATIONS, f.resp_ip, target))
        elif f.transport == flow_pb2.TRANSPORT_UDP:
            items.append((UDP_TARGETS, target, target))
    elif not f.resp_internal and f.failed:
        items.append((FAILED_EXTERNAL, target, target))
    if f.failed:
        items.append((FAILED, None, target))
    if f.half_open:
        items.append((HALF_OPEN, None, target))
    return tuple(items)


def app_items(record: sensor_pb2.Record, kind: str) -> tuple[Item, ...]:
    """Features an application record adds to its originator's window (empty for most records)."""
    if kind == "dns":
        dns = record.dns
        if dns.qtype == DNS_PTR and dns.query:
            name = dns.query.lower().rstrip(".")
            return ((PTR_QUERIES, name, name),)
    elif kind == "ldap":
        if record.ldap.opcode == "bind":
            return ((LDAP_BINDS, None, record.ldap.object or "anonymous bind"),)
    elif kind == "ldap_search":
        search = record.ldap_search
        return ((LDAP_SEARCHES, None, f"{search.base_object or '(root)'} {search.filter}".strip()),)
    elif kind == "ntlm":
        ntlm = record.ntlm
        if not ntlm.carrier.startswith("smb"):
            return ()
        user = f"{ntlm.domain}\\{ntlm.username}" if ntlm.domain else ntlm.username
        items: list[Item] = []
        if ntlm.username:
            items.append((USERNAMES, user.lower(), user))
        if ntlm.HasField("success") and not ntlm.success:
            items.append((AUTH_FAILURES, None, user))
            if is_admin_account(ntlm.username):
                items.append((ADMIN_AUTH_FAILURES, None, user))
        return tuple(items)
    elif kind == "http":
        found = tool_fingerprint(record.http.user_agent, record.http.uri)
        if found is not None:
            return ((TOOL_REQUESTS, None, found),)
    return ()
