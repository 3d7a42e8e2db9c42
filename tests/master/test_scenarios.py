"""The project's own scenarios: attacks recorded in the lab with real tools, after a multi-day benign baseline
composed from recorded office sessions (whole sessions moved in time, nothing synthesised).

`vigil eval` over them must find every expected (device, model) pair and raise nothing above low severity
that the truth files do not name — neither on the benign days nor around the attacks.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
import yaml

from tests.lab.compose import stage_scenarios
from vigil.cli.evaluate import evaluate_directory
from vigil.config import VigilConfig

SCENARIOS = Path(__file__).resolve().parents[1] / "data" / "scenarios"


@pytest.fixture(scope="module")
def evaluation(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    truths = sorted(SCENARIOS.glob("*.truth.yaml"))
    if not truths:
        pytest.skip(f"no scenarios in {SCENARIOS}")
    work = tmp_path_factory.mktemp("scenarios")
    stage_scenarios(truths, work, days=3, seed=1)
    out = io.StringIO()
    code = evaluate_directory(VigilConfig(), work, as_json=True, out=out)
    result: dict[str, object] = json.loads(out.getvalue())
    result["exit_code"] = code
    return result


def test_every_expected_model_fires_on_its_scenario(evaluation: dict[str, object]) -> None:
    missed = [m for s in evaluation["scenarios"] for m in s["missed"]]  # type: ignore[attr-defined]
    assert missed == []
    assert evaluation["recall"] == 1.0


def test_nothing_above_low_that_the_truth_does_not_name(evaluation: dict[str, object]) -> None:
    fps = [fp for s in evaluation["scenarios"] for fp in s["false_positives"]]  # type: ignore[attr-defined]
    assert fps == []
    assert evaluation["exit_code"] == 0
    assert evaluation["device_days"] >= 20  # type: ignore[operator]


def test_scenarios_cover_the_catalog() -> None:
    """Every catalog model has a lab scenario, except those proved on captures others recorded (the lab
    has no Windows domain and no C2 framework): tests/master/test_wild.py names each one's capture."""
    from master.catalog import CATALOG, INTERNAL_BEACON, KNOWN_C2
    from tests.master.test_wild import DOMAIN_ATTACKS

    docs = [yaml.safe_load(path.read_text()) for path in SCENARIOS.glob("*.truth.yaml")]
    named = {m for doc in docs for e in doc.get("expect") or [] for m in e["models"]}
    wild_only = {INTERNAL_BEACON, KNOWN_C2} | {model for _, _, model, _ in DOMAIN_ATTACKS}
    catalog = {m.name for m in CATALOG} - wild_only
    assert len(catalog) == 27
    assert catalog <= named
