"""Device / Network Scan: learns a baseline, breaches on a scan, tolerates ordinary bursts."""

from __future__ import annotations

import json
import random

import pytest

from master.models.counts import (
    DESTINATIONS,
    FAILED,
    CountParams,
    DeviceCountModel,
    PopulationCountModel,
    score_from_surprise,
)

PARAMS = CountParams(window_s=60.0, breach_probability=1e-4, half_life_s=7 * 24 * 3600.0)


def _baseline(model: DeviceCountModel, population: PopulationCountModel, windows: int, seed: int = 1) -> None:
    rng = random.Random(seed)
    for w in range(windows):
        x = {DESTINATIONS: float(rng.choice([1, 2, 3, 3, 4, 5, 6])), FAILED: float(rng.random() < 0.1)}
        zeros = model.learn_one(x, at=w)
        population.learn_one(x, at=w, zeros=zeros)


def test_scan_after_baseline_breaches_with_a_high_score() -> None:
    model, population = DeviceCountModel(PARAMS), PopulationCountModel(PARAMS)
    _baseline(model, population, 500)
    result = model.score_one({DESTINATIONS: 212, FAILED: 198}, at=500, population=population)
    assert result.breach
    assert result.score >= 95
    dest = result.feature(DESTINATIONS)
    assert dest is not None
    assert 3.0 < dest.expected < 4.0
    assert dest.probability < 1e-50


def test_benign_variation_does_not_breach() -> None:
    model, population = DeviceCountModel(PARAMS), PopulationCountModel(PARAMS)
    _baseline(model, population, 500)
    for count in range(0, 11):
        result = model.score_one({DESTINATIONS: count, FAILED: 1}, at=500, population=population)
        assert not result.breach, count


def test_fewer_than_min_destinations_never_breach() -> None:
    model = DeviceCountModel(PARAMS)
    population = PopulationCountModel(PARAMS)
    _baseline(model, population, 200)
    # A fully unexpected but tiny fan-out is not a network scan.
    result = model.score_one({DESTINATIONS: 9, FAILED: 50}, at=200, population=population)
    assert not result.breach


def test_new_device_borrows_the_network_prior() -> None:
    population = PopulationCountModel(PARAMS)
    # The network: many devices, each around 20 destinations a minute (a server-heavy segment).
    for w in range(300):
        for _ in range(10):
            population.learn_one({DESTINATIONS: 20.0, FAILED: 0.0}, at=w, zeros={})
    newcomer = DeviceCountModel(PARAMS)
    belief = newcomer.belief(DESTINATIONS, window=300, population=population)
    assert belief.mean == pytest.approx(20.0, rel=0.01)
    # 25 is ordinary on this network, so it is ordinary for the newcomer too ...
    assert not newcomer.score_one({DESTINATIONS: 25}, at=300, population=population).breach
    # ... while the same count on a quiet network breaches.
    quiet = PopulationCountModel(PARAMS)
    for w in range(300):
        quiet.learn_one({DESTINATIONS: 1.0}, at=w, zeros={})
    assert newcomer.score_one({DESTINATIONS: 25}, at=300, population=quiet).breach


def test_own_history_outweighs_the_prior_once_it_has_some() -> None:
    population = PopulationCountModel(PARAMS)
    for w in range(300):
        population.learn_one({DESTINATIONS: 2.0}, at=w, zeros={})
    server = DeviceCountModel(PARAMS)
    for w in range(200):
        server.learn_one({DESTINATIONS: 40.0}, at=w)
    belief = server.belief(DESTINATIONS, window=200, population=population)
    # Own evidence ~200 windows vs prior worth 10: the mean sits near the device's own 40.
    assert belief.mean > 35
    assert not server.score_one({DESTINATIONS: 45}, at=200, population=population).breach


def test_decay_lets_the_model_revise() -> None:
    params = CountParams(window_s=60.0, half_life_s=60.0 * 50)
    model = DeviceCountModel(params)
    for w in range(500):
        model.learn_one({DESTINATIONS: 2.0}, at=w)
    for w in range(500, 1000):
        model.learn_one({DESTINATIONS: 30.0}, at=w)
    # After ten half-lives the old behaviour is ~0.1% of the belief.
    assert model.counts[DESTINATIONS].posterior(1000).mean == pytest.approx(30.0, rel=0.02)


