"""SMTP: parser pieces, the session on scripted dialogues, a real Agent Tesla exfiltration (checked against
tshark), the heuristic on another port, STARTTLS, and hostile input (counted, bounded, never raised)."""

from __future__ import annotations

import base64
import shutil
import subprocess
from collections import Counter
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry

from sensor.analyzers import default_registry
from sensor.capture import PacketBlock
from sensor.logwriter import zeek_logs
from sensor.pipeline import SensorPipeline
from sensor.protocols.base import ConnContext
from sensor.protocols.lines import MAX_LINE, LineReader
from sensor.protocols.smtp import FACTORY, heuristic, parser
from sensor.protocols.smtp.session import SmtpSession
from tests.conftest import CORPUS
from tests.sensor.packets import TcpConv
from tests.sensor.records import capture_records
from vigil.config import SensorConfig
from vigil.flow.v1 import smtp_pb2
from vigil.sensor.v1 import sensor_pb2

CTX = ConnContext("Csmtp", "10.0.0.5", 50000, "10.0.0.9", 587, "tcp")
AGENT_TESLA_SMTP = (
    CORPUS / "wild/corelight__zeek-agenttesla-detector/a30789ce-1e1c-4f96-a097-78c34b9fb612.pcap"
)


def _b64(text: str) -> bytes:
    return base64.b64encode(text.encode())


def _run(chunks: list[tuple[bool, bytes]]) -> tuple[list[smtp_pb2.SmtpRecord], Counter[str], SmtpSession]:
    out: list[sensor_pb2.Record] = []
    errors: Counter[str] = Counter()
    # SMTP's own errors (the TLS session after STARTTLS counts its own).
    session = FACTORY(CTX, out.append, lambda p, r: errors.update([r] if p == "smtp" else []))
    assert isinstance(session, SmtpSession)
    for i, (is_orig, data) in enumerate(chunks):
        session.data(is_orig, 1.0 + i, data)
    session.finish(100.0)
    return [r.smtp for r in out if r.WhichOneof("kind") == "smtp"], errors, session


GREETING = (False, b"220 mail.example.org ESMTP Postfix\r\n")
EHLO = [
    (True, b"EHLO client.example\r\n"),
    (False, b"250-mail.example.org\r\n250-AUTH LOGIN PLAIN\r\n250 8BITMIME\r\n"),
]
MESSAGE = (
    b'From: Alice <alice@example.org>\r\nTo: bob@example.net, "Carol, C" <carol@example.net>\r\n'
    b"Subject: hello\r\nMessage-ID: <1@example.org>\r\nX-Mailer: Test Mailer 1\r\n"
    b"Received: from b by c\r\nReceived: from a by b\r\n\r\nbody line\r\n..dot-stuffed line\r\n"
)


def _transaction(message: bytes = MESSAGE) -> list[tuple[bool, bytes]]:
    return [
        (True, b"MAIL FROM:<alice@example.org> SIZE=100\r\n"),
        (False, b"250 2.1.0 Ok\r\n"),
        (True, b"RCPT TO:<bob@example.net>\r\n"),
        (False, b"250 2.1.5 Ok\r\n"),
        (True, b"DATA\r\n"),
        (False, b"354 End data with <CR><LF>.<CR><LF>\r\n"),
        (True, message + b".\r\n"),
        (False, b"250 2.0.0 Ok: queued as 12345\r\n"),
    ]


# -- parser -----------------------------------------------------------------------------------------------


def test_addresses_as_zeek_extracts_them() -> None:
    assert parser.first_address("FROM:<alice@example.org> SIZE=100") == "alice@example.org"
    assert parser.first_address("FROM:<>") == ""
    assert parser.addresses("TO:<bob@example.net> ORCPT=rfc822;bob@example.net") == ["bob@example.net"]
    assert parser.header_addresses('bob@example.net, "Carol, C" <carol@example.net>') == [
        "bob@example.net",
        '"Carol, C" <carol@example.net>',
    ]


def test_header_block_unfolds_and_keeps_the_reported_fields() -> None:
    block = b"Subject: a\r\n  folded\r\nFROM: x@y\r\nX-Originating-IP: [192.0.2.7]\r\nreceived: r1\r\n\r\n"
    headers = parser.parse_headers(block)
    assert headers.subject == "a  folded" and headers.from_header == "x@y"
    assert headers.x_originating_ip == bytes([192, 0, 2, 7]) and headers.first_received == "r1"


