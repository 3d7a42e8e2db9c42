"""Pausing the cyclic garbage collector around allocation-heavy, synchronous batch work.

A batch allocates tens of thousands of short-lived containers (decoded state documents, windows, feature
items) that reference counting frees anyway. While they are alive they keep triggering collections, and
every full collection walks the whole process heap (modules, protobuf descriptors, ...): measured, about a
quarter of the master's batch time went there. Pausing the collector for the duration of one synchronous
step removes that cost; the little cyclic garbage a batch leaves is collected once the collector runs again.
Results cannot depend on it: nothing in the master observes collection (no finalizers, no weak references).
"""

from __future__ import annotations

import contextlib
import functools
import gc
from collections.abc import Callable, Iterator
from typing import ParamSpec, TypeVar

_P = ParamSpec("_P")
_R = TypeVar("_R")


@contextlib.contextmanager
def gc_pause() -> Iterator[None]:
    """The collector paused for the block, then restored, also on error; nested pauses leave it to the
    outermost. Around a whole unit of work (awaits included: its store calls have timeouts, so the pause is
    bounded) let the unit's objects die before it ends: resumed with them still alive, the collector's next
    pass would walk every one of them."""
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def gc_paused(fn: Callable[_P, _R]) -> Callable[_P, _R]:
    """Run ``fn`` (synchronous: its pause is bounded by the call) with the collector paused."""

    @functools.wraps(fn)
    def paused(*args: _P.args, **kwargs: _P.kwargs) -> _R:
        with gc_pause():
            return fn(*args, **kwargs)

    return paused
