"""NTLMSSP (MS-NLMP) -> NtlmRecord / Zeek ntlm.log.

NTLM rides on other protocols, so this package has no ports of its own: carriers (SMB, LDAP, HTTP,
DCE-RPC) own an :class:`NtlmTracker` and hand it the tokens they find (DCE-RPC's binds: see
:mod:`sensor.protocols.dce_rpc`).
"""

from __future__ import annotations

from sensor.protocols.ntlm.session import NtlmTracker

__all__ = ["NtlmTracker"]
