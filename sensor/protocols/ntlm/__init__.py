"""NTLMSSP (MS-NLMP) -> NtlmRecord / Zeek ntlm.log.

NTLM rides on other protocols, so this package has no ports of its own: carriers (SMB, LDAP, HTTP,
DCE-RPC) own an :class:`NtlmTracker`. ``FACTORY``/``PORTS`` register the DCE-RPC endpoint mapper
carrier (TCP 135), whose bind/alter-context/auth3 PDUs carry NTLM authentication.
"""

from __future__ import annotations

from sensor.protocols.base import SessionFactory
from sensor.protocols.ntlm.dcerpc import DceRpcAuthSession, new_session
from sensor.protocols.ntlm.session import NtlmTracker

FACTORY: SessionFactory = new_session
TRANSPORTS: tuple[str, ...] = ("tcp",)
PORTS: tuple[int, ...] = (135,)

__all__ = ["FACTORY", "PORTS", "TRANSPORTS", "DceRpcAuthSession", "NtlmTracker"]
