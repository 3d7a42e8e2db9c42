"""The HTTP analyzer's SQL-injection tag on request targets (Zeek's http.log tag HTTP::URI_SQLI):
classic injections are tagged, ordinary targets (quotes, "or", "select", JSON in a query) are not, and
over the corpus the tag falls exactly where Zeek put it and nowhere in ordinary traffic."""

from __future__ import annotations

import subprocess
import time
import urllib.parse
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sensor.analyzers import default_registry
from sensor.protocols.base import ConnContext, SessionFactory
from sensor.protocols.http import FACTORY, sqli
from sensor.protocols.http.zeek import to_zeek
from tests.sensor import golden
from tests.sensor.zeek_baseline import read_zeek_log
from vigil.flow.v1 import http_pb2
from vigil.sensor.v1 import sensor_pb2

URI_SQLI = "HTTP::URI_SQLI"

# Targets as http.log writes them (percent-escapes decoded, "+" left as it is).
INJECTIONS = (
    "/item.php?id=1'+OR+'1'='1",
    "/item.php?id=1' or 1=1-- ",
    "/login?user=admin'--&pass=x",
    "/login?user=admin'#",
    "/p?id=1 OR 1=1",
    "/p?id=5 and 3=3",
    "/p?id=-1 UNION ALL SELECT 1,2,3",
    "/p?id=1'/**/UnIoN/**/SeLeCt/**/user,password/**/from/**/users",
    "/p?id=1 /*!50000union*/ /*!50000select*/ 1,2",
    "/p?id=1');DROP TABLE users;--",
    "/p?id=1; exec master..xp_cmdshell 'dir'",
    "/p?id=1' AND SLEEP(5)--",
    "/p?id=1;WAITFOR DELAY '0:0:5'--",
    "/p?id=1 and benchmark(5000000,md5(1))",
    "/p?id=1' and extractvalue(1,concat(0x7e,version()))--",
    "/p?id=1' ORDER BY 3--",
    "/p?q=x' having 1=1--",
    "/p?id=(select+password+from+users+limit+1)",
    "/p?id=1 and 1=(select count(*) from information_schema.tables)",
    "/p?id=1%27%20or%201%3D1",  # sent encoded twice: the logged target still holds one layer
    '/p?name=x" or "a"="a',
    "/p?id=1'||'1'='1",
    "/p?id=1' and char(65,66)='AB",
)

ORDINARY = (
    "/",
    "/index.html",
    "/search?q=rock+'n'+roll+or+jazz",
    "/search?q=o'reilly+books",
    "/search?q=how+to+select+from+a+list",
    "/search?q=european+union+selection+process",
    "/wiki/Union_(set_theory)",
    '/api?filter={"color":"#fff","or":[1,2]}',
    '/track?e=[{"a":"b"}]&ts=1354328924',
    "/order?by=date&sort=desc",
    "/view?id=1&and=2&or=3",
    "/p?title=Don't+Stop+Me+Now",
    "/calendar.php?day=2001-8-15&comma=x",
    "/a/b;jsessionid=0123ABCD?x=1",
    "/p?x=1--2",
    "/update.php?select=all&from=2020&where=home",
    "/windowsupdate/v6/selfupdate/wuident.cab?0912071010",
    "/MFEwTzBNMEswSTAJBgUrDgMCGgUABBQ",
    "/p?q=1=1",
    "/p?msg=sleep+well",
)


def tagged(uri: str) -> bool:
    return sqli.looks_like_injection(uri)


def test_classic_injections_are_tagged() -> None:
    missed = [u for u in INJECTIONS if not tagged(u)]
    assert missed == []


def test_ordinary_targets_are_not() -> None:
    wrong = [u for u in ORDINARY if tagged(u)]
    assert wrong == []


def test_only_the_first_max_chars_are_read() -> None:
    padding = "/p?x=" + "a" * sqli.MAX_URI_CHARS
    assert not tagged(padding + "&id=1' or '1'='1")
    assert tagged("/p?id=1' or '1'='1&x=" + "a" * 10 * sqli.MAX_URI_CHARS)


def test_hostile_targets_take_bounded_time() -> None:
    worst = 0.0
    for unit in ("'", "' or ", "(", "/*", "%25", " ", "'or'", "1=", "union ", ";"):
        uri = "/p?q=" + unit * (4 * sqli.MAX_URI_CHARS // len(unit))
        start = time.perf_counter()
        tagged(uri)
        worst = max(worst, time.perf_counter() - start)
    assert worst < 0.05


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=300))
def test_any_text_gives_a_verdict(uri: str) -> None:
    assert tagged(uri) in (True, False)


