"""Model breaches as syslog messages (RFC 5424), plain or carrying ArcSight CEF, over UDP, TCP or TLS.

* RFC 5424: ``<PRI>1 TIMESTAMP HOSTNAME APP-NAME PROCID MSGID [SD-ID name="value" ...] BOM MSG``. The
  breach's identifiers sit in one structured-data element (``sd_id``, by default ``vigil@32473``: 32473 is
  the enterprise number RFC 5612 reserves for documentation, for sites without one of their own), MSGID is
  the catalog's model id and MSG the explanation. PRI = facility * 8 + the syslog severity of the breach's
  band (critical 2, high 3, medium 4, low 5).
* CEF: ``CEF:0|Vigil|Vigil|version|model_id|model|severity 0-10|key=value ...`` as the message of the same
  RFC 5424 header (no structured data, no BOM: CEF readers look for ``CEF:`` at the start).
* Transports: UDP (RFC 5426, one message per datagram, lost silently if nobody listens), TCP with
  octet-counting framing (RFC 6587 3.4.1: ``LEN SP MSG``) and TLS with the same framing (RFC 5425).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
from datetime import UTC, datetime
from pathlib import Path

from master.breaches import seconds
from vigil import __version__
from vigil.alert.v1 import alert_pb2

NILVALUE = "-"
BOM = "\ufeff"
# Syslog severities (RFC 5424 6.2.1) for the catalog's bands.
SYSLOG_SEVERITY = {"critical": 2, "high": 3, "medium": 4, "low": 5}
# ABNF limits of the header fields (RFC 5424 6).
_HOSTNAME_MAX, _APP_NAME_MAX, _PROCID_MAX, _MSGID_MAX, _PARAM_NAME_MAX = 255, 48, 128, 32, 32


def _printusascii(text: str, limit: int) -> str:
    """A header field: printable US-ASCII without spaces (33-126), at most ``limit`` long; NILVALUE if
    empty."""
    cleaned = "".join(ch if 33 <= ord(ch) <= 126 else "_" for ch in text)[:limit]
    return cleaned or NILVALUE


def sd_escape(value: str) -> str:
    """A PARAM-VALUE: '"', '\\' and ']' escaped with a backslash (RFC 5424 6.3.3)."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("]", "\\]")


def timestamp(breach: alert_pb2.ModelBreach) -> str:
    when = datetime.fromtimestamp(seconds(breach.time), tz=UTC)
    return when.strftime("%Y-%m-%dT%H:%M:%S.") + f"{when.microsecond // 1000:03d}Z"


def structured_data(breach: alert_pb2.ModelBreach, sd_id: str) -> str:
    params = {
        "breach_id": breach.breach_id,
        "model": breach.model,
        "model_id": breach.model_id,
        "score": str(breach.score),
        "severity": breach.severity,
        "device_id": breach.device.device_id,
        "ip": breach.device.ip,
        "mac": breach.device.mac,
        "hostname": breach.device.hostname,
        "techniques": ",".join(breach.mitre_techniques),
        "peer_ip": breach.peer_ip,
        "peer_port": str(breach.peer_port) if breach.peer_port else "",
    }
    body = " ".join(f'{name[:_PARAM_NAME_MAX]}="{sd_escape(v)}"' for name, v in params.items() if v)
    return f"[{sd_id} {body}]"


def header(breach: alert_pb2.ModelBreach, *, facility: int, hostname: str, app_name: str) -> str:
    pri = facility * 8 + SYSLOG_SEVERITY.get(breach.severity, 5)
    return " ".join(
        (
            f"<{pri}>1",
            timestamp(breach),
            _printusascii(hostname, _HOSTNAME_MAX),
            _printusascii(app_name, _APP_NAME_MAX),
            NILVALUE,
            _printusascii(breach.model_id, _MSGID_MAX),
        )
    )


# -- CEF -----------------------------------------------------------------------------------------------


def cef_header_escape(value: str) -> str:
    """Header fields: '\\' and '|' escaped; line breaks have no place in a header and become spaces."""
    return value.replace("\\", "\\\\").replace("|", "\\|").replace("\r", " ").replace("\n", " ")


def cef_value_escape(value: str) -> str:
    """Extension values: '\\' and '=' escaped, line breaks written as \\n and \\r."""
    return value.replace("\\", "\\\\").replace("=", "\\=").replace("\r", "\\r").replace("\n", "\\n")


def cef_severity(score: int) -> int:
    """The 0-100 score on CEF's 0-10 scale."""
    return max(0, min(10, round(score / 10)))


def _address(ext: list[tuple[str, str]], ip: str, v4_key: str, v6_key: str, v6_label: str) -> None:
    """CEF's src/dst hold IPv4 only; an IPv6 address goes into its labelled c6a field."""
    if ":" in ip:
        ext += [(v6_key, ip), (f"{v6_key}Label", v6_label)]
    elif ip:
        ext.append((v4_key, ip))


