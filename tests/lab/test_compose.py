"""The baseline composer: whole recorded sessions moved in time, merged, never altered (no root needed)."""

from __future__ import annotations

import datetime as dt
import itertools
import struct
from collections import Counter
from pathlib import Path

import pytest

from tests.lab.compose import (
    Packet,
    compose_baseline,
    main,
    parse_time,
    read_pcap,
    shift_to,
    stage_scenarios,
    working_days,
)

BENIGN = Path(__file__).resolve().parent.parent / "data" / "scenarios" / "benign"
SESSIONS = sorted(BENIGN.glob("*.pcap"))
MONDAY_8 = parse_time("2026-11-02T08:00:00Z")


def test_benign_sessions_are_committed() -> None:
    assert len(SESSIONS) >= 2, f"record them: python -m tests.lab.scenarios_benign {BENIGN}"
    for path in SESSIONS:
        session = read_pcap(path)
        assert path.stat().st_size < 1_000_000
        assert 90 <= session.duration_us / 1e6 <= 300, path


def test_every_copy_is_whole_byte_identical_and_merged_in_time_order(tmp_path: Path) -> None:
    out = tmp_path / "baseline.pcap"
    stats = compose_baseline(SESSIONS, out, days=3, start=MONDAY_8, seed=7)
    composed = read_pcap(out)
    assert composed.linktype == 1
    assert len(composed.packets) == stats.packets == sum(copy.packets for copy in stats.copies)
    assert stats.packets < 150_000 and out.stat().st_size < 25_000_000
    stamps = [packet.ts_us for packet in composed.packets]
    assert stamps == sorted(stamps)
    # Each copy is its source session, every packet shifted by the copy's offset and nothing else.
    sources = {path: read_pcap(path) for path in SESSIONS}
    expected: Counter[Packet] = Counter()
    for copy in stats.copies:
        source = sources[copy.session]
        expected.update(Packet(p.ts_us + copy.offset_us, p.orig_len, p.data) for p in source.packets)
        assert copy.start_us == source.start_us + copy.offset_us
        assert copy.packets == len(source.packets)
    assert Counter(composed.packets) == expected


def test_classic_little_endian_microsecond_ethernet_header(tmp_path: Path) -> None:
    out = tmp_path / "baseline.pcap"
    compose_baseline(SESSIONS[:1], out, days=1, start=MONDAY_8, seed=1)
    magic, major, minor, _, _, _, linktype = struct.unpack_from("<IHHiIII", out.read_bytes())
    assert (magic, major, minor, linktype) == (0xA1B2C3D4, 2, 4, 1)


def test_days_covered_are_working_days_within_working_hours(tmp_path: Path) -> None:
    out = tmp_path / "baseline.pcap"
    stats = compose_baseline(SESSIONS, out, days=3, start=MONDAY_8, seed=3, slots_per_day=4)
    monday = dt.date(2026, 11, 2)
    assert stats.days == [monday + dt.timedelta(days=n) for n in range(3)]
    per_day = Counter(copy.day for copy in stats.copies)
    assert per_day == dict.fromkeys(stats.days, 4 * len(SESSIONS))
    for copy in stats.copies:
        first = dt.datetime.fromtimestamp(copy.start_us / 1e6, tz=dt.UTC)
        last = dt.datetime.fromtimestamp(copy.end_us / 1e6, tz=dt.UTC)
        assert first.date() == last.date() == copy.day
        assert dt.time(8) <= first.time() and last.time() <= dt.time(18)
    composed = read_pcap(out)
    seen = {dt.datetime.fromtimestamp(p.ts_us / 1e6, tz=dt.UTC).date() for p in composed.packets}
    assert seen == set(stats.days)
    # The attack goes after the baseline: the next working day at 10:00.
    assert stats.day_after(10.0) == parse_time("2026-11-05T10:00:00Z")
    assert stats.day_after(10.0) > stats.end


