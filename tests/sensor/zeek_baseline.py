"""Read Zeek ASCII (TSV) logs as written in Zeek's btest baselines."""

from __future__ import annotations

import re
from pathlib import Path


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
    """Render a zeek.py value as Zeek's TSV writer would (before escaping)."""
    if value is None or value == "":
        return "-"
    if isinstance(value, bool):
        return "T" if value else "F"
    if isinstance(value, float):
        return f"{value:.6f}"
    if isinstance(value, list | tuple):
        return ",".join(zeek_value(v) for v in value) if value else "-"
    return str(value)


CONN_KEY = ("id.orig_h", "id.orig_p", "id.resp_h", "id.resp_p")


def match_rows(
    expected: list[dict[str, str]],
    actual: list[dict[str, str]],
    columns: tuple[str, ...],
    wildcard_unset: frozenset[str] = frozenset(),
) -> tuple[int, int, list[str]]:
    """Pair expected with actual rows (same connection when both carry id.*; order-insensitive).

    Returns (rows, agreeing rows, disagreement descriptions). ``rows`` is max(expected, actual) per
    connection, so both missing and extra rows count against agreement. Columns missing from a
    trimmed baseline are not compared; ``wildcard_unset`` columns accept anything when Zeek left
    them unset ("-").
    """

    def key(row: dict[str, str]) -> tuple[str, ...]:
        # Direction-insensitive: a capture that starts mid-connection may be oriented differently.
        if not all(c in row for c in CONN_KEY):
            return ()
        a, b = (row["id.orig_h"], row["id.orig_p"]), (row["id.resp_h"], row["id.resp_p"])
        return (*min(a, b), *max(a, b))

    use_conn = bool(expected) and all(key(r) for r in expected)
    groups: dict[tuple[str, ...], tuple[list[dict[str, str]], list[dict[str, str]]]] = {}
    for row in expected:
        groups.setdefault(key(row) if use_conn else (), ([], []))[0].append(row)
    for row in actual:
        groups.setdefault(key(row) if use_conn else (), ([], []))[1].append(row)

    def diff(want: dict[str, str], got: dict[str, str]) -> list[str]:
        out = []
        for c in columns:
            if c not in want:
                continue
            w, g = unescape(want[c]), got.get(c, "-")
            if w == "(empty)":
                w = "-"
            if w == g or (c in wildcard_unset and w == "-"):
                continue
            out.append(f"{c}: zeek={w!r} ours={g!r}")
        return out

    total = agree = 0
    problems: list[str] = []
    for conn, (want_rows, got_rows) in groups.items():
        total += max(len(want_rows), len(got_rows))
        remaining = list(got_rows)
        unmatched: list[dict[str, str]] = []
        for want in want_rows:
            hit = next((g for g in remaining if not diff(want, g)), None)
            if hit is not None:
                remaining.remove(hit)
                agree += 1
            else:
                unmatched.append(want)
        for want in unmatched:
            if remaining:
                best = min(remaining, key=lambda g: len(diff(want, g)))
                remaining.remove(best)
                problems.append(f"{conn}: " + "; ".join(diff(want, best)))
            else:
                problems.append(f"{conn}: missing row {[unescape(want.get(c, '')) for c in columns]}")
        for extra in remaining:
            problems.append(f"{conn}: extra row {[extra.get(c, '-') for c in columns]}")
    return total, agree, problems
