"""Device / Network Scan: an improbable number of distinct internal destinations, and of failed connections.

Two count behaviours per device and per event-time window: ``distinct_internal_destinations`` and
``failed_connections``. Each is a :class:`~master.models.gamma_poisson.CountModel` for the device, and a
pooled one for the whole network (:class:`PopulationCountModel`).

A device borrows the network's belief until its own history suffices: the predictive uses
``Gamma(n0*m + a_dev, n0 + b_dev)`` where ``m`` is the network's mean rate and ``n0`` (``prior_strength``)
the number of windows that prior is worth. With no history the device looks like its peers; after ``n0``
windows of its own, half of the belief is its own, and it keeps shifting toward it.

Breach: the fan-out is what makes a scan, so the model breaches when
``P(destinations >= observed) < breach_probability`` (and at least ``min_destinations`` were contacted).
Failed connections do not breach on their own (an application retrying a dead database is not a scan), but
they add to the score.

Score (0-100) from the combined surprise ``s = -log10 P_dest - log10 P_failed`` (the joint tail if the two
behaviours were independent): ``s`` at the breach threshold ``s0 = -log10 breach_probability`` maps to 50
and ``s_full`` (20 decades, i.e. P = 1e-20) to 100, linearly in between (and 0..50 linearly below the
threshold, for scores that do not breach), clamped to [0, 100]. With the
default threshold 1e-4, 60 ~ P 6e-8 and 75 = P 1e-12.
"""

from __future__ import annotations

import datetime
import functools
import math
import random
import zoneinfo
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Self

from master.catalog import (
    DETECTOR_BY_NAME,
    FAILED,
    FEATURE_BY_NAME,
    FEATURE_NAMES,
    NETWORK_SCAN,
    CountDetector,
)
from master.catalog import INTERNAL_DESTINATIONS as DESTINATIONS
from master.models.belief import Score, example_windows
from master.models.gamma_poisson import CountModel, Gamma, predictive_sf

SCHEMA = 1
NAME = NETWORK_SCAN
FEATURES = FEATURE_NAMES
__all__ = ["DESTINATIONS", "FAILED", "FEATURES", "NAME"]

# Probabilities are floored here before taking logs: beyond 300 decades nothing changes the decision.
_MIN_P = 1e-300
_FULL_SCORE_SURPRISE = 20.0


@dataclass(frozen=True)
class CountParams:
    """Hyper-parameters, fixed for the life of a model (from the master's config)."""

    window_s: float = 60.0
    breach_probability: float = 1e-4
    half_life_s: float = 7 * 24 * 3600.0
    # Windows of evidence the network's belief is worth to a device that has none of its own.
    prior_strength: float = 10.0
    # Confidence cap on the predictive (see Gamma.tempered): bursts of 3-4x a device's mean stay plausible.
    max_evidence: float = 4.0
    max_idle_windows: int = 10
    min_destinations: int = 10
    # Windows of pooled evidence a peer group needs before its belief replaces the network's.
    min_group_evidence: float = 30.0
    # How long the network must have been learned before a device or an external endpoint counts as new.
    new_device_grace_s: float = 3600.0
    # IANA time zone of the site: the hour-of-week rhythm is the office's, not UTC's.
    timezone: str = "UTC"
    # Weak hyper-prior for a network with no history at all: about one event per window.
    hyper_alpha: float = 1.0
    hyper_beta: float = 1.0

    @property
    def half_life_windows(self) -> float:
        return self.half_life_s / self.window_s

    def window_of(self, t: float) -> int:
        return math.floor(t / self.window_s)


@dataclass(frozen=True)
class FeatureScore:
    feature: str
    observed: float
    expected: float
    probability: float


@dataclass(frozen=True)
class CountScore(Score):
    """A detector's judgement of a window: ``probability`` is 10^-surprise, the joint tail of its features
    as if they were independent."""

    features: tuple[FeatureScore, ...]
    surprise: float
    score: int

    def feature(self, name: str) -> FeatureScore | None:
        return next((f for f in self.features if f.feature == name), None)