@pytest.mark.parametrize(
    ("mechanism", "response", "user"),
    [
        ("LOGIN", b"alice", "alice"),
        ("PLAIN", b"\x00alice\x00s3cret", "alice"),
        ("PLAIN", b"admin\x00alice\x00s3cret", "alice"),
        ("CRAM-MD5", b"alice 0123456789abcdef", "alice"),
        ("XOAUTH2", b"user=alice@example.org\x01auth=Bearer tok\x01\x01", "alice@example.org"),
        ("GSSAPI", b"\x60\x82opaque", ""),
    ],
)
def test_auth_user_never_returns_the_secret(mechanism: str, response: bytes, user: str) -> None:
    got = parser.auth_user(mechanism, response)
    assert got == user
    assert "s3cret" not in got and "tok" not in got


def test_heuristic_tells_smtp_from_ftp_greetings() -> None:
    assert heuristic(b"220 mx.example.org ESMTP ready\r\n", False)
    assert heuristic(b"220-mx.example.org ESMTP Exim 4.96\r\n", False)
    assert not heuristic(b"220 (vsFTPd 3.0.3)\r\n", False)
    assert heuristic(b"EHLO laptop\r\n", True)
    assert not heuristic(b"GET / HTTP/1.1\r\n", True)


# -- session ----------------------------------------------------------------------------------------------


def test_auth_login_then_one_mail() -> None:
    auth = [
        (True, b"AUTH LOGIN\r\n"),
        (False, b"334 VXNlcm5hbWU6\r\n"),
        (True, _b64("alice@example.org") + b"\r\n"),
        (False, b"334 UGFzc3dvcmQ6\r\n"),
        (True, _b64("hunter2") + b"\r\n"),
        (False, b"235 2.7.0 Authentication successful\r\n"),
    ]
    (rec,), errors, _ = _run(
        [GREETING, *EHLO, *auth, *_transaction(), (True, b"QUIT\r\n"), (False, b"221 Bye\r\n")]
    )
    assert errors == Counter()
    assert (rec.auth_mechanism, rec.auth_user, rec.auth_success) == ("LOGIN", "alice@example.org", True)
    assert "hunter2" not in str(rec) and _b64("hunter2").decode() not in str(rec)
    assert (rec.helo, rec.mailfrom, list(rec.rcptto)) == (
        "client.example",
        "alice@example.org",
        ["bob@example.net"],
    )
    assert rec.subject == "hello" and rec.msg_id == "<1@example.org>" and rec.user_agent == "Test Mailer 1"
    assert list(rec.to) == ["bob@example.net", '"Carol, C" <carol@example.net>']
    assert (rec.first_received, rec.second_received) == ("from a by b", "from b by c")
    assert rec.data_bytes == len(MESSAGE) - 2  # the CRLF before "." belongs to the end sequence
    assert rec.last_reply == "250 2.0.0 Ok: queued as 12345" and rec.trans_depth == 1 and rec.transaction_seen


def test_failed_auth_plain_without_mail_still_reports_the_guess() -> None:
    guess = [
        (True, b"AUTH PLAIN " + base64.b64encode(b"\x00admin\x00password1") + b"\r\n"),
        (False, b"535 5.7.8 Authentication credentials invalid\r\n"),
        (True, b"AUTH PLAIN " + base64.b64encode(b"\x00admin\x00password2") + b"\r\n"),
        (False, b"535 5.7.8 Authentication credentials invalid\r\n"),
        (True, b"QUIT\r\n"),
        (False, b"221 Bye\r\n"),
    ]
    (rec,), _, _ = _run([GREETING, *EHLO, *guess])
    assert (rec.auth_mechanism, rec.auth_user, rec.auth_success) == ("PLAIN", "admin", False)
    assert rec.auth_failures_count == 2 and not rec.transaction_seen
    assert "password" not in str(rec)
    # Zeek's smtp.log has no row for a session without a transaction; the record is the sensor's own.
    from sensor.protocols.smtp.zeek import to_zeek

    assert to_zeek(rec) is None


def test_pipelined_transactions_pair_replies_in_order() -> None:
    pipelined = [
        (True, b"MAIL FROM:<a@x>\r\nRCPT TO:<b@y>\r\nRCPT TO:<c@y>\r\nDATA\r\n"),
        (False, b"250 ok\r\n250 ok\r\n550 no such user\r\n354 go ahead\r\n"),
        (True, b"Subject: one\r\n\r\nx\r\n.\r\nMAIL FROM:<d@x>\r\nRCPT TO:<e@y>\r\nDATA\r\n"),
        (False, b"250 queued 1\r\n250 ok\r\n250 ok\r\n354 go ahead\r\n"),
        (True, b"Subject: two\r\n\r\nyy\r\n.\r\n"),
        (False, b"250 queued 2\r\n"),
    ]
    recs, errors, _ = _run([GREETING, *EHLO, *pipelined])
    assert errors == Counter()
    assert [(r.trans_depth, r.mailfrom, r.subject, r.data_bytes) for r in recs] == [
        (1, "a@x", "one", len(b"Subject: one\r\n\r\nx")),
        (2, "d@x", "two", len(b"Subject: two\r\n\r\nyy")),
    ]
    assert list(recs[0].rcptto) == ["b@y", "c@y"] and recs[1].last_reply == "250 queued 2"


