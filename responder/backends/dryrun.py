"""A backend that enforces nothing and records what it would do: observe mode and non-root demos."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from responder.actions import ActiveAction
from responder.rules import Element, compile_actions
from vigil.log import get

_log = get("responder.dryrun")


@dataclass(frozen=True, slots=True)
class DryRunChange:
    """One convergence step: what would have been added and removed."""

    time: float
    added: tuple[Element, ...]
    removed: tuple[Element, ...]


class DryRunBackend:
    name = "dryrun"

    def __init__(self, clock: Callable[[], float] = time.time, history: int = 1000) -> None:
        self._clock = clock
        self._installed: dict[Element, float] = {}
        self.changes: deque[DryRunChange] = deque(maxlen=history)

    async def apply(self, desired: Sequence[ActiveAction]) -> None:
        now = self._clock()
        # Elements lift on their own at their expiry, as nftables timeouts would.
        self._installed = {e: t for e, t in self._installed.items() if t > now}
        want = compile_actions(desired)
        added = tuple(sorted(e for e in want if e not in self._installed))
        removed = tuple(sorted(e for e in self._installed if e not in want))
        self._installed = want
        if added or removed:
            self.changes.append(DryRunChange(now, added, removed))
            _log.info(
                "dryrun_apply",
                added=[f"{e.set_name}:{'.'.join(map(str, e.key))}" for e in added],
                removed=[f"{e.set_name}:{'.'.join(map(str, e.key))}" for e in removed],
                active=len(want),
            )

    async def current(self) -> dict[Element, float]:
        now = self._clock()
        return {e: t for e, t in self._installed.items() if t > now}

    async def close(self) -> None:
        return None
