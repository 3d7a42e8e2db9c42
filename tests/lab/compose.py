"""Compose a multi-day baseline from short recorded sessions, and move a capture to a chosen time.

A session is a whole pcap recorded in the lab (e.g. ``tests/data/scenarios/benign/ws1-morning.pcap``).
:func:`compose_baseline` copies every session into several working-hour slots of every working day
(Monday to Friday), each copy moved in time as a whole (every packet of the copy shifted by the same
offset), and merges all copies into one pcap sorted by timestamp. Packet bytes are never modified and
packets of one copy are never reordered. :func:`shift_to` moves a whole capture (e.g. an attack
recorded today) to begin at a given time, typically the working day after the baseline.
:func:`stage_scenarios` does both for ``vigil eval``: ``baseline.pcap`` plus each scenario's captures
moved to the next working day at 10:00, next to a copy of its truth file.

    python -m tests.lab.compose OUT.pcap --days 3 --start 2026-11-02T08:00:00Z SESSION.pcap...
    python -m tests.lab.compose OUT.pcap --shift --start 2026-11-05T10:00:00Z CAPTURE.pcap

Timestamps are handled as integer microseconds, so shifting preserves every inter-packet gap exactly.
Output is classic pcap: little-endian, microsecond resolution, link type Ethernet (1).
"""

from __future__ import annotations

import argparse
import datetime as dt
import heapq
import random
import struct
import sys
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

LINKTYPE_ETHERNET = 1
_MAGIC_US = 0xA1B2C3D4
_MAGIC_NS = 0xA1B23C4D
_GLOBAL = struct.Struct("<IHHiIII")
_RECORD = struct.Struct("<IIII")
_US = 1_000_000
# The committed benign sessions, and the Monday 08:00 UTC a baseline starts on unless told otherwise.
BENIGN_DIR = Path(__file__).resolve().parent.parent / "data" / "scenarios" / "benign"
DEFAULT_START = dt.datetime(2026, 11, 2, 8, tzinfo=dt.UTC).timestamp()


class Packet(NamedTuple):
    ts_us: int
    orig_len: int
    data: bytes


@dataclass(frozen=True)
class Capture:
    path: Path
    snaplen: int
    linktype: int
    packets: list[Packet]

    @property
    def start_us(self) -> int:
        return self.packets[0].ts_us

    @property
    def end_us(self) -> int:
        return self.packets[-1].ts_us

    @property
    def duration_us(self) -> int:
        return self.end_us - self.start_us