# The behaviour families a peer-group signature is made of (see DeviceCountModel.role).
ROLE_FAMILIES: tuple[tuple[str, ...], ...] = (
    (DESTINATIONS,),
    (FAILED,),
    ("ldap_binds", "ldap_searches"),
    ("distinct_auth_usernames",),
    ("distinct_ptr_queries",),
    ("external_upload_kib",),
)


def hyper_mean(feature: str, params: CountParams) -> float:
    """The network's starting rate for ``feature`` before it has learned anything."""
    spec = FEATURE_BY_NAME.get(feature)
    base = params.hyper_alpha / params.hyper_beta
    return base * spec.hyper_mean if spec is not None else base


def score_from_surprise(surprise: float, breach_probability: float) -> int:
    """The documented 0-100 mapping (module docstring): piecewise linear in decades of improbability."""
    s0 = -math.log10(breach_probability)
    full = max(_FULL_SCORE_SURPRISE, s0 + 1.0)
    below = 50.0 * surprise / s0
    above = 50.0 + 50.0 * (surprise - s0) / (full - s0)
    value = below if surprise <= s0 else above
    return int(min(100, max(0, round(value))))


class _LazyCounts(Mapping[str, CountModel]):
    """One CountModel per feature, built from its stored state only when first used.

    A batch loads every touched device's model but scores only the detectors a window could trip and
    learns only when a window closes: most features of most devices are never looked at in a batch, and
    their stored state is written back as it was read.
    """

    def __init__(self, make: Callable[[], CountModel], stored: Mapping[str, Any] | None = None) -> None:
        self._make = make
        self._stored = dict(stored or {})
        self._built: dict[str, CountModel] = {}
        # to_dict would differ from what was stored even without learning: a feature built that was not
        # stored (it gains a blank entry), or a stored one the catalog no longer has (it is dropped).
        self.reshaped = any(f not in FEATURE_BY_NAME for f in self._stored)

    def __getitem__(self, feature: str) -> CountModel:
        model = self._built.get(feature)
        if model is None:
            if feature not in FEATURE_BY_NAME:
                raise KeyError(feature)
            model = self._make()
            sub = self._stored.get(feature)
            if sub is not None:
                model.load_dict(sub)
            else:
                self.reshaped = True
            self._built[feature] = model
        return model

    def __iter__(self) -> Iterator[str]:
        return iter(FEATURES)

    def __len__(self) -> int:
        return len(FEATURES)

    def to_dict(self) -> dict[str, Any]:
        out = {f: sub for f, sub in self._stored.items() if f in FEATURE_BY_NAME}
        out.update({f: m.to_dict() for f, m in self._built.items()})
        return out


class _CountsState:
    """Serialised state shared by the device and population models: one CountModel per feature."""

    kind = "scan model"
    # The top-level fields to_dict writes.
    _fields = frozenset({"schema", "counts"})

    def __init__(self, params: CountParams, stored: Mapping[str, Any] | None = None) -> None:
        self.params = params
        self.counts = _LazyCounts(lambda: self._count_model(params), stored)
        # New, or learned since it was loaded (see unsaved).
        self._changed = True

    @property
    def unsaved(self) -> bool:
        """to_dict differs from the stored document. Scoring only reads a model, so a batch need not
        write back (re-encode) the models it merely scored with: they would be written byte for byte."""
        return self._changed or self.counts.reshaped

    @staticmethod
    def _count_model(params: CountParams) -> CountModel:
        return CountModel(params.half_life_windows, params.max_idle_windows)

    def to_dict(self) -> dict[str, Any]:
        return {"schema": SCHEMA, "counts": self.counts.to_dict()}

    def hyper(self) -> dict[str, Any]:
        return {"params": self.params}

    @classmethod
    def from_dict(cls, state: Mapping[str, Any], params: CountParams) -> Self:
        if state.get("schema") != SCHEMA:
            raise ValueError(f"unsupported {cls.kind} schema {state.get('schema')!r}")
        model = cls(params)
        model.counts = _LazyCounts(lambda: model._count_model(params), state["counts"])
        # A document of another shape (written by an older version) is rewritten as to_dict shapes it.
        model._changed = state.keys() != cls._fields
        return model

    @classmethod
    def example(cls) -> Self:
        return cls(CountParams())

    @classmethod
    def example_stream(cls, seed: int) -> list[tuple[dict[str, float], int]]:
        """A device's windows: most with a few destinations and failed connections, the catalog's other
        behaviours now and then (so most features are missing from most windows), and now and then a
        burst far above the usual (a scan, a spray, a dump)."""
        rng = random.Random(seed)
        presence = {f: 0.9 if f in (DESTINATIONS, FAILED) else 0.2 for f in FEATURES}
        stream = []
        for window in example_windows(rng):
            x = {
                f: 200.0 if rng.random() < 0.04 else float(rng.randint(0, 9))
                for f in FEATURES
                if rng.random() < presence[f]
            }
            stream.append((x, window))
        return stream


