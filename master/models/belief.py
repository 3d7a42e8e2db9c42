"""The interface every belief model implements, so one conformance suite can check them all.

A belief model is river's shape: hyper-parameters in ``__init__``, ``learn_one`` folds one observation into
the belief, ``score_one`` says what the belief makes of one observation without learning it (score first,
then learn), and the state is a small JSON document with a schema version. ``at`` is when, on the model's
own clock: a window index for the count models, event time in seconds for the others.

The suite (tests/master/test_conformance.py) drives every class of ``master.models.BELIEF_MODELS`` through
this protocol alone, so each model also brings an example of itself and of the observations it learns.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol, Self, TypeVar

X = TypeVar("X")
At = TypeVar("At", int, float)


@dataclass(frozen=True)
class Score:
    """What a model makes of one observation; every ``score_one`` returns one (models add detail in a
    subclass).

    ``probability``: how probable the observation is under the belief, in [0, 1] and small when unusual
    (a count's tail P(X >= x), a category's predictive P(c)); None for a model whose judgement is not a
    probability (the interval statistics measure how regular a series is).
    ``breach``: the model's own rule fired. Models whose threshold is their caller's (it holds the
    context: rarity, a peer group, which category matters) never set it.
    """

    probability: float | None
    breach: bool


class BeliefModel(Protocol[X, At]):
    def learn_one(self, x: X, *, at: At) -> object:
        """Fold one observation into the belief (whatever it returns is for the master, not the suite)."""
        ...

    def score_one(self, x: X, *, at: At) -> Score:
        """Judge one observation without learning it."""
        ...

    def to_dict(self) -> dict[str, Any]:
        """The state as plain JSON, with its ``schema`` version (hyper-parameters are the config's)."""
        ...

    def hyper(self) -> dict[str, Any]:
        """The constructor's keyword arguments: ``type(m)(**m.hyper())`` is a blank twin of ``m``."""
        ...

    # The hyper-parameters differ per model (a CountParams, a half-life, none), hence the open signature;
    # the suite passes ``**model.hyper()``.
    @classmethod
    def from_dict(cls, state: Mapping[str, Any], /, *args: Any, **kwargs: Any) -> Self:
        """The model whose ``to_dict`` gave ``state``; ValueError for another schema version."""
        ...

    @classmethod
    def example(cls) -> Self:
        """A blank model with the hyper-parameters the suite checks."""
        ...

    @classmethod
    def example_stream(cls, seed: int) -> list[tuple[X, At]]:
        """A seeded stream of observations of the model's own kind, in time order: enough to build a
        belief, with the unusual cases (spikes, unseen categories, regular timers) its scores exist for."""
        ...


def example_windows(rng: random.Random, n: int = 300) -> list[int]:
    """``n`` increasing window indexes with the gaps devices show: mostly consecutive windows, sometimes a
    pause longer than the count models' idle cap (for example streams)."""
    out, window = [], 0
    for _ in range(n):
        window += rng.choice((1, 1, 1, 2, 7, 40))
        out.append(window)
    return out