def _requests(uri: str, factory: SessionFactory) -> list[http_pb2.HttpRecord]:
    out: list[sensor_pb2.Record] = []
    ctx = ConnContext("Cq", "10.0.0.2", 51000, "10.0.0.80", 80, "tcp")
    session = factory(ctx, out.append, lambda p, r: None)
    session.data(True, 1.0, f"GET {uri} HTTP/1.1\r\nHost: h\r\n\r\n".encode())
    session.data(False, 1.1, b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
    session.finish(2.0)
    return [r.http for r in out if r.WhichOneof("kind") == "http"]


def test_the_sensor_tags_by_default_and_the_bare_analyzer_does_not() -> None:
    raw = "/p?id=1%27+OR+%271%27%3D%271"
    http = next(a for a in default_registry().analyzers if a.name == "http")
    (rec,) = _requests(raw, http.factory)
    assert list(rec.tags) == [http_pb2.HTTP_TAG_URI_SQLI]
    assert to_zeek(rec)["tags"] == [URI_SQLI]
    (plain,) = _requests(raw, FACTORY)
    assert list(plain.tags) == [] and to_zeek(plain)["tags"] == []
    (benign,) = _requests("/search?q=o%27reilly", http.factory)
    assert list(benign.tags) == []


# --- over the corpus -------------------------------------------------------------------------------


def test_the_tag_falls_where_zeek_put_it_in_every_http_log_baseline(corpus: Path) -> None:
    """Every http.log baseline of the corpus (the one the harness cannot compare too): a target is tagged
    exactly when Zeek tagged it."""
    checked = tagged_rows = 0
    for log_file in sorted(corpus.rglob("*.baseline/*/*")):
        if golden.log_of(log_file.name) != "http":
            continue
        for row in read_zeek_log(log_file):
            if row.get("uri", "-") == "-":
                continue
            theirs = URI_SQLI in row.get("tags", "").split(",")
            assert tagged(row["uri"]) == theirs, (log_file.name, row["uri"])
            checked += 1
            tagged_rows += theirs
    assert checked >= 30 and tagged_rows == 3


# Captures of ordinary traffic: browsing, Windows hosts' own HTTP (updates, certificate lists), a TLS
# fingerprinting sample, HTTP test traffic, malware check-ins (their targets are no injection).
ORDINARY_CAPTURES = (
    "reference/zeek/wikipedia.pcap",
    "reference/zeek/workshop_2011_browse.pcap",
    "reference/zeek/http/methods.pcap",
    "reference/zeek/http/http-post-large.pcap",
    "reference/suricata-verify/http-protocol-nodup/input.pcap",
    "reference/ndpi/malware.pcap",
    "wild/FoxIO-LLC__ja4/http1.pcapng",
    "wild/OTRF__Security-Datasets/UTICA-A.cap",
    "wild/OTRF__Security-Datasets/NEWYORK.cap",
    "wild/OTRF__Security-Datasets/empire_powerview_ldap_ntsecuritydescriptor_2020-09-21130944.cap",
    "wild/OTRF__Security-Datasets/purplesharp_ad_playbook_I_2020-10-22042947.cap",
)


def test_ordinary_traffic_is_never_tagged(corpus: Path) -> None:
    root = corpus.parent
    requests = 0
    for name in ORDINARY_CAPTURES:
        if not (root / name).exists():
            pytest.skip(f"{name} is not in the corpus")
        run = golden.run(root / name)
        recs = [r.http for r in run.records if r.WhichOneof("kind") == "http"]
        assert [r.uri for r in recs if r.tags] == [], name
        requests += sum(1 for r in recs if r.method)
    assert requests >= 300


@pytest.mark.skipif(not golden.have_tshark(), reason="tshark reads the targets")
def test_an_sql_injection_attack_capture_is_tagged(corpus: Path) -> None:
    """CIC-IDS2017-style attack on DVWA: every request whose target (read by tshark) carries an injected
    clause is tagged; the lone probe quote ("id=1'") is not an injection yet."""
    pcap = corpus / "ndpi/WebattackSQLinj.pcap"
    out = subprocess.run(
        ["tshark", "-n", "-r", str(pcap), "-Y", "http.request", "-T", "fields", "-e", "http.request.uri"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    injected = {urllib.parse.unquote(u) for u in out if "union" in u.lower() or "1%3D1" in u}
    assert len(injected) >= 3
    run = golden.run(pcap)
    recs = [r.http for r in run.records if r.WhichOneof("kind") == "http"]
    assert len(recs) == len(out)
    assert {r.uri for r in recs if r.tags} == injected
