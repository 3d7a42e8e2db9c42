"""Does a request target read like an SQL injection attempt? (the evidence behind http.log's
HTTP::URI_SQLI tag).

An injection has to leave the value it was put in and then speak SQL. So the rules below look for the
shapes attackers use to do both, rather than for SQL words alone, which ordinary targets carry too
("select", "union", "order", a quote in a name):

- leaving a quoted value and adding a condition or a comment: ``1' or '1'='1``, ``admin'--``,
  ``x' having 1=1``, ``1' order by 3``;
- a tautology after a bare number: ``1 or 1=1``;
- appending a result set or a statement: ``union select``, ``; drop table``, ``; exec xp_...``;
- asking the database to wait (blind injection): ``sleep(5)``, ``waitfor delay``, ``benchmark(``;
- reading the catalog or the server through functions injections lean on: ``information_schema.tables``,
  ``@@version``, ``extractvalue(``, ``char(65,66)``, a parenthesised ``select ... from``.

The target is the decoded one http.log writes; before matching it is lower-cased, ``+`` read as a space,
a second layer of percent-escapes decoded (targets escaped twice), SQL comments turned into spaces
(``/**/`` stands for whitespace, MySQL's ``/*!50000union*/`` for its keyword) and whitespace runs made
one space. Only the first MAX_URI_CHARS characters are read, so the work per request is bounded; every
pattern is a linear scan (no nested repetition).
"""

from __future__ import annotations

import re
import urllib.parse

# Targets longer than this are judged on their start: injections sit in the first parameters, and a
# request cannot make the sensor read more.
MAX_URI_CHARS = 2048

_QUOTE = "['\"]"
# A condition's left side: a (possibly quoted) word or number, or a call.
_OPERAND = r"\(?(?:['\"]?[\w.@$-]{1,40}['\"]?)"
_COMPARE = r"(?:=|<>|!=|<=?|>=?|\blike\b|\bis\b|\bregexp\b|\brlike\b|\bin ?\(|\bbetween\b)"
_LOGIC = r"(?:or|and|xor|having|\|\||&&)"

_PATTERNS = tuple(
    re.compile(p)
    for p in (
        # A quote, closing parentheses, then a boolean operator and a comparison or a function call:
        # 1' or '1'='1 / x') and 1=1 / 1' and sleep(5) / 1'||'1'='1
        _QUOTE
        + r" ?\){0,3} ?"
        + _LOGIC
        + r"(?=[\s('\"\d])"
        + r" ?\(? ?(?:"
        + _OPERAND
        + " ?"
        + _COMPARE
        + r"|[a-z_]{2,30} ?\(|(?:true|false|not)\b)",
        # A quote then a comment that cuts the rest of the query off: admin'-- / admin'# / 1');--
        r"' ?\){0,3} ?;? ?(?:--(?:[\s&]|$)|#(?:&|$))",
        # A quote then a clause that only makes sense in SQL: 1' order by 3 / 1' group by 2
        _QUOTE + r" ?\){0,3} ?(?:order|group) by \d",
        # A tautology on numbers: 1 or 1=1 / and 3=3
        r"\b(?:or|and|xor) \(?(\d{1,10}) ?= ?\(?\1\b",
        # A second result set: union select / union all select / union(select
        r"\bunion (?:(?:all|distinct) )?\(? ?select\b",
        # A statement of its own after a semicolon.
        r"; ?(?:drop (?:table|database|user)\b|truncate table\b|alter table\b|shutdown\b|declare @"
        r"|(?:exec|execute) (?:xp_|sp_|master\.)|insert into\b|delete from\b|update [\w.]{1,40} set\b"
        r"|select\b.{1,80}?\bfrom\b)",
        # Waiting on purpose: time-based blind injection.
        r"\b(?:sleep|pg_sleep|benchmark) ?\( ?\d|\bwaitfor (?:delay|time) '|\bdbms_pipe\.receive_message ?\(",
        # The catalog and the server's identity.
        r"\binformation_schema\.(?:tables|columns|schemata|routines)\b|\bfrom information_schema\b"
        r"|@@(?:version|datadir|hostname)\b|\bmysql\.user\b|\bsys(?:objects|columns|databases)\b"
        r"|\bpg_(?:shadow|user|catalog)\b|\bxp_cmdshell\b",
        # Functions injections lean on to read data out through errors, files or encodings.
        r"\b(?:extractvalue|updatexml|load_file) ?\(|\binto (?:out|dump)file\b|\butl_http\."
        r"|\bchar ?\( ?\d{1,3} ?(?:, ?\d{1,3} ?){1,}\)",
        # A subquery: (select password from users
        r"\( ?select\b.{1,80}?\bfrom\b",
    )
)

_SPACE = re.compile(r"\s+")
_VERSIONED_COMMENT = re.compile(r"/\*!\d{0,6}")
_COMMENT = re.compile(r"/\*.{0,64}?\*/")


def normalise(uri: str) -> str:
    """The target as the patterns read it (see the module's docstring)."""
    text = uri[:MAX_URI_CHARS].lower().replace("+", " ")
    if "%" in text:
        text = urllib.parse.unquote(text, encoding="latin-1")
    if "/*" in text:
        text = _VERSIONED_COMMENT.sub(" ", text)
        text = _COMMENT.sub(" ", text).replace("*/", " ")
    return _SPACE.sub(" ", text)


def looks_like_injection(uri: str) -> bool:
    """True when the decoded request target reads like an SQL injection attempt."""
    text = normalise(uri)
    return any(p.search(text) for p in _PATTERNS)
