"""What every enforcement backend offers the reconcile loop."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from responder.actions import ActiveAction
from responder.rules import Element


class BackendError(Exception):
    """The backend could not converge; the message is meant for an operator."""


class Backend(Protocol):
    name: str

    async def apply(self, desired: Sequence[ActiveAction]) -> None:
        """Converge what is enforced to exactly ``desired``: add what is missing, remove what is extra.

        Idempotent: calling it twice with the same actions changes nothing the second time. Raises
        ``BackendError`` when it cannot; the caller retries.
        """
        ...

    async def current(self) -> dict[Element, float]:
        """What is enforced now: each element with the unix time at which it lifts."""
        ...

    async def close(self) -> None:
        """Release resources. Never lifts blocks: they expire on their own."""
        ...
