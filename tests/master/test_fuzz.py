"""Whatever well-formed protobuf a sensor (or an attacker who reaches NATS) sends, the master's batch path
neither crashes nor stops learning: odd addresses, empty names, huge counts, time going backwards."""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from master.offline import OfflineMaster
from tests.master.traffic import T0
from vigil.flow.v1 import dns_pb2, flow_pb2, http_pb2, kerberos_pb2, ldap_pb2, ntlm_pb2, smb_pb2
from vigil.sensor.v1 import sensor_pb2

ADDRESSES = st.one_of(
    st.sampled_from([bytes([10, 0, 1, i]) for i in range(1, 6)] + [bytes([203, 0, 113, 7])]),
    st.binary(max_size=17),
)
TEXT = st.text(max_size=40)
TIMES = st.floats(min_value=T0 - 86400 * 400, max_value=T0 + 86400 * 400, allow_nan=False)


@st.composite
def records(draw: st.DrawFn) -> sensor_pb2.Record:
    kind = draw(st.sampled_from(["flow", "dns", "http", "ntlm", "ldap", "kerberos", "smb", "empty"]))
    t = draw(TIMES)
    if kind == "empty":
        return sensor_pb2.Record()
    if kind == "flow":
        f = flow_pb2.Flow(
            uid=draw(TEXT),
            transport=draw(st.sampled_from(list(flow_pb2.Transport.values()))),
            conn_state=draw(st.sampled_from(list(flow_pb2.ConnState.values()))),
            history=draw(st.text(alphabet="ShADadFfRrTt^", max_size=12)),
            orig_bytes=draw(st.integers(0, 2**63 - 1)),
            resp_pkts=draw(st.integers(0, 2**32)),
            ip_proto=draw(st.integers(0, 255)),
        )
        f.orig.ip, f.resp.ip = draw(ADDRESSES), draw(ADDRESSES)
        f.orig.mac = draw(st.binary(max_size=7))
        f.resp.port = draw(st.integers(0, 65535))
        f.start_time.FromNanoseconds(int(t * 1e9))
        f.end_time.FromNanoseconds(int((t + draw(st.floats(-10, 1e5))) * 1e9))
        return sensor_pb2.Record(flow=f)
    record = sensor_pb2.Record()
    body: Any
    if kind == "dns":
        record.dns.CopyFrom(
            dns_pb2.DnsRecord(query=draw(TEXT), qtype=draw(st.sampled_from([1, 12, 16, 255])))
        )
        record.dns.answers.append(dns_pb2.DnsAnswer(rr_type=12, value=draw(TEXT)))
        body = record.dns
    elif kind == "http":
        record.http.CopyFrom(http_pb2.HttpRecord(host=draw(TEXT), uri=draw(TEXT), user_agent=draw(TEXT)))
        record.http.resp_mime_types.append(draw(st.sampled_from(["application/octet-stream", ""])))
        body = record.http
    elif kind == "ntlm":
        ok = draw(st.booleans())
        record.ntlm.CopyFrom(
            ntlm_pb2.NtlmRecord(username=draw(TEXT), hostname=draw(TEXT), carrier="smb", success=ok)
        )
        body = record.ntlm
    elif kind == "ldap":
        record.ldap.CopyFrom(ldap_pb2.LdapMessage(opcode=draw(st.sampled_from(["bind", "search", ""]))))
        body = record.ldap
    elif kind == "kerberos":
        record.kerberos.CopyFrom(kerberos_pb2.KerberosRecord(client=draw(TEXT)))
        body = record.kerberos
    else:
        version = draw(st.sampled_from(list(smb_pb2.SmbVersion.values())))
        record.smb_negotiate.CopyFrom(smb_pb2.SmbNegotiate(version=version))
        body = record.smb_negotiate
    body.time.FromNanoseconds(int(t * 1e9))
    if draw(st.booleans()):
        record.orig.ip, record.resp.ip = draw(ADDRESSES), draw(ADDRESSES)
        record.resp.port = draw(st.integers(0, 65535))
    return record


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(records(), max_size=60))
def test_any_records_are_processed_without_error(batch: list[sensor_pb2.Record]) -> None:
    master = OfflineMaster(batch_records=20)
    result = master.process(batch)
    assert result.records == len(batch)
    # And the master still works afterwards: the same batch again is learned (new batch ids), not refused.
    assert master.process(batch).records == len(batch)
