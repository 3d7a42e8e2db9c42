"""The state store: one batch's changes and its processed marker commit together or not at all."""

from __future__ import annotations

import pytest

from master.store import ActionRecord, Commit, RedisStore, Store, StoreUnavailable
from vigil import embedded
from vigil.alert.v1 import alert_pb2
from vigil.responder.v1 import responder_pb2


async def test_commit_then_redelivery_is_refused(store: Store) -> None:
    k = store.keys
    first = Commit(("b-1",), writes={k.device("dev-a"): {"schema": 1, "flows": 3}}, new_devices={"dev-a"})
    assert await store.processed(["b-1"]) == set()
    assert await store.commit(first)
    assert await store.processed(["b-1"]) == {"b-1"}
    # The same batch again (a redelivery after a crash before the ack) must change nothing.
    again = Commit(("b-1",), writes={k.device("dev-a"): {"schema": 1, "flows": 6}})
    assert not await store.commit(again)
    loaded = await store.load([k.device("dev-a"), k.device("dev-missing")])
    assert loaded == {k.device("dev-a"): {"schema": 1, "flows": 3}, k.device("dev-missing"): None}
    assert await store.device_count() == 1


async def test_unit_commits_all_markers_or_none(store: Store) -> None:
    k = store.keys
    assert await store.commit(Commit(("u-1", "u-2"), writes={k.device("dev-a"): {"schema": 1, "flows": 2}}))
    assert await store.processed(["u-0", "u-1", "u-2", "u-3"]) == {"u-1", "u-2"}
    # A unit holding one batch that is already committed is refused whole: nothing of it is written.
    assert not await store.commit(
        Commit(("u-3", "u-2"), writes={k.device("dev-a"): {"schema": 1, "flows": 9}})
    )
    assert await store.processed(["u-3"]) == set()
    assert await store.load([k.device("dev-a")]) == {k.device("dev-a"): {"schema": 1, "flows": 2}}


async def test_failed_commit_leaves_no_trace(store: Store) -> None:
    k = store.keys
    broken = Commit(
        ("b-2",),
        writes={k.device("dev-a"): {"schema": 1}, k.device("dev-b"): {"schema": 1, "bad": {1, 2}}},
    )
    with pytest.raises(TypeError):
        await store.commit(broken)
    assert await store.processed(["b-2"]) == set()
    assert await store.load([k.device("dev-a")]) == {k.device("dev-a"): None}


async def test_breaches_and_actions(store: Store) -> None:
    breach = alert_pb2.ModelBreach(breach_id="brc-1", model="Device / Network Scan", score=90)
    action = responder_pb2.Action(action_id="act-1", kind=responder_pb2.ACTION_KIND_BLOCK_ALL_OUTGOING)
    proposed = responder_pb2.Action(action_id="act-2", kind=responder_pb2.ACTION_KIND_BLOCK_ALL_OUTGOING)
    commit = Commit(
        ("b-3",),
        breaches=[breach],
        actions=[
            ActionRecord(action, "pending", "autonomous"),
            ActionRecord(proposed, "proposed", "confirm"),
        ],
        due_time=100.0,
    )
    assert await store.commit(commit)
    assert [b.breach_id for b in await store.breaches()] == ["brc-1"]
    assert await store.due_actions(now=50.0) == []
    due = await store.due_actions(now=100.0)
    assert [r.action.action_id for r in due] == ["act-1"]
    record = due[0]
    record.state = "applied"
    await store.update_action(record, None)
    assert await store.due_actions(now=1e12) == []
    stored = await store.action("act-1")
    assert stored is not None and stored.state == "applied"
    other = await store.action("act-2")
    assert other is not None and other.state == "proposed"


async def test_state_keys_are_namespaced_and_versioned(redis_server: object) -> None:
    store = RedisStore(redis_server.url)  # type: ignore[attr-defined]
    try:
        k = store.keys
        await store.commit(Commit(("b-9",), writes={k.count_model("dev-x"): {"schema": 1, "counts": {}}}))
        keys = sorted(x.decode() if isinstance(x, bytes) else x for x in await store.client.keys("*"))
        assert keys == ["vigil:v1:batch:b-9", "vigil:v1:model:count:dev-x"]
        raw = await store.client.get("vigil:v1:model:count:dev-x")
        assert raw == b'{"counts":{},"schema":1}'
        ttl = await store.client.ttl("vigil:v1:batch:b-9")
        assert ttl > 7 * 24 * 3600
    finally:
        await store.close()


async def test_unreachable_redis_is_reported_as_unavailable(short_tmp: object) -> None:
    store = RedisStore(f"unix://{short_tmp}/nothing.sock")
    with pytest.raises(StoreUnavailable):
        await store.processed(["b-1"])
    with pytest.raises(StoreUnavailable):
        await store.commit(Commit(("b-1",)))
    assert not await store.ping()
    await store.close()


