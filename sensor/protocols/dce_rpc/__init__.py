"""DCE-RPC (C706, MS-RPCE) -> DceRpcRecord / Zeek dce_rpc.log, over TCP and over SMB named pipes.

TCP: the endpoint mapper's port 135 and, by :func:`heuristic`, the dynamic ports it hands out. Named
pipes: the SMB analyzer owns a :class:`PipeCalls` and hands it what is written to and read from pipes.
NTLM authentication in binds on TCP goes to an NtlmTracker (ntlm.log, carrier "dce_rpc").
"""

from __future__ import annotations

from sensor.protocols.base import SessionFactory
from sensor.protocols.dce_rpc import parser
from sensor.protocols.dce_rpc.session import DceRpcSession, PipeCalls, new_session

FACTORY: SessionFactory = new_session
TRANSPORTS: tuple[str, ...] = ("tcp",)
PORTS: tuple[int, ...] = (135,)

# What each side opens or answers an association with. The client binds (or, on a connection whose
# start was missed, alters context); the server's bind_ack, alter_context_resp or answer to a call
# shows a capture that began after the client's first words.
_CLIENT_TYPES = frozenset({parser.BIND, parser.ALTER_CONTEXT})
_SERVER_TYPES = frozenset({parser.BIND_ACK, parser.ALTER_CONTEXT_RESP, parser.RESPONSE, parser.FAULT})


def heuristic(payload: bytes, is_orig: bool) -> bool:
    """A connection-oriented DCE-RPC PDU at the start of a payload, of a kind that begins a conversation
    (or, from the server, answers one): binds from the originator, bind_acks, alter-context answers and
    call answers from either side (a capture that starts mid-connection may have its sides swapped)."""
    if not parser.looks_like_pdu(payload):
        return False
    ptype = payload[2]
    return (is_orig and ptype in _CLIENT_TYPES) or ptype in _SERVER_TYPES


__all__ = ["FACTORY", "PORTS", "TRANSPORTS", "DceRpcSession", "PipeCalls", "heuristic"]