HOURS_PER_WEEK = 168
# Unix time 0 was a Thursday: shift so that hour 0 of the week is Monday 00:00 UTC.
_EPOCH_WEEK_OFFSET_H = 72
# An hour-of-week's profile halves its weight every SEASON_HALF_LIFE_WEEKS weeks of that hour.
SEASON_HALF_LIFE_WEEKS = 4.0
# Hours of (device-)windows an hour-of-week needs before its profile is trusted; factors are clamped.
SEASON_MIN_HOURS = 2.0
SEASON_FACTOR_RANGE = (0.1, 10.0)


@functools.lru_cache(maxsize=4096)
def hour_of_week(window: int, window_s: float, timezone: str = "UTC") -> int:
    """Hour of the week (Monday 00:00 = 0) of a window's start, in the site's time zone (DST included)."""
    if timezone == "UTC":
        return (math.floor(window * window_s / 3600.0) + _EPOCH_WEEK_OFFSET_H) % HOURS_PER_WEEK
    local = datetime.datetime.fromtimestamp(window * window_s, zoneinfo.ZoneInfo(timezone))
    return local.weekday() * 24 + local.hour


class Seasonality:
    """How busy each hour of the week is, per behaviour family, for the whole network.

    Per family and hour-of-week: decayed sums of the family's counts and of the windows learned. The factor
    for an hour is its mean over the overall mean (1 until the hour has ``SEASON_MIN_WINDOWS`` windows),
    clamped; device beliefs are scaled by it, so a Monday-morning logon storm is expected on Monday
    mornings, and the same burst at 3 a.m. on a Sunday is not.
    """

    def __init__(self, window_s: float) -> None:
        self.sums: dict[str, list[float]] = {}
        self.windows: dict[str, list[float]] = {}
        # One hour-of-week receives 3600 / window_s windows per week (per device).
        per_week = 3600.0 / window_s
        self.decay = float(0.5 ** (1.0 / (SEASON_HALF_LIFE_WEEKS * per_week)))
        self.min_windows = SEASON_MIN_HOURS * per_week

    def learn(self, family: str, value: float, hour: int) -> None:
        sums = self.sums.setdefault(family, [0.0] * HOURS_PER_WEEK)
        windows = self.windows.setdefault(family, [0.0] * HOURS_PER_WEEK)
        sums[hour] = sums[hour] * self.decay + value
        windows[hour] = windows[hour] * self.decay + 1.0

    def factor(self, family: str, hour: int) -> float:
        windows = self.windows.get(family)
        if windows is None or windows[hour] < self.min_windows:
            return 1.0
        sums = self.sums[family]
        overall_windows = sum(windows)
        overall = sum(sums) / overall_windows if overall_windows else 0.0
        if overall <= 0:
            return 1.0
        low, high = SEASON_FACTOR_RANGE
        return min(high, max(low, (sums[hour] / windows[hour]) / overall))

    def to_dict(self) -> dict[str, Any]:
        return {"sums": self.sums, "windows": self.windows}

    def load_dict(self, doc: Mapping[str, Any]) -> None:
        self.sums = {f: [float(v) for v in vs] for f, vs in doc.get("sums", {}).items()}
        self.windows = {f: [float(v) for v in vs] for f, vs in doc.get("windows", {}).items()}


