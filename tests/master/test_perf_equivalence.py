"""The master's shortcuts must not change what it stores: undecoded windows, unwritten models, GC pauses."""

from __future__ import annotations

import gc
import json

import pytest

from master.catalog import FAILED, INTERNAL_DESTINATIONS
from master.features import DeviceWindows, Window
from master.gcpause import gc_paused
from master.models.counts import CountParams, DeviceCountModel, PopulationCountModel

PARAMS = CountParams()


def _state() -> DeviceWindows:
    w = DeviceWindows(60.0, 600.0)
    for t in (10.0, 70.0, 130.0):
        window = w.window_for(t)
        assert window is not None
        for i in range(80):  # past the sketch size in the first feature
            window.observe(INTERNAL_DESTINATIONS, f"10.0.{int(t)}.{i}", f"10.0.{int(t)}.{i}:445", f"u{i}")
        window.observe(FAILED, None, "10.0.0.9:445", "u-failed", 3, "10.0.0.9:445")
        window.dirty = False  # as stored after scoring
    w.advance(130.0)
    return w


def _stored(w: DeviceWindows) -> dict[str, object]:
    # Through JSON, as the store hands documents out.
    doc = json.loads(json.dumps(w.to_dict()))
    assert isinstance(doc, dict)
    return doc


def test_untouched_windows_are_written_back_unchanged() -> None:
    doc = _stored(_state())
    restored = DeviceWindows.from_dict(doc, 60.0, 600.0)
    assert restored.to_dict() == doc
    # Touching one window decodes that one only; the document changes exactly as if all were decoded.
    eager = DeviceWindows.from_dict(_stored(_state()), 60.0, 600.0)
    eager.windows  # noqa: B018 - decodes every window
    for state in (restored, eager):
        window = state.window_for(75.0)
        assert window is not None
        window.observe(INTERNAL_DESTINATIONS, "10.9.9.9", "10.9.9.9:22", "u-new")
    assert restored.to_dict() == eager.to_dict() != doc
    assert [w.index for w in restored.dirty_windows()] == [1]


def test_closing_decodes_stored_windows_in_order() -> None:
    restored = DeviceWindows.from_dict(_stored(_state()), 60.0, 600.0)
    closed = restored.advance(10_000.0)
    assert [w.index for w in closed] == [0, 1, 2]
    assert all(isinstance(w, Window) for w in closed) and restored.windows == {}


def test_foreign_shaped_windows_are_decoded_and_normalised() -> None:
    doc = _stored(_state())
    windows = doc["windows"]
    assert isinstance(windows, list)
    del windows[0]["top"]  # an older writer
    windows[1]["dirty"] = True
    restored = DeviceWindows.from_dict(doc, 60.0, 600.0)
    out = restored.to_dict()
    assert out["windows"][0]["top"] == {}
    assert [w.index for w in restored.dirty_windows()] == [1]


def test_models_are_unsaved_only_when_new_learned_or_reshaped() -> None:
    model = DeviceCountModel(PARAMS)
    assert model.unsaved
    model.learn_one({INTERNAL_DESTINATIONS: 3.0, FAILED: 1.0}, at=5)
    loaded = DeviceCountModel.from_dict(json.loads(json.dumps(model.to_dict())), PARAMS)
    assert not loaded.unsaved
    # Scoring with a stored feature reads it: the document would be written back as it was.
    loaded.feature_score(INTERNAL_DESTINATIONS, 2.0, window=6, population=None)
    assert not loaded.unsaved and loaded.to_dict() == model.to_dict()
    # Scoring with a feature never stored adds a blank entry to the document: that is a change.
    full = model.to_dict()
    partial = {
        "schema": full["schema"],
        "counts": {INTERNAL_DESTINATIONS: full["counts"][INTERNAL_DESTINATIONS]},
    }
    sparse = DeviceCountModel.from_dict(partial, PARAMS)
    sparse.feature_score(INTERNAL_DESTINATIONS, 2.0, window=6, population=None)
    assert not sparse.unsaved
    sparse.feature_score(FAILED, 2.0, window=6, population=None)
    assert sparse.unsaved and sparse.to_dict() != partial
    learned = DeviceCountModel.from_dict(model.to_dict(), PARAMS)
    learned.learn_one({INTERNAL_DESTINATIONS: 1.0}, at=6)
    assert learned.unsaved


def test_population_shape_changes_count_as_unsaved() -> None:
    pop = PopulationCountModel(PARAMS)
    pop.learn_one({INTERNAL_DESTINATIONS: 2.0}, at=1)
    doc = json.loads(json.dumps(pop.to_dict()))
    assert not PopulationCountModel.from_dict(doc, PARAMS).unsaved
    del doc["season"]
    assert PopulationCountModel.from_dict(doc, PARAMS).unsaved
    stale = json.loads(json.dumps(pop.to_dict()))
    stale["counts"]["a_feature_the_catalog_dropped"] = {"schema": 1, "alpha": 1.0, "beta": 1.0, "window": 1}
    assert PopulationCountModel.from_dict(stale, PARAMS).unsaved


def test_gc_pause_is_restored_also_on_error() -> None:
    @gc_paused
    def inside() -> bool:
        return gc.isenabled()

    @gc_paused
    def fails() -> None:
        raise RuntimeError("boom")

    assert gc.isenabled()
    assert inside() is False and gc.isenabled()
    with pytest.raises(RuntimeError):
        fails()
    assert gc.isenabled()
    gc.disable()
    try:
        assert inside() is False and not gc.isenabled()  # a caller's own pause is left alone
    finally:
        gc.enable()
