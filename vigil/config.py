"""One configuration tree for every service: a YAML file overlaid with ``VIGIL_`` environment variables.

Environment variables address nested keys with double underscores:
``VIGIL_NATS__URL=nats://10.0.0.1:4222`` sets ``nats.url``. Values are parsed as YAML scalars, so
``VIGIL_RESPONDER__DRY_RUN=true`` is a boolean. The whole tree is validated at once and every error is
reported together, so an operator fixes a config in one round rather than one error per restart.
"""

from __future__ import annotations

import ipaddress
import os
import re
import stat
import zoneinfo
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError

ENV_PREFIX = "VIGIL_"
# VIGIL_ variables that are not configuration keys: the config file's path, and the console token the
# operator's commands send (kept out of the tree so it never reaches a validation message).
NOT_SETTINGS = frozenset({"VIGIL_CONFIG", "VIGIL_TOKEN"})
# A configuration file larger than this is refused unread: configs are a few KiB, and an endless file
# (/dev/zero, a FIFO nobody closes) must end in an error, not a hang.
MAX_CONFIG_BYTES = 1024 * 1024
# The longest duration any setting may hold (ten years): beyond it, times overflow the timestamp types.
MAX_DURATION_S = 10 * 366 * 24 * 3600.0

# Value types with their ranges, so every setting of a kind is checked the same way.
Seconds = Annotated[float, Field(gt=0, le=MAX_DURATION_S)]
SecondsOrZero = Annotated[float, Field(ge=0, le=MAX_DURATION_S)]
Port = Annotated[int, Field(ge=1, le=65535)]
Count = Annotated[int, Field(gt=0, le=10**9)]
ByteSize = Annotated[int, Field(gt=0, le=2**60)]


class _Section(BaseModel):
    # No NaN or infinity anywhere: every number in a config is a physical quantity.
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


def check_networks(value: list[str]) -> list[str]:
    """Every item an IPv4/IPv6 network in CIDR notation (a bare address is a /32 or /128)."""
    for item in value:
        try:
            ipaddress.ip_network(item, strict=False)
        except ValueError:
            raise ValueError(f"{item!r} is not an IP network (CIDR)") from None
    return value


def check_url(value: str, schemes: tuple[str, ...]) -> str:
    """A URL with one of ``schemes`` and something after ``://`` (the password part is never echoed)."""
    scheme, sep, rest = value.partition("://")
    if not sep or scheme.lower() not in schemes or not rest.rpartition("@")[2]:
        raise ValueError(
            f"expected a URL of the form {schemes[0]}://host:port (schemes: {', '.join(schemes)})"
        )
    return value


def check_name(value: str) -> str:
    """A JetStream stream or consumer name: letters, digits, '-' and '_' only (1-64 characters)."""
    if not 1 <= len(value) <= 64 or not all(ch.isascii() and (ch.isalnum() or ch in "-_") for ch in value):
        raise ValueError("must be 1-64 characters of letters, digits, '-' and '_'")
    return value


def check_address(value: str, lowest_port: int = 1) -> str:
    """``host:port`` (IPv6 hosts in brackets) with a port in lowest_port-65535 (0 lets a listener choose)."""
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not lowest_port <= int(port) <= 65535:
        raise ValueError(f"{value!r} is not host:port with a port in {lowest_port}-65535")
    return value


def _file_problems(owner: BaseModel, fields: tuple[str, ...]) -> list[tuple[str, str]]:
    """(field, problem) for every configured file that is missing, not a regular file or unreadable."""
    problems: list[tuple[str, str]] = []
    for name in fields:
        path: Path | None = getattr(owner, name)
        if path is None:
            continue
        if not path.exists():
            problems.append((name, f"{path}: file does not exist"))
        elif not path.is_file():
            problems.append((name, f"{path}: not a regular file"))
        elif not os.access(path, os.R_OK):
            problems.append((name, f"{path}: not readable by this process"))
    return problems


def _raise_problems(owner: BaseModel, problems: list[tuple[str, str]]) -> None:
    """Raise all problems at once, each at its own field's location.

    A ValidationError raised inside a validator is merged into the outer one with its locations
    prefixed, so ``build`` reports ``responder.tls.key_file: ...`` and ``responder.tls.ca_file: ...``
    as separate lines in one ConfigError instead of one per restart. A plain ValueError would collapse
    them into a single message pinned on the section. Only paths go into messages, never contents.
    """
    if not problems:
        return
    raise ValidationError.from_exception_data(
        type(owner).__name__,
        [
            InitErrorDetails(
                type=PydanticCustomError("tls_config", "{problem}", {"problem": problem}),
                loc=(field,),
                input=str(getattr(owner, field, "")),
            )
            for field, problem in problems
        ],
    )


