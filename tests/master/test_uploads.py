"""Clear-text uploads (master/observe.py upload_obs): what counts as a mail or a file sent in clear."""

from __future__ import annotations

from master.observe import upload_obs
from vigil.flow.v1 import ftp_pb2, smtp_pb2
from vigil.sensor.v1 import sensor_pb2


def _smtp(**fields: object) -> sensor_pb2.Record:
    record = sensor_pb2.Record(smtp=smtp_pb2.SmtpRecord(**fields))  # type: ignore[arg-type]
    record.resp.port = 587
    return record


def test_a_mail_sent_in_clear_is_an_upload_and_one_under_starttls_is_not() -> None:
    sent = upload_obs(
        _smtp(rcptto=["a@example.org"], subject="hi", data_bytes=830, auth_user="me"), "smtp", "203.0.113.5"
    )
    assert sent is not None and (sent.protocol, sent.size, sent.account) == ("SMTP", 830, "me")
    assert sent.text().startswith(
        "a mail to a@example.org, subject 'hi' (830 B by SMTP to 203.0.113.5:587 as me"
    )
    # Under STARTTLS the sensor sees no DATA: nothing was seen sent in clear.
    assert upload_obs(_smtp(tls=True, data_bytes=0), "smtp", "203.0.113.5") is None
    # A session that only authenticated (or failed to) sent nothing.
    assert upload_obs(_smtp(auth_user="me"), "smtp", "203.0.113.5") is None


def test_an_ftp_upload_counts_and_a_download_does_not() -> None:
    stor = sensor_pb2.Record(
        ftp=ftp_pb2.FtpRecord(command="STOR", arg="ftp://x/f.html", upload=True, data_bytes=533)
    )
    stor.resp.port = 21
    found = upload_obs(stor, "ftp", "203.0.113.9")
    assert found is not None and (found.protocol, found.size) == ("FTP", 533)
    retr = sensor_pb2.Record(ftp=ftp_pb2.FtpRecord(command="RETR", arg="ftp://x/f", data_bytes=5000))
    assert upload_obs(retr, "ftp", "203.0.113.9") is None
    assert upload_obs(stor, "http", "203.0.113.9") is None