def test_end_of_data_split_across_segments_and_empty_message() -> None:
    split = [*_transaction()[:6], (True, b"Subject: s\r\n\r\nabc\r"), (True, b"\n."), (True, b"\r\n")]
    split += [(False, b"250 ok\r\n")]
    (rec,), _, _ = _run([GREETING, *EHLO, *split])
    assert rec.data_bytes == len(b"Subject: s\r\n\r\nabc") and rec.subject == "s"
    (empty,), _, _ = _run([GREETING, *EHLO, *_transaction(b"")])
    assert empty.data_bytes == 0


def test_bdat_chunks_are_counted_not_read_as_commands() -> None:
    body = b"Subject: chunked\r\n\r\nQUIT\r\nRSET\r\n"
    chunks = [
        (True, b"MAIL FROM:<a@x>\r\n"),
        (False, b"250 ok\r\n"),
        (True, b"RCPT TO:<b@y>\r\n"),
        (False, b"250 ok\r\n"),
        (True, b"BDAT 10\r\n" + body[:10]),
        (False, b"250 10 octets\r\n"),
        (True, f"BDAT {len(body) - 10} LAST\r\n".encode() + body[10:]),
        (False, b"250 queued\r\n"),
    ]
    (rec,), errors, _ = _run([GREETING, *EHLO, *chunks])
    assert errors == Counter()
    assert rec.data_bytes == len(body) and rec.subject == "chunked" and rec.last_reply == "250 queued"


def test_starttls_hands_the_rest_to_tls() -> None:
    chunks = [GREETING, *EHLO, (True, b"STARTTLS\r\n"), (False, b"220 2.0.0 Ready to start TLS\r\n")]
    recs, _, session = _run([*chunks, (True, b"\x16\x03\x01\x00\x05hello"), (True, b"MAIL FROM:<x@y>\r\n")])
    assert session.inner_services == ("ssl",)
    (rec,) = recs
    assert rec.tls and rec.transaction_seen and rec.mailfrom == ""  # nothing after STARTTLS is read as SMTP


def test_refused_starttls_keeps_reading_commands() -> None:
    chunks = [
        GREETING,
        *EHLO,
        (True, b"STARTTLS\r\n"),
        (False, b"454 TLS not available\r\n"),
        *_transaction(),
    ]
    (rec,), _, session = _run(chunks)
    assert session.inner_services == () and not rec.tls and rec.mailfrom == "alice@example.org"


# -- a real capture ----------------------------------------------------------------------------------------


def _tshark(pcap: Path, display_filter: str, *fields: str) -> list[list[str]]:
    args = ["tshark", "-n", "-r", str(pcap), "-Y", display_filter, "-T", "fields"]
    for f in fields:
        args += ["-e", f]
    out = subprocess.run(args, capture_output=True, text=True, check=True).stdout
    return [line.split("\t") for line in out.splitlines() if line]


def test_agent_tesla_exfiltration_over_submission_port() -> None:
    """Agent Tesla mails the stolen credentials: AUTH LOGIN as the sender, then one HTML message."""
    records, errors = capture_records(AGENT_TESLA_SMTP)
    assert not [k for k in errors if k[0] == "smtp"]
    (rec,) = [r.smtp for r in records if r.WhichOneof("kind") == "smtp"]
    assert rec.auth_mechanism == "LOGIN" and rec.auth_success is True
    assert (rec.mailfrom, list(rec.rcptto)) == ("shipping@oceanskylogistics.in", ["bkhin.supply@gmail.com"])
    assert (rec.helo, rec.subject, rec.from_header) == (
        "User-PC",
        "PW_admin/USER-PC",
        "shipping@oceanskylogistics.in",
    )
    assert rec.data_bytes == 830
    (flow,) = [r.flow for r in records if r.WhichOneof("kind") == "flow" and r.flow.resp.port == 587]
    assert list(flow.service) == ["smtp"] and flow.uid == rec.uid
    if shutil.which("tshark") is None:
        return
    # The same facts as tshark dissects them: the AUTH LOGIN initial response, the 235, the DATA length.
    ((username,),) = _tshark(AGENT_TESLA_SMTP, "smtp.auth.username", "smtp.auth.username")
    assert rec.auth_user == base64.b64decode(username).decode()
    assert len(_tshark(AGENT_TESLA_SMTP, "smtp.response.code == 235", "smtp.response.code")) == 1
    ((length,),) = _tshark(AGENT_TESLA_SMTP, "smtp.data.reassembled.length", "smtp.data.reassembled.length")
    assert rec.data_bytes == int(length)
    ((subject, sender),) = _tshark(AGENT_TESLA_SMTP, "imf", "imf.subject", "imf.from")
    assert (rec.subject, rec.from_header) == (subject, sender)
    row = zeek_logs(records)["smtp"][0]
    assert row["id.resp_p"] == 587 and row["auth_user"] == rec.auth_user and row["tls"] is False


