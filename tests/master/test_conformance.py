"""One conformance suite over every belief model (after river's checks), derived from ``BELIEF_MODELS``.

Each check drives a model through the BeliefModel protocol alone (master/models/belief.py): its example,
its example stream, learn_one, score_one, to_dict, from_dict with its own hyper-parameters. Nothing here
knows one model from another, so a model added to the table is checked the day it is added, and a model
missing from it fails the first test.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import random
from collections.abc import Mapping
from typing import Any, Protocol

import pytest

import master
from master.models import BELIEF_MODELS, BeliefModel, Score
from master.store import decode, encode

Model = BeliefModel[Any, Any]
# The example streams are long enough to build a belief; the last third is what the checks score.
LEARNED = 200


@pytest.fixture(params=BELIEF_MODELS, ids=lambda cls: cls.__name__)
def model_class(request: pytest.FixtureRequest) -> type[Model]:
    return request.param  # type: ignore[no-any-return]


def _stored(state: dict[str, Any]) -> dict[str, Any]:
    """The state as the store writes and reads it back (orjson, sorted keys)."""
    doc = decode(encode(state))
    assert doc is not None
    return doc


def _restore(model: Model, state: dict[str, Any]) -> Model:
    return type(model).from_dict(state, **model.hyper())


def _learned(cls: type[Model], seed: int) -> tuple[Model, list[tuple[Any, Any]]]:
    """A model that learned the first LEARNED observations of its stream, and the rest of the stream."""
    model, stream = cls.example(), cls.example_stream(seed)
    assert len(stream) > LEARNED, "an example stream must leave observations to score"
    for x, at in stream[:LEARNED]:
        model.learn_one(x, at=at)
    return model, stream[LEARNED:]


def test_every_model_class_is_registered() -> None:
    """A class anywhere in the master that learns (has learn_one) is a belief model, so it is in the table."""
    found = set()
    for info in pkgutil.walk_packages(master.__path__, "master."):
        module = importlib.import_module(info.name)
        for _, cls in inspect.getmembers(module, inspect.isclass):
            defined_here = cls.__module__ == module.__name__
            # The protocol itself, and any protocol refining it, is the interface, not a model.
            if defined_here and hasattr(cls, "learn_one") and Protocol not in cls.__bases__:
                found.add(cls)
    assert found, "no model found: the scan is broken"
    assert found == set(BELIEF_MODELS), "every model class in master/ is listed in BELIEF_MODELS, once"
    assert len(BELIEF_MODELS) == len(set(BELIEF_MODELS))


def test_round_trip_through_the_store_gives_identical_scores_and_state(model_class: type[Model]) -> None:
    model, rest = _learned(model_class, seed=1)
    state = _stored(model.to_dict())
    assert state == model.to_dict(), "the state survives the store's encoding unchanged (no NaN, no tuples)"
    twin = _restore(model, state)
    for x, at in rest:
        assert twin.score_one(x, at=at) == model.score_one(x, at=at)
        model.learn_one(x, at=at)
        twin.learn_one(x, at=at)
    assert twin.to_dict() == model.to_dict()
    assert _stored(model.to_dict()) == model.to_dict()


def test_seeded_runs_are_identical(model_class: type[Model]) -> None:
    runs = []
    for _ in range(2):
        model = model_class.example()
        scores = []
        for x, at in model_class.example_stream(5):
            scores.append(model.score_one(x, at=at))
            model.learn_one(x, at=at)
        runs.append((scores, model.to_dict()))
    assert runs[0] == runs[1]


def test_scoring_does_not_learn(model_class: type[Model]) -> None:
    model, rest = _learned(model_class, seed=2)
    before = model.to_dict()
    for x, at in rest:
        model.score_one(x, at=at)
    assert model.to_dict() == before


def test_scores_are_typed_and_probabilities_are_probabilities(model_class: type[Model]) -> None:
    model, seen = model_class.example(), []
    for x, at in model_class.example_stream(3):
        score = model.score_one(x, at=at)
        assert isinstance(score, Score)
        assert isinstance(score.breach, bool)
        assert score.probability is None or 0.0 <= score.probability <= 1.0, score
        seen.append(score.probability is None)
        model.learn_one(x, at=at)
    # A model either judges in probabilities or does not; it does not switch between observations.
    assert len(set(seen)) == 1


def test_late_observations_are_learned_not_rejected(model_class: type[Model]) -> None:
    """Events reach the master out of order (lateness, pooling many devices): learning the stream shuffled
    must neither raise nor leave a state the store cannot carry."""
    model, stream = model_class.example(), model_class.example_stream(4)
    random.Random(4).shuffle(stream)
    for x, at in stream:
        model.learn_one(x, at=at)
        score = model.score_one(x, at=at)
        assert score.probability is None or 0.0 <= score.probability <= 1.0
    assert _restore(model, _stored(model.to_dict())).to_dict() == model.to_dict()


# Models whose observation is a window of features; the others observe one value at a time (a count, a
# category, a contact), in which nothing can be missing.
WINDOW_MODELS = [cls for cls in BELIEF_MODELS if isinstance(cls.example_stream(0)[0][0], Mapping)]


def test_some_models_observe_windows() -> None:
    assert WINDOW_MODELS


@pytest.mark.parametrize("window_model", WINDOW_MODELS, ids=lambda cls: cls.__name__)
def test_missing_features_are_tolerated(window_model: type[Model]) -> None:
    """A window in which none of a model's features was seen teaches it nothing and is not unusual."""
    model, rest = _learned(window_model, seed=3)
    _x, at = rest[0]
    before = model.to_dict()
    model.learn_one({}, at=at)
    assert model.to_dict() == before
    score = model.score_one({}, at=at + 1)
    assert score.probability in (None, 1.0)
    assert not score.breach


def test_state_has_a_schema_and_rejects_others(model_class: type[Model]) -> None:
    model, _ = _learned(model_class, seed=6)
    state = model.to_dict()
    assert state["schema"] == 1
    with pytest.raises(ValueError):
        _restore(model, {**state, "schema": 99})
    with pytest.raises(ValueError):
        _restore(model, {k: v for k, v in state.items() if k != "schema"})