def cef(breach: alert_pb2.ModelBreach) -> str:
    """The breach as one CEF record (header escaping on the seven header fields, extension escaping on
    every value)."""
    ext: list[tuple[str, str]] = [
        ("rt", str(round(seconds(breach.time) * 1000))),
        ("externalId", breach.breach_id),
        ("cat", breach.severity),
    ]
    _address(ext, breach.device.ip, "src", "c6a2", "Source IPv6 Address")
    ext += [("smac", breach.device.mac), ("shost", breach.device.hostname)]
    _address(ext, breach.peer_ip, "dst", "c6a3", "Destination IPv6 Address")
    ext += [
        ("dpt", str(breach.peer_port) if breach.peer_port else ""),
        ("cs1Label", "deviceId"),
        ("cs1", breach.device.device_id),
        ("cs2Label", "mitreTechniques"),
        ("cs2", ",".join(breach.mitre_techniques)),
        ("cn1Label", "score"),
        ("cn1", str(breach.score)),
        ("msg", breach.explanation),
    ]
    head = "|".join(
        ["CEF:0"]
        + [cef_header_escape(v) for v in ("Vigil", "Vigil", __version__, breach.model_id, breach.model)]
        + [str(cef_severity(breach.score))]
    )
    extension = " ".join(f"{k}={cef_value_escape(v)}" for k, v in ext if v)
    return f"{head}|{extension}"


# -- messages and framing ----------------------------------------------------------------------------


def _truncate_utf8(text: str, limit: int) -> bytes:
    data = text.encode("utf-8")
    if len(data) <= limit:
        return data
    return data[:limit].decode("utf-8", errors="ignore").encode("utf-8")


def message(
    breach: alert_pb2.ModelBreach,
    *,
    fmt: str = "rfc5424",
    facility: int = 4,
    hostname: str = "",
    app_name: str = "vigil",
    sd_id: str = "vigil@32473",
    max_bytes: int = 8192,
) -> bytes:
    """One syslog message (without transport framing), at most ``max_bytes`` (the MSG part is cut)."""
    head = header(breach, facility=facility, hostname=hostname or socket.gethostname(), app_name=app_name)
    if fmt == "cef":
        prefix = f"{head} {NILVALUE} "
        text = cef(breach)
    else:
        prefix = f"{head} {structured_data(breach, sd_id)} "
        text = BOM + breach.explanation
    start = prefix.encode("utf-8")
    return start + _truncate_utf8(text, max(0, max_bytes - len(start)))


def octet_counted(msg: bytes) -> bytes:
    """RFC 6587 3.4.1 framing (also RFC 5425's): the length in decimal, a space, the message."""
    return str(len(msg)).encode("ascii") + b" " + msg


# -- transports ---------------------------------------------------------------------------------------


class SyslogTransport:
    """Sends framed messages to one receiver; a failure raises OSError (the sink retries), and the next
    send opens a new connection."""

    def __init__(
        self,
        host: str,
        port: int,
        transport: str,
        *,
        ca_file: Path | None = None,
        cert_file: Path | None = None,
        key_file: Path | None = None,
        server_name: str | None = None,
        connect_timeout_s: float = 5.0,
    ) -> None:
        self.host, self.port, self.transport = host, port, transport
        self.server_name = server_name or host
        self.connect_timeout_s = connect_timeout_s
        self._ssl: ssl.SSLContext | None = None
        if transport == "tls":
            self._ssl = ssl.create_default_context(cafile=str(ca_file) if ca_file else None)
            if cert_file is not None:
                self._ssl.load_cert_chain(str(cert_file), str(key_file) if key_file else None)
        self._udp: socket.socket | None = None
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def send(self, msg: bytes) -> None:
        if self.transport == "udp":
            self._send_udp(msg)
            return
        if self._writer is None or self._writer.is_closing() or (self._reader and self._reader.at_eof()):
            # The receiver closed the connection since the last message (a restart): reconnect first
            # rather than write into a socket the peer will reset.
            await self.close()
            self._reader, self._writer = await asyncio.wait_for(
                asyncio.open_connection(
                    self.host,
                    self.port,
                    ssl=self._ssl,
                    server_hostname=self.server_name if self._ssl else None,
                ),
                self.connect_timeout_s,
            )
        writer = self._writer
        assert writer is not None
        try:
            writer.write(octet_counted(msg))
            await writer.drain()
        except (OSError, ssl.SSLError):
            await self.close()
            raise

    def _send_udp(self, msg: bytes) -> None:
        if self._udp is None:
            family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
            sock = socket.socket(family, socket.SOCK_DGRAM)
            sock.setblocking(False)
            sock.connect((self.host, self.port))
            self._udp = sock
        try:
            # A connected UDP socket reports an earlier ICMP port-unreachable as ConnectionRefusedError.
            self._udp.send(msg)
        except OSError:
            self._udp.close()
            self._udp = None
            raise

    async def close(self) -> None:
        if self._udp is not None:
            self._udp.close()
            self._udp = None
        writer, self._writer, self._reader = self._writer, None, None
        if writer is not None:
            writer.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(writer.wait_closed(), 2.0)