class TlsConfig(_Section):
    """Certificates for one end of a mutually authenticated TLS link (PEM files).

    Used on both sides of the master -> responder gRPC link: the responder presents ``cert_file`` and
    demands a client certificate signed by ``ca_file``; the master verifies the responder against
    ``ca_file`` and presents its own ``cert_file``. Mutual TLS needs all three files on both sides, so
    a half-configured section is an error rather than a silent downgrade to one-way or no TLS.
    """

    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    # None: on as soon as any file is set. False turns TLS off while keeping the paths in the file;
    # True insists on TLS, so a forgotten path is reported instead of falling back to plaintext.
    enabled: bool | None = None
    # Client side only: the name to check the server certificate against when the address dialled
    # is not in its SANs (e.g. dialling an IP of a responder whose certificate names a DNS name).
    server_name: str | None = None

    @property
    def active(self) -> bool:
        if self.enabled is not None:
            return self.enabled
        return any(p is not None for p in (self.ca_file, self.cert_file, self.key_file))

    @model_validator(mode="after")
    def _check_files(self) -> TlsConfig:
        if not self.active:
            return self
        problems = [
            (name, f"required for mutual TLS ({why})")
            for name, why in (
                ("ca_file", "the CA that signs the peer's certificate"),
                ("cert_file", "this end's certificate"),
                ("key_file", "the private key of cert_file"),
            )
            if getattr(self, name) is None
        ]
        problems += _file_problems(self, ("ca_file", "cert_file", "key_file"))
        _raise_problems(self, problems)
        return self


class NatsConfig(_Section):
    url: str = "nats://127.0.0.1:4222"
    # Optional credentials and TLS; never logged. SecretStr keeps the password out of repr/str, so a
    # logged or printed config (or a traceback showing it) never carries it.
    user: str | None = None
    password: SecretStr | None = None
    creds_file: Path | None = None
    tls_ca: Path | None = None
    tls_cert: Path | None = None
    tls_key: Path | None = None
    stream: str = "VIGIL_TELEMETRY"
    # Stream limits: how long and how much telemetry JetStream keeps for consumers that lag.
    stream_max_age_s: Seconds = 7 * 24 * 3600
    stream_max_bytes: ByteSize = 10 * 1024**3
    # Deduplication window for Nats-Msg-Id (batch id): covers a spool drained after an outage.
    duplicate_window_s: Seconds = 3600
    connect_timeout_s: Annotated[float, Field(gt=0, le=600)] = 2.0

    @field_validator("url")
    @classmethod
    def _valid_url(cls, value: str) -> str:
        return check_url(value, ("nats", "tls", "ws", "wss"))

    @field_validator("stream")
    @classmethod
    def _valid_stream(cls, value: str) -> str:
        return check_name(value)

    @model_validator(mode="after")
    def _check_tls_files(self) -> NatsConfig:
        problems = _file_problems(self, ("creds_file", "tls_ca", "tls_cert", "tls_key"))
        # A certificate without its key (or the reverse) would otherwise be dropped silently and the
        # connection made without client authentication.
        if (self.tls_cert is None) != (self.tls_key is None):
            missing = "tls_key" if self.tls_key is None else "tls_cert"
            problems.append((missing, "tls_cert and tls_key must be set together"))
        _raise_problems(self, problems)
        return self


class RedisConfig(_Section):
    # redis://host:port/db or unix:///path/to/socket
    url: str = "redis://127.0.0.1:6379/0"
    key_prefix: str = "vigil:v1"

    @field_validator("url")
    @classmethod
    def _valid_url(cls, value: str) -> str:
        return check_url(value, ("redis", "rediss", "unix"))


class HttpConfig(_Section):
    """Where a service serves /metrics, /healthz and /readyz. Port 0 picks a free port."""

    host: str = "127.0.0.1"
    port: int = Field(default=0, ge=0, le=65535)


