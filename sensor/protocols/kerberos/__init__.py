"""Kerberos V5 (RFC 4120) over UDP and TCP -> KerberosRecord / Zeek kerberos.log."""

from __future__ import annotations

from sensor.protocols.base import SessionFactory
from sensor.protocols.kerberos.session import KerberosSession, ap_record, new_session, record_for

FACTORY: SessionFactory = new_session
TRANSPORTS: tuple[str, ...] = ("tcp", "udp")
PORTS: tuple[int, ...] = (88,)

__all__ = ["FACTORY", "PORTS", "TRANSPORTS", "KerberosSession", "ap_record", "record_for"]
