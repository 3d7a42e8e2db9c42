"""The console API end to end: a scan the real master (NATS, Redis, confirm mode) turned into breaches, an
incident and a proposed action, seen through gRPC and HTTP; an operator confirms, extends and suppresses, a
read-only token is refused, every change is audited with its actor, and the responder's dry-run backend
enforces what was confirmed."""

from __future__ import annotations

import urllib.parse
from collections.abc import AsyncIterator

import grpc
import pytest
from google.protobuf.duration_pb2 import Duration

from tests.master.api.stack import OPERATOR_TOKEN, SCANNER, VIEWER_TOKEN, Stack, ahttp, running_stack
from tests.master.api.stack import active as enforced
from vigil import embedded
from vigil.alert.v1 import alert_pb2
from vigil.console.v1 import console_pb2 as pb
from vigil.console.v1 import console_pb2_grpc as pb_grpc
from vigil.responder.v1 import responder_pb2

pytestmark = pytest.mark.timeout(120)


def bearer(token: str) -> tuple[tuple[str, str]]:
    return (("authorization", f"Bearer {token}"),)


@pytest.fixture
async def stack(
    nats_server: embedded.EmbeddedNats, redis_server: embedded.EmbeddedRedis
) -> AsyncIterator[Stack]:
    async with running_stack(nats_server.url, redis_server.url) as running:
        yield running