async def test_fresh_only_state_expires_and_learned_state_does_not(
    redis_server: embedded.EmbeddedRedis,
) -> None:
    store = RedisStore(redis_server.url)
    k = store.keys
    writes = {
        k.endpoint("203.0.113.9"): {"schema": 1},
        k.beacons("dev-a"): {"schema": 1},
        k.device_breaches("dev-a"): {"schema": 1},
        k.device("dev-a"): {"schema": 1},
        k.count_model("dev-a"): {"schema": 1},
    }
    try:
        assert await store.commit(Commit(("b-ttl",), writes=writes))
        ttl = {key: await store.client.ttl(key) for key in writes}
    finally:
        await store.close()
    assert 7 * 86400 < ttl[k.endpoint("203.0.113.9")] <= 8 * 86400
    assert 0 < ttl[k.device_breaches("dev-a")] <= 2 * 3600
    assert ttl[k.beacons("dev-a")] > 0
    assert ttl[k.device("dev-a")] == -1 and ttl[k.count_model("dev-a")] == -1  # no expiry


async def test_a_store_of_the_old_layout_is_migrated_once_and_loudly(
    redis_server: embedded.EmbeddedRedis,
) -> None:
    """Stores written before 0.x's rename keep the count models under "scan" keys: the master moves them
    (with their expiry) before reading anything, records layout 2, and does nothing the second time."""
    import redis.asyncio as aioredis

    from master.store import LAYOUT_VERSION, StoreLayoutError, encode

    prefix = "vigil:migrate"
    raw = aioredis.Redis.from_url(redis_server.url)
    old: dict[str, dict[str, object]] = {
        f"{prefix}:features:scan:dev-a": {"schema": 3, "windows": []},
        f"{prefix}:model:scan:dev-a": {"schema": 1, "counts": {"failed_connections": [1, 2]}},
        f"{prefix}:model:scan:population": {"schema": 1, "counts": {}},
        f"{prefix}:model:scan:group:subnet:10.0.1.0/24": {"schema": 1, "counts": {}},
        f"{prefix}:device:dev-a": {"schema": 1},
    }
    for key, doc in old.items():
        await raw.set(key, encode(doc))
    await raw.expire(f"{prefix}:features:scan:dev-a", 3600)
    store = RedisStore(redis_server.url, prefix)
    try:
        assert await store.migrate() == {"1->2": 4}
        k = store.keys
        loaded = await store.load(
            [
                k.count_windows("dev-a"),
                k.count_model("dev-a"),
                k.count_population,
                k.peer_group("subnet:10.0.1.0/24"),
            ]
        )
        assert list(loaded.values()) == [old[key] for key in list(old)[:4]]
        assert not [key async for key in raw.scan_iter(match=f"{prefix}:*:scan:*")]
        assert 0 < await raw.ttl(k.count_windows("dev-a")) <= 3600
        assert await store.migrate() == {}
        await raw.set(k.layout, encode({"version": LAYOUT_VERSION + 1}))
        with pytest.raises(StoreLayoutError, match="newer Vigil"):
            await store.migrate()
    finally:
        await store.close()
        await raw.aclose()


async def test_an_empty_store_starts_at_the_current_layout(redis_server: embedded.EmbeddedRedis) -> None:
    store = RedisStore(redis_server.url, "vigil:empty")
    try:
        assert await store.migrate() == {}
        assert (await store.load([store.keys.layout]))[store.keys.layout] == {"version": 2}
    finally:
        await store.close()


async def test_a_migration_stopped_half_way_finishes_on_the_next_start(
    redis_server: embedded.EmbeddedRedis,
) -> None:
    """A master killed during the 1 -> 2 step leaves some keys moved and no layout recorded: the next
    start moves the rest, and nothing is lost or overwritten."""
    import redis.asyncio as aioredis

    from master.store import encode

    prefix = "vigil:halfway"
    raw = aioredis.Redis.from_url(redis_server.url)
    await raw.set(f"{prefix}:model:count:dev-a", encode({"schema": 1, "counts": {"a": 1}}))  # moved already
    await raw.set(f"{prefix}:model:scan:dev-b", encode({"schema": 1, "counts": {"b": 2}}))  # not yet
    store = RedisStore(redis_server.url, prefix)
    try:
        assert await store.migrate() == {"1->2": 1}
        k = store.keys
        loaded = await store.load([k.count_model("dev-a"), k.count_model("dev-b")])
        assert loaded == {
            k.count_model("dev-a"): {"schema": 1, "counts": {"a": 1}},
            k.count_model("dev-b"): {"schema": 1, "counts": {"b": 2}},
        }
    finally:
        await store.close()
        await raw.aclose()
