"""Agreement of Vigil's Zeek-JSON logs with Zeek's reference logs, per log type.

    python -m tests.sensor.golden_report           # the table
    python -m tests.sensor.golden_report --write   # also rewrite tests/data/golden/DISAGREEMENTS.md

Every disagreement left is listed with its cause. Causes are written by people, in
tests/data/golden/causes.yaml (log -> capture -> list of {match, cause}; ``match`` is a substring of
the connection tuple or of the disagreement text); a disagreement no cause matches is listed as
"UNEXPLAINED" so it cannot hide. A cause may call a row reference-incomplete (Zeek leaves unset what
the packets carry) or reference-contradicted (Zeek writes what the packets contradict) only with
``frames:``, the frame numbers (tshark's) of the packets that prove it, which the cause's text cites.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from pathlib import Path
from typing import Any

import yaml

from tests.sensor import golden
from tests.sensor.zeek_baseline import DIRECTION, EXTRA, MISSING, SET_VS_UNSET, VALUE

REPO = Path(__file__).resolve().parents[2]
GOLDEN_DIR = REPO / "tests" / "data" / "golden"
CAUSES = GOLDEN_DIR / "causes.yaml"
# A cause of this kind: Zeek leaves fields unset that the packets carry and Vigil reports, proved by the
# frames it names (tshark frame numbers). Such rows stay listed and lower the raw agreement; the target
# gate counts them as agreeing, and the table shows both numbers.
REFERENCE_INCOMPLETE = "reference-incomplete"
# A cause of this kind: the reference row states what the packets it cites contradict (Zeek writes a call
# with another call's operation and round trip), and Vigil writes what they carry. Proved and counted as
# reference-incomplete is.
REFERENCE_CONTRADICTED = "reference-contradicted"
PROVED_BY_FRAMES = frozenset({REFERENCE_INCOMPLETE, REFERENCE_CONTRADICTED})
DISAGREEMENTS = GOLDEN_DIR / "DISAGREEMENTS.md"
# log -> capture -> causes, as written in causes.yaml.
Causes = dict[str, dict[str, list[dict[str, Any]]]]
CORPUS = Path(os.environ.get("VIGIL_CORPUS", REPO.parent / "shared" / "corpus")) / "reference"


def load_causes(path: Path = CAUSES) -> Causes:
    if not path.exists():
        return {}
    data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    assert isinstance(data, dict)
    # Keys starting with "_" hold YAML anchors shared by several causes, not logs.
    causes = {k: v for k, v in data.items() if not k.startswith("_")}
    for log, by_capture in causes.items():
        for capture, entries in by_capture.items():
            for entry in entries:
                problem = unproved(entry) if entry.get("kind") in PROVED_BY_FRAMES else ""
                if problem:
                    raise ValueError(f"{path}: {log} {capture}: {problem}")
    return causes


def unproved(entry: dict[str, Any]) -> str:
    """Why a cause that blames the reference does not prove itself ("" when it does)."""
    frames = entry.get("frames")
    if not frames or not all(isinstance(f, int) and f > 0 for f in frames):
        return f"a {entry.get('kind')} cause needs frames: [tshark frame numbers]"
    missing = [f for f in frames if not re.search(rf"\bframes? [\d, and]*\b{f}\b", entry.get("cause", ""))]
    if missing:
        return f"the cause's text does not cite frame(s) {missing}"
    return ""


def cause_of(d: golden.Disagreement, causes: Causes) -> str | None:
    for entry in causes.get(d.log, {}).get(d.capture, []):
        needle = entry.get("match", "")
        if needle in d.conn or needle in d.detail:
            return str(entry["cause"])
    return None


def reference_gaps(r: golden.Result, causes: Causes) -> int:
    """Disagreements whose written cause proves, by frames, that the reference lacks or contradicts what
    Vigil correctly extracted."""
    return sum(1 for d in r.disagreements if kind_of(d, causes) in PROVED_BY_FRAMES)


def kind_of(d: golden.Disagreement, causes: Causes) -> str | None:
    for entry in causes.get(d.log, {}).get(d.capture, []):
        needle = entry.get("match", "")
        if needle in d.conn or needle in d.detail:
            return entry.get("kind")
    return None


def results(corpus: Path) -> list[golden.Result]:
    out = [golden.compare(corpus, s) for s in golden.all_specs(corpus)]
    if golden.have_tshark():
        out.append(golden.compare_dialects(corpus))
    return out


def table(
    rows: list[golden.Result],
    targets: dict[str, float | None],
    causes: Causes | None = None,
) -> str:
    """Per log: baseline rows, ours, rows equal in every compared column (strict), the rows whose only
    differences are set-versus-unset (already counted as disagreeing), those where frames prove the
    reference incomplete or contradicted, and the agreement counting them, and the target."""
    causes = load_causes() if causes is None else causes
    head = (
        f"| {'log':<13} | captures | reference rows | our rows | agreeing | % | set-vs-unset | "
        "reference proved wrong by frames | % with those | target | excluded baselines |"
    )
    lines = [head, "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        target = targets.get(r.log)
        gaps = reference_gaps(r, causes)
        with_gaps = (r.agreeing + gaps) / r.rows if r.rows else 1.0
        lines.append(
            f"| {r.log:<13} | {r.captures} | {r.reference_rows} | {r.our_rows} | {r.agreeing}/{r.rows} | "
            f"{100 * r.agreement:.1f} | {r.set_vs_unset} | {gaps} | {100 * with_gaps:.1f} | "
            f"{'' if target is None else f'{100 * target:.0f}'} | {len(r.excluded)} |"
        )
    return "\n".join(lines)


def disagreements_md(rows: list[golden.Result], causes: Causes) -> str:
    out = [
        "# Disagreements with Zeek's reference logs",
        "",
        "Generated by `python -m tests.sensor.golden_report --write`; causes come from `causes.yaml`.",
        "",
    ]
    for r in rows:
        if not r.disagreements:
            continue
        out += [f"## {r.log}", ""]
        for kind in (DIRECTION, VALUE, MISSING, EXTRA, SET_VS_UNSET):
            listed = [d for d in r.disagreements if d.kind == kind]
            if not listed:
                continue
            out += [f"### {kind} ({len(listed)})", ""]
            for d in listed:
                cause = cause_of(d, causes) or "UNEXPLAINED"
                out.append(f"- `{d.capture}` {d.conn}: {d.detail}  \n  cause: {cause}")
            out.append("")
    excluded = [(r.log, e) for r in rows for e in r.excluded]
    if excluded:
        out += ["## Baselines not compared", ""]
        out += [f"- {log}: `{e.baseline}`: {e.why}" for log, e in excluded]
        out.append("")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", action="store_true", help=f"rewrite {DISAGREEMENTS.relative_to(REPO)}")
    parser.add_argument("--corpus", type=Path, default=CORPUS)
    args = parser.parse_args(argv)
    if not args.corpus.is_dir():
        print(f"reference corpus not found at {args.corpus} (set VIGIL_CORPUS)", file=sys.stderr)
        return 2
    rows = results(args.corpus)
    specs = golden.all_specs(args.corpus)
    targets: dict[str, float | None] = {s.log: s.target for s in specs}
    targets["smb dialects"] = 0.98
    causes = load_causes()
    print(table(rows, targets, causes))
    unexplained = sum(1 for r in rows for d in r.disagreements if cause_of(d, causes) is None)
    print(f"\n{sum(len(r.disagreements) for r in rows)} disagreements, {unexplained} without a written cause")
    if args.write:
        GOLDEN_DIR.mkdir(parents=True, exist_ok=True)
        DISAGREEMENTS.write_text(
            table(rows, targets, causes) + "\n\n" + disagreements_md(rows, causes), encoding="utf-8"
        )
        print(f"wrote {DISAGREEMENTS.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
