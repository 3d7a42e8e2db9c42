"""Device identity and bindings: cloud instances, users, Kerberos machine names, DNS names."""

from __future__ import annotations

from typing import Any

from master.entities import device_id_for
from master.offline import OfflineMaster
from tests.master.test_catalog import dns, ntlm
from tests.master.traffic import T0, flow, ip
from vigil.flow.v1 import dns_pb2, flow_pb2, kerberos_pb2
from vigil.sensor.v1 import sensor_pb2


def _doc(master: OfflineMaster, device_id: str) -> dict[str, Any]:
    import asyncio

    key = master.store.keys.device(device_id)
    return asyncio.run(master.store.load([key]))[key] or {}


def _cloud_flow(t: float, instance: str, src: str) -> sensor_pb2.Record:
    record = flow(t, src, "10.9.0.5", 443)
    record.flow.cloud.CopyFrom(
        flow_pb2.CloudContext(provider="aws", interface_id="eni-1", instance_id=instance, direction="egress")
    )
    return record


def test_a_cloud_instance_is_one_device_across_addresses() -> None:
    master = OfflineMaster()
    master.process([_cloud_flow(T0, "i-0abc", "10.9.1.4"), _cloud_flow(T0 + 600, "i-0abc", "10.9.1.9")])
    device = device_id_for("cloud", "aws:i-0abc")
    doc = _doc(master, device)
    assert doc["cloud_id"] == "aws:i-0abc"
    assert set(doc["ips"]) == {"10.9.1.4", "10.9.1.9"}


def _kerberos(t: float, client: str, orig: str) -> sensor_pb2.Record:
    rec = kerberos_pb2.KerberosRecord(request_type="AS", client=client, success=True)
    rec.time.FromNanoseconds(int(t * 1e9))
    record = sensor_pb2.Record(kerberos=rec)
    record.orig.ip = ip(orig)
    return record


def test_users_machine_names_and_dns_names_are_bound_to_the_device() -> None:
    master = OfflineMaster()
    me = "10.0.1.5"
    ptr = dns(T0 + 3, "5.1.0.10.in-addr.arpa", qtype=12, orig="10.0.1.6")
    ptr.dns.answers.append(dns_pb2.DnsAnswer(name="5.1.0.10.in-addr.arpa", rr_type=12, value="ws5.corp.test"))
    master.process(
        [
            flow(T0, me, "10.0.0.1", 445),
            ntlm(T0 + 1, "alice", True, host="WS5", orig=me),
            _kerberos(T0 + 2, "WS5$@CORP.TEST", me),
            _kerberos(T0 + 2.5, "bob@CORP.TEST", me),
            ptr,
        ]
    )
    doc = _doc(master, device_id_for("ip", me))
    assert doc["hostname"] == "WS5"
    assert set(doc["users"]) == {"CORP\\alice", "bob@CORP.TEST"}
    assert set(doc["dns_names"]) == {"ws5.corp.test"}
    # A name alone never creates a device.
    assert _doc(master, device_id_for("ip", "10.0.1.99")) == {}