def test_score_mapping_is_documented_linear() -> None:
    assert score_from_surprise(4.0, 1e-4) == 50
    assert score_from_surprise(20.0, 1e-4) == 100
    assert score_from_surprise(12.0, 1e-4) == 75
    assert score_from_surprise(300.0, 1e-4) == 100
    assert score_from_surprise(0.0, 1e-4) == 0


def test_state_is_plain_json() -> None:
    model, population = DeviceCountModel(PARAMS), PopulationCountModel(PARAMS)
    _baseline(model, population, 20)
    for state in (model.to_dict(), population.to_dict()):
        assert json.loads(json.dumps(state)) == state
        assert state["schema"] == 1


def test_hour_of_week_seasonality_expects_the_busy_hour() -> None:
    """Four weeks in which Monday 09:00 UTC is ten times busier than the rest of the week."""
    from master.models.counts import hour_of_week

    params = CountParams(window_s=600.0, half_life_s=90 * 24 * 3600.0)
    model, population = DeviceCountModel(params), PopulationCountModel(params)
    monday_9 = None
    rng = random.Random(4)
    per_week = 168 * 6
    first = 480_072 * 6  # hour 480,072 since the epoch is a Monday 00:00 UTC
    for w in range(first, first + 4 * per_week):
        busy = hour_of_week(w, params.window_s) == 9
        if busy and monday_9 is None:
            monday_9 = w
        x = {DESTINATIONS: float(rng.randint(25, 35) if busy else rng.randint(2, 4)), FAILED: 0.0}
        population.learn_one(x, at=w, zeros=model.learn_one(x, at=w))
    assert monday_9 is not None
    busy_week_later = monday_9 + 4 * per_week  # Monday 09:00, the fifth week
    quiet = busy_week_later - 6 * 6  # Monday 03:00
    assert population.season_factor(DESTINATIONS, busy_week_later) > 3.0
    assert population.season_factor(DESTINATIONS, quiet) < 1.1  # most hours are the quiet ones
    at_nine = model.score_one({DESTINATIONS: 30.0}, at=busy_week_later, population=population)
    at_three = model.score_one({DESTINATIONS: 30.0}, at=quiet, population=population)
    assert not at_nine.breach and at_three.breach
    # The state keeps the profile.
    restored = PopulationCountModel.from_dict(json.loads(json.dumps(population.to_dict())), params)
    assert restored.season_factor(DESTINATIONS, busy_week_later) == population.season_factor(
        DESTINATIONS, busy_week_later
    )


def test_hour_of_week_follows_the_site_time_zone() -> None:
    from master.models.counts import hour_of_week

    # 2026-07-06 07:00 UTC is a Monday, 09:00 in Berlin (summer time) and 03:00 in New York.
    window = 1783321200 // 60
    assert hour_of_week(window, 60.0) == 7
    assert hour_of_week(window, 60.0, "Europe/Berlin") == 9
    assert hour_of_week(window, 60.0, "America/New_York") == 3
    # In January Berlin is UTC+1: the same UTC hour is an hour earlier locally.
    january = 1767596400 // 60  # 2026-01-05 07:00 UTC, a Monday
    assert hour_of_week(january, 60.0, "Europe/Berlin") == 8


def test_every_catalog_detector_scores_the_same_after_a_round_trip() -> None:
    """The conformance suite scores the Network Scan (score_one); the master scores every catalog detector
    with score_detector, against the device's, its peer group's and the network's beliefs."""
    from master.catalog import DETECTORS
    from master.store import decode, encode

    stream = DeviceCountModel.example_stream(7)
    model, population = DeviceCountModel(PARAMS), PopulationCountModel(PARAMS)
    for x, w in stream[:200]:
        population.learn_one(x, at=w, zeros=model.learn_one(x, at=w))
    twin = DeviceCountModel.from_dict(decode(encode(model.to_dict())) or {}, PARAMS)
    twin_network = PopulationCountModel.from_dict(decode(encode(population.to_dict())) or {}, PARAMS)
    breaches = set()
    for x, w in stream[200:]:
        for detector in DETECTORS:
            ours = model.score_detector(detector, x, window=w, population=population, group=population)
            theirs = twin.score_detector(detector, x, window=w, population=twin_network, group=twin_network)
            assert theirs == ours
            if ours.breach:
                breaches.add(detector.name)
        population.learn_one(x, at=w, zeros=model.learn_one(x, at=w))
        twin_network.learn_one(x, at=w, zeros=twin.learn_one(x, at=w))
    # The stream's bursts trip more than one detector, so breaching scores are compared too.
    assert len(breaches) >= 3, breaches
