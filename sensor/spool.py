"""A bounded on-disk queue of encoded batches, kept while NATS is unreachable.

Files are named so that lexical order is publication order; each is written to a temporary name and
renamed, so a crash never leaves a half-written batch that looks complete. When the spool is full the
oldest batches go first (recent telemetry matters more to detection), batches older than the age bound
go too (the bus would no longer keep them, and models have moved on), and every dropped record is counted.
"""

from __future__ import annotations

import contextlib
import os
import time
from dataclasses import dataclass
from pathlib import Path

_SUFFIX = ".batch"


@dataclass(frozen=True, slots=True)
class SpooledBatch:
    path: Path
    size: int
    records: int
    # Wall time it was spooled (the file's modification time after a restart).
    created: float


class Spool:
    def __init__(self, directory: Path, max_bytes: int) -> None:
        self.directory = directory
        self.max_bytes = max_bytes
        directory.mkdir(parents=True, exist_ok=True)
        for tmp in directory.glob("*.tmp"):
            tmp.unlink()
        self._entries: list[SpooledBatch] = []
        for p in sorted(directory.glob("*" + _SUFFIX)):
            with contextlib.suppress(FileNotFoundError):
                info = p.stat()
                self._entries.append(SpooledBatch(p, info.st_size, _records_from_name(p), info.st_mtime))
        self._bytes = sum(e.size for e in self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def size_bytes(self) -> int:
        return self._bytes

    def put(self, key: str, payload: bytes, records: int) -> int:
        """Store one batch; returns how many records had to be dropped to make room (whole old batches)."""
        dropped = 0
        if len(payload) > self.max_bytes:
            return records
        while self._entries and self._bytes + len(payload) > self.max_bytes:
            oldest = self._entries.pop(0)
            self._bytes -= oldest.size
            dropped += oldest.records
            with contextlib.suppress(FileNotFoundError):
                oldest.path.unlink()
        path = self.directory / f"{key}.{records}{_SUFFIX}"
        tmp = path.with_suffix(".tmp")
        with open(tmp, "wb") as fh:
            fh.write(payload)
            fh.flush()
            os.fsync(fh.fileno())
        tmp.rename(path)
        self._entries.append(SpooledBatch(path, len(payload), records, time.time()))
        self._bytes += len(payload)
        return dropped

    def expire(self, now: float, max_age_s: float) -> int:
        """Drop the batches spooled more than ``max_age_s`` before ``now``; returns their records."""
        dropped = 0
        while self._entries and now - self._entries[0].created > max_age_s:
            oldest = self._entries[0]
            dropped += oldest.records
            self.pop(oldest)
        return dropped

    def peek(self) -> tuple[SpooledBatch, bytes] | None:
        while self._entries:
            entry = self._entries[0]
            try:
                return entry, entry.path.read_bytes()
            except FileNotFoundError:
                self._entries.pop(0)
                self._bytes -= entry.size
        return None

    def pop(self, entry: SpooledBatch) -> None:
        if self._entries and self._entries[0] == entry:
            self._entries.pop(0)
            self._bytes -= entry.size
        with contextlib.suppress(FileNotFoundError):
            entry.path.unlink()


def _records_from_name(path: Path) -> int:
    # "<key>.<records>.batch"
    try:
        return int(path.name[: -len(_SUFFIX)].rsplit(".", 1)[1])
    except (IndexError, ValueError):
        return 0