def _family(feature: str) -> str:
    spec = FEATURE_BY_NAME.get(feature)
    return (spec.family or feature) if spec is not None else feature


class PopulationCountModel(_CountsState):
    """The network-wide belief per feature, pooled from every device's closed windows; its seasonality."""

    kind = "population model"
    _fields = frozenset({"schema", "counts", "season"})

    def __init__(self, params: CountParams) -> None:
        super().__init__(params)
        self.season = Seasonality(params.window_s)

    def to_dict(self) -> dict[str, Any]:
        return {**super().to_dict(), "season": self.season.to_dict()}

    @classmethod
    def from_dict(cls, state: Mapping[str, Any], params: CountParams) -> Self:
        model = super().from_dict(state, params)
        season = state.get("season", {})
        model.season.load_dict(season)
        if season.keys() != {"sums", "windows"}:
            model._changed = True
        return model

    def season_factor(self, feature: str, window: int) -> float:
        hour = hour_of_week(window, self.params.window_s, self.params.timezone)
        return self.season.factor(_family(feature), hour)

    @staticmethod
    def _count_model(params: CountParams) -> CountModel:
        # Zeros are passed explicitly by the devices that learned them, so no gap inference here.
        return CountModel(params.half_life_windows, max_idle_windows=0)

    def learn_one(
        self,
        x: Mapping[str, float],
        *,
        at: int,
        zeros: Mapping[str, int] | None = None,
        seasonal: bool = True,
    ) -> None:
        """Pool one device's closed window ``at``, with the empty windows it counted as zeros."""
        self._changed = True
        families: dict[str, float] = {}
        for feature, model in self.counts.items():
            if feature in x:
                model.learn_one(x[feature], at=at, zeros=(zeros or {}).get(feature, 0))
                family = _family(feature)
                families[family] = families.get(family, 0.0) + x[feature]
        if not seasonal:
            return
        hour = hour_of_week(at, self.params.window_s, self.params.timezone)
        for family, value in families.items():
            self.season.learn(family, value, hour)

    def score_one(self, x: Mapping[str, float], *, at: int) -> CountScore:
        """The network's judgement of a window: what a device with no history of its own gets from the
        Network Scan detector (the path every newcomer takes)."""
        return DeviceCountModel(self.params).score_one(x, at=at, population=self)

    def evidence(self, feature: str) -> float:
        """Windows (decayed) this pooled belief rests on."""
        return self.counts[feature].beta

    def mean(self, feature: str, window: int | None = None) -> float:
        post = self.counts[feature].posterior(window)
        # The hyper-prior is worth hyper_beta windows at the feature's own starting rate.
        hyper_alpha = self.params.hyper_beta * hyper_mean(feature, self.params)
        return (hyper_alpha + post.alpha) / (self.params.hyper_beta + post.beta)

    def prior(self, feature: str, window: int | None = None) -> Gamma:
        """What a device with no history should believe: the network's mean, worth prior_strength windows."""
        n0 = self.params.prior_strength
        return Gamma(n0 * self.mean(feature, window), n0)