async def test_console_end_to_end(stack: Stack) -> None:
    base, proposed = stack.http, stack.proposed
    breach_id = proposed.action.breach_id
    async with grpc.aio.insecure_channel(stack.grpc_address) as channel:
        stub = pb_grpc.ConsoleServiceStub(channel)

        # The breach and its incident, through both APIs, to a read-only token.
        status, listed = await ahttp(
            base, "GET", f"/v1/breaches?device_id={proposed.action.target_ip}", VIEWER_TOKEN
        )
        assert status == 200, listed
        status, listed = await ahttp(base, "GET", "/v1/breaches?page_size=500", VIEWER_TOKEN)
        http_breaches = {b["breach_id"]: b for b in listed["breaches"]}
        assert breach_id in http_breaches
        scanner_device = http_breaches[breach_id]["device"]["device_id"]
        grpc_breaches = await stub.ListBreaches(
            pb.ListBreachesRequest(device_id=scanner_device, page_size=500), metadata=bearer(VIEWER_TOKEN)
        )
        assert breach_id in {b.breach_id for b in grpc_breaches.breaches}
        assert {b.device.ip for b in grpc_breaches.breaches} == {SCANNER}
        model = http_breaches[breach_id]["model"]
        status, by_model = await ahttp(
            base, "GET", f"/v1/breaches?model={urllib.parse.quote(model)}&min_severity=low", VIEWER_TOKEN
        )
        assert status == 200 and {b["model"] for b in by_model["breaches"]} == {model}

        status, incidents = await ahttp(base, "GET", "/v1/incidents", VIEWER_TOKEN)
        assert status == 200
        mine = [i for i in incidents["incidents"] if breach_id in i["breach_ids"]]
        assert len(mine) == 1 and [d["ip"] for d in mine[0]["devices"]] == [SCANNER]
        incident_id = mine[0]["incident_id"]
        grpc_incident = await stub.GetIncident(
            pb.GetIncidentRequest(incident_id=incident_id), metadata=bearer(VIEWER_TOKEN)
        )
        assert (
            breach_id in grpc_incident.incident.breach_ids
            and "reconnaissance" in grpc_incident.incident.phases
        )

        # The device with what the master learned of it.
        status, device = await ahttp(base, "GET", f"/v1/devices/{scanner_device}", VIEWER_TOKEN)
        assert status == 200 and device["device"]["ip"] == SCANNER
        volumes = {v["feature"]: v for v in device["device"]["pattern_of_life"]["usual_volumes"]}
        assert "distinct_internal_destinations" in volumes
        devices = await stub.ListDevices(pb.ListDevicesRequest(page_size=500), metadata=bearer(VIEWER_TOKEN))
        assert SCANNER in {d.ip for d in devices.devices}

        # No token, a wrong one, and a read-only token asking for a change.
        assert (await ahttp(base, "GET", "/v1/incidents"))[0] == 401
        assert (await ahttp(base, "GET", "/v1/incidents", "not-a-token"))[0] == 401
        confirm_path = f"/v1/actions/{proposed.action.action_id}/confirm"
        status, refused = await ahttp(base, "POST", confirm_path, VIEWER_TOKEN, {"reason": "looks bad"})
        assert status == 403, refused
        with pytest.raises(grpc.aio.AioRpcError) as denied:
            await stub.ConfirmAction(
                pb.ConfirmActionRequest(action_id=proposed.action.action_id, reason="x"),
                metadata=bearer(VIEWER_TOKEN),
            )
        assert denied.value.code() == grpc.StatusCode.PERMISSION_DENIED
        with pytest.raises(grpc.aio.AioRpcError) as anonymous:
            await stub.ListIncidents(pb.ListIncidentsRequest())
        assert anonymous.value.code() == grpc.StatusCode.UNAUTHENTICATED
        assert (await stub.ListActions(pb.ListActionsRequest(), metadata=bearer(VIEWER_TOKEN))).records[
            0
        ].state == "proposed"
        # A change without a reason is refused.
        assert (await ahttp(base, "POST", confirm_path, OPERATOR_TOKEN, {}))[0] == 400

        # The operator confirms: the responder's dry-run backend enforces it.
        status, confirmed = await ahttp(
            base, "POST", confirm_path, OPERATOR_TOKEN, {"reason": "scanner, contain"}
        )
        assert status == 200, confirmed
        assert confirmed["record"]["state"] == "applied"
        active = await enforced(stack.responder, proposed.action.action_id)
        assert active.action.target_ip == SCANNER
        assert (await ahttp(base, "POST", confirm_path, OPERATOR_TOKEN, {"reason": "again"}))[0] == 409

        # Extend over gRPC: a successor with a later expiry is active, the original revoked.
        extended = await stub.ExtendAction(
            pb.ExtendActionRequest(
                action_id=proposed.action.action_id, extension=Duration(seconds=1800), reason="still scanning"
            ),
            metadata=bearer(OPERATOR_TOKEN),
        )
        successor = extended.record.action
        assert successor.expire_time.seconds > active.action.expire_time.seconds + 1700
        await enforced(stack.responder, successor.action_id)
        assert proposed.action.action_id not in {
            s.action.action_id
            for s in await stack.responder.list()
            if s.state == responder_pb2.ACTION_STATE_ACTIVE
        }
        cleared = await stub.ClearAction(
            pb.ClearActionRequest(action_id=successor.action_id, reason="cleaned up"),
            metadata=bearer(OPERATOR_TOKEN),
        )
        assert (
            cleared.record.state == "revoked" and cleared.status.state == responder_pb2.ACTION_STATE_REVOKED
        )

        # Acknowledge the incident; suppress the model for the device: retroactively hidden.
        status, _ = await ahttp(
            base, "POST", "/v1/acknowledge", OPERATOR_TOKEN, {"id": incident_id, "reason": "on it"}
        )
        assert status == 200
        status, acked = await ahttp(
            base, "GET", "/v1/incidents?status=INCIDENT_STATUS_ACKNOWLEDGED", VIEWER_TOKEN
        )
        assert incident_id in {i["incident_id"] for i in acked["incidents"]}
        status, _ = await ahttp(
            base, "POST", "/v1/acknowledge", OPERATOR_TOKEN, {"id": breach_id, "reason": "seen"}
        )
        assert status == 200
        status, suppressed = await ahttp(
            base,
            "POST",
            "/v1/suppressions",
            OPERATOR_TOKEN,
            {"model": model, "device_id": scanner_device, "duration": "3600s", "reason": "pen test"},
        )
        assert status == 200 and suppressed["suppression_id"].startswith("sup-")
        status, after = await ahttp(
            base, "GET", f"/v1/breaches?device_id={scanner_device}&page_size=500", VIEWER_TOKEN
        )
        assert model not in {b["model"] for b in after["breaches"]}
        status, everything = await ahttp(
            base,
            "GET",
            f"/v1/breaches?device_id={scanner_device}&include_suppressed=true&page_size=500",
            VIEWER_TOKEN,
        )
        assert breach_id in {b["breach_id"] for b in everything["breaches"]}
        assert breach_id in everything["acknowledged_breach_ids"]

        # Every change audited with its actor, newest first; the log in Redis is the same.
        audit = await stub.ListAudit(pb.ListAuditRequest(), metadata=bearer(VIEWER_TOKEN))
        assert [(e.operation, e.actor, e.via) for e in audit.entries] == [
            ("Suppress", "alice", "http"),
            ("Acknowledge", "alice", "http"),
            ("Acknowledge", "alice", "http"),
            ("ClearAction", "alice", "grpc"),
            ("ExtendAction", "alice", "grpc"),
            ("ConfirmAction", "alice", "http"),
        ]
        assert audit.entries[-1].target == proposed.action.action_id
        assert audit.entries[-1].reason == "scanner, contain"
        raw = await stack.store.client.lrange(stack.store.keys.audit, 0, -1)
        assert len(raw) == 6 and all(b"s3cret" not in r for r in raw)

    status, document = await ahttp(base, "GET", "/openapi.json")
    assert status == 200 and document["openapi"].startswith("3.")
    assert document["paths"]["/v1/actions/{action_id}/confirm"]["post"]["operationId"] == "ConfirmAction"
    assert alert_pb2.ModelBreach.DESCRIPTOR.name == "ModelBreach"
