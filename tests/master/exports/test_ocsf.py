"""OCSF Detection Findings validate against the class's JSON Schema generated from the published OCSF schema
(PyPI ocsf-json-schema ships the schema releases; Apache-2.0, see its ocsf/LICENSE.txt)."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator
from ocsf_json_schema import OcsfJsonSchemaEmbedded, get_ocsf_schema
from prometheus_client import CollectorRegistry

from master.attack import ATTACK_VERSION, TECHNIQUES
from master.catalog import CATALOG
from master.exports import Exporters
from master.exports.ocsf import OCSF_VERSION, detection_finding
from tests.conftest import REPO
from tests.master.exports.receivers import breach, exports_config


@pytest.fixture(scope="module")
def validator() -> Draft202012Validator:
    schema = OcsfJsonSchemaEmbedded(get_ocsf_schema(version=OCSF_VERSION))
    name = schema.lookup_class_name_from_uid(class_uid=2004)
    assert name == "detection_finding"
    return Draft202012Validator(schema.get_class_schema(class_name=name, profiles=[]))


def _errors(validator: Draft202012Validator, finding: dict[str, Any]) -> list[str]:
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(finding)]


@pytest.mark.parametrize(
    "b",
    [
        breach(),
        breach(1, ip="fd00::4", peer="[2001:db8::7]:443", techniques=("T1071.001", "T1573")),
        breach(2, peer="203.0.113.9:8443", model="Device / Network Scan", score=95),
        breach(3, techniques=("T1078", "T9999"), score=12),
    ],
)
def test_every_finding_validates_against_the_ocsf_class_schema(
    validator: Draft202012Validator, b: Any
) -> None:
    finding = detection_finding(b)
    assert _errors(validator, finding) == []
    # A round trip through JSON changes nothing (what a SIEM reads is what was validated).
    assert _errors(validator, json.loads(json.dumps(finding))) == []


def test_the_schema_catches_a_broken_finding(validator: Draft202012Validator) -> None:
    finding = detection_finding(breach())
    del finding["finding_info"]["uid"]
    finding["severity_id"] = 7
    finding["time"] = "yesterday"
    problems = _errors(validator, finding)
    assert any("uid" in p for p in problems)
    assert any(p.startswith("severity_id") for p in problems)
    assert any(p.startswith("time") for p in problems)


def test_fields_carry_the_breach() -> None:
    b = breach(2, peer="203.0.113.9:8443", score=95)
    f = detection_finding(b)
    assert (f["class_uid"], f["category_uid"], f["activity_id"]) == (2004, 2, 1)
    assert f["type_uid"] == f["class_uid"] * 100 + f["activity_id"] == 200401
    assert f["time"] == round((1_796_679_000.25 + 2) * 1000)
    assert (f["severity_id"], f["severity"], f["risk_score"]) == (5, "Critical", 95)
    assert f["metadata"]["version"] == OCSF_VERSION
    assert f["metadata"]["product"]["name"] == "Vigil"
    info = f["finding_info"]
    assert (info["uid"], info["title"], info["analytic"]["uid"]) == (b.breach_id, b.model, b.model_id)
    assert info["types"] == ["Device"]
    assert info["attacks"] == [
        {
            "version": ATTACK_VERSION,
            "technique": {"uid": "T1046", "name": "Network Service Discovery"},
            "tactic": {"uid": "TA0007", "name": "Discovery"},
        }
    ]
    assert f["device"]["ip"] == "10.0.1.4" and f["device"]["mac"] == "b8:27:eb:00:00:01"
    ev = f["evidences"][0]
    assert ev["dst_endpoint"] == {"ip": "203.0.113.9", "port": 8443}
    assert ev["data"]["observed"] == 200 and ev["data"]["probability"] == 3e-12
    assert [r["uid"] for r in info["related_events"]] == ["CAbc1", "CAbc2"]


def test_sub_techniques_name_their_parent_and_every_tactic() -> None:
    f = detection_finding(breach(techniques=("T1053.005",)))
    attacks = f["finding_info"]["attacks"]
    assert {a["tactic"]["name"] for a in attacks} == {"Execution", "Persistence", "Privilege Escalation"}
    assert all(a["technique"] == {"uid": "T1053", "name": "Scheduled Task/Job"} for a in attacks)
    assert all(a["sub_technique"] == {"uid": "T1053.005", "name": "Scheduled Task"} for a in attacks)


def test_the_attack_table_covers_every_catalog_technique_and_parent() -> None:
    used = {t for model in CATALOG for t in model.techniques}
    # Breaches may name techniques of their own (a beacon inside one connection: T1095). Without T1095
    # in the table this scan fails.
    for source in (REPO / "master").rglob("*.py"):
        used |= set(re.findall(r'"(T1\d{3}(?:\.\d{3})?)"', source.read_text()))
    assert used - TECHNIQUES.keys() == set()
    assert {t.split(".")[0] for t in used} - TECHNIQUES.keys() == set()


async def test_findings_are_appended_as_json_lines(tmp_path: Path, validator: Draft202012Validator) -> None:
    path = tmp_path / "findings.jsonl"
    exporters = Exporters(exports_config(ocsf={"path": path}), CollectorRegistry())
    stop = asyncio.Event()
    task = asyncio.create_task(exporters.run(stop))
    exporters.submit([breach(n) for n in range(3)])
    for _ in range(200):
        if path.exists() and len(path.read_text().splitlines()) == 3:
            break
        await asyncio.sleep(0.02)
    stop.set()
    await task
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert [f["finding_info"]["uid"] for f in lines] == [breach(n).breach_id for n in range(3)]
    assert all(_errors(validator, f) == [] for f in lines)
