"""Zeek-format logs written by the live sensor as its records are produced, rotated as Zeek rotates them.

Every log the sensor renders (:class:`sensor.logwriter.ZeekRows`: conn, dns, http, ssl, ...) plus
weird.log goes to ``<directory>/<log>.log``, in Zeek's JSON writer conventions or in Zeek's TSV form with
its header lines (:mod:`sensor.zeekschema`), so tools that follow a Zeek log directory (zeek-cut, RITA,
Slips, zat) can follow a Vigil sensor.

Rotation, as Zeek does it with ``Log::default_rotation_interval`` set:

* by event time (the packets' clock, Zeek's network time), at multiples of the interval counted from local
  midnight, so hourly files turn over on the hour; and also when a file reaches ``rotate_max_bytes``;
* the TSV file gets its ``#close`` line, then is renamed (one atomic rename) to Zeek's name for a rotated
  file: ``conn.2026-12-07-20-00-00.log`` (``Log::default_rotation_date_format``, the open time: what Zeek
  alone writes) or ``conn__2026-12-07-20-00-00__2026-12-07-21-00-00__.log`` (open and close time: what
  Zeek writes for zeek-archiver). Two rotations of one log within a second get ``.1``, ``.2`` ... before
  ``.log`` rather than overwrite each other;
* a file left by a sensor that died is rotated when the next one starts (Zeek's leftover log rotation), and
  every open file is rotated when the sensor stops.

Disk use is bounded: rotated files beyond ``max_files``, or beyond ``max_total_bytes`` counted with the
current files, are removed oldest first (counted). Only files named as this module names them are
counted or removed; anything else in the directory is left alone. The current files can add at most one
``rotate_max_bytes`` each.

A directory that cannot be used at start-up is a :class:`LogDirError` (the service reports it and exits);
a write that fails later (disk full, directory removed) drops the row, counts it, and is retried a few
seconds later, so telemetry to the master never stops for the sake of a log file.
"""

from __future__ import annotations

import contextlib
import os
import re
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from prometheus_client import CollectorRegistry, Counter

from sensor.logwriter import ZEEK_LOGS, Row, ZeekRows, json_line
from sensor.weird import Weird, WeirdLog, WeirdSampler, weird_row
from sensor.zeekschema import tsv_footer, tsv_header, tsv_line
from vigil.config import ZeekLogsConfig
from vigil.log import get
from vigil.sensor.v1 import sensor_pb2

log = get("sensor.livelogs")

LIVE_LOGS = (*ZEEK_LOGS, "weird")
# Zeek's Log::default_rotation_date_format.
DATE_FORMAT = "%Y-%m-%d-%H-%M-%S"
# After a failed write, rows are dropped (counted) for this long before the file is tried again.
RETRY_AFTER_S = 5.0
# Rotated-name collisions within one second: suffixes tried before giving up on that rotation's name.
MAX_NAME_SUFFIX = 1000

_STAMP = r"\d{4}-\d\d-\d\d-\d\d-\d\d-\d\d"
# Names this module gives rotated files (either style), the only files retention counts and removes.
_ROTATED = re.compile(rf"^(?P<log>[a-z_]+)(?:\.{_STAMP}(?:\.\d+)?|__{_STAMP}__{_STAMP}__(?:\d+__)?)\.log$")


class LogDirError(Exception):
    """The log directory cannot be used (not creatable, not a directory, not writable)."""


def stamp(ts: float) -> str:
    """A time as Zeek puts it in rotated names and in #open/#close (local time)."""
    return time.strftime(DATE_FORMAT, time.localtime(ts))


def rotated_name(log_name: str, opened: float, closed: float, naming: str, suffix: int = 0) -> str:
    """The name of a rotated file of ``log_name`` (see the module docstring)."""
    if naming == "archiver":
        extra = f"{suffix}__" if suffix else ""
        return f"{log_name}__{stamp(opened)}__{stamp(closed)}__{extra}.log"
    extra = f".{suffix}" if suffix else ""
    return f"{log_name}.{stamp(opened)}{extra}.log"