class ZeekLogsConfig(_Section):
    """Zeek-format logs written by the live sensor as it runs (sensor/livelogs.py), rotated like Zeek's."""

    # Where conn.log, dns.log, ... are written; None writes none (`vigil up` puts them in its data dir).
    directory: Path | None = None
    # "json": Zeek's JSON writer conventions; "tsv": Zeek's tab-separated logs with their header lines.
    format: Literal["json", "tsv"] = "json"
    # Rotation by event time, at multiples of this from local midnight as Zeek does (0: never by time).
    rotate_interval_s: SecondsOrZero = 3600.0
    # ... and whenever a log file reaches this size.
    rotate_max_bytes: ByteSize = 100 * 1024**2
    # Rotated files kept: the oldest are removed (counted) beyond either bound.
    max_total_bytes: ByteSize = 2 * 1024**3
    max_files: Count = 10_000
    # Rotated names: "zeek" as Zeek names them alone (conn.2026-12-07-20-00-00.log), "archiver" as it names
    # them for zeek-archiver (conn__2026-12-07-20-00-00__2026-12-07-21-00-00__.log).
    rotated_names: Literal["zeek", "archiver"] = "zeek"
    # weird.log: checksum drops and protocol parse errors, sampled per name like Zeek's weirds: the first
    # weird_sampling_threshold of each weird_sampling_duration_s, then every weird_sampling_rate-th.
    weird: bool = True
    weird_sampling_threshold: Annotated[int, Field(ge=0, le=10**6)] = 25
    weird_sampling_rate: Count = 1000
    weird_sampling_duration_s: Seconds = 600.0

    @model_validator(mode="after")
    def _bounds_fit(self) -> ZeekLogsConfig:
        problems = []
        if self.rotate_max_bytes > self.max_total_bytes:
            problems.append(
                (
                    "rotate_max_bytes",
                    f"{self.rotate_max_bytes} is larger than max_total_bytes ({self.max_total_bytes}): "
                    "a single file would break the disk bound",
                )
            )
        if self.directory is not None and self.directory.exists() and not self.directory.is_dir():
            problems.append(("directory", f"{self.directory}: exists and is not a directory"))
        _raise_problems(self, problems)
        return self


class SensorConfig(_Section):
    sensor_id: str = "sensor-1"
    site: str = "default"
    # "pcap" reads files; "tap" captures live on an interface (AF_PACKET, needs root).
    source: Literal["pcap", "tap"] = "pcap"
    pcap_files: list[Path] = Field(default_factory=list)
    interface: str | None = None
    # Replay pcaps at capture speed (live-like) instead of as fast as possible.
    pcap_realtime: bool = False
    # With pcap_realtime: replay this many times faster than captured (10 = a 10-minute capture in 1 minute).
    pcap_speed: Annotated[float, Field(gt=0, le=1_000_000)] = 1.0
    idle_timeout_tcp_s: Seconds = 300.0
    idle_timeout_udp_s: Seconds = 60.0
    idle_timeout_other_s: Seconds = 60.0
    active_timeout_s: Seconds = 3600.0
    # An unanswered TCP connection attempt (state S0: nothing ever came back from the responder) is
    # emitted after this much event time without packets instead of the full TCP idle timeout, so the
    # master sees a scan's failed attempts within seconds (Zeek's tcp_attempt_delay idea).
    attempt_timeout_s: Seconds = 30.0
    # How long to linger after FIN/RST before emitting (catches the final ACKs).
    close_linger_s: SecondsOrZero = 1.0
    # Drop IPv4 packets whose header checksum is wrong, as the receiving host (and Zeek without -C)
    # would — except from a sender whose headers are nearly all unfilled (3 or more, over 90 %): the
    # capturing host of a NIC with checksum offload (sensor/pipeline.py). Off checks none.
    verify_ip_checksums: bool = True
    # False drops bad IPv4 headers from every sender, the capturing host's too, as Zeek without -C does
    # (to compare with logs Zeek wrote that way); True spares a sender judged to offload its checksums.
    spare_offloading_senders: bool = True
    # TCP/UDP checksums: a host drops a segment whose checksum is wrong, so the sensor must too (or an
    # attacker "inserts" data the target never accepted). Captures taken on a sending host carry unfilled
    # checksums (offload); "auto" verifies unless more than 5 % of the first 1,000 segments fail, and then
    # spares the senders whose own segments mostly fail (the capturing host).
    verify_l4_checksums: Literal["auto", "on", "off"] = "auto"
    # Reassemble IPv4 fragments before analysis (fragmentation is an old way past a sensor); a datagram
    # whose pieces do not all arrive within the timeout is dropped and counted.
    reassemble_fragments: bool = True
    fragment_timeout_s: Seconds = 30.0
    # UDP ports whose packets are tunnels to open (cloud traffic mirroring sends VXLAN to 4789); the
    # frames inside are analysed instead. An empty list leaves that tunnel as ordinary UDP.
    vxlan_ports: list[Port] = Field(default_factory=lambda: [4789])
    geneve_ports: list[Port] = Field(default_factory=lambda: [6081])
    batch_max_records: Annotated[int, Field(gt=0, le=1_000_000)] = 500
    batch_max_delay_s: Seconds = 1.0
    spool_dir: Path = Path("var/spool")
    spool_max_bytes: ByteSize = 256 * 1024**2
    # Batches older than this are dropped from the spool (counted): by default the stream's own retention.
    spool_max_age_s: Seconds = 7 * 24 * 3600.0
    # On SIGTERM or end of input, how long the spool may take to drain before the sensor exits with it kept.
    drain_timeout_s: Annotated[float, Field(ge=0, le=3600)] = 10.0
    heartbeat_interval_s: Seconds = 10.0
    http: HttpConfig = HttpConfig()
    zeek_logs: ZeekLogsConfig = ZeekLogsConfig()

    @model_validator(mode="after")
    def _tap_needs_interface(self) -> SensorConfig:
        if self.source == "tap" and not self.interface:
            raise ValueError("source is tap but no interface is set (sensor.interface or --interface)")
        return self


