"""SMB1/2/3 over NetBIOS session service (139) and direct TCP (445) -> Smb* records, Zeek smb_mapping.log
and smb_files.log; NTLM session setups feed an NtlmTracker (carrier "smb"), Kerberos AP-REQs become
kerberos.log "AP" rows."""

from __future__ import annotations

from sensor.protocols.base import SessionFactory
from sensor.protocols.smb.session import SmbSession, new_session

FACTORY: SessionFactory = new_session
TRANSPORTS: tuple[str, ...] = ("tcp",)
PORTS: tuple[int, ...] = (139, 445)

__all__ = ["FACTORY", "PORTS", "TRANSPORTS", "SmbSession"]
