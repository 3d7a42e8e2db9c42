"""The lab itself: hosts reach each other through the gateway, and everything is torn down."""

from __future__ import annotations

import subprocess

import pytest

from tests.lab.netns import lab, tcp_listener, unavailable_reason

pytestmark = pytest.mark.lab


@pytest.fixture(autouse=True)
def _need_lab() -> None:
    if reason := unavailable_reason():
        pytest.skip(reason)


def test_hosts_route_through_gateway_and_teardown_is_complete() -> None:
    with lab(["alice"], ["srv"]) as built:
        srv = built.hosts["srv"]
        tcp_listener(srv, 7000)
        built.wait_reachable("alice", srv.ip, 7000)
        assert built.hosts["alice"].can_connect(srv.ip, 7000)
        assert not built.hosts["alice"].can_connect(srv.ip, 7001)
        names = list(built.namespaces)
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True).stdout
    assert not any(name in listed for name in names)