class ProtectedConfig(_Section):
    """Addresses and networks no action may ever touch (CIDR strings)."""

    networks: list[str] = Field(default_factory=list)

    @field_validator("networks")
    @classmethod
    def _valid_networks(cls, value: list[str]) -> list[str]:
        return check_networks(value)


SEVERITIES = ("low", "medium", "high", "critical")


class OcsfExportConfig(_Section):
    """OCSF Detection Findings as JSON lines appended to a file (a SIEM's file collector follows it)."""

    path: Path | None = None


class SyslogExportConfig(_Section):
    """RFC 5424 syslog (or CEF inside it) to one receiver. Off while ``address`` is unset."""

    address: str | None = None
    transport: Literal["udp", "tcp", "tls"] = "udp"
    format: Literal["rfc5424", "cef"] = "rfc5424"
    # 4: security/authorization messages (RFC 5424 6.2.1).
    facility: int = Field(default=4, ge=0, le=23)
    # HOSTNAME of the messages; empty: this machine's name.
    hostname: str = ""
    app_name: str = Field(default="vigil", min_length=1, max_length=48)
    # SD-ID of the breach's structured data: name@enterprise-number. 32473 is reserved for documentation.
    sd_id: str = Field(default="vigil@32473", pattern=r"^[!#-<>-\\^-~]{1,32}$")
    # Longer messages are cut (the explanation's end); rsyslog's default limit is 8 KiB.
    max_message_bytes: int = Field(default=8192, ge=480, le=65000)
    # TLS (RFC 5425): the CA that signs the receiver's certificate, and optionally this end's own.
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    server_name: str | None = None

    @field_validator("address")
    @classmethod
    def _valid_address(cls, value: str | None) -> str | None:
        return None if value is None else check_address(value)

    @model_validator(mode="after")
    def _check_tls(self) -> SyslogExportConfig:
        problems = _file_problems(self, ("ca_file", "cert_file", "key_file"))
        if self.address and self.transport == "tls" and self.ca_file is None:
            problems.append(("ca_file", "required with transport tls (the CA of the receiver's certificate)"))
        if (self.cert_file is None) != (self.key_file is None):
            missing = "key_file" if self.key_file is None else "cert_file"
            problems.append((missing, "cert_file and key_file must be set together"))
        _raise_problems(self, problems)
        return self


class WebhookExportConfig(_Section):
    """A JSON POST per breach, signed with HMAC-SHA256 (master/exports/webhook.py). Off while ``url`` is
    unset."""

    url: str | None = None
    # "json": the ModelBreach; "ocsf": the Detection Finding; "slack"/"teams": chat-ready messages.
    format: Literal["json", "ocsf", "slack", "teams"] = "json"
    secret: SecretStr | None = None

    @field_validator("url")
    @classmethod
    def _valid_url(cls, value: str | None) -> str | None:
        return None if value is None else check_url(value, ("https", "http"))

    @model_validator(mode="after")
    def _secret_for_own_receivers(self) -> WebhookExportConfig:
        # A receiver of our own JSON must be able to tell our POSTs from anyone's; chat services
        # authenticate by the secret URL instead, so there a secret is optional.
        if self.url and self.format in ("json", "ocsf") and not self.secret:
            raise ValueError(
                f"webhook format {self.format} needs a secret to sign with (exports.webhook.secret)"
            )
        return self


