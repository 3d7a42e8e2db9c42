"""The Gamma-Poisson count model checked against hand computation."""

from __future__ import annotations

import math

import pytest

from master.models.gamma_poisson import CountModel, Gamma, nb_log_pmf, nb_sf, predictive_sf


def test_learn_without_decay_is_the_conjugate_update() -> None:
    # Half-life so long that decay is invisible: alpha = sum of counts, beta = number of windows.
    m = CountModel(half_life_windows=1e12, max_idle_windows=0)
    for w, x in enumerate([2, 5, 0, 3]):
        m.learn_one(x, at=w)
    assert m.alpha == pytest.approx(10.0)
    assert m.beta == pytest.approx(4.0)
    assert m.posterior().mean == pytest.approx(2.5)


def test_decay_halves_old_evidence_after_one_half_life() -> None:
    m = CountModel(half_life_windows=2.0, max_idle_windows=0)
    m.learn_one(8, at=0)
    m.learn_one(0, at=2)  # two windows later: the first window weighs 1/2
    assert m.alpha == pytest.approx(8 * 0.5)
    assert m.beta == pytest.approx(1 * 0.5 + 1)
    # Predicting further ahead decays both numbers: same mean, less confidence.
    later = m.posterior(window=4)
    assert later.mean == pytest.approx(m.posterior().mean)
    assert later.beta == pytest.approx(m.beta * 0.5)


def test_gap_counts_only_bounded_idle_windows_as_zeros() -> None:
    d = 0.5 ** (1 / 10.0)
    m = CountModel(half_life_windows=10.0, max_idle_windows=3)
    m.learn_one(4, at=0)
    m.learn_one(4, at=2)  # one empty window between: counted
    assert m.beta == pytest.approx(d**2 + 1 + d)
    before = m.beta
    m.learn_one(4, at=100)  # 97 empty windows: only 3 count; the device was away, not idle
    assert m.beta == pytest.approx(before * d**98 + 1 + d + d**2 + d**3)


def test_negative_binomial_with_shape_one_is_geometric() -> None:
    # r = 1: P(X >= k) = (1 - p)^k exactly.
    for p in (0.2, 0.5, 0.9):
        for k in (0, 1, 3, 10, 200):
            assert nb_sf(k, 1.0, p) == pytest.approx((1 - p) ** k, rel=1e-9, abs=1e-300)


def test_negative_binomial_tail_matches_direct_sum() -> None:
    r, p = 7.5, 0.6
    pmf = [math.exp(nb_log_pmf(j, r, p)) for j in range(400)]
    assert sum(pmf) == pytest.approx(1.0, abs=1e-12)
    for k in (1, 3, 5, 12, 30, 60):
        assert nb_sf(k, r, p) == pytest.approx(sum(pmf[k:]), rel=1e-9)


def test_predictive_from_posterior_hand_computed() -> None:
    # Gamma(2, 1): predictive NB(r=2, p=1/2); P(X=0)=1/4, P(X=1)=2/8, so P(X>=2) = 1/2.
    assert predictive_sf(2, Gamma(2.0, 1.0)) == pytest.approx(0.5)
    assert predictive_sf(0, Gamma(2.0, 1.0)) == 1.0


def test_tempering_keeps_the_mean_and_widens_the_tail() -> None:
    confident = Gamma(3000.0, 1000.0)
    tempered = confident.tempered(4.0)
    assert tempered.mean == pytest.approx(confident.mean)
    assert tempered.beta == 4.0
    assert predictive_sf(12, tempered) > 5 * predictive_sf(12, confident)


def test_invalid_counts_are_refused() -> None:
    m = CountModel(10.0)
    with pytest.raises(ValueError):
        m.learn_one(-1, at=0)
    with pytest.raises(ValueError):
        m.learn_one(float("nan"), at=0)
