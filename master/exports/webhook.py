"""Model breaches as HTTP POSTs: signed JSON webhooks (plain, OCSF, Slack, Microsoft Teams) and alerts for a
Prometheus Alertmanager.

**Signature.** With a secret configured, every webhook carries two headers::

    X-Vigil-Timestamp: 1796679428                      (Unix seconds when the request was signed)
    X-Vigil-Signature: v1=<hex HMAC-SHA256(secret, timestamp + "." + body)>

A receiver recomputes the HMAC over the timestamp header, a dot and the raw body bytes, compares it in
constant time, and refuses a timestamp too far from its own clock (five minutes is usual) so that a
captured request cannot be replayed later. ``v1=`` names the scheme so a later one can sit beside it.

**Alertmanager.** ``POST <url>/api/v2/alerts`` with a list of one alert: labels ``alertname`` (the model),
``severity``, ``device`` (its IP, else its id), ``model_id``, ``breach_id``; annotations ``summary``,
``description`` (the explanation), ``techniques``; ``startsAt`` the breach's event time and ``endsAt``
``resolve_after_s`` later, so an alert nobody refreshes resolves on its own.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from google.protobuf.json_format import MessageToDict

from master.attack import technique
from master.breaches import seconds
from master.exports.ocsf import detection_finding
from vigil.alert.v1 import alert_pb2

SIGNATURE_HEADER = "X-Vigil-Signature"
TIMESTAMP_HEADER = "X-Vigil-Timestamp"
# Slack attachment colours and Teams theme colours per band.
_COLOURS = {"critical": "B00020", "high": "E8590C", "medium": "F2C94C", "low": "4C9AFF"}


def sign(secret: bytes, timestamp: int, body: bytes) -> str:
    digest = hmac.new(secret, str(timestamp).encode("ascii") + b"." + body, hashlib.sha256).hexdigest()
    return f"v1={digest}"


def verify(
    secret: bytes, timestamp: str, body: bytes, signature: str, now: float, tolerance_s: float
) -> bool:
    """What a receiver does: a fresh timestamp and a matching HMAC (compared in constant time)."""
    if not timestamp.isdigit() or abs(now - int(timestamp)) > tolerance_s:
        return False
    return hmac.compare_digest(sign(secret, int(timestamp), body), signature)


def breach_dict(breach: alert_pb2.ModelBreach) -> dict[str, Any]:
    """The ModelBreach message as JSON (proto field names, Timestamps as RFC 3339)."""
    return MessageToDict(breach, preserving_proto_field_name=True)


def _title(breach: alert_pb2.ModelBreach) -> str:
    who = breach.device.hostname or breach.device.ip or breach.device.device_id
    return f"{breach.severity.upper()} {breach.model} on {who} (score {breach.score})"


def _techniques(breach: alert_pb2.ModelBreach) -> str:
    return ", ".join(f"{t} {technique(t).name}" for t in breach.mitre_techniques)


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, tz=UTC).isoformat(timespec="milliseconds")


def _when(breach: alert_pb2.ModelBreach) -> str:
    return _iso(seconds(breach.time))


def slack(breach: alert_pb2.ModelBreach) -> dict[str, Any]:
    """An incoming-webhook message: ``text`` for notifications and clients without blocks, blocks for the
    rest."""
    fields = [
        ("Device", f"{breach.device.ip} {breach.device.hostname}".strip() or breach.device.device_id),
        ("Severity", f"{breach.severity} ({breach.score})"),
        ("ATT&CK", _techniques(breach) or "-"),
        ("Event time", _when(breach)),
    ]
    return {
        "text": f"{_title(breach)}: {breach.explanation}",
        "blocks": [
            {"type": "header", "text": {"type": "plain_text", "text": _title(breach)[:150]}},
            {"type": "section", "text": {"type": "mrkdwn", "text": breach.explanation[:3000]}},
            {
                "type": "section",
                "fields": [{"type": "mrkdwn", "text": f"*{k}*\n{v}"[:2000]} for k, v in fields],
            },
            {"type": "context", "elements": [{"type": "mrkdwn", "text": f"breach `{breach.breach_id}`"}]},
        ],
    }


def teams(breach: alert_pb2.ModelBreach) -> dict[str, Any]:
    """An Office 365 connector MessageCard (what Teams incoming webhooks take)."""
    return {
        "@type": "MessageCard",
        "@context": "https://schema.org/extensions",
        "summary": _title(breach),
        "themeColor": _COLOURS.get(breach.severity, "808080"),
        "title": _title(breach),
        "text": breach.explanation,
        "sections": [
            {
                "facts": [
                    {"name": "Model", "value": breach.model},
                    {"name": "Device", "value": f"{breach.device.ip} {breach.device.hostname}".strip()},
                    {"name": "Severity", "value": f"{breach.severity} ({breach.score})"},
                    {"name": "ATT&CK", "value": _techniques(breach) or "-"},
                    {"name": "Event time", "value": _when(breach)},
                    {"name": "Breach", "value": breach.breach_id},
                ]
            }
        ],
    }


PAYLOADS: dict[str, Callable[[alert_pb2.ModelBreach], dict[str, Any]]] = {
    "json": breach_dict,
    "ocsf": detection_finding,
    "slack": slack,
    "teams": teams,
}


def alertmanager_alerts(breach: alert_pb2.ModelBreach, resolve_after_s: float) -> list[dict[str, Any]]:
    start = seconds(breach.time)
    return [
        {
            "labels": {
                "alertname": breach.model,
                "severity": breach.severity,
                "device": breach.device.ip or breach.device.device_id,
                "model_id": breach.model_id,
                "breach_id": breach.breach_id,
            },
            "annotations": {
                "summary": _title(breach),
                "description": breach.explanation,
                "techniques": ",".join(breach.mitre_techniques),
            },
            "startsAt": _iso(start),
            "endsAt": _iso(start + resolve_after_s),
            "generatorURL": f"vigil://breaches/{breach.breach_id}",
        }
    ]


class HttpError(OSError):
    """The receiver answered with a status that is not a success."""


def _post(url: str, body: bytes, headers: dict[str, str], timeout_s: float) -> int:
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            response.read(65536)
            return int(response.status)
    except urllib.error.HTTPError as exc:
        raise HttpError(f"HTTP {exc.code} from the receiver") from None


class HttpTransport:
    """POSTs JSON to one URL (in a worker thread: urllib blocks, the master's loop must not), signing it
    when a secret is set; any failure or non-2xx answer raises OSError for the sink to retry."""

    def __init__(
        self,
        url: str,
        *,
        secret: bytes | None = None,
        timeout_s: float = 5.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.url, self.secret, self.timeout_s, self.clock = url, secret, timeout_s, clock

    async def post(self, payload: Any) -> None:
        body = json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
        headers = {"Content-Type": "application/json", "User-Agent": "vigil-exporter"}
        if self.secret:
            stamp = int(self.clock())
            headers[TIMESTAMP_HEADER] = str(stamp)
            headers[SIGNATURE_HEADER] = sign(self.secret, stamp, body)
        try:
            await asyncio.to_thread(_post, self.url, body, headers, self.timeout_s)
        except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:
            raise OSError(str(exc)[:200]) from None

    async def close(self) -> None:
        return None
