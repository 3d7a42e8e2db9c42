"""Read Zeek ASCII (TSV) logs as written in Zeek's btest baselines."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

UNSET = "-"
# Zeek's ASCII writer marks a field that is set but empty (an empty string or container) this way.
EMPTY = "(empty)"


def read_zeek_log(path: Path | str) -> list[dict[str, str]]:
    """Rows of a Zeek TSV log as dicts keyed by the ``#fields`` header; values stay Zeek's strings.

    Zeek's conventions are kept: ``-`` unset, ``(empty)`` empty container, ``,`` the set separator.
    Some baselines are trimmed (bare header line without ``#fields``); the first non-comment line then
    names the columns.
    """
    fields: list[str] | None = None
    rows: list[dict[str, str]] = []
    for line in Path(path).read_text(encoding="utf-8", errors="replace").splitlines():
        if not line:
            continue
        if line.startswith("#"):
            if line.startswith("#fields\t"):
                fields = line.split("\t")[1:]
            continue
        values = line.split("\t")
        if fields is None:
            fields = values
            continue
        rows.append(dict(zip(fields, values, strict=False)))
    return rows


# --- comparison helpers (protocol golden tests) -------------------------------------------------

_ESCAPE = re.compile(r"\\x([0-9a-fA-F]{2})|\\\\")


def unescape(value: str) -> str:
    """Undo Zeek's ASCII writer escaping (``\\\\`` for a backslash, ``\\xNN`` for other bytes)."""
    return _ESCAPE.sub(lambda m: chr(int(m.group(1), 16)) if m.group(1) else "\\", value)


def zeek_value(value: object) -> str:
    """Render a zeek.py value as Zeek's TSV writer would (before escaping): unset (None) is "-", a set
    but empty string or container is "(empty)"."""
    if value is None:
        return UNSET
    if value == "":
        return EMPTY
    if isinstance(value, bool):
        return "T" if value else "F"
    if isinstance(value, float):
        return f"{value:.6f}"
    if isinstance(value, list | tuple):
        return ",".join(zeek_value(v) for v in value) if value else EMPTY
    return str(value)


CONN_KEY = ("id.orig_h", "id.orig_p", "id.resp_h", "id.resp_p")

# How a baseline row and ours differ, worst first: the roles of the two endpoints, a value that both
# set differently, a field one side set and the other left unset, a row only Zeek wrote, one only we did.
DIRECTION, VALUE, SET_VS_UNSET, MISSING, EXTRA = "direction", "value", "set-vs-unset", "missing", "extra"


@dataclass(frozen=True)
class Mismatch:
    """One baseline row (or one row of ours) without an equal partner."""

    conn: str
    kind: str
    detail: str


def _endpoints(row: dict[str, str]) -> tuple[str, str] | None:
    if not all(c in row for c in CONN_KEY):
        return None
    return f"{row['id.orig_h']}:{row['id.orig_p']}", f"{row['id.resp_h']}:{row['id.resp_p']}"


def _column_kind(want: str, got: str) -> str:
    return SET_VS_UNSET if (want == UNSET) != (got == UNSET) else VALUE


def row_diff(want: dict[str, str], got: dict[str, str], columns: tuple[str, ...]) -> list[tuple[str, str]]:
    """(kind, description) of every difference between a baseline row and ours.

    The connection's direction counts: Zeek's originator must be ours. Columns missing from a trimmed
    baseline are not compared; a column we do not write is unset ("-") on our side.
    """
    out: list[tuple[str, str]] = []
    w_ends, g_ends = _endpoints(want), _endpoints(got)
    if w_ends is not None and g_ends is not None and w_ends != g_ends:
        out.append((DIRECTION, f"direction: zeek={w_ends[0]}->{w_ends[1]} ours={g_ends[0]}->{g_ends[1]}"))
    for c in columns:
        if c not in want:
            continue
        w = want[c] if want[c] in (UNSET, EMPTY) else unescape(want[c])
        g = got.get(c, UNSET)
        if w != g:
            out.append((_column_kind(w, g), f"{c}: zeek={w!r} ours={g!r}"))
    return out


def _kind(diffs: list[tuple[str, str]]) -> str:
    kinds = {k for k, _ in diffs}
    return next(k for k in (DIRECTION, VALUE, SET_VS_UNSET) if k in kinds)


def match_rows(
    expected: list[dict[str, str]],
    actual: list[dict[str, str]],
    columns: tuple[str, ...],
) -> tuple[int, int, list[Mismatch]]:
    """Pair baseline rows with ours and count the equal pairs; nothing is forgiven.

    Rows are grouped by the pair of endpoints (in either order, so that a row of ours with the roles
    swapped is reported as a direction disagreement rather than as one missing and one extra row);
    baselines trimmed of the connection id form a single group. Returns (rows, agreeing rows,
    mismatches); ``rows`` is max(baseline, ours) per group, so missing and extra rows both count.
    """

    def key(row: dict[str, str]) -> tuple[str, ...]:
        ends = _endpoints(row)
        return tuple(sorted(ends)) if ends is not None else ()

    use_conn = bool(expected) and all(key(r) for r in expected)
    groups: dict[tuple[str, ...], tuple[list[dict[str, str]], list[dict[str, str]]]] = {}
    for row in expected:
        groups.setdefault(key(row) if use_conn else (), ([], []))[0].append(row)
    for row in actual:
        groups.setdefault(key(row) if use_conn else (), ([], []))[1].append(row)

    total = agree = 0
    problems: list[Mismatch] = []
    for conn, (want_rows, got_rows) in groups.items():
        name = " <-> ".join(conn) if conn else "(no connection id in the baseline)"
        total += max(len(want_rows), len(got_rows))
        remaining = list(got_rows)
        unmatched: list[dict[str, str]] = []
        for want in want_rows:
            hit = next((g for g in remaining if not row_diff(want, g, columns)), None)
            if hit is not None:
                remaining.remove(hit)
                agree += 1
            else:
                unmatched.append(want)
        for want in unmatched:
            if remaining:
                best = min(remaining, key=lambda g: len(row_diff(want, g, columns)))
                remaining.remove(best)
                diffs = row_diff(want, best, columns)
                problems.append(Mismatch(name, _kind(diffs), "; ".join(d for _, d in diffs)))
            else:
                shown = [want.get(c, "") if want.get(c) in (UNSET, EMPTY) else unescape(want.get(c, ""))
                         for c in columns if c in want]  # fmt: skip
                problems.append(Mismatch(name, MISSING, f"missing row {shown}"))
        for extra in remaining:
            shown = [extra.get(c, UNSET) for c in columns]
            problems.append(Mismatch(name, EXTRA, f"extra row {shown}"))
    return total, agree, problems