class AlertmanagerExportConfig(_Section):
    """Alerts to a Prometheus Alertmanager (its base URL; POST /api/v2/alerts). Off while ``url`` is unset."""

    url: str | None = None
    # endsAt = the breach's time + this: an alert not raised again resolves on its own.
    resolve_after_s: Seconds = 3600.0

    @field_validator("url")
    @classmethod
    def _valid_url(cls, value: str | None) -> str | None:
        return None if value is None else check_url(value, ("https", "http"))


class ExportsConfig(_Section):
    """Where the master sends each breach as it is committed, besides Redis and NATS."""

    # Breaches below this band are not exported.
    min_severity: Literal["low", "medium", "high", "critical"] = "low"
    # Per destination: breaches kept while a receiver is down; beyond it the oldest are dropped (counted).
    queue_max: Count = 10_000
    retry_initial_s: Seconds = 0.5
    retry_max_s: Seconds = 60.0
    # One delivery attempt (connect + send, or an HTTP request) may take this long.
    timeout_s: Annotated[float, Field(gt=0, le=300)] = 5.0
    ocsf: OcsfExportConfig = OcsfExportConfig()
    syslog: SyslogExportConfig = SyslogExportConfig()
    webhook: WebhookExportConfig = WebhookExportConfig()
    alertmanager: AlertmanagerExportConfig = AlertmanagerExportConfig()

    @model_validator(mode="after")
    def _retry_order(self) -> ExportsConfig:
        if self.retry_initial_s > self.retry_max_s:
            raise ValueError("retry_initial_s must not exceed retry_max_s")
        return self


# Keys renamed in 0.x: they set every count model, not only the scan models. An old name is refused with
# its new one rather than dropped (extra keys are refused anyway; this says what to write instead).
_RENAMED_MASTER_KEYS = {
    "scan_window_s": "window_s",
    "scan_breach_probability": "breach_probability",
    "scan_half_life_s": "half_life_s",
}


