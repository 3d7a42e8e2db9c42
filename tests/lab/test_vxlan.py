"""A real kernel VXLAN tunnel between two lab hosts: the sensor, capturing the outer packets as a traffic
mirror would deliver them, reports the conversations inside the tunnel."""

from __future__ import annotations

from pathlib import Path

import pytest

from sensor.logwriter import pipeline_records
from tests.lab.netns import bridge_capture, lab, unavailable_reason
from vigil.config import SensorConfig

pytestmark = pytest.mark.lab

INNER_A, INNER_B = "192.168.77.1", "192.168.77.2"


@pytest.fixture(autouse=True)
def _need_lab() -> None:
    if reason := unavailable_reason(["tcpdump"]):
        pytest.skip(reason)


def test_conversations_inside_vxlan_are_analysed(tmp_path: Path) -> None:
    with lab(["left"], ["right"]) as built:
        left, right = built.hosts["left"], built.hosts["right"]
        for host, peer, inner in ((left, right, INNER_A), (right, left, INNER_B)):
            for cmd in (
                ("ip", "link", "add", "vx0", "type", "vxlan", "id", "42", "remote", peer.ip,
                 "dstport", "4789", "dev", "eth0"),
                ("ip", "addr", "add", f"{inner}/24", "dev", "vx0"),
                ("ip", "link", "set", "vx0", "up"),
            ):  # fmt: skip
                proc = host.run(*cmd)
                assert proc.returncode == 0, proc.stderr
        right.spawn("python3", "-c", _LISTEN_INNER)  # a service on the tunnel's inner address
        built.wait_reachable("left", INNER_B, 7100)
        capture = tmp_path / "vxlan.pcap"
        with bridge_capture(built, capture, bridge="br-a"):
            assert left.can_connect(INNER_B, 7100)
    flows = [r.flow for r in pipeline_records(SensorConfig(), [capture]) if r.HasField("flow")]
    tunnelled = [f for f in flows if f.resp.port == 7100]
    assert tunnelled, [(f.resp.port, f.history) for f in flows]
    assert all(
        f.orig.ip == bytes([192, 168, 77, 1]) and f.resp.ip == bytes([192, 168, 77, 2]) for f in tunnelled
    )
    assert any(f.history.startswith("Sh") for f in tunnelled)
    assert not [f for f in flows if f.resp.port == 4789], (
        "the tunnel itself is not reported as a conversation"
    )


_LISTEN_INNER = (
    "import socket\n"
    f"s=socket.create_server(({INNER_B!r},7100))\n"
    "while True:\n"
    "    c,_=s.accept()\n"
    "    c.close()\n"
)
