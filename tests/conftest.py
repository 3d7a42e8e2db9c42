"""Shared fixtures: real nats-server and Valkey processes on free loopback ports / unix sockets."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from vigil import embedded

REPO = Path(__file__).resolve().parent.parent
CORPUS = Path(os.environ.get("VIGIL_CORPUS", REPO.parent / "shared" / "corpus"))


@pytest.fixture
def short_tmp() -> Iterator[Path]:
    """A temp dir with a short path (unix socket paths are limited to ~100 bytes)."""
    path = Path(tempfile.mkdtemp(prefix="vg-", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def nats_server(short_tmp: Path) -> Iterator[embedded.EmbeddedNats]:
    server = embedded.start_nats(short_tmp / "nats")
    yield server
    server.stop()


@pytest.fixture
def redis_server(short_tmp: Path) -> Iterator[embedded.EmbeddedRedis]:
    server = embedded.start_redis(short_tmp / "redis")
    yield server
    server.stop()


@pytest.fixture
def corpus() -> Path:
    ref = CORPUS / "reference"
    if not ref.is_dir():
        pytest.skip(f"reference corpus not found at {ref} (set VIGIL_CORPUS to the shared corpus)")
    return ref