class MasterConfig(_Section):
    consumer: str = "vigil-master"

    @model_validator(mode="before")
    @classmethod
    def _renamed_keys(cls, data: Any) -> Any:
        if isinstance(data, Mapping):
            for old, new in _RENAMED_MASTER_KEYS.items():
                if old in data:
                    raise ValueError(f"master.{old} is now master.{new} (it sets every count model)")
        return data

    @field_validator("consumer")
    @classmethod
    def _valid_consumer(cls, value: str) -> str:
        return check_name(value)

    # Networks considered internal for "internal destinations"; RFC 1918 + ULA by default.
    internal_networks: list[str] = Field(
        default_factory=lambda: ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "fc00::/7"]
    )
    # Event-time window over which a device's count features are counted.
    window_s: Seconds = 60.0
    # Posterior predictive tail probability below which a count model breaches.
    breach_probability: float = Field(default=1e-4, gt=0, lt=1)
    # Half-life of the model's memory, in event-time seconds: old windows weigh less.
    half_life_s: Seconds = 7 * 24 * 3600.0
    # Event time the network must have been learned before a device (or an external endpoint) seen for the
    # first time raises "New Device" ("Rare External Endpoint"): everything is new on the first day.
    new_device_grace_s: SecondsOrZero = 3600.0
    # Breaches of one device further apart than this in event time are told as separate incidents (unless a
    # connection links them: an attacker and its victim, devices reaching one rare external host).
    incident_gap_s: Seconds = 6 * 3600.0
    # IANA time zone of the monitored site (e.g. "Europe/Berlin"): hour-of-week seasonality follows it.
    timezone: str = "UTC"

    @field_validator("internal_networks")
    @classmethod
    def _valid_internal(cls, value: list[str]) -> list[str]:
        return check_networks(value)

    @field_validator("responder_address")
    @classmethod
    def _valid_responder_address(cls, value: str | None) -> str | None:
        return None if value is None else check_address(value)

    @field_validator("timezone")
    @classmethod
    def _known_timezone(cls, value: str) -> str:
        try:
            zoneinfo.ZoneInfo(value)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {value!r}") from exc
        return value

    # Breach score at or above which policy acts.
    action_min_score: int = Field(default=60, ge=0, le=100)
    # "autonomous" acts, "confirm" proposes, "observe" only records.
    response_mode: Literal["autonomous", "confirm", "observe"] = "autonomous"
    block_duration_s: Seconds = 3600.0
    # What a scanning or attack-tool breach gets: "block_internal" cuts the device off from the internal
    # networks only (its user keeps the internet), "block_all_outgoing" stops everything it originates.
    scan_response: Literal["block_internal", "block_all_outgoing"] = "block_internal"
    max_actions_per_minute: Count = 10
    responder_address: str | None = "127.0.0.1:50051"
    # Client side of the mutual-TLS link to the responder; off (plaintext) when no file is set.
    responder_tls: TlsConfig = TlsConfig()
    # Messages per fetch: with the sensor's 500-record batches, enough to fill a unit of work.
    fetch_batch: Annotated[int, Field(gt=0, le=10_000)] = 128
    # When a backlog has built up, consecutive batches are processed as one unit of work of up to this many
    # records: each device's state is then loaded, scored and committed once per unit, not once per batch.
    # Measured on the bench mix: 5.6x the records/s of batch-by-batch at 32k, +17 % more at 64k, flat beyond.
    unit_max_records: Annotated[int, Field(gt=0, le=10_000_000)] = 65536
    # How long JetStream waits for a batch's ack before handing it to another (or a restarted) master.
    ack_wait_s: Annotated[float, Field(ge=1, le=3600)] = 30.0
    # The door (master/door.py): a record timed before this, or later than its batch's creation time plus
    # the skew, or more than max_batch_span_s before the batch's median time, is dropped alone and counted.
    min_event_time: datetime = datetime(1990, 1, 1, tzinfo=UTC)
    max_clock_skew_s: Seconds = 300.0
    max_batch_span_s: Seconds = 30 * 24 * 3600.0
    # How far one batch may move the network's event clock (and its learned span) beyond the clock or the
    # batch's median time: a forged timestamp ages nothing by more than this.
    max_event_step_s: Seconds = 3600.0

    @field_validator("min_event_time")
    @classmethod
    def _aware(cls, value: datetime) -> datetime:
        return value if value.tzinfo is not None else value.replace(tzinfo=UTC)

    protected: ProtectedConfig = ProtectedConfig()
    exports: ExportsConfig = ExportsConfig()
    http: HttpConfig = HttpConfig()


class ResponderConfig(_Section):
    listen: str = "127.0.0.1:50051"
    backend: Literal["nftables", "dryrun"] = "dryrun"

    @field_validator("listen")
    @classmethod
    def _valid_listen(cls, value: str) -> str:
        return check_address(value, lowest_port=0)

    # nftables table that holds every Vigil rule; nothing outside it is touched.
    nft_table: str = "vigil"
    # Run nft inside this network namespace (`ip netns exec`), for gateways in labs/containers.
    netns: str | None = None
    reconcile_interval_s: Seconds = 5.0
    max_action_duration_s: Seconds = 24 * 3600.0
    protected: ProtectedConfig = ProtectedConfig()
    state_file: Path | None = None
    http: HttpConfig = HttpConfig()
    # Server side of the mutual-TLS link: with it, only clients holding a certificate signed by
    # tls.ca_file may act; without it the port is plaintext and unauthenticated.
    tls: TlsConfig = TlsConfig()


class ConsoleTokenConfig(_Section):
    """One bearer token of the console API: who holds it (the actor its changes are audited under) and what
    it may do. Give the token itself, or only its SHA-256 (hex) so the file never holds it in clear."""

    name: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._@-]+$")
    # "read": every list and get; "operator": also confirm, extend, clear, acknowledge, suppress.
    role: Literal["read", "operator"]
    token: SecretStr | None = None
    token_sha256: str | None = Field(default=None, pattern=r"^[0-9a-f]{64}$")

    @model_validator(mode="after")
    def _one_secret(self) -> ConsoleTokenConfig:
        if (self.token is None) == (self.token_sha256 is None):
            raise ValueError(f"token {self.name!r}: set exactly one of token and token_sha256")
        if self.token is not None and len(self.token.get_secret_value()) < 16:
            raise ValueError(f"token {self.name!r}: shorter than 16 characters (guessable)")
        return self


