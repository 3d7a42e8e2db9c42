"""Signed webhooks and Alertmanager alerts against a real HTTP server that goes down and comes back."""

from __future__ import annotations

import asyncio
import random
import time
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from master.exports import Exporters
from master.exports.sink import Retry
from master.exports.webhook import SIGNATURE_HEADER, TIMESTAMP_HEADER, sign, verify
from tests.master.exports.receivers import HttpReceiver, breach, exports_config, free_port
from vigil import config
from vigil.config import ConfigError

pytestmark = pytest.mark.timeout(60)
SECRET = "s3cret-for-tests"


def _metric(registry: CollectorRegistry, name: str, **labels: str) -> float:
    return registry.get_sample_value(name, labels) or 0.0


async def _run(exporters: Exporters) -> tuple[asyncio.Event, asyncio.Task[None]]:
    stop = asyncio.Event()
    return stop, asyncio.create_task(exporters.run(stop))


async def test_json_webhook_is_signed_over_timestamp_and_body(receiver: HttpReceiver) -> None:
    cfg = exports_config(webhook={"url": receiver.url + "/hook", "secret": SECRET})
    exporters = Exporters(cfg, CollectorRegistry())
    stop, task = await _run(exporters)
    exporters.submit([breach(1, peer="203.0.113.9:8443")])
    (req,) = await receiver.wait_for(1)
    stop.set()
    await task
    assert req.path == "/hook" and req.headers["Content-Type"] == "application/json"
    stamp, signature = req.headers[TIMESTAMP_HEADER], req.headers[SIGNATURE_HEADER]
    assert abs(int(stamp) - time.time()) < 30
    assert signature == sign(SECRET.encode(), int(stamp), req.body)
    assert verify(SECRET.encode(), stamp, req.body, signature, time.time(), 300)
    assert not verify(b"other", stamp, req.body, signature, time.time(), 300)
    assert not verify(SECRET.encode(), stamp, req.body + b" ", signature, time.time(), 300)
    assert not verify(SECRET.encode(), stamp, req.body, signature, time.time() + 3600, 300)
    body = req.json()
    assert body["breach_id"] == breach(1).breach_id and body["model_id"] == "device-network-scan"
    assert body["device"]["ip"] == "10.0.1.4" and body["peer_port"] == 8443


async def test_nothing_is_lost_within_the_bound_while_the_receiver_is_down() -> None:
    """Down from the start; 8 breaches into a queue of 5: the 3 oldest are dropped and counted, the 5 newest
    arrive in order once the server is up, after retries with backoff."""
    receiver = HttpReceiver(free_port())
    registry = CollectorRegistry()
    cfg = exports_config(
        webhook={"url": receiver.url, "secret": SECRET}, queue_max=5, retry_initial_s=0.05, retry_max_s=0.4
    )
    exporters = Exporters(cfg, registry, rng=random.Random(7))
    stop, task = await _run(exporters)
    try:
        exporters.submit([breach(n) for n in range(8)])
        await asyncio.sleep(1.0)
        failed = _metric(registry, "vigil_master_export_attempts_total", sink="webhook", outcome="failed")
        assert failed >= 3  # retried while down, and backed off (at most ~1 s / 0.05 s attempts otherwise)
        assert failed < 15
        assert (
            _metric(registry, "vigil_master_export_dropped_total", sink="webhook", reason="queue_full") == 3
        )
        assert _metric(registry, "vigil_master_export_queue_breaches", sink="webhook") == 5
        receiver.start()
        got = await receiver.wait_for(5)
        await asyncio.sleep(0.3)
    finally:
        stop.set()
        await task
        receiver.stop()
    assert [r.json()["breach_id"] for r in receiver.requests] == [breach(n).breach_id for n in range(3, 8)]
    assert len(got) == 5
    assert _metric(registry, "vigil_master_export_attempts_total", sink="webhook", outcome="sent") == 5


async def test_receiver_going_down_and_coming_back_mid_stream() -> None:
    receiver = HttpReceiver(free_port())
    receiver.start()
    cfg = exports_config(
        webhook={"url": receiver.url, "format": "slack"}, retry_initial_s=0.05, retry_max_s=0.2
    )
    registry = CollectorRegistry()
    exporters = Exporters(cfg, registry)
    stop, task = await _run(exporters)
    try:
        exporters.submit([breach(0)])
        await receiver.wait_for(1)
        receiver.stop()
        exporters.submit([breach(1), breach(2)])
        await asyncio.sleep(0.5)
        receiver.start()
        await receiver.wait_for(3)
        # A receiver answering 503 is down too: retried, not dropped.
        receiver.status = 503
        exporters.submit([breach(3)])
        await asyncio.sleep(0.4)
        receiver.status = 200
        await receiver.wait_for(6)
    finally:
        stop.set()
        await task
        receiver.stop()
    ids = [r.json()["blocks"][-1]["elements"][0]["text"] for r in receiver.requests]
    delivered = [i for i, r in zip(ids, receiver.requests, strict=True)]
    assert [f"breach `{breach(n).breach_id}`" for n in range(3)] == delivered[:3]
    assert delivered[-1] == f"breach `{breach(3).breach_id}`" and len(set(delivered)) == 4
    assert _metric(registry, "vigil_master_export_dropped_total", sink="webhook", reason="queue_full") == 0


