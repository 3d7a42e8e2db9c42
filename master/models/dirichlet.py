"""Categories (which hostname, which SMB dialect, ...) as a Dirichlet-multinomial belief with decay.

A device's belief over the categories it uses is Dirichlet with concentration ``alpha`` around a *base*
distribution; learning category ``c`` at event time ``t`` adds 1 to its count after decaying every count by
``0.5 ** (elapsed / half_life_s)``. The posterior predictive is

    P(c) = (n_c + alpha * base(c)) / (N + alpha)

so a category the device never used keeps the probability ``alpha * base(c) / (N + alpha)``: small when the
device has a long, consistent history (rare for this device), and smaller still when the base says the
category is rare. The base of a device is the network's own predictive (the same model pooled over every
device, with a fixed hyper-base), so "rare for this device" and "rare for the whole network" both count.

Counts are bounded to ``max_categories`` (the weakest forgotten first) so a device cycling through random
values cannot grow its state without limit; what is forgotten becomes "never seen", which only makes it
look rarer.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping
from typing import Any, Self

from master.models.belief import Score, example_windows

SCHEMA = 1

Base = Callable[[str], float]


def uniform_unseen(weight: float) -> Base:
    """A base giving every category the same small weight (for open sets such as hostnames)."""
    return lambda _category: weight


def fixed(weights: Mapping[str, float], other: float) -> Base:
    return lambda category: weights.get(category, other)


# Open sets (hostnames, workstations): every category the same weight, so with alpha 1 an unseen one has
# P = 1 / (N + 1) after N sightings.
OPEN_SET = uniform_unseen(1.0)


class CategoryModel:
    def __init__(self, half_life_s: float, alpha: float = 1.0, max_categories: int = 16) -> None:
        if half_life_s <= 0 or alpha <= 0 or max_categories < 1:
            raise ValueError("half_life_s and alpha must be positive, max_categories at least 1")
        self.half_life_s = half_life_s
        self.alpha = alpha
        self.max_categories = max_categories
        self.counts: dict[str, float] = {}
        self.t: float | None = None

    def _factor(self, t: float) -> float:
        if self.t is None or t <= self.t:
            return 1.0
        return float(0.5 ** ((t - self.t) / self.half_life_s))

    def learn_one(self, category: str, *, at: float) -> None:
        """One use of ``category`` at event time ``at``."""
        factor = self._factor(at)
        if factor != 1.0:
            self.counts = {c: n * factor for c, n in self.counts.items()}
        self.t = at if self.t is None else max(self.t, at)
        self.counts[category] = self.counts.get(category, 0.0) + 1.0
        if len(self.counts) > self.max_categories:
            weakest = min((c for c in self.counts if c != category), key=lambda c: self.counts[c])
            del self.counts[weakest]

    def total(self, t: float | None = None) -> float:
        factor = 1.0 if t is None else self._factor(t)
        return sum(self.counts.values()) * factor

    def count(self, category: str, t: float | None = None) -> float:
        factor = 1.0 if t is None else self._factor(t)
        return self.counts.get(category, 0.0) * factor

    def prob(self, category: str, t: float, base: Base) -> float:
        """Posterior predictive probability of ``category`` at event time ``t`` (no learning)."""
        n_c = self.count(category, t)
        total = self.total(t)
        return (n_c + self.alpha * base(category)) / (total + self.alpha)

    def predictive(self, base: Base, t: float) -> Base:
        """This model's predictive as a base for another (the network's, for its devices)."""
        return lambda category: self.prob(category, t, base)

    def score_one(self, category: str, *, at: float, base: Base = OPEN_SET) -> Score:
        """P(``category``) at event time ``at``; which category breaches, and when, is the caller's call."""
        return Score(probability=self.prob(category, at, base), breach=False)

    def hyper(self) -> dict[str, Any]:
        return {"half_life_s": self.half_life_s, "alpha": self.alpha, "max_categories": self.max_categories}

    def to_dict(self) -> dict[str, Any]:
        return {"schema": SCHEMA, "counts": self.counts, "t": self.t}

    def load_dict(self, doc: Mapping[str, Any]) -> Self:
        if doc.get("schema") != SCHEMA:
            raise ValueError(f"unsupported category model schema {doc.get('schema')!r}")
        self.counts = {str(c): float(n) for c, n in doc["counts"].items()}
        self.t = None if doc.get("t") is None else float(doc["t"])
        return self

    @classmethod
    def from_dict(
        cls, doc: Mapping[str, Any], half_life_s: float, alpha: float = 1.0, max_categories: int = 16
    ) -> Self:
        return cls(half_life_s, alpha, max_categories).load_dict(doc)

    @classmethod
    def example(cls) -> Self:
        # Fewer slots than the stream has categories, so forgetting the weakest is part of every check.
        return cls(half_life_s=24 * 3600.0, alpha=2.0, max_categories=3)

    @classmethod
    def example_stream(cls, seed: int) -> list[tuple[str, float]]:
        """A device's names over days: one usual, a few occasional, and now and then a name chosen by the
        sender (empty, or odd characters) that the state must carry as it is."""
        rng = random.Random(seed)
        names = ("ws-01",) * 6 + ("ws-01.corp", "WS-01", "print", "", '\u00e9\x00;"{}')
        return [(rng.choice(names), window * 60.0) for window in example_windows(rng)]