class ConsoleClientConfig(_Section):
    """How ``vigil incidents|breaches|devices|actions`` reach the console's gRPC API.

    The token is not a setting: it comes from the VIGIL_TOKEN environment variable or from token_file,
    never from a value that a command line (``--set``) would show to every user in ``ps``.
    """

    # host:port of console.grpc_listen as this machine reaches it; unset: grpc_listen itself (a wildcard
    # host such as 0.0.0.0 is dialled on loopback).
    address: str | None = None
    # Client side of mutual TLS: ca_file verifies the console, cert_file/key_file are presented to it.
    tls: TlsConfig = TlsConfig()
    # A file holding the bearer token (first line), used when VIGIL_TOKEN is not set; it must not be
    # readable by group or others.
    token_file: Path | None = None
    # Every call gives up after this long (an unreachable console ends the command, it does not hang).
    timeout_s: Annotated[float, Field(gt=0, le=3600)] = 10.0

    @field_validator("address")
    @classmethod
    def _valid_address(cls, value: str | None) -> str | None:
        return None if value is None else check_address(value)

    @model_validator(mode="after")
    def _check_token_file(self) -> ConsoleClientConfig:
        _raise_problems(self, _file_problems(self, ("token_file",)))
        return self


class ConsoleConfig(_Section):
    """The operator's API (console/): ConsoleService over gRPC and the same operations as HTTP/JSON."""

    grpc_listen: str = "127.0.0.1:50052"
    # The HTTP/JSON API and its OpenAPI document (/openapi.json).
    http_listen: str = "127.0.0.1:8480"
    # Server side of mutual TLS for the gRPC port, as for the responder.
    tls: TlsConfig = TlsConfig()
    # Without any token every request is refused (401): the API has no anonymous access.
    tokens: list[ConsoleTokenConfig] = Field(default_factory=list)
    # /metrics, /healthz and /readyz of the console service.
    http: HttpConfig = HttpConfig()
    # Where the operator's commands (vigil incidents, ...) find this API.
    client: ConsoleClientConfig = ConsoleClientConfig()

    @field_validator("grpc_listen", "http_listen")
    @classmethod
    def _valid_listen(cls, value: str) -> str:
        return check_address(value, lowest_port=0)

    @field_validator("tokens")
    @classmethod
    def _unique_names(cls, value: list[ConsoleTokenConfig]) -> list[ConsoleTokenConfig]:
        names = [t.name for t in value]
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise ValueError(f"token names must be unique (the audit names the actor): {', '.join(repeated)}")
        return value


class LogConfig(_Section):
    level: Literal["debug", "info", "warning", "error"] = "info"
    format: Literal["json", "console"] = "json"


class UpConfig(_Section):
    data_dir: Path = Path("var/vigil-up")


class VigilConfig(_Section):
    nats: NatsConfig = NatsConfig()
    redis: RedisConfig = RedisConfig()
    sensor: SensorConfig = SensorConfig()
    master: MasterConfig = MasterConfig()
    responder: ResponderConfig = ResponderConfig()
    console: ConsoleConfig = ConsoleConfig()
    log: LogConfig = LogConfig()
    up: UpConfig = UpConfig()