async def test_slack_and_teams_payloads(receiver: HttpReceiver) -> None:
    for fmt in ("slack", "teams"):
        exporters = Exporters(
            exports_config(webhook={"url": receiver.url, "format": fmt}), CollectorRegistry()
        )
        stop, task = await _run(exporters)
        exporters.submit([breach(2, score=65)])
        await receiver.wait_for(1 if fmt == "slack" else 2)
        stop.set()
        await task
    slack, teams = (r.json() for r in receiver.requests)
    title = "HIGH Device / Network Scan on ws-04 (score 65)"
    assert slack["text"].startswith(title) and breach(2).explanation in slack["text"]
    assert slack["blocks"][0] == {"type": "header", "text": {"type": "plain_text", "text": title}}
    assert any("T1046 Network Service Discovery" in f["text"] for f in slack["blocks"][2]["fields"])
    assert teams["@type"] == "MessageCard" and teams["@context"] == "https://schema.org/extensions"
    assert teams["title"] == title and teams["summary"] == title and teams["text"] == breach(2).explanation
    facts = {f["name"]: f["value"] for f in teams["sections"][0]["facts"]}
    assert facts["Breach"] == breach(2).breach_id and facts["Device"] == "10.0.1.4 ws-04"


async def test_alertmanager_gets_v2_alerts(receiver: HttpReceiver) -> None:
    cfg = exports_config(alertmanager={"url": receiver.url + "/", "resolve_after_s": 600})
    exporters = Exporters(cfg, CollectorRegistry())
    stop, task = await _run(exporters)
    b = breach(4, score=85)
    exporters.submit([b])
    (req,) = await receiver.wait_for(1)
    stop.set()
    await task
    assert req.path == "/api/v2/alerts"
    alerts: list[dict[str, Any]] = req.json()
    assert len(alerts) == 1
    alert = alerts[0]
    assert alert["labels"] == {
        "alertname": "Device / Network Scan",
        "severity": "critical",
        "device": "10.0.1.4",
        "model_id": "device-network-scan",
        "breach_id": b.breach_id,
    }
    assert (
        alert["annotations"]["description"] == b.explanation and alert["annotations"]["techniques"] == "T1046"
    )
    assert alert["startsAt"] == "2026-12-07T21:30:04.250+00:00"
    assert alert["endsAt"] == "2026-12-07T21:40:04.250+00:00"


async def test_min_severity_filters_what_is_exported(receiver: HttpReceiver) -> None:
    cfg = exports_config(webhook={"url": receiver.url, "format": "teams"}, min_severity="high")
    exporters = Exporters(cfg, CollectorRegistry())
    stop, task = await _run(exporters)
    exporters.submit([breach(0, score=30), breach(1, score=65)])
    await receiver.wait_for(1)
    await asyncio.sleep(0.2)
    stop.set()
    await task
    assert [r.json()["sections"][0]["facts"][-1]["value"] for r in receiver.requests] == [breach(1).breach_id]


async def test_queued_breaches_left_at_shutdown_are_counted() -> None:
    registry = CollectorRegistry()
    cfg = exports_config(
        webhook={"url": f"http://127.0.0.1:{free_port()}", "secret": SECRET}, retry_initial_s=5, retry_max_s=5
    )
    exporters = Exporters(cfg, registry)
    stop, task = await _run(exporters)
    exporters.submit([breach(n) for n in range(4)])
    await asyncio.sleep(0.2)
    stop.set()
    await asyncio.wait_for(task, 10)
    assert _metric(registry, "vigil_master_export_dropped_total", sink="webhook", reason="shutdown") == 4


def test_backoff_grows_exponentially_with_jitter_and_a_cap() -> None:
    retry, rng = Retry(0.5, 8.0), random.Random(1)
    for failures, ceiling in ((1, 0.5), (2, 1.0), (3, 2.0), (5, 8.0), (30, 8.0)):
        delays = [retry.delay_s(failures, rng) for _ in range(50)]
        assert all(ceiling / 2 <= d <= ceiling for d in delays)
        assert len(set(delays)) > 1


def test_export_config_errors_are_reported_together_and_env_overrides_work(tmp_path: Any) -> None:
    with pytest.raises(ConfigError) as err:
        config.build(
            {
                "master": {
                    "exports": {
                        "syslog": {"address": "localhost", "transport": "tls"},
                        "webhook": {"url": "ftp://x", "format": "json"},
                        "alertmanager": {"url": "http://am:9093"},
                        "queue_max": 0,
                    }
                }
            },
            environ={},
        )
    text = "\n".join(err.value.problems)
    assert "master.exports.syslog.address" in text
    assert "master.exports.webhook.url" in text
    assert "master.exports.queue_max" in text
    with pytest.raises(ConfigError, match="ca_file: required with transport tls"):
        config.build(
            {"master": {"exports": {"syslog": {"address": "127.0.0.1:6514", "transport": "tls"}}}}, {}
        )
    with pytest.raises(ConfigError, match="needs a secret"):
        config.build({"master": {"exports": {"webhook": {"url": "https://siem.example/hook"}}}}, {})
    cfg = config.build(
        {},
        environ={
            "VIGIL_MASTER__EXPORTS__SYSLOG__ADDRESS": "127.0.0.1:514",
            "VIGIL_MASTER__EXPORTS__SYSLOG__FORMAT": "cef",
            "VIGIL_MASTER__EXPORTS__WEBHOOK__URL": "https://hooks.example/T0",
            "VIGIL_MASTER__EXPORTS__WEBHOOK__FORMAT": "slack",
        },
        overrides=config.set_overrides(["master.exports.queue_max=50", "master.exports.min_severity=medium"]),
    )
    e = cfg.master.exports
    assert (e.syslog.address, e.syslog.format, e.webhook.format) == ("127.0.0.1:514", "cef", "slack")
    assert (e.queue_max, e.min_severity) == (50, "medium")
    assert "s3cret" not in repr(
        config.build({"master": {"exports": {"webhook": {"url": "http://h/x", "secret": SECRET}}}}, {})
    )
