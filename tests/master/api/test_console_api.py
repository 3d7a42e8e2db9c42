"""The console API end to end: a scan the real master (NATS, Redis, confirm mode) turned into breaches, an
incident and a proposed action, seen through gRPC and HTTP; an operator confirms, extends and suppresses, a
read-only token is refused, every change is audited with its actor, and the responder's dry-run backend
enforces what was confirmed."""

from __future__ import annotations

import asyncio
import hashlib
import json
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import grpc
import nats
import pytest
from google.protobuf.duration_pb2 import Duration
from prometheus_client import CollectorRegistry

from master.api.service import ConsoleService
from master.service import MasterService
from master.store import ActionRecord, RedisStore, decode
from responder.client import ResponderClient
from responder.service import ResponderService
from tests.master.traffic import T0, batches, office, scan
from vigil import config, embedded
from vigil.alert.v1 import alert_pb2
from vigil.bus import ensure_stream, telemetry_subject
from vigil.config import ResponderConfig
from vigil.console.v1 import console_pb2 as pb
from vigil.console.v1 import console_pb2_grpc as pb_grpc
from vigil.responder.v1 import responder_pb2

pytestmark = pytest.mark.timeout(120)

OPERATOR_TOKEN = "op-" + "s3cret-operator-token"
VIEWER_TOKEN = "view-" + "s3cret-viewer-token"
SCANNER = "10.0.1.4"


@dataclass
class Stack:
    http: str
    grpc_address: str
    responder: ResponderClient
    store: RedisStore
    proposed: ActionRecord


def http(
    base: str, method: str, path: str, token: str | None = None, body: dict[str, Any] | None = None
) -> tuple[int, Any]:
    request = urllib.request.Request(
        base + path, method=method, data=None if body is None else json.dumps(body).encode()
    )
    if token is not None:
        request.add_header("Authorization", f"Bearer {token}")
    request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


async def ahttp(*args: Any, **kwargs: Any) -> tuple[int, Any]:
    # The servers run on this loop: the blocking client goes to a thread.
    return await asyncio.to_thread(http, *args, **kwargs)


def bearer(token: str) -> tuple[tuple[str, str]]:
    return (("authorization", f"Bearer {token}"),)


async def _proposed(store: RedisStore, deadline_s: float) -> ActionRecord:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + deadline_s
    while loop.time() < deadline:
        async for key in store.client.scan_iter(match=store.keys.action("*")):
            record = ActionRecord.from_doc(decode(await store.client.get(key)) or {})
            if record.state == "proposed" and record.action.target_ip == SCANNER:
                return record
        await asyncio.sleep(0.2)
    raise AssertionError("the master proposed no action for the scanner")


@pytest.fixture
async def stack(
    nats_server: embedded.EmbeddedNats, redis_server: embedded.EmbeddedRedis
) -> AsyncIterator[Stack]:
    responder = ResponderService(ResponderConfig(listen="127.0.0.1:0", backend="dryrun"), CollectorRegistry())
    responder_stop = asyncio.Event()
    responder_task = asyncio.create_task(responder.run(responder_stop))
    await asyncio.wait_for(responder.started.wait(), 10)
    address = f"127.0.0.1:{responder.port}"
    cfg = config.build(
        {
            "nats": {"url": nats_server.url},
            "redis": {"url": redis_server.url},
            "master": {"responder_address": address, "response_mode": "confirm", "block_duration_s": 900},
            "console": {
                "grpc_listen": "127.0.0.1:0",
                "http_listen": "127.0.0.1:0",
                "tokens": [
                    {"name": "alice", "role": "operator", "token": OPERATOR_TOKEN},
                    {
                        "name": "viewer",
                        "role": "read",
                        "token_sha256": hashlib.sha256(VIEWER_TOKEN.encode()).hexdigest(),
                    },
                ],
            },
        },
        environ={},
    )
    nc = await nats.connect(nats_server.url)
    js = nc.jetstream()
    await ensure_stream(js, cfg.nats)
    records = list(office(T0, 30, devices=10)) + scan(T0 + 30 * 60 + 1, SCANNER)
    records.sort(key=lambda r: r.flow.start_time.ToNanoseconds())
    for b in batches(records, 250, "console"):
        await js.publish(
            telemetry_subject("lab", "s1"), b.SerializeToString(), headers={"Nats-Msg-Id": b.batch_id}
        )
    master_stop, console_stop = asyncio.Event(), asyncio.Event()
    master_task = asyncio.create_task(MasterService(cfg, CollectorRegistry()).run(master_stop))
    console = ConsoleService(cfg)
    console_task = asyncio.create_task(console.run(console_stop))
    store = RedisStore(redis_server.url)
    client = ResponderClient(address)
    try:
        proposed = await _proposed(store, 30)
        await asyncio.wait_for(console.started.wait(), 10)
        yield Stack(
            f"http://127.0.0.1:{console.http_port}", f"127.0.0.1:{console.grpc_port}", client, store, proposed
        )
    finally:
        await client.close()
        await store.close()
        console_stop.set()
        master_stop.set()
        await asyncio.wait_for(console_task, 15)
        await asyncio.wait_for(master_task, 15)
        responder_stop.set()
        await asyncio.wait_for(responder_task, 15)
        await nc.close()


async def _active(client: ResponderClient, action_id: str) -> responder_pb2.ActionStatus:
    for _ in range(100):
        for status in await client.list():
            if status.action.action_id == action_id and status.state == responder_pb2.ACTION_STATE_ACTIVE:
                return status
        await asyncio.sleep(0.1)
    raise AssertionError(f"{action_id} never became active on the responder")


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
        active = await _active(stack.responder, proposed.action.action_id)
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
        await _active(stack.responder, successor.action_id)
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
