"""Counts per event-time window as Poisson with a Gamma posterior, learned online with decay.

The rate ``rate`` of a count per window has a ``Gamma(alpha, beta)`` posterior (shape/rate). Learning one
closed window with count ``x`` is the conjugate update ``alpha += x, beta += 1``, preceded by a decay of
both by ``d = 0.5 ** (1 / half_life_windows)`` per elapsed window so that old behaviour fades and the model
keeps revising. The posterior predictive of the next window's count is Negative Binomial:

    P(X = k) = Gamma(k + a) / (Gamma(a) k!) * p^a * (1 - p)^k,   p = b / (b + 1),   E[X] = a / b

Nothing here imports scipy: the tail is summed term by term with the pmf's ratio recurrence, which is exact
to double precision and cheap for the counts this model sees.
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Self

from master.models.belief import Score, example_windows

SCHEMA = 1

# Summation guard for the Negative Binomial tail: far more terms than any real count needs.
_MAX_TERMS = 1_000_000
# Below this many windows of evidence the predictive is flat enough that no count is improbable; it also keeps
# the tail sum away from a ratio of 1, where it would not converge.
_MIN_BETA = 1e-9


@dataclass(frozen=True)
class Gamma:
    """A Gamma(shape=alpha, rate=beta) belief about a rate per window."""

    alpha: float
    beta: float

    @property
    def mean(self) -> float:
        return self.alpha / self.beta if self.beta > 0 else 0.0

    def tempered(self, max_evidence: float) -> Gamma:
        """Same mean, at most ``max_evidence`` windows' worth of confidence (a power posterior).

        Real counts are burstier than a Poisson: the exact posterior predictive tightens to a Poisson as
        evidence piles up and would call every ordinary burst improbable. Raising the posterior to the power
        ``max_evidence / beta`` keeps its mean and widens the predictive's tails; a scan is still dozens of
        decades away from it.
        """
        if self.beta <= max_evidence:
            return self
        scale = max_evidence / self.beta
        return Gamma(self.alpha * scale, max_evidence)


def nb_log_pmf(k: int, r: float, p: float) -> float:
    return math.lgamma(k + r) - math.lgamma(r) - math.lgamma(k + 1) + r * math.log(p) + k * math.log1p(-p)


def nb_sf(k: int, r: float, p: float) -> float:
    """P(X >= k) for X ~ NegativeBinomial(r, p) as parametrised in the module docstring."""
    if k <= 0:
        return 1.0
    if r <= 0.0:
        # All mass at zero: any positive count is impossible under the belief.
        return 0.0
    q = 1.0 - p
    mode = max(0.0, (r - 1.0) * q / p)
    if k <= mode + 1.0:
        # Left of the mode the upper tail is large: 1 - CDF loses nothing to cancellation.
        term = math.exp(nb_log_pmf(0, r, p))
        cdf = 0.0
        for j in range(k):
            cdf += term
            term *= (j + r) / (j + 1) * q
        return min(1.0, max(0.0, 1.0 - cdf))
    # Right of the mode the terms only shrink: sum upwards from k, stop when the geometric bound on what
    # remains is negligible. Working in log space for the first term avoids underflow for huge k.
    log_first = nb_log_pmf(k, r, p)
    if log_first < -745.0:
        return 0.0
    term = math.exp(log_first)
    total = term
    j = k
    for _ in range(_MAX_TERMS):
        ratio = (j + r) / (j + 1) * q
        term *= ratio
        total += term
        j += 1
        bound_ratio = max(ratio, q)
        if term * bound_ratio / (1.0 - bound_ratio) <= total * 1e-15:
            break
    return min(1.0, total)


def predictive_sf(observed: float, belief: Gamma) -> float:
    """P(X >= observed) under the Negative Binomial posterior predictive of ``belief``."""
    k = math.ceil(observed)
    if belief.beta <= _MIN_BETA:
        # No evidence left at all (decayed to nothing): every count is plausible.
        return 1.0
    return nb_sf(k, belief.alpha, belief.beta / (belief.beta + 1.0))


class CountModel:
    """One count behaviour of one entity (or of the whole network when pooled).

    Hyper-parameters:
      half_life_windows: windows after which a window's weight has halved.
      max_idle_windows: empty windows between two active ones that are learned as zeros. A device that is
        silent for longer is taken to be absent (switched off, out of office), not "active with rate 0":
        counting hours of absence as zeros would drag its rate to nothing and make its next ordinary
        working minute look like an attack.

    State: ``alpha``, ``beta`` (decayed sums of counts and windows) and the last learned window index.
    """

    def __init__(self, half_life_windows: float, max_idle_windows: int = 10) -> None:
        if half_life_windows <= 0:
            raise ValueError("half_life_windows must be positive")
        if max_idle_windows < 0:
            raise ValueError("max_idle_windows must be >= 0")
        self.half_life_windows = half_life_windows
        self.max_idle_windows = max_idle_windows
        self.alpha = 0.0
        self.beta = 0.0
        self.window: int | None = None

    @property
    def decay(self) -> float:
        return float(0.5 ** (1.0 / self.half_life_windows))

    def gap_zeros(self, window: int) -> int:
        """How many empty windows before ``window`` learning it would count as zero observations."""
        if self.window is None:
            return 0
        return min(max(window - self.window - 1, 0), self.max_idle_windows)

    def learn_one(self, x: float, *, at: int, zeros: int | None = None) -> None:
        """Learn the count ``x`` of the closed window ``at``. ``zeros`` overrides the inferred number of
        empty windows.

        A window older than the last learned one (possible when pooling many devices) is added without
        decay rather than rejected: its weight is then slightly too high, never lost.
        """
        if x < 0 or not math.isfinite(x):
            raise ValueError(f"count must be a finite non-negative number, got {x!r}")
        counted = self.gap_zeros(at) if zeros is None else max(zeros, 0)
        d = self.decay
        elapsed = 0 if self.window is None else max(at - self.window, 0)
        factor = d**elapsed
        # The counted zeros are the most recent empty windows: weights d^1 .. d^counted.
        zero_weight = sum(d**i for i in range(1, counted + 1))
        self.alpha = self.alpha * factor + x
        self.beta = self.beta * factor + 1.0 + zero_weight
        self.window = at if self.window is None else max(self.window, at)

    def posterior(self, window: int | None = None) -> Gamma:
        """The belief as of ``window``: decayed to it (same mean, less confidence) when later than learned."""
        if window is None or self.window is None or window <= self.window:
            return Gamma(self.alpha, self.beta)
        factor = self.decay ** (window - self.window)
        return Gamma(self.alpha * factor, self.beta * factor)

    def score_one(self, x: float, *, at: int) -> Score:
        """P(a count >= ``x``) in window ``at``; the threshold is the caller's (DeviceCountModel)."""
        return Score(probability=predictive_sf(x, self.posterior(at)), breach=False)

    def hyper(self) -> dict[str, Any]:
        return {"half_life_windows": self.half_life_windows, "max_idle_windows": self.max_idle_windows}

    def to_dict(self) -> dict[str, Any]:
        return {"schema": SCHEMA, "alpha": self.alpha, "beta": self.beta, "window": self.window}

    def load_dict(self, state: Mapping[str, Any]) -> Self:
        if state.get("schema") != SCHEMA:
            raise ValueError(f"unsupported count model schema {state.get('schema')!r}")
        self.alpha = float(state["alpha"])
        self.beta = float(state["beta"])
        window = state.get("window")
        self.window = None if window is None else int(window)
        return self

    @classmethod
    def from_dict(
        cls, state: Mapping[str, Any], half_life_windows: float, max_idle_windows: int = 10
    ) -> Self:
        return cls(half_life_windows, max_idle_windows).load_dict(state)

    @classmethod
    def example(cls) -> Self:
        return cls(half_life_windows=100.0, max_idle_windows=5)

    @classmethod
    def example_stream(cls, seed: int) -> list[tuple[float, int]]:
        """Counts of 0-9 per window, and now and then a burst far above them."""
        rng = random.Random(seed)
        return [(200.0 if rng.random() < 0.05 else float(rng.randint(0, 9)), w) for w in example_windows(rng)]
