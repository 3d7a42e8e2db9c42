"""Stores for the master's tests: every logic test runs against real Redis (Valkey) and the memory store."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from master.store import MemoryStore, RedisStore, Store


@pytest.fixture(params=["redis", "memory"])
async def store(request: pytest.FixtureRequest) -> AsyncIterator[Store]:
    if request.param == "memory":
        yield MemoryStore()
        return
    server = request.getfixturevalue("redis_server")
    redis_store = RedisStore(server.url)
    yield redis_store
    await redis_store.close()