def read_pcap(path: Path) -> Capture:
    """Read a classic pcap (either byte order, micro- or nanosecond; nanoseconds are floored to µs)."""
    raw = path.read_bytes()
    if len(raw) < _GLOBAL.size:
        raise ValueError(f"{path}: too short for a pcap header")
    for order in ("<", ">"):
        (magic,) = struct.unpack_from(order + "I", raw, 0)
        if magic in (_MAGIC_US, _MAGIC_NS):
            break
    else:
        raise ValueError(f"{path}: not a classic pcap file (pcapng is not supported)")
    divisor = 1000 if magic == _MAGIC_NS else 1
    _, _, _, _, _, snaplen, linktype = struct.unpack_from(order + "IHHiIII", raw, 0)
    record = struct.Struct(order + "IIII")
    packets: list[Packet] = []
    pos = _GLOBAL.size
    while pos + record.size <= len(raw):
        sec, frac, incl, orig = record.unpack_from(raw, pos)
        pos += record.size
        if pos + incl > len(raw):
            raise ValueError(f"{path}: truncated packet at offset {pos - record.size}")
        packets.append(Packet(sec * _US + frac // divisor, orig, raw[pos : pos + incl]))
        pos += incl
    if not packets:
        raise ValueError(f"{path}: no packets")
    return Capture(path=path, snaplen=snaplen, linktype=linktype, packets=packets)


def write_pcap(path: Path, packets: Iterable[Packet], snaplen: int, linktype: int = LINKTYPE_ETHERNET) -> int:
    """Write packets as a classic little-endian microsecond pcap; returns the number written."""
    count = 0
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as out:
        out.write(_GLOBAL.pack(_MAGIC_US, 2, 4, 0, 0, snaplen, linktype))
        for ts_us, orig_len, data in packets:
            if ts_us < 0:
                raise ValueError("negative timestamp")
            sec, usec = divmod(ts_us, _US)
            out.write(_RECORD.pack(sec, usec, len(data), orig_len))
            out.write(data)
            count += 1
    return count


@dataclass(frozen=True)
class Copy:
    """One whole session placed in the baseline: every packet's timestamp + ``offset_us``."""

    session: Path
    day: dt.date
    slot: int
    offset_us: int
    start_us: int
    end_us: int
    packets: int


@dataclass
class ComposeStats:
    out: Path
    packets: int
    bytes: int
    start: float
    end: float
    days: list[dt.date]
    copies: list[Copy] = field(default_factory=list)
    seconds: float = 0.0

    def day_after(self, hour: float = 10.0) -> float:
        """Epoch seconds of ``hour`` (UTC) on the first working day after the baseline's last day."""
        return _at_hour(_next_working_day(self.days[-1] + dt.timedelta(days=1)), hour)


@dataclass(frozen=True)
class ShiftStats:
    out: Path
    packets: int
    offset_us: int
    start: float
    end: float


def _next_working_day(day: dt.date) -> dt.date:
    while day.weekday() >= 5:
        day += dt.timedelta(days=1)
    return day


def _at_hour(day: dt.date, hour: float) -> float:
    midnight = dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC).timestamp()
    return midnight + hour * 3600


def working_days(start: float, days: int) -> list[dt.date]:
    """``days`` consecutive working days (Mon-Fri, UTC), the first on or after ``start``'s date."""
    day = dt.datetime.fromtimestamp(start, tz=dt.UTC).date()
    out: list[dt.date] = []
    while len(out) < days:
        day = _next_working_day(day)
        out.append(day)
        day += dt.timedelta(days=1)
    return out


def _shifted(capture: Capture, offset_us: int) -> Iterator[Packet]:
    for ts_us, orig_len, data in capture.packets:
        yield Packet(ts_us + offset_us, orig_len, data)


def _check_ordered(capture: Capture) -> None:
    previous = capture.start_us
    for index, packet in enumerate(capture.packets):
        if packet.ts_us < previous:
            raise ValueError(f"{capture.path}: packet {index} goes back in time; cannot merge intact")
        previous = packet.ts_us


def compose_baseline(
    sessions: Sequence[Path],
    out: Path,
    days: int,
    start: float,
    seed: int,
    *,
    slots_per_day: int = 5,
    day_hours: float = 10.0,
    max_jitter_s: float = 1800.0,
) -> ComposeStats:
    """Write one pcap covering ``days`` working days built from whole recorded ``sessions``.

    ``start`` (epoch seconds, UTC) fixes the first day and the time of day the working day begins
    (e.g. 08:00). The working day (``day_hours`` long) is cut into ``slots_per_day`` equal slots; every
    session is copied once into every slot of every day, moved by (slot start - session start) plus a
    random jitter in ``[0, min(max_jitter_s, slot length - session duration)]`` applied to the whole
    copy, so a copy never leaves its slot and copies of one session never overlap. Deterministic for
    ``seed``. Copies of different sessions may overlap in time (people work at the same time).
    """
    if days < 1 or slots_per_day < 1 or not sessions:
        raise ValueError("need at least one day, one slot and one session")
    t0 = time.monotonic()
    captures = [read_pcap(Path(path)) for path in sessions]
    for capture in captures:
        if capture.linktype != LINKTYPE_ETHERNET:
            raise ValueError(f"{capture.path}: link type {capture.linktype}, expected Ethernet")
        _check_ordered(capture)
    slot_us = int(day_hours * 3600 * _US) // slots_per_day
    start_dt = dt.datetime.fromtimestamp(start, tz=dt.UTC)
    day_offset_us = round(
        (start - dt.datetime(start_dt.year, start_dt.month, start_dt.day, tzinfo=dt.UTC).timestamp()) * _US
    )
    rng = random.Random(seed)
    copies: list[Copy] = []
    streams: list[Iterator[Packet]] = []
    calendar = working_days(start, days)
    for day in calendar:
        midnight_us = round(_at_hour(day, 0.0) * _US)
        for slot in range(slots_per_day):
            slot_start_us = midnight_us + day_offset_us + slot * slot_us
            for capture in captures:
                room_us = slot_us - capture.duration_us
                if room_us < 0:
                    raise ValueError(f"{capture.path} lasts longer than a slot ({slot_us / _US:.0f}s)")
                jitter_us = rng.randint(0, min(room_us, int(max_jitter_s * _US)))
                offset_us = slot_start_us + jitter_us - capture.start_us
                copies.append(
                    Copy(
                        session=capture.path,
                        day=day,
                        slot=slot,
                        offset_us=offset_us,
                        start_us=capture.start_us + offset_us,
                        end_us=capture.end_us + offset_us,
                        packets=len(capture.packets),
                    )
                )
                streams.append(_shifted(capture, offset_us))
    merged = heapq.merge(*streams, key=lambda packet: packet.ts_us)
    snaplen = max(capture.snaplen for capture in captures)
    written = write_pcap(out, merged, snaplen)
    return ComposeStats(
        out=out,
        packets=written,
        bytes=out.stat().st_size,
        start=min(c.start_us for c in copies) / _US,
        end=max(c.end_us for c in copies) / _US,
        days=calendar,
        copies=copies,
        seconds=time.monotonic() - t0,
    )


def shift_to(capture: Path, out: Path, start: float) -> ShiftStats:
    """Move a whole capture so its first packet is at ``start`` (epoch seconds); gaps are kept exactly."""
    source = read_pcap(Path(capture))
    offset_us = round(start * _US) - source.start_us
    written = write_pcap(out, _shifted(source, offset_us), source.snaplen, source.linktype)
    return ShiftStats(
        out=out,
        packets=written,
        offset_us=offset_us,
        start=(source.start_us + offset_us) / _US,
        end=(source.end_us + offset_us) / _US,
    )


def stage_scenarios(
    truths: Sequence[Path],
    work: Path,
    *,
    benign: Path = BENIGN_DIR,
    days: int = 3,
    start: float | None = None,
    seed: int = 1,
    attack_hour: float = 10.0,
) -> list[Path]:
    """Lay scenarios out in ``work`` for ``vigil eval``: one ``baseline.pcap`` composed from the benign
    sessions, then every scenario's captures moved to the first working day after the baseline at
    ``attack_hour`` (all captures of one scenario by the same offset, so their order and gaps are
    kept), and its truth file copied unchanged. Returns the copied truth files."""
    import yaml

    work.mkdir(parents=True, exist_ok=True)
    sessions = sorted(benign.glob("*.pcap"))
    stats = compose_baseline(
        sessions, work / "baseline.pcap", days, DEFAULT_START if start is None else start, seed
    )
    at_us = round(stats.day_after(attack_hour) * _US)
    staged: list[Path] = []
    for truth in truths:
        doc = yaml.safe_load(truth.read_text())
        sources = [read_pcap(truth.parent / name) for name in doc.get("captures") or []]
        if sources:
            offset_us = at_us - min(source.start_us for source in sources)
            for source in sources:
                write_pcap(
                    work / source.path.name, _shifted(source, offset_us), source.snaplen, source.linktype
                )
        staged.append(work / truth.name)
        staged[-1].write_text(truth.read_text())
    return staged


def parse_time(text: str) -> float:
    """ISO 8601 (``2026-11-02T08:00:00Z``; a time without zone is taken as UTC) to epoch seconds."""
    moment = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return moment.timestamp()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("out", type=Path)
    parser.add_argument("sessions", type=Path, nargs="*")
    parser.add_argument("--start", help="e.g. 2026-11-02T08:00:00Z")
    parser.add_argument(
        "--stage",
        action="store_true",
        help="OUT is a directory: lay out every scenario of tests/data/scenarios for `vigil eval OUT`",
    )
    parser.add_argument("--days", type=int, default=3)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--slots", type=int, default=5, help="slots per working day")
    parser.add_argument("--day-hours", type=float, default=10.0)
    parser.add_argument("--shift", action="store_true", help="only move one capture to --start")
    # Intermixed: the captures may follow the options (positional "*" would otherwise end early).
    args = parser.parse_intermixed_args(argv)
    if args.stage:
        truths = sorted((BENIGN_DIR.parent).glob("*.truth.yaml"))
        start_at = parse_time(args.start) if args.start else None
        staged = stage_scenarios(truths, args.out, days=args.days, start=start_at, seed=args.seed)
        print(f"staged {len(staged)} scenarios and a {args.days}-day baseline in {args.out}", file=sys.stderr)
        return 0
    if args.start is None or not args.sessions:
        parser.error("--start and at least one capture are required (or --stage)")
    start = parse_time(args.start)
    if args.shift:
        if len(args.sessions) != 1:
            parser.error("--shift takes exactly one capture")
        shifted = shift_to(args.sessions[0], args.out, start)
        print(
            f"wrote {args.out}: {shifted.packets} packets, "
            f"{dt.datetime.fromtimestamp(shifted.start, tz=dt.UTC):%Y-%m-%dT%H:%M:%SZ} .. "
            f"{dt.datetime.fromtimestamp(shifted.end, tz=dt.UTC):%Y-%m-%dT%H:%M:%SZ}",
            file=sys.stderr,
        )
        return 0
    stats = compose_baseline(
        args.sessions,
        args.out,
        args.days,
        start,
        args.seed,
        slots_per_day=args.slots,
        day_hours=args.day_hours,
    )
    print(
        f"wrote {args.out}: {stats.packets} packets, {stats.bytes} bytes, {len(stats.copies)} copies over "
        f"{', '.join(str(day) for day in stats.days)} in {stats.seconds:.1f}s; "
        f"next working day 10:00 = {dt.datetime.fromtimestamp(stats.day_after(), tz=dt.UTC):%Y-%m-%dT%H:%MZ}",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
