"""One conformance suite over every model (after river's checks): round-trip, determinism, missing data."""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

from master.catalog import DETECTORS
from master.models.counts import DESTINATIONS, FAILED, CountParams, DeviceCountModel, PopulationCountModel
from master.models.dirichlet import CategoryModel, fixed
from master.models.gamma_poisson import CountModel, predictive_sf
from master.models.intervals import DeviceBeacons

PARAMS = CountParams()


@dataclass
class Adapter:
    """How the suite drives one model: make, learn, score, and restore from state."""

    name: str
    make: Callable[[], Any]
    learn: Callable[[Any, dict[str, float], int], None]
    score: Callable[[Any, dict[str, float], int], tuple[float, ...]]
    restore: Callable[[dict[str, Any]], Any]


def _count_score(m: CountModel, x: dict[str, float], w: int) -> tuple[float, ...]:
    if DESTINATIONS not in x:
        return ()
    return (predictive_sf(x[DESTINATIONS], m.posterior(w)), m.posterior(w).mean)


def _count_learn(m: CountModel, x: dict[str, float], w: int) -> None:
    if DESTINATIONS in x:
        m.learn_one(x[DESTINATIONS], window=w)


def _scan_score(m: DeviceCountModel, x: dict[str, float], w: int) -> tuple[float, ...]:
    r = m.score_one(x, window=w)
    return (*(v for f in r.features for v in (f.probability, f.expected)), r.surprise, r.score, r.breach)


def _catalog_score(m: DeviceCountModel, x: dict[str, float], w: int) -> tuple[float, ...]:
    """Every count detector of the catalog over the same device model (features it lacks are zero)."""
    if not x:
        return ()
    out: list[float] = []
    for detector in DETECTORS:
        # Spread the two stream features over each detector's triggers so every detector sees data.
        feats = {f: x[DESTINATIONS] * (i + 1) for i, (f, _) in enumerate(detector.triggers)}
        feats |= {f: x[FAILED] for f in detector.support}
        r = m.score_detector(detector, feats, window=w)
        out += [*(v for f in r.features for v in (f.probability, f.expected)), r.surprise, r.score, r.breach]
    return tuple(out)


def _catalog_learn(m: DeviceCountModel, x: dict[str, float], w: int) -> None:
    if x:
        feats = {d.triggers[0][0]: x[DESTINATIONS] for d in DETECTORS} | {FAILED: x[FAILED]}
        m.learn_one(feats, window=w)


BASE = fixed({"c0": 0.5}, 0.05)


def _category_learn(m: CategoryModel, x: dict[str, float], w: int) -> None:
    if DESTINATIONS in x:
        m.learn_one(f"c{int(x[DESTINATIONS]) % 4}", w * 60.0)


def _category_score(m: CategoryModel, x: dict[str, float], w: int) -> tuple[float, ...]:
    if DESTINATIONS not in x:
        return ()
    return (m.prob(f"c{int(x[DESTINATIONS])}", w * 60.0, BASE), m.total(w * 60.0))


def _beacon_learn(m: DeviceBeacons, x: dict[str, float], w: int) -> None:
    if DESTINATIONS in x:
        m.pair(f"p{int(x[DESTINATIONS]) % 3}").add(w * 30.0 + x[FAILED], 100.0 * x[FAILED])


def _beacon_score(m: DeviceBeacons, x: dict[str, float], w: int) -> tuple[float, ...]:
    if DESTINATIONS not in x:
        return ()
    stats = m.pairs.get(f"p{int(x[DESTINATIONS]) % 3}")
    if stats is None:
        return (0.0,)
    return (stats.score(), stats.cv_interval(), stats.cv_size(), float(stats.n))


def _pop_score(m: PopulationCountModel, x: dict[str, float], w: int) -> tuple[float, ...]:
    return tuple(predictive_sf(x[f], m.prior(f, w)) for f in (DESTINATIONS, FAILED) if f in x)


MODELS = [
    Adapter(
        "count",
        lambda: CountModel(100.0, 5),
        _count_learn,
        _count_score,
        lambda s: CountModel.from_dict(s, 100.0, 5),
    ),
    Adapter(
        "scan",
        lambda: DeviceCountModel(PARAMS),
        lambda m, x, w: m.learn_one(x, window=w),
        _scan_score,
        lambda s: DeviceCountModel.from_dict(s, PARAMS),
    ),
    Adapter(
        "catalog",
        lambda: DeviceCountModel(PARAMS),
        _catalog_learn,
        _catalog_score,
        lambda s: DeviceCountModel.from_dict(s, PARAMS),
    ),
    Adapter(
        "category",
        lambda: CategoryModel(3600.0 * 24, alpha=2.0, max_categories=3),
        _category_learn,
        _category_score,
        lambda s: CategoryModel(3600.0 * 24, alpha=2.0, max_categories=3).load_dict(s),
    ),
    Adapter(
        "beacon",
        DeviceBeacons,
        _beacon_learn,
        _beacon_score,
        DeviceBeacons.from_dict,
    ),
    Adapter(
        "population",
        lambda: PopulationCountModel(PARAMS),
        lambda m, x, w: m.learn_one(x, window=w),
        _pop_score,
        lambda s: PopulationCountModel.from_dict(s, PARAMS),
    ),
]


def _stream(seed: int, n: int = 300) -> list[tuple[dict[str, float], int]]:
    rng = random.Random(seed)
    out, w = [], 0
    for _ in range(n):
        w += rng.choice([1, 1, 1, 2, 7, 40])
        out.append(({DESTINATIONS: float(rng.randint(0, 9)), FAILED: float(rng.randint(0, 2))}, w))
    return out


@pytest.fixture(params=MODELS, ids=lambda a: a.name)
def adapter(request: pytest.FixtureRequest) -> Adapter:
    return request.param  # type: ignore[no-any-return]


def test_round_trip_gives_identical_scores(adapter: Adapter) -> None:
    model = adapter.make()
    stream = _stream(1)
    for x, w in stream[:200]:
        adapter.learn(model, x, w)
    state = json.loads(json.dumps(model.to_dict()))  # through the same encoding the store uses
    twin = adapter.restore(state)
    for x, w in stream[200:]:
        assert adapter.score(twin, x, w) == adapter.score(model, x, w)
        adapter.learn(model, x, w)
        adapter.learn(twin, x, w)
    assert twin.to_dict() == model.to_dict()


def test_deterministic(adapter: Adapter) -> None:
    runs = []
    for _ in range(2):
        model = adapter.make()
        scores = []
        for x, w in _stream(5):
            scores.append(adapter.score(model, x, w))
            adapter.learn(model, x, w)
        runs.append((scores, model.to_dict()))
    assert runs[0] == runs[1]


def test_score_does_not_learn(adapter: Adapter) -> None:
    model = adapter.make()
    for x, w in _stream(2, 50):
        adapter.learn(model, x, w)
    before = model.to_dict()
    adapter.score(model, {DESTINATIONS: 500.0, FAILED: 500.0}, 10_000)
    assert model.to_dict() == before


def test_missing_features_are_tolerated(adapter: Adapter) -> None:
    model = adapter.make()
    for x, w in _stream(3, 50):
        adapter.learn(model, x, w)
    before = model.to_dict()
    adapter.learn(model, {}, 10_000)
    assert model.to_dict() == before
    assert adapter.score(model, {}, 10_001) in ((), (0.0, 0, False))


def test_state_has_a_schema_and_rejects_others(adapter: Adapter) -> None:
    state = adapter.make().to_dict()
    assert state["schema"] == 1
    with pytest.raises(ValueError):
        adapter.restore({**state, "schema": 99})
