"""The few call arguments the master's models read, taken from a call's stub (MS-SAMR's NDR layouts).

Only fixed-offset arguments at the start of a stub are read, so a call costs nothing more than the bytes
the session already keeps (:data:`STUB_BYTES`); anything cut short or sealed gives no argument, never a
guess.

SAMR names groups, aliases and users by relative id (512 is Domain Admins, 544 Administrators) only when
it opens them; the calls after that (list the members, query the name) carry the handle the open
returned. :class:`SamrHandles` remembers which handle was opened for which id, per channel, so that a
call on the handle can say which account it concerns.
"""

from __future__ import annotations

import struct
from collections import OrderedDict

SAMR = "12345778-1234-abcd-ef00-0123456789ac"
# SamrOpenGroup (19), SamrOpenAlias (27), SamrOpenUser (34): a context handle (20 bytes), the desired
# access (uint32), then the relative id of the group, alias or user opened (uint32). Their answer is the
# new handle (20 bytes) and an NTSTATUS.
_OPENS_BY_RID = frozenset({19, 27, 34})
_HANDLE = 20
_RID_AT = _HANDLE + 4
# Stub bytes a call must keep for every argument read here.
STUB_BYTES = _RID_AT + 4
# Handles remembered per channel: a tool that opens every group of a domain keeps the latest ones.
MAX_HANDLES = 1024


def opened_rid(interface: str, opnum: int, stub: bytes, little_endian: bool) -> int | None:
    """The relative id a SAMR open call names, or None."""
    if interface != SAMR or opnum not in _OPENS_BY_RID or len(stub) < STUB_BYTES:
        return None
    return int(struct.unpack_from("<I" if little_endian else ">I", stub, _RID_AT)[0])


class SamrHandles:
    """Which relative id each SAMR handle of one channel was opened for."""

    __slots__ = ("_rids",)

    def __init__(self) -> None:
        self._rids: OrderedDict[bytes, int] = OrderedDict()

    def opened(self, rid: int, answer: bytes, little_endian: bool) -> None:
        """The answer to an open call for ``rid``: remember its handle if the open succeeded."""
        if len(answer) < _HANDLE + 4:
            return
        status = struct.unpack_from("<I" if little_endian else ">I", answer, _HANDLE)[0]
        handle = bytes(answer[:_HANDLE])
        if status != 0 or not any(handle):
            return
        self._rids[handle] = rid
        self._rids.move_to_end(handle)
        if len(self._rids) > MAX_HANDLES:
            self._rids.popitem(last=False)

    def rid_of(self, interface: str, stub: bytes) -> int | None:
        """The relative id whose handle a SAMR call passes as its first argument, if known."""
        if interface != SAMR or len(stub) < _HANDLE:
            return None
        return self._rids.get(bytes(stub[:_HANDLE]))
