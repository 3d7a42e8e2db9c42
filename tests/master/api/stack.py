"""The real stack the console tests run against: NATS, Valkey, the master in confirm mode, the responder
on its dry-run backend and the console (gRPC + HTTP), fed an office's traffic and a scan whose breach the
master answers with a proposed action."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from typing import Any

import nats
from prometheus_client import CollectorRegistry

from master.api.service import ConsoleService
from master.service import MasterService
from master.store import ActionRecord, RedisStore, decode
from responder.client import ResponderClient
from responder.service import ResponderService
from tests.master.traffic import T0, batches, office, scan
from vigil import config
from vigil.bus import ensure_stream, telemetry_subject
from vigil.config import ResponderConfig
from vigil.responder.v1 import responder_pb2
from vigil.sensor.v1 import sensor_pb2

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


async def active(client: ResponderClient, action_id: str) -> responder_pb2.ActionStatus:
    """The action's status once the responder's backend enforces it (bounded wait)."""
    for _ in range(100):
        for status in await client.list():
            if status.action.action_id == action_id and status.state == responder_pb2.ACTION_STATE_ACTIVE:
                return status
        await asyncio.sleep(0.1)
    raise AssertionError(f"{action_id} never became active on the responder")


@contextlib.asynccontextmanager
async def running_stack(
    nats_url: str, redis_url: str, extra: Iterable[sensor_pb2.Record] = ()
) -> AsyncIterator[Stack]:
    """Everything started on free loopback ports, the traffic (plus ``extra``) published, and torn down."""
    responder = ResponderService(ResponderConfig(listen="127.0.0.1:0", backend="dryrun"), CollectorRegistry())
    responder_stop = asyncio.Event()
    responder_task = asyncio.create_task(responder.run(responder_stop))
    await asyncio.wait_for(responder.started.wait(), 10)
    address = f"127.0.0.1:{responder.port}"
    cfg = config.build(
        {
            "nats": {"url": nats_url},
            "redis": {"url": redis_url},
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
    nc = await nats.connect(nats_url)
    js = nc.jetstream()
    await ensure_stream(js, cfg.nats)
    records = [*office(T0, 30, devices=10), *scan(T0 + 30 * 60 + 1, SCANNER), *extra]
    records.sort(key=_record_time)
    for b in batches(records, 250, "console"):
        await js.publish(
            telemetry_subject("lab", "s1"), b.SerializeToString(), headers={"Nats-Msg-Id": b.batch_id}
        )
    master_stop, console_stop = asyncio.Event(), asyncio.Event()
    master_task = asyncio.create_task(MasterService(cfg, CollectorRegistry()).run(master_stop))
    console = ConsoleService(cfg)
    console_task = asyncio.create_task(console.run(console_stop))
    store = RedisStore(redis_url)
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


def _record_time(record: sensor_pb2.Record) -> int:
    kind = record.WhichOneof("kind")
    if kind == "flow":
        return record.flow.start_time.ToNanoseconds()
    return int(getattr(record, kind or "flow").time.ToNanoseconds())
