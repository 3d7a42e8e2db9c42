"""The strict comparison itself: direction, set versus unset, and proved reference gaps."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.sensor import golden, golden_report
from tests.sensor.zeek_baseline import DIRECTION, EXTRA, SET_VS_UNSET, VALUE, match_rows

ROW = {"id.orig_h": "10.0.0.1", "id.orig_p": "40000", "id.resp_h": "10.0.0.2", "id.resp_p": "53"}
ROW["query"] = "a"


def test_swapped_roles_are_a_disagreement() -> None:
    swapped = {**ROW, "id.orig_h": "10.0.0.2", "id.orig_p": "53"}
    swapped.update({"id.resp_h": "10.0.0.1", "id.resp_p": "40000"})
    total, agree, problems = match_rows([ROW], [swapped], ("query",))
    assert (total, agree, [p.kind for p in problems]) == (1, 0, [DIRECTION])


def test_set_versus_unset_counts_apart_from_a_wrong_value() -> None:
    _, agree, problems = match_rows([{**ROW, "rtt": "-"}], [{**ROW, "rtt": "0.1"}], ("query", "rtt"))
    assert agree == 0 and [p.kind for p in problems] == [SET_VS_UNSET]
    _, agree, problems = match_rows([{**ROW, "query": "b"}], [ROW], ("query",))
    assert agree == 0 and [p.kind for p in problems] == [VALUE]
    # Zeek's "(empty)" is set: our unset does not match it.
    _, agree, _ = match_rows([{**ROW, "tags": "(empty)"}], [ROW], ("query", "tags"))
    assert agree == 0
    _, _, problems = match_rows([], [ROW], ("query",))
    assert [p.kind for p in problems] == [EXTRA]


def test_a_reference_gap_must_cite_its_frames() -> None:
    assert golden_report.unproved({"kind": "reference-incomplete", "cause": "Zeek misses it"})
    assert golden_report.unproved({"frames": [6], "cause": "the AUTHENTICATE in frame 7"})
    assert golden_report.unproved({"frames": [6], "cause": "the AUTHENTICATE in frame 6"}) == ""


def test_every_baseline_of_a_compared_log_is_compared_or_excluded_with_a_reason(corpus: Path) -> None:
    for spec in golden.all_specs(corpus):
        on_disk = {
            str(p.relative_to(corpus))
            for p in corpus.rglob("*.baseline/*/*")
            if golden.log_of(p.name) == spec.log
        }
        listed = {c.baseline for c in spec.cases} | {e.baseline for e in spec.excluded}
        # The corpus copies a btest's baselines beside each trace it read: one copy of each is listed.
        assert {(Path(b).parent.name, Path(b).name) for b in on_disk} == {
            (Path(b).parent.name, Path(b).name) for b in listed
        }, spec.log
        assert all(e.why for e in spec.excluded)


@pytest.mark.skipif(not golden.have_tshark(), reason="tshark numbers the frames")
def test_reference_gaps_name_frames_of_their_capture(corpus: Path) -> None:
    causes = golden_report.load_causes()
    checked = 0
    for by_capture in causes.values():
        for capture, entries in by_capture.items():
            for entry in entries:
                if entry.get("kind") not in golden_report.PROVED_BY_FRAMES:
                    continue
                out = subprocess.run(
                    ["tshark", "-n", "-r", str(corpus / capture), "-T", "fields", "-e", "frame.number"],
                    capture_output=True, text=True, check=True,
                ).stdout.split()  # fmt: skip
                assert set(map(str, entry["frames"])) <= set(out), capture
                checked += 1
    assert checked >= 1
