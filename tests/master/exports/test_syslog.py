"""Syslog exports against a real rsyslog: RFC 5424 and CEF over UDP, TCP (octet counting) and TLS."""

from __future__ import annotations

import asyncio
import re
from datetime import datetime, timedelta
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from master.breaches import seconds
from master.exports import Exporters
from master.exports.syslog import cef, message
from tests.master.exports.receivers import Rsyslog, breach, exports_config, start_rsyslog, stop_rsyslog
from vigil.alert.v1 import alert_pb2
from vigil.config import ExportsConfig

pytestmark = pytest.mark.timeout(60)

# An explanation with every character the formats must escape: SD's '"', '\\', ']' and CEF's '=', '|',
# line breaks, and non-ASCII.
TRICKY = 'ws-04 (Zoë) ran "nmap -p 1-1024" a=b|c \\share] x\ny'


def parse_sd(sd: str) -> tuple[str, dict[str, str]]:
    """One SD-ELEMENT back into its id and parameters (RFC 5424 6.3, un-escaping '\\"', '\\\\', '\\]')."""
    m = re.fullmatch(r"\[(\S+) (.*)\]", sd, re.S)
    assert m, sd
    params = {k: re.sub(r"\\([\"\\\]])", r"\1", v) for k, v in re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', m[2])}
    return m[1], params


def parse_cef(text: str) -> tuple[list[str], dict[str, str]]:
    """A CEF record back into its seven header fields and its extension (written here, not shared with the
    exporter, so a mistake in one is caught by the other)."""
    fields: list[str] = []
    cur, i = "", 0
    while len(fields) < 7:
        ch = text[i]
        if ch == "\\" and text[i + 1] in "\\|":
            cur += text[i + 1]
            i += 2
            continue
        if ch == "|":
            fields.append(cur)
            cur = ""
        else:
            cur += ch
        i += 1
    ext_text = text[i:]
    keys = list(re.finditer(r"(?:^| )(\w+)=", ext_text))
    ext = {}
    for k, m in enumerate(keys):
        end = keys[k + 1].start() if k + 1 < len(keys) else len(ext_text)
        raw = ext_text[m.end() : end]
        ext[m[1]] = re.sub(r"\\(.)", lambda e: {"n": "\n", "r": "\r"}.get(e[1], e[1]), raw)
    return fields, ext


def _check_rfc5424(row: dict[str, Any], b: alert_pb2.ModelBreach) -> None:
    assert row["app"] == "vigil" and row["host"] == "sensor-host" and row["msgid"] == b.model_id
    # PRI = facility 4 (auth) * 8 + severity 3 (error) for a "high" breach.
    assert b.severity == "high" and row["pri"] == 4 * 8 + 3
    # TIMESTAMP is the breach's event time, to the millisecond, in UTC.
    when = datetime.fromisoformat(row["ts"].replace("Z", "+00:00"))
    assert when.utcoffset() == timedelta(0)
    assert abs(when.timestamp() - seconds(b.time)) < 0.001
    sd_id, params = parse_sd(row["sd"])
    assert sd_id == "vigil@32473"
    assert params["breach_id"] == b.breach_id and params["model"] == b.model
    assert params["device_id"] == b.device.device_id and params["ip"] == b.device.ip
    assert params["score"] == str(b.score) and params["techniques"] == "T1046"
    assert params["peer_ip"] == "203.0.113.9" and params["peer_port"] == "8443"
    assert row["msg"].lstrip("\ufeff") == b.explanation


def _cfg(rsyslog: Rsyslog, transport: str, fmt: str) -> ExportsConfig:
    syslog: dict[str, Any] = {
        "address": f"127.0.0.1:{rsyslog.ports[transport]}",
        "transport": transport,
        "format": fmt,
        "hostname": "sensor-host",
    }
    if transport == "tls":
        syslog["ca_file"] = rsyslog.ca_file
    return exports_config(syslog=syslog, retry_initial_s=0.05, retry_max_s=0.5)


async def _export(cfg: ExportsConfig, breaches: list[alert_pb2.ModelBreach]) -> Exporters:
    exporters = Exporters(cfg, CollectorRegistry())
    stop = asyncio.Event()
    task = asyncio.create_task(exporters.run(stop))
    exporters.submit(breaches)
    for _ in range(500):
        if not exporters.sinks[0].queue:
            break
        await asyncio.sleep(0.01)
    stop.set()
    await task
    return exporters


@pytest.mark.parametrize("transport", ["udp", "tcp", "tls"])
async def test_rfc5424_reaches_rsyslog_and_parses_back_to_the_breach(
    rsyslog: Rsyslog, transport: str
) -> None:
    breaches = [breach(n, explanation=TRICKY + f" #{n}", peer="203.0.113.9:8443") for n in range(3)]
    await _export(_cfg(rsyslog, transport, "rfc5424"), breaches)
    rows = await rsyslog.wait_for(transport, 3)
    assert len(rows) == 3
    for row, b in zip(rows, breaches, strict=True):
        _check_rfc5424(row, b)


@pytest.mark.parametrize("transport", ["udp", "tcp", "tls"])
async def test_cef_reaches_rsyslog_and_parses_back_to_the_breach(rsyslog: Rsyslog, transport: str) -> None:
    b = breach(5, explanation=TRICKY, peer="203.0.113.9:8443", model="Device / Network Scan")
    await _export(_cfg(rsyslog, transport, "cef"), [b])
    (row,) = await rsyslog.wait_for(transport, 1)
    assert row["msgid"] == b.model_id and row["sd"] == "-"
    fields, ext = parse_cef(row["msg"])
    assert fields[:3] == ["CEF:0", "Vigil", "Vigil"]
    assert fields[4:] == [b.model_id, b.model, "7"]
    assert ext["msg"] == TRICKY
    assert ext["externalId"] == b.breach_id and ext["src"] == "10.0.1.4" and ext["smac"] == b.device.mac
    assert (ext["dst"], ext["dpt"]) == ("203.0.113.9", "8443")
    assert ext["cs1"] == b.device.device_id and ext["cs2"] == "T1046" and ext["cn1"] == "71"
    assert ext["rt"] == str(round(1_796_679_005.25 * 1000))


def test_cef_escapes_header_and_extension_as_the_format_says() -> None:
    b = breach(explanation="a=b\\c\nd|e", model="Device / Network Scan")
    text = cef(b)
    assert "msg=a\\=b\\\\c\\nd|e" in text  # '|' needs no escape in the extension
    assert "CEF:0|Vigil|Vigil|" in text
    b6 = breach(ip="fd00::4", peer="[2001:db8::7]:443")
    _, ext = parse_cef(cef(b6))
    assert ext["c6a2"] == "fd00::4" and ext["c6a2Label"] == "Source IPv6 Address" and "src" not in ext


def test_long_messages_are_cut_within_the_limit_and_stay_utf8() -> None:
    b = breach(explanation="é" * 10_000)
    data = message(b, hostname="h", max_bytes=2048)
    assert len(data) <= 2048
    data.decode("utf-8")


async def test_tcp_reconnects_after_rsyslog_restarts(rsyslog: Rsyslog) -> None:
    """rsyslog goes away and comes back on the same port: queued breaches are delivered afterwards."""
    cfg = _cfg(rsyslog, "tcp", "rfc5424")
    exporters = Exporters(cfg, CollectorRegistry())
    stop = asyncio.Event()
    task = asyncio.create_task(exporters.run(stop))
    try:
        exporters.submit([breach(0)])
        await rsyslog.wait_for("tcp", 1)
        stop_rsyslog(rsyslog)
        exporters.submit([breach(1), breach(2)])
        await asyncio.sleep(0.5)
        again = start_rsyslog(rsyslog.directory, rsyslog.ports)
        try:
            rows = await again.wait_for("tcp", 3, timeout_s=15)
        finally:
            stop_rsyslog(again)
    finally:
        stop.set()
        await task
    assert [parse_sd(r["sd"])[1]["breach_id"] for r in rows][-2:] == [
        breach(1).breach_id,
        breach(2).breach_id,
    ]