class DeviceCountModel(_CountsState):
    """One device's scan model: ``score_one`` a (possibly still open) window, ``learn_one`` a closed one."""

    name = NAME

    def belief(
        self,
        feature: str,
        *,
        window: int,
        population: PopulationCountModel | None,
        group: PopulationCountModel | None = None,
    ) -> Gamma:
        own = self.counts[feature].posterior(window)
        if group is not None and group.evidence(feature) >= self.params.min_group_evidence:
            # Peers that behave alike (or, for a newcomer, share its subnet) say more than the whole network.
            prior = group.prior(feature, window)
        elif population is not None:
            prior = population.prior(feature, window)
        else:
            n0 = self.params.prior_strength
            prior = Gamma(n0 * hyper_mean(feature, self.params), n0)
        belief = Gamma(prior.alpha + own.alpha, prior.beta + own.beta).tempered(self.params.max_evidence)
        if population is not None:
            # Same confidence, a mean that follows the network's hour-of-week rhythm.
            factor = population.season_factor(feature, window)
            if factor != 1.0:
                belief = Gamma(belief.alpha * factor, belief.beta)
        return belief

    def feature_score(
        self,
        feature: str,
        observed: float,
        *,
        window: int,
        population: PopulationCountModel | None,
        group: PopulationCountModel | None = None,
    ) -> FeatureScore:
        belief = self.belief(feature, window=window, population=population, group=group)
        return FeatureScore(feature, float(observed), belief.mean, predictive_sf(observed, belief))

    def score_detector(
        self,
        detector: CountDetector,
        x: Mapping[str, float],
        *,
        window: int,
        population: PopulationCountModel | None = None,
        group: PopulationCountModel | None = None,
    ) -> CountScore:
        """Score one catalog detector without learning; features missing from ``x`` are left out."""
        scores: list[FeatureScore] = []
        breach = False
        for feature, minimum in detector.triggers:
            if x.get(feature, 0.0) <= 0:
                continue
            fs = self.feature_score(feature, x[feature], window=window, population=population, group=group)
            scores.append(fs)
            if fs.observed >= self._minimum(detector, feature, minimum) and (
                fs.probability < self.params.breach_probability
            ):
                breach = True
        for feature in detector.support:
            if feature in x and x[feature] > 0:
                scores.append(
                    self.feature_score(feature, x[feature], window=window, population=population, group=group)
                )
        # The score weighs the most surprising trigger and the supporting evidence, not every trigger: two
        # views of one scan (hosts and host:port targets) must not count twice.
        triggers = [f for f in scores if f.feature in dict(detector.triggers)]
        best = min((f.probability for f in triggers), default=1.0)
        surprise = -math.log10(max(best, _MIN_P)) + sum(
            -math.log10(max(f.probability, _MIN_P)) for f in scores if f not in triggers
        )
        return CountScore(
            probability=10.0**-surprise,
            breach=breach,
            features=tuple(scores),
            surprise=surprise,
            score=score_from_surprise(surprise, self.params.breach_probability),
        )

    def may_breach(self, detector: CountDetector, x: Mapping[str, float]) -> bool:
        """Cheap pre-check before scoring: no trigger reaches its floor, so no probability can breach."""
        return any(x.get(f, 0.0) >= self._minimum(detector, f, m) for f, m in detector.triggers)

    def _minimum(self, detector: CountDetector, feature: str, minimum: int) -> int:
        # The Network Scan's host floor is configurable (master.scan_min_destinations).
        if detector.name == NAME and feature == DESTINATIONS:
            return self.params.min_destinations
        return minimum

    def score_one(
        self, x: Mapping[str, float], *, at: int, population: PopulationCountModel | None = None
    ) -> CountScore:
        """The Network Scan detector (the first catalog model) on window ``at``, as scored since schema 1."""
        return self.score_detector(DETECTOR_BY_NAME[NAME], x, window=at, population=population)

    def role(self) -> str | None:
        """A behaviour signature from the device's own rates (None until it has history of its own).

        Per family, the order of magnitude of its rate per window: 0 (< 0.1), 1 (< 1), 2 (< 10), 3. Devices
        with the same signature form a peer group: servers that fan out, workstations that mostly browse,
        a directory-heavy admin box.
        """
        if self.counts[DESTINATIONS].beta < self.params.prior_strength:
            return None
        digits = []
        for family in ROLE_FAMILIES:
            rate = sum(self.counts[f].posterior().mean for f in family)
            digits.append(str(0 if rate < 0.1 else 1 if rate < 1 else 2 if rate < 10 else 3))
        return "role-" + "".join(digits)

    def learn_one(self, x: Mapping[str, float], *, at: int) -> dict[str, int]:
        """Learn the closed window ``at``; returns the empty windows counted as zeros per feature (for
        pooling)."""
        self._changed = True
        zeros: dict[str, int] = {}
        for feature, model in self.counts.items():
            if feature in x:
                zeros[feature] = model.gap_zeros(at)
                model.learn_one(x[feature], at=at)
        return zeros
