"""The `vigil` command as a user runs it: analyze, up on the shipped capture, config errors."""

from __future__ import annotations

import io
import json
import re
import shutil
import subprocess
from datetime import datetime
from pathlib import Path

import pytest
import yaml

from master.catalog import CATALOG
from vigil import cli
from vigil.config import ConfigError, build

REPO = Path(__file__).resolve().parent.parent
LAB_CAPTURE = REPO / "tests" / "data" / "lab-scan.pcap"
SCANNER = "10.231.1.12"


def test_analyze_json_reports_the_scan_and_the_action(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["analyze", "--json", str(LAB_CAPTURE)]) == 0
    every = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    lines = [line for line in every if line.get("kind") != "incident"]
    # After the breaches, the incident they make: one scanner, one story.
    incidents = every[len(lines) :]
    assert [i["kind"] for i in incidents] == ["incident"]
    assert [d["ip"] for d in incidents[0]["devices"]] == [SCANNER]
    assert set(incidents[0]["breach_ids"]) == {line["breach_id"] for line in lines}
    assert "reconnaissance" in incidents[0]["phases"]
    assert {line["device"]["ip"] for line in lines} == {SCANNER}, "one scanner, nobody else"
    models = [line["model"] for line in lines]
    assert len(models) == len(set(models)), "each model breaches once per window"
    assert {
        "Device / Network Scan",
        "Device / Network Range Scan",
        "Device / Suspicious SMB Scanning Activity",
        "Device / RDP Scan",
        "Device / Multiple Lateral Movement Model Breaches",
    } <= set(models)
    breach = lines[models.index("Device / Network Scan")]
    assert breach["model_id"] == "device-network-scan" and breach["severity"] == "critical"
    assert breach["window_start"] < breach["window_end"]
    assert breach["device"]["ip"] == SCANNER
    assert re.fullmatch(r"[0-9a-f:]{17}", breach["device"]["mac"])
    assert "hostname" in breach["device"]
    assert datetime.fromisoformat(breach["time"].replace("Z", "+00:00")).tzinfo is not None
    assert 0 <= breach["score"] <= 100 and breach["score"] >= 60
    assert "distinct internal hosts" in breach["explanation"]
    features = {e["feature"]: e for e in breach["evidence"]}
    assert features["distinct_internal_destinations"]["observed"] >= 30
    assert features["distinct_internal_destinations"]["probability"] < 1e-4
    assert breach["actions"] and breach["actions"][0]["target_ip"] == SCANNER


def test_analyze_benign_prefix_raises_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    if shutil.which("tshark") is None:
        pytest.skip("tshark not installed (make install)")
    # The first 1500 packets of the capture are the office's ordinary traffic, before the scan.
    benign = tmp_path / "benign.pcap"
    subprocess.run(
        ["tshark", "-r", str(LAB_CAPTURE), "-c", "1500", "-F", "pcap", "-w", str(benign)], check=True
    )
    assert cli.main(["analyze", "--json", str(benign)]) == 0
    assert capsys.readouterr().out.strip() == ""


def test_analyze_truncated_capture_reports_and_keeps_results(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = LAB_CAPTURE.read_bytes()
    cut = tmp_path / "cut.pcap"
    cut.write_bytes(data[: len(data) - 37])  # ends in the middle of a packet record
    assert cli.main(["analyze", str(cut)]) == 3
    captured = capsys.readouterr()
    assert "cut.pcap: truncated packet record" in captured.err
    assert "Device / Network Scan" in captured.out


def test_config_errors_are_reported_together(capsys: pytest.CaptureFixture[str]) -> None:
    code = cli.main(
        [
            "--set",
            "master.window_s=-1",
            "--set",
            "sensor.batch_max_records=0",
            "--set",
            "nats.nope=1",
            "analyze",
            str(LAB_CAPTURE),
        ]
    )
    assert code == 2
    err = capsys.readouterr().err
    assert "master.window_s" in err and "sensor.batch_max_records" in err and "nats.nope" in err


def test_environment_overrides_and_validation() -> None:
    cfg = build({"master": {"window_s": 30}}, {"VIGIL_MASTER__WINDOW_S": "15", "VIGIL_LOG__LEVEL": "debug"})
    assert cfg.master.window_s == 15 and cfg.log.level == "debug"
    with pytest.raises(ConfigError) as exc:
        build(
            {}, {"VIGIL_RESPONDER__BACKEND": "iptables", "VIGIL_MASTER__PROTECTED__NETWORKS": "[not-a-net]"}
        )
    assert len(exc.value.problems) == 2


def test_help_lists_every_command() -> None:
    buf = io.StringIO()
    parser = cli.build_parser()
    parser.print_help(buf)
    for command in ("up", "sensor", "master", "responder", "analyze"):
        assert command in buf.getvalue()


def test_models_lists_the_whole_catalog_with_its_response(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["models", "--json"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert {r["model"] for r in rows} == {m.name for m in CATALOG}
    assert len(rows) == len(CATALOG) == len({r["model_id"] for r in rows})
    by_name = {r["model"]: r for r in rows}
    assert by_name["Device / Network Scan"]["response"].startswith("cut the device off from the internal")
    assert "445" in by_name["Device / SMB Session Brute Force (Admin)"]["response"]
    assert by_name["Device / New Device"]["response"].startswith("none")
    assert all(r["breaches_when"] for r in rows)


def test_the_readmes_configuration_example_is_valid() -> None:
    readme = (REPO / "README.md").read_text()
    block = readme.split("# vigil.yaml, passed with --config", 1)[1].split("\n", 1)[1].split("```", 1)[0]
    cfg = build(yaml.safe_load(block), {})
    assert "198.51.100.0/24" in cfg.master.internal_networks and cfg.master.timezone == "Europe/Berlin"


def test_a_renamed_master_key_is_refused_with_its_new_name() -> None:
    with pytest.raises(ConfigError) as exc:
        build({"master": {"scan_window_s": 30}}, {})
    assert "master.scan_window_s is now master.window_s" in str(exc.value.problems)
    assert build({"master": {"window_s": 30}}, {}).master.window_s == 30
