"""Detections on captures other people recorded (../shared/corpus/wild): each test names the capture, what
it shows (its manifest's label, checked with tshark), and the breach Vigil must raise there."""

from __future__ import annotations

from pathlib import Path

import pytest

from master.offline import OfflineMaster
from tests.conftest import CORPUS
from vigil.alert.v1 import alert_pb2
from vigil.cli.offline import CaptureRecords
from vigil.config import VigilConfig

WILD = CORPUS / "wild"


def _breaches(relative: str) -> list[alert_pb2.ModelBreach]:
    capture = WILD / relative
    if not capture.is_file():
        pytest.skip(f"wild corpus not found at {WILD} (set VIGIL_CORPUS to the shared corpus)")
    cfg = VigilConfig()
    return OfflineMaster(cfg.master).process(CaptureRecords(cfg, [Path(capture)])).breaches


def test_quasarrat_reconnecting_every_3_5_s_is_a_beacon() -> None:
    """QuasarRAT (ANY.RUN sandbox): 192.168.100.7 opens 77 short TLS connections to 86.136.67.231:1337,
    one every 3.56 s (interval CV 0.04), with no SNI; most carry 377 bytes, a few more (size CV about 0.5).
    A timer that regular is a beacon whatever a few of its check-ins carry."""
    found = [
        b
        for b in _breaches("corelight__zeek-quasarrat-detector/09ffabf7-774a-43a3-8c97-68f2046fd385.pcap")
        if b.model == "Compromise / Beaconing Activity To External Rare" and b.device.ip == "192.168.100.7"
    ]
    assert found, "missed"
    assert found[0].severity in ("medium", "high", "critical")
    assert "86.136.67.231" in found[0].explanation


def test_empire_polling_its_listener_inside_the_lab_is_an_internal_beacon() -> None:
    """Mordor (OTRF): the Empire agent on WORKSTATION5 172.18.39.5 polls its HTTP listener at 10.10.10.5
    (a private address: inside the lab network) 24 times about every 4.8 s while PowerView runs
    NetSessEnum against the DC. Nobody else talks to 10.10.10.5."""
    found = [
        b
        for b in _breaches(
            "OTRF__Security-Datasets/empire_getsession_dcerpc_smb_srvsvc_NetSessEnum_2020-09-22034513.cap"
        )
        if b.model == "Compromise / Beaconing to Internal Endpoint"
    ]
    assert [b.device.ip for b in found] == ["172.18.39.5"]
    assert found[0].severity in ("medium", "high", "critical")
    assert "10.10.10.5" in found[0].explanation
