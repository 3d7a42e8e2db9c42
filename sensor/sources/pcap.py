"""Capture files as a packet source, optionally replayed at the pace they were captured."""

from __future__ import annotations

import asyncio
import itertools
import os
import stat
import sys
import time
from collections.abc import AsyncIterator, Iterable, Iterator
from pathlib import Path

import numpy as np

from sensor.capture import DEFAULT_BLOCK_PACKETS, STDIN, PacketBlock, read_capture

# In real-time mode, blocks are cut into slices of this much capture time so downstream sees
# packets at roughly the rate they were captured instead of 65536 at once.
REALTIME_SLICE_S = 0.1


def capture_problem(path: Path) -> str | None:
    """Why ``path`` cannot be read as a capture (None when it can): capture files are regular files or
    FIFOs (``tcpdump -w - | ...``), or ``-`` for standard input when it is not a terminal; a directory or a
    device would read as garbage or for ever."""
    if str(path) == STDIN:
        if sys.stdin is None or sys.stdin.isatty():
            return "-: standard input is a terminal; pipe a capture in (tcpdump -w - | vigil ...)"
        return None
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return f"{path}: no such file"
    except OSError as exc:
        return f"{path}: cannot read: {exc.strerror or exc}"
    if stat.S_ISDIR(mode):
        return f"{path}: a directory, not a capture file"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return f"{path}: a device, not a capture file"
    if not (stat.S_ISREG(mode) or stat.S_ISFIFO(mode)):
        return f"{path}: not a regular file"
    if not os.access(path, os.R_OK):
        return f"{path}: not readable by this process"
    return None


def capture_problems(paths: Iterable[Path]) -> list[str]:
    paths = list(paths)
    problems = [p for p in (capture_problem(Path(x)) for x in paths) if p is not None]
    if sum(str(x) == STDIN for x in paths) > 1:
        problems.append("-: standard input can be read only once")
    return problems


class PcapSource:
    """Reads capture files in order; yields :class:`PacketBlock` objects.

    Errors (:class:`sensor.capture.CaptureError`) propagate after everything readable was yielded.
    """

    def __init__(
        self,
        paths: Iterable[str | Path],
        realtime: bool = False,
        block_packets: int = DEFAULT_BLOCK_PACKETS,
        speed: float = 1.0,
    ) -> None:
        self.paths = [Path(p) for p in paths]
        self.realtime = realtime
        self.block_packets = block_packets
        self.speed = speed

    def blocks(self) -> Iterator[PacketBlock]:
        """All blocks of all files, as fast as they can be read (offline analysis)."""
        for path in self.paths:
            yield from read_capture(path, self.block_packets)

    async def ablocks(self) -> AsyncIterator[PacketBlock]:
        """Blocks read in a worker thread (file I/O never blocks the loop); paced when ``realtime`` (at
        ``speed`` times the pace they were captured at)."""
        it = self.blocks()
        sentinel = object()
        first_ts: float | None = None
        wall0 = 0.0
        while True:
            block = await asyncio.to_thread(next, it, sentinel)
            if block is sentinel:
                return
            assert isinstance(block, PacketBlock)
            if not self.realtime or len(block) == 0:
                yield block
                continue
            for part in _time_slices(block, REALTIME_SLICE_S):
                if first_ts is None:
                    first_ts = float(part.ts[0])
                    wall0 = time.monotonic()
                due = wall0 + (float(part.ts[-1]) - first_ts) / self.speed
                delay = due - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                yield part


def _time_slices(block: PacketBlock, width: float) -> Iterator[PacketBlock]:
    ts = block.ts
    bucket = np.floor((ts - ts[0]) / width)
    cuts = np.flatnonzero(np.diff(bucket)) + 1
    bounds = [0, *cuts.tolist(), len(block)]
    for lo, hi in itertools.pairwise(bounds):
        yield block.slice(lo, hi)