class ConfigError(Exception):
    """Every problem found in a configuration, reported together."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("invalid configuration:\n" + "\n".join(f"  - {p}" for p in problems))


class _ConfigLoader(yaml.SafeLoader):
    """YAML without aliases: ``*anchor`` references let a few hundred bytes expand into a structure whose
    validation never ends (the "billion laughs"); a configuration has no need for them."""

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()  # type: ignore[no-untyped-call]
            raise yaml.composer.ComposerError(
                None, None, "YAML aliases (*name) are not allowed in a configuration", event.start_mark
            )
        return super().compose_node(parent, index)


# Booleans as YAML 1.2 writes them (true/false) and nothing else: YAML 1.1's on/off/yes/no stay text, so
# `verify_l4_checksums: off` (or --set ...=off) is the setting "off", not False; a boolean field still
# accepts those words, the schema converts them.
_ConfigLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:bool"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_ConfigLoader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)


def parse_yaml(text: str) -> Any:
    """One YAML document, parsed safely (no tags, no aliases); raises ValueError with the cause."""
    try:
        return yaml.load(text, Loader=_ConfigLoader)  # a SafeLoader subclass: no tags, no aliases
    except yaml.YAMLError as exc:
        raise ValueError(f"not valid YAML: {exc}") from None
    except RecursionError:
        raise ValueError("not valid YAML: nested too deeply") from None


def parse_value(raw: str) -> Any:
    """A value from ``--set key=value`` or ``VIGIL_KEY=value``: a YAML scalar or flow collection, or, when
    it is not valid YAML, the text itself (a password such as ``p[4ss`` stays a string); the schema then
    judges it."""
    if raw == "":
        return ""
    try:
        return parse_yaml(raw)
    except ValueError:
        return raw


def set_path(tree: dict[str, Any], path: Sequence[str], value: Any) -> None:
    """``tree[path[0]][path[1]]... = value``, replacing any non-mapping met on the way."""
    node = tree
    for key in path[:-1]:
        child = node.setdefault(key, {})
        if not isinstance(child, dict):
            child = {}
            node[key] = child
        node = child
    node[path[-1]] = value


def set_overrides(items: Sequence[str]) -> dict[str, Any]:
    """``--set master.window_s=10`` (repeatable) -> nested override mapping; ConfigError lists every
    malformed item."""
    tree: dict[str, Any] = {}
    problems = []
    for item in items:
        key, sep, raw = item.partition("=")
        parts = [p.strip() for p in key.split(".")]
        if not sep:
            problems.append(f"--set {item[:80]}: expected key.path=value")
        elif not all(parts):
            problems.append(f"--set {item[:80]}: empty key or key part")
        else:
            set_path(tree, parts, parse_value(raw))
    if problems:
        raise ConfigError(problems)
    return tree


def env_overrides(environ: Mapping[str, str]) -> dict[str, Any]:
    """Turn ``VIGIL_A__B=value`` variables into a nested mapping ``{"a": {"b": value}}``."""
    tree: dict[str, Any] = {}
    for name, raw in environ.items():
        if not name.startswith(ENV_PREFIX) or name in NOT_SETTINGS:
            continue
        path = [part.lower() for part in name[len(ENV_PREFIX) :].split("__") if part]
        if not path:
            continue
        set_path(tree, path, parse_value(raw))
    return tree


def merge(base: dict[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out


def build(
    file_tree: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> VigilConfig:
    """Validate file tree + environment + explicit overrides (in that order of precedence, last wins)."""
    tree = merge({}, file_tree or {})
    tree = merge(tree, env_overrides(environ or {}))
    tree = merge(tree, overrides or {})
    try:
        return VigilConfig.model_validate(tree)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            where = ".".join(str(p) for p in err["loc"]) or "(root)"
            problems.append(f"{where[:200]}: {err['msg']}")
        raise ConfigError(problems) from None


def read_file_tree(path: Path) -> dict[str, Any]:
    """The mapping a configuration file holds. Refused with a ConfigError, never read to the end: anything
    not a regular file (a directory, /dev/zero, a FIFO), more than MAX_CONFIG_BYTES, not UTF-8 text, not
    YAML, or not a mapping at the top."""
    try:
        with open(path, "rb", opener=_open_nonblocking) as fh:
            mode = os.fstat(fh.fileno()).st_mode
            if not stat.S_ISREG(mode):
                raise ConfigError([f"{path}: not a regular file"])
            data = fh.read(MAX_CONFIG_BYTES + 1)
    except OSError as exc:
        raise ConfigError([f"{path}: cannot read: {exc.strerror or exc}"]) from None
    if len(data) > MAX_CONFIG_BYTES:
        raise ConfigError([f"{path}: larger than {MAX_CONFIG_BYTES // 1024} KiB; not a Vigil configuration"])
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError([f"{path}: not UTF-8 text (byte {exc.start})"]) from None
    if "\x00" in text:
        raise ConfigError([f"{path}: not a text file (NUL byte)"])
    try:
        loaded = parse_yaml(text)
    except ValueError as exc:
        raise ConfigError([f"{path}: {exc}"]) from None
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        raise ConfigError([f"{path}: top level must be a mapping"])
    return loaded


def _open_nonblocking(path: str, flags: int) -> int:
    # O_NONBLOCK: opening a FIFO with no writer would otherwise wait for ever before fstat can refuse it.
    return os.open(path, flags | os.O_NONBLOCK)


def load(
    path: Path | None,
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> VigilConfig:
    file_tree = read_file_tree(path) if path is not None else {}
    return build(file_tree, environ if environ is not None else os.environ, overrides)
