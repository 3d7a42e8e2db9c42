"""LDAP (RFC 4511) over TCP and CLDAP over UDP -> LdapMessage/LdapSearch / Zeek ldap.log, ldap_search.log.

NTLM carried by SASL (GSS-SPNEGO, NTLM) or Microsoft sicily binds feeds an NtlmTracker (carrier "ldap");
Kerberos AP-REQs in SASL binds become kerberos.log "AP" rows.
"""

from __future__ import annotations

from sensor.protocols.base import SessionFactory
from sensor.protocols.ldap.session import LdapSession, new_session

FACTORY: SessionFactory = new_session
TRANSPORTS: tuple[str, ...] = ("tcp", "udp")
# 389 LDAP/CLDAP, 3268 Global Catalog (TCP only in practice; CLDAP on 3268 does not exist, harmless).
PORTS: tuple[int, ...] = (389, 3268)

__all__ = ["FACTORY", "PORTS", "TRANSPORTS", "LdapSession"]
