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

from collections.abc import Callable, Mapping
from typing import Any

SCHEMA = 1

Base = Callable[[str], float]


def uniform_unseen(weight: float) -> Base:
    """A base giving every category the same small weight (for open sets such as hostnames)."""
    return lambda _category: weight


def fixed(weights: Mapping[str, float], other: float) -> Base:
    return lambda category: weights.get(category, other)


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

    def learn_one(self, category: str, t: float) -> None:
        factor = self._factor(t)
        if factor != 1.0:
            self.counts = {c: n * factor for c, n in self.counts.items()}
        self.t = t if self.t is None else max(self.t, t)
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

    def to_dict(self) -> dict[str, Any]:
        return {"schema": SCHEMA, "counts": self.counts, "t": self.t}

    def load_dict(self, doc: Mapping[str, Any]) -> CategoryModel:
        if doc.get("schema") != SCHEMA:
            raise ValueError(f"unsupported category model schema {doc.get('schema')!r}")
        self.counts = {str(c): float(n) for c, n in doc["counts"].items()}
        self.t = None if doc.get("t") is None else float(doc["t"])
        return self