def test_smtp_on_an_unusual_port_is_found_by_its_greeting() -> None:
    conv = TcpConv(sport=8025)
    conv.handshake()
    for is_orig, data in [GREETING, *EHLO, *_transaction(), (True, b"QUIT\r\n"), (False, b"221 Bye\r\n")]:
        conv.pkt(is_orig, "PA", data)
    conv.close()
    pipe = SensorPipeline(SensorConfig(), default_registry(), metrics_registry=CollectorRegistry(), seed=1)
    records = [*pipe.feed(PacketBlock.from_packets(conv.frames)), *pipe.flush()]
    (rec,) = [r.smtp for r in records if r.WhichOneof("kind") == "smtp"]
    (flow,) = [r.flow for r in records if r.WhichOneof("kind") == "flow"]
    assert rec.mailfrom == "alice@example.org" and list(flow.service) == ["smtp"]


# -- hostile input -----------------------------------------------------------------------------------------


def test_garbage_and_binary_junk_are_counted_then_given_up() -> None:
    junk = (bytes(range(256)) + b"\r\n") * 20
    recs, errors, session = _run([GREETING, (True, b"\x00\x01junk\r\n" * 20), (False, junk)])
    assert recs == []
    assert errors["bad_command"] == 8 and errors["bad_reply"] == 8  # 8 bad lines per side, then stop
    assert errors["not_smtp"] == 2
    assert session.done


def test_a_megabyte_without_newline_is_dropped_with_bounded_memory() -> None:
    reader = LineReader()
    for _ in range(16):
        assert list(reader.feed(b"A" * 65536)) == []
        assert reader.held <= MAX_LINE
    assert list(reader.feed(b"tail\r\nEHLO after\r\n")) == [b"EHLO after"] and reader.overlong == 1
    flood = [(True, b"A" * 65536) for _ in range(16)]
    (rec,), errors, _ = _run([GREETING, *flood, (True, b"\r\nEHLO after\r\n"), *_transaction()])
    assert errors["line_too_long"] == 1
    assert rec.helo == "after"  # the line after the flood is read again


def test_unterminated_data_is_reported_and_counted() -> None:
    cut = [*_transaction()[:6], (True, b"Subject: cut\r\n\r\n" + b"x" * 5000)]
    (rec,), errors, _ = _run([GREETING, *EHLO, *cut])
    assert errors["unterminated_data"] == 1
    assert rec.subject == "cut" and rec.data_bytes == len(b"Subject: cut\r\n\r\n") + 5000


def test_replies_without_commands_are_counted() -> None:
    recs, errors, _ = _run([GREETING, (False, b"250 ok\r\n250 ok\r\n354 go\r\n")])
    assert recs == [] and errors["reply_without_command"] == 3


def test_a_huge_header_block_is_cut_not_buffered() -> None:
    flood = b"X-Junk: " + b"y" * 100 + b"\r\n"
    message = b"Subject: big\r\n" + flood * 2000 + b"\r\nbody\r\n"
    (rec,), _, _ = _run([GREETING, *EHLO, *_transaction(message)])
    assert rec.subject == "big" and rec.data_bytes == len(message) - 2


def test_a_flood_of_recipients_is_bounded() -> None:
    rcpts = b"".join(f"RCPT TO:<u{i}@example.net>\r\n".encode() for i in range(1000))
    chunks = [GREETING, *EHLO, (True, b"MAIL FROM:<a@x>\r\n" + rcpts), (False, b"250 ok\r\n" * 1001)]
    (rec,), errors, _ = _run(chunks)
    assert len(rec.rcptto) == parser.MAX_ADDRESSES and errors["too_many_pending_commands"] > 0


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.booleans(), st.binary(max_size=200)), max_size=8))
def test_session_never_raises(chunks: list[tuple[bool, bytes]]) -> None:
    _, errors, _ = _run([GREETING, *EHLO, *_transaction()[:6], *chunks])
    assert errors["internal_error"] == 0


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_parsers_never_raise(data: bytes) -> None:
    parser.parse_headers(data)
    parser.header_block_end(data)
    for mechanism in ("LOGIN", "PLAIN", "CRAM-MD5", "XOAUTH2"):
        parser.auth_user(mechanism, data)
    parser.decode_sasl(data.decode("latin-1"))
    parser.addresses(data.decode("latin-1"))