def next_rotation(now: float, interval_s: float) -> float:
    """When a file opened at ``now`` is due: the next multiple of ``interval_s`` after local midnight
    (Zeek's calc_next_rotate); infinity when rotation by time is off."""
    if interval_s <= 0:
        return float("inf")
    local = time.localtime(now)
    midnight = now - (local.tm_hour * 3600 + local.tm_min * 60 + local.tm_sec + (now % 1))
    periods = int((now - midnight) // interval_s) + 1
    return midnight + periods * interval_s


def directory_problem(directory: Path) -> str | None:
    """Make the log directory; why it cannot be used (None when it is ready)."""
    if directory.exists() and not directory.is_dir():
        return f"{directory}: exists and is not a directory"
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        return f"{directory}: cannot create: {exc.strerror or exc}"
    if not os.access(directory, os.W_OK | os.X_OK):
        return f"{directory}: not writable by this process"
    return None


@dataclass(slots=True)
class _Current:
    """An open ``<log>.log``."""

    fh: IO[str]
    opened: float
    due: float
    size: int = 0


class LogMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.rows = Counter(
            "vigil_sensor_zeek_log_rows", "Rows written to Zeek logs", ["log"], registry=registry
        )
        self.rotations = Counter(
            "vigil_sensor_zeek_log_rotations", "Zeek log files rotated", registry=registry
        )
        self.removed = Counter(
            "vigil_sensor_zeek_log_removed_files",
            "Rotated Zeek log files removed to keep within max_files / max_total_bytes",
            registry=registry,
        )
        self.write_errors = Counter(
            "vigil_sensor_zeek_log_write_errors",
            "Failed writes, renames or removals in the Zeek log directory",
            registry=registry,
        )
        self.dropped = Counter(
            "vigil_sensor_zeek_log_dropped_rows",
            "Rows not written because the Zeek log directory failed",
            registry=registry,
        )
        self.weirds_sampled_out = Counter(
            "vigil_sensor_weirds_sampled_out",
            "Weirds counted but not written to weird.log (sampling, or the pending-row bound)",
            registry=registry,
        )


class LiveZeekLogs:
    """Rotating Zeek logs fed with the sensor's records as they are produced (see the module docstring)."""

    def __init__(
        self,
        cfg: ZeekLogsConfig,
        peer: str,
        registry: CollectorRegistry | None = None,
        rows: ZeekRows | None = None,
    ) -> None:
        if cfg.directory is None:
            raise ValueError("ZeekLogsConfig.directory is not set")
        self.cfg = cfg
        self.directory = cfg.directory
        self.peer = peer
        self.rows = rows or ZeekRows()
        self.metrics = LogMetrics(registry if registry is not None else CollectorRegistry())
        self._row_counters = {name: self.metrics.rows.labels(log=name) for name in LIVE_LOGS}
        self.weirds: WeirdLog | None = (
            WeirdLog(
                WeirdSampler(
                    cfg.weird_sampling_threshold, cfg.weird_sampling_rate, cfg.weird_sampling_duration_s
                )
            )
            if cfg.weird
            else None
        )
        self._weirds_counted = 0
        self._files: dict[str, _Current] = {}
        # Rotated files (oldest first) with their sizes, and their total: retention works from these.
        self._rotated: deque[tuple[str, int]] = deque()
        self._rotated_bytes = 0
        self._retry_at = 0.0
        self.closed = False

    # -- life cycle -----------------------------------------------------------------------------------
    def start(self, now: float | None = None) -> None:
        """Ready the directory: files a previous run left open are rotated, then the bounds applied."""
        problem = directory_problem(self.directory)
        if problem:
            raise LogDirError(problem)
        try:
            entries = list(os.scandir(self.directory))
        except OSError as exc:
            raise LogDirError(f"{self.directory}: cannot list: {exc.strerror or exc}") from None
        rotated: list[tuple[float, str, int]] = []
        for entry in entries:
            if not entry.is_file(follow_symlinks=False):
                continue
            if _ROTATED.match(entry.name):
                info = entry.stat(follow_symlinks=False)
                rotated.append((info.st_mtime, entry.name, info.st_size))
        for name in LIVE_LOGS:
            leftover = self.directory / f"{name}.log"
            if leftover.is_file() and not leftover.is_symlink():
                info = leftover.stat()
                target = self._free_name(name, info.st_mtime, info.st_mtime)
                try:
                    os.replace(leftover, self.directory / target)
                except OSError as exc:
                    raise LogDirError(
                        f"{leftover}: cannot rotate what a previous run left: {exc.strerror}"
                    ) from None
                rotated.append((info.st_mtime, target, info.st_size))
        for _mtime, name, size in sorted(rotated):
            self._rotated.append((name, size))
            self._rotated_bytes += size
        self._enforce_bounds()

    def close(self, now: float) -> None:
        """End of the sensor: rows still waiting for their connection written, every open file rotated."""
        if self.closed:
            return
        for name, row in self.rows.finish():
            self._write(name, row, now)
        self._drain_weirds(now)
        for name in list(self._files):
            self._rotate(name, now)
        self.closed = True

    # -- input ----------------------------------------------------------------------------------------
    def add(self, records: Iterable[sensor_pb2.Record], now: float) -> None:
        """The records of one step of the pipeline, ``now`` its event time."""
        self.tick(now)
        for record in records:
            for name, row in self.rows.add(record):
                self._write(name, row, now)
        self._drain_weirds(now)

    def tick(self, now: float) -> None:
        """Rotate the files whose interval has ended at event time ``now``."""
        for name in [n for n, cur in self._files.items() if cur.due <= now]:
            self._rotate(name, self._files[name].due)

    def _drain_weirds(self, now: float) -> None:
        if self.weirds is None:
            return
        for weird in self.weirds.drain():
            self._write_weird(weird, now)
        lost = self.weirds.sampler.sampled_out + self.weirds.overflow
        if lost > self._weirds_counted:
            self.metrics.weirds_sampled_out.inc(lost - self._weirds_counted)
            self._weirds_counted = lost

    def _write_weird(self, weird: Weird, now: float) -> None:
        self._write("weird", weird_row(weird, self.peer), now)

    # -- files ----------------------------------------------------------------------------------------
    def _write(self, name: str, row: Row, now: float) -> None:
        cur = self._files.get(name)
        if cur is None:
            cur = self._open(name, now)
            if cur is None:
                self.metrics.dropped.inc()
                return
        line = (tsv_line(name, row) if self.cfg.format == "tsv" else json_line(row)) + "\n"
        try:
            cur.fh.write(line)
        except OSError as exc:
            self._failed(f"write {name}.log", exc)
            self._abandon(name)
            self.metrics.dropped.inc()
            return
        cur.size += len(line.encode("utf-8")) if not line.isascii() else len(line)
        self._row_counters[name].inc()
        if cur.size >= self.cfg.rotate_max_bytes:
            self._rotate(name, now)

    def _open(self, name: str, now: float) -> _Current | None:
        if time.monotonic() < self._retry_at:
            return None
        path = self.directory / f"{name}.log"
        try:
            fh = path.open("w", encoding="utf-8", newline="\n")
            header = tsv_header(name, stamp(now)) if self.cfg.format == "tsv" else ""
            fh.write(header)
        except OSError as exc:
            self._failed(f"open {path}", exc)
            return None
        cur = _Current(fh, now, next_rotation(now, self.cfg.rotate_interval_s), len(header))
        self._files[name] = cur
        return cur

    def _rotate(self, name: str, closed: float) -> None:
        """Close ``<name>.log`` (TSV: with #close) and rename it to its rotated name in one step."""
        cur = self._files.pop(name)
        target = self._free_name(name, cur.opened, closed)
        try:
            if self.cfg.format == "tsv":
                footer = tsv_footer(stamp(closed))
                cur.fh.write(footer)
                cur.size += len(footer)
            cur.fh.close()
            os.replace(self.directory / f"{name}.log", self.directory / target)
        except OSError as exc:
            self._failed(f"rotate {name}.log", exc)
            return
        self.metrics.rotations.inc()
        self._rotated.append((target, cur.size))
        self._rotated_bytes += cur.size
        self._enforce_bounds()

    def _free_name(self, name: str, opened: float, closed: float) -> str:
        for suffix in range(MAX_NAME_SUFFIX):
            target = rotated_name(name, opened, closed, self.cfg.rotated_names, suffix)
            if not (self.directory / target).exists():
                return target
        # Bounded: a thousand rotations of one log within a second; the last name is replaced.
        return target

    def _abandon(self, name: str) -> None:
        cur = self._files.pop(name, None)
        if cur is not None:
            with contextlib.suppress(OSError):
                cur.fh.close()

    def _failed(self, what: str, exc: OSError) -> None:
        self.metrics.write_errors.inc()
        self._retry_at = time.monotonic() + RETRY_AFTER_S
        log.error(
            "zeek_log_write_failed",
            action=what,
            directory=str(self.directory),
            error=exc.strerror or str(exc),
        )

    def _enforce_bounds(self) -> None:
        """Remove the oldest rotated files while beyond max_files or max_total_bytes (current files count)."""
        current = sum(cur.size for cur in self._files.values())
        while self._rotated and (
            len(self._rotated) > self.cfg.max_files
            or self._rotated_bytes + current > self.cfg.max_total_bytes
        ):
            target, size = self._rotated.popleft()
            self._rotated_bytes -= size
            try:
                (self.directory / target).unlink(missing_ok=True)
            except OSError as exc:
                self._failed(f"remove {target}", exc)
                continue
            self.metrics.removed.inc()

    # -- for tests and `vigil up` ------------------------------------------------------------------------
    @property
    def rotated_files(self) -> list[str]:
        return [name for name, _ in self._rotated]

    def describe(self) -> str:
        """Where the logs go and how they turn over, in one line."""
        return describe(self.cfg)


def describe(cfg: ZeekLogsConfig) -> str:
    every = "never by time" if cfg.rotate_interval_s <= 0 else f"every {_duration(cfg.rotate_interval_s)}"
    return (
        f"{cfg.directory} ({cfg.format}, rotated {every} or at {_size(cfg.rotate_max_bytes)}, "
        f"kept within {_size(cfg.max_total_bytes)} and {cfg.max_files} files)"
    )


def _duration(seconds: float) -> str:
    if seconds % 3600 == 0:
        return f"{int(seconds // 3600)} h"
    if seconds % 60 == 0:
        return f"{int(seconds // 60)} min"
    return f"{seconds:g} s"


def _size(n: int) -> str:
    for unit, factor in (("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024)):
        if n >= factor:
            return f"{n / factor:g} {unit}"
    return f"{n} B"