def test_copies_of_one_session_never_overlap(tmp_path: Path) -> None:
    stats = compose_baseline(SESSIONS, tmp_path / "b.pcap", days=2, start=MONDAY_8, seed=5, slots_per_day=8)
    for session in SESSIONS:
        spans = sorted((c.start_us, c.end_us) for c in stats.copies if c.session == session)
        assert all(end < next_start for (_, end), (next_start, _) in itertools.pairwise(spans))


def test_weekends_are_skipped() -> None:
    friday = parse_time("2026-11-06T08:00:00Z")
    assert working_days(friday, 3) == [dt.date(2026, 11, 6), dt.date(2026, 11, 9), dt.date(2026, 11, 10)]
    saturday = parse_time("2026-11-07T08:00:00Z")
    assert working_days(saturday, 1) == [dt.date(2026, 11, 9)]


def test_deterministic_for_a_seed(tmp_path: Path) -> None:
    first, again, other = tmp_path / "1.pcap", tmp_path / "2.pcap", tmp_path / "3.pcap"
    compose_baseline(SESSIONS, first, days=2, start=MONDAY_8, seed=11)
    compose_baseline(SESSIONS, again, days=2, start=MONDAY_8, seed=11)
    compose_baseline(SESSIONS, other, days=2, start=MONDAY_8, seed=12)
    assert first.read_bytes() == again.read_bytes()
    assert first.read_bytes() != other.read_bytes()


def test_shift_to_preserves_every_gap_exactly(tmp_path: Path) -> None:
    source = read_pcap(SESSIONS[0])
    at = parse_time("2026-11-05T10:00:00Z")
    shifted = shift_to(SESSIONS[0], tmp_path / "attack.pcap", at)
    moved = read_pcap(tmp_path / "attack.pcap")
    assert shifted.packets == len(moved.packets) == len(source.packets)
    assert moved.start_us == round(at * 1e6) and shifted.start == at
    assert [p.data for p in moved.packets] == [p.data for p in source.packets]
    assert [p.orig_len for p in moved.packets] == [p.orig_len for p in source.packets]
    gaps = [b.ts_us - a.ts_us for a, b in itertools.pairwise(source.packets)]
    moved_gaps = [b.ts_us - a.ts_us for a, b in itertools.pairwise(moved.packets)]
    assert moved_gaps == gaps
    assert moved.snaplen == source.snaplen


def test_a_session_longer_than_a_slot_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="longer than a slot"):
        compose_baseline(SESSIONS, tmp_path / "b.pcap", days=1, start=MONDAY_8, seed=1, day_hours=0.05)


def test_cli(tmp_path: Path) -> None:
    out = tmp_path / "cli.pcap"
    assert main([str(out), "--days", "1", "--start", "2026-11-02T08:00:00Z", *map(str, SESSIONS)]) == 0
    assert read_pcap(out).start_us >= MONDAY_8 * 1e6
    moved = tmp_path / "moved.pcap"
    assert main([str(moved), "--shift", "--start", "2026-11-03T10:00:00Z", str(SESSIONS[0])]) == 0
    assert read_pcap(moved).start_us == round(parse_time("2026-11-03T10:00:00Z") * 1e6)


def test_stage_scenarios_puts_each_attack_after_the_baseline(tmp_path: Path) -> None:
    truths = sorted((BENIGN.parent).glob("external-*.truth.yaml"))
    if not truths:
        pytest.skip("no external scenarios recorded")
    staged = stage_scenarios(truths[:2], tmp_path, days=2, seed=2)
    baseline = read_pcap(tmp_path / "baseline.pcap")
    for truth in staged:
        assert truth.read_text() == (BENIGN.parent / truth.name).read_text()
        capture = read_pcap(tmp_path / truth.name.replace(".truth.yaml", ".pcap"))
        original = read_pcap(BENIGN.parent / capture.path.name)
        assert capture.start_us == round(parse_time("2026-11-04T10:00:00Z") * 1e6) > baseline.end_us
        assert [p.data for p in capture.packets] == [p.data for p in original.packets]
        assert capture.duration_us == original.duration_us
