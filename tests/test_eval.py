"""`vigil eval`: truth files, scoring of detections and false positives, exit codes, clear errors."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from vigil import cli
from vigil.exitcodes import Exit

LAB_CAPTURE = Path(__file__).resolve().parent / "data" / "lab-scan.pcap"
SCANNER = "10.231.1.12"


def _dir(tmp_path: Path, truth: str) -> Path:
    shutil.copy(LAB_CAPTURE, tmp_path / "lab-scan.pcap")
    (tmp_path / "scan.truth.yaml").write_text(truth)
    return tmp_path


def test_a_met_truth_exits_0_with_recall_and_precision_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    models = [
        "Device / Network Scan",
        "Device / Network Range Scan",
        "Device / Suspicious Network Scan Activity",
        "Device / Suspicious SMB Scanning Activity",
        "Device / RDP Scan",
        "Device / Multiple Lateral Movement Model Breaches",
        "Device / Large Number of Model Breaches",
    ]
    truth = f"captures: [lab-scan.pcap]\nexpect:\n  - device: {SCANNER}\n    models: {json.dumps(models)}\n"
    assert cli.main(["eval", "--json", str(_dir(tmp_path, truth))]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["recall"] == 1.0 and result["precision"] == 1.0 and result["false_positives"] == 0
    assert result["device_days"] >= 3  # the office's workstations and the Pi, on one day
    ttd = result["scenarios"][0]["time_to_detect_s"]
    assert all(0 <= v < 600 for v in ttd.values())


def test_a_missed_model_and_an_unexpected_breach_exit_below_target(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    truth = (
        "captures: [lab-scan.pcap]\nexpect:\n"
        f"  - device: {SCANNER}\n    models: ['Device / Network Scan', 'Compromise / DNS Tunnel']\n"
    )
    assert cli.main(["eval", "--json", str(_dir(tmp_path, truth))]) == Exit.EVAL_BELOW_TARGET
    result = json.loads(capsys.readouterr().out)
    scenario = result["scenarios"][0]
    assert scenario["missed"] == [f"{SCANNER} Compromise / DNS Tunnel"]
    assert result["recall"] == 0.5
    # The scan's other models were not named: each one above low is a false positive.
    assert {fp["model"] for fp in scenario["false_positives"]} >= {"Device / RDP Scan"}
    assert 0 < result["precision"] < 1


@pytest.mark.parametrize(
    ("truth", "message"),
    [
        ("captures: [missing.pcap]\n", "no such file"),
        ("captures: [lab-scan.pcap]\nquiet_above: loud\n", "quiet_above must be one of"),
        ("captures: [lab-scan.pcap]\nexpect:\n  - device: 10.0.0.1\n", "needs device and models"),
        ("captures: [lab-scan.pcap]\nsurprise: 1\n", "unknown keys"),
        ("- just a list\n", "expected a mapping"),
        (
            "captures: [lab-scan.pcap]\nexpect:\n"
            "  - device: 10.0.0.1\n    models: [x]\n    start: yesterday\n",
            "not an RFC 3339 time",
        ),
    ],
)
def test_unusable_truth_files_are_refused_with_the_reason(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], truth: str, message: str
) -> None:
    assert cli.main(["eval", str(_dir(tmp_path, truth))]) == Exit.INPUT
    err = capsys.readouterr().err
    assert message in err and "scan.truth.yaml" in err


def test_no_directory_or_no_truth_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["eval", str(tmp_path / "nope")]) == Exit.ENVIRONMENT
    assert cli.main(["eval", str(tmp_path)]) == Exit.ENVIRONMENT
    err = capsys.readouterr().err
    assert "no such directory" in err and "no *.truth.yaml" in err


def test_any_of_is_one_detection_and_the_actors_other_alarms_are_its_own(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A capture from elsewhere is described by the models that fit it; any of them at the severity asked
    for catches the actor, and its other breaches are not mistakes about a benign device."""
    truth = (
        "captures: [lab-scan.pcap]\nexpect:\n"
        f"  - device: {SCANNER}\n    any_of: ['Compromise / DNS Tunnel', 'Device / Network Scan']\n"
        "    min_severity: critical\n"
    )
    assert cli.main(["eval", "--json", str(_dir(tmp_path, truth))]) == Exit.OK
    result = json.loads(capsys.readouterr().out)
    assert result["recall"] == 1.0 and result["false_positives"] == 0 and result["precision"] == 1.0
    assert result["device_hours"] >= 3
    scenario = result["scenarios"][0]
    assert list(scenario["time_to_detect_s"]) == [
        f"{SCANNER} Compromise / DNS Tunnel | Device / Network Scan"
    ]


def test_min_severity_is_a_floor(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The scan's meta-model reaches high (score 70), not critical: asked at critical, it does not count."""
    truth = (
        "captures: [lab-scan.pcap]\nexpect:\n"
        f"  - device: {SCANNER}\n    any_of: ['Device / Large Number of Model Breaches']\n"
        "    min_severity: critical\n"
    )
    assert cli.main(["eval", "--json", str(_dir(tmp_path, truth))]) == Exit.EVAL_BELOW_TARGET
    assert json.loads(capsys.readouterr().out)["recall"] == 0.0


@pytest.mark.parametrize(
    ("item", "message"),
    [
        ("models: [a]\n    any_of: [b]", "exclude each other"),
        ("any_of: [a]\n    min_severity: loud", "min_severity must be one of"),
        ("any_of: a", "must be a list"),
        ("any_of: [a]\n    colour: red", "unknown keys"),
    ],
)
def test_bad_any_of_items_are_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], item: str, message: str
) -> None:
    truth = f"captures: [lab-scan.pcap]\nexpect:\n  - device: {SCANNER}\n    {item}\n"
    assert cli.main(["eval", str(_dir(tmp_path, truth))]) == Exit.INPUT
    assert message in capsys.readouterr().err
