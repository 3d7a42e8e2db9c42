from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.master.exports.receivers import (
    OPENSSL,
    RSYSLOGD,
    HttpReceiver,
    Rsyslog,
    http_receiver,
    start_rsyslog,
    stop_rsyslog,
)


@pytest.fixture
def rsyslog(tmp_path: Path) -> Iterator[Rsyslog]:
    if RSYSLOGD is None or OPENSSL is None:
        pytest.skip("rsyslogd or openssl missing (scripts/install.sh installs them)")
    server = start_rsyslog(tmp_path)
    try:
        yield server
    finally:
        stop_rsyslog(server)


@pytest.fixture
def receiver() -> Iterator[HttpReceiver]:
    yield from http_receiver()
