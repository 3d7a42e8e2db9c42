"""One configuration tree for every service: a YAML file overlaid with ``VIGIL_`` environment variables.

Environment variables address nested keys with double underscores:
``VIGIL_NATS__URL=nats://10.0.0.1:4222`` sets ``nats.url``. Values are parsed as YAML scalars, so
``VIGIL_RESPONDER__DRY_RUN=true`` is a boolean. The whole tree is validated at once and every error is
reported together, so an operator fixes a config in one round rather than one error per restart.
"""

from __future__ import annotations

import ipaddress
import os
import zoneinfo
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

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


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


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
    stream_max_age_s: float = Field(default=7 * 24 * 3600, gt=0)
    stream_max_bytes: int = Field(default=10 * 1024**3, gt=0)
    # Deduplication window for Nats-Msg-Id (batch id): covers a spool drained after an outage.
    duplicate_window_s: float = Field(default=3600, gt=0)
    connect_timeout_s: float = Field(default=2.0, gt=0)

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


class HttpConfig(_Section):
    """Where a service serves /metrics, /healthz and /readyz. Port 0 picks a free port."""

    host: str = "127.0.0.1"
    port: int = Field(default=0, ge=0, le=65535)


class SensorConfig(_Section):
    sensor_id: str = "sensor-1"
    site: str = "default"
    # "pcap" reads files; "tap" captures live on an interface (AF_PACKET, needs root).
    source: Literal["pcap", "tap"] = "pcap"
    pcap_files: list[Path] = Field(default_factory=list)
    interface: str | None = None
    # Replay pcaps at capture speed (live-like) instead of as fast as possible.
    pcap_realtime: bool = False
    idle_timeout_tcp_s: float = Field(default=300.0, gt=0)
    idle_timeout_udp_s: float = Field(default=60.0, gt=0)
    idle_timeout_other_s: float = Field(default=60.0, gt=0)
    active_timeout_s: float = Field(default=3600.0, gt=0)
    # An unanswered TCP connection attempt (state S0: nothing ever came back from the responder) is
    # emitted after this much event time without packets instead of the full TCP idle timeout, so the
    # master sees a scan's failed attempts within seconds (Zeek's tcp_attempt_delay idea).
    attempt_timeout_s: float = Field(default=30.0, gt=0)
    # How long to linger after FIN/RST before emitting (catches the final ACKs).
    close_linger_s: float = Field(default=1.0, ge=0)
    # Drop IPv4 packets whose header checksum is wrong, as the receiving host (and Zeek without -C)
    # would; turn off for captures taken on a host with checksum offload that left headers unfilled.
    verify_ip_checksums: bool = True
    # TCP/UDP checksums: a host drops a segment whose checksum is wrong, so the sensor must too (or an
    # attacker "inserts" data the target never accepted). Captures taken on a sending host carry unfilled
    # checksums (offload); "auto" verifies unless more than 5 % of the first 1,000 segments fail.
    verify_l4_checksums: Literal["auto", "on", "off"] = "auto"
    # Reassemble IPv4 fragments before analysis (fragmentation is an old way past a sensor); a datagram
    # whose pieces do not all arrive within the timeout is dropped and counted.
    reassemble_fragments: bool = True
    fragment_timeout_s: float = Field(default=30.0, gt=0)
    # UDP ports whose packets are tunnels to open (cloud traffic mirroring sends VXLAN to 4789); the
    # frames inside are analysed instead. An empty list leaves that tunnel as ordinary UDP.
    vxlan_ports: list[int] = Field(default_factory=lambda: [4789])
    geneve_ports: list[int] = Field(default_factory=lambda: [6081])
    batch_max_records: int = Field(default=500, gt=0)
    batch_max_delay_s: float = Field(default=1.0, gt=0)
    spool_dir: Path = Path("var/spool")
    spool_max_bytes: int = Field(default=256 * 1024**2, gt=0)
    heartbeat_interval_s: float = Field(default=10.0, gt=0)
    http: HttpConfig = HttpConfig()


class ProtectedConfig(_Section):
    """Addresses and networks no action may ever touch (CIDR strings)."""

    networks: list[str] = Field(default_factory=list)

    @field_validator("networks")
    @classmethod
    def _valid_networks(cls, value: list[str]) -> list[str]:
        for item in value:
            ipaddress.ip_network(item, strict=False)
        return value


class MasterConfig(_Section):
    consumer: str = "vigil-master"
    # Networks considered internal for "internal destinations"; RFC 1918 + ULA by default.
    internal_networks: list[str] = Field(
        default_factory=lambda: ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "fc00::/7"]
    )
    # Event-time window over which a device's scan features are counted.
    scan_window_s: float = Field(default=60.0, gt=0)
    # Posterior predictive tail probability below which the scan model breaches.
    scan_breach_probability: float = Field(default=1e-4, gt=0, lt=1)
    # Half-life of the model's memory, in event-time seconds: old windows weigh less.
    scan_half_life_s: float = Field(default=7 * 24 * 3600.0, gt=0)
    # Event time the network must have been learned before a device (or an external endpoint) seen for the
    # first time raises "New Device" ("Rare External Endpoint"): everything is new on the first day.
    new_device_grace_s: float = Field(default=3600.0, ge=0)
    # IANA time zone of the monitored site (e.g. "Europe/Berlin"): hour-of-week seasonality follows it.
    timezone: str = "UTC"

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
    block_duration_s: float = Field(default=3600.0, gt=0)
    # What a scanning or attack-tool breach gets: "block_internal" cuts the device off from the internal
    # networks only (its user keeps the internet), "block_all_outgoing" stops everything it originates.
    scan_response: Literal["block_internal", "block_all_outgoing"] = "block_internal"
    max_actions_per_minute: int = Field(default=10, gt=0)
    responder_address: str | None = "127.0.0.1:50051"
    # Client side of the mutual-TLS link to the responder; off (plaintext) when no file is set.
    responder_tls: TlsConfig = TlsConfig()
    # Messages per fetch: with the sensor's 500-record batches, enough to fill a unit of work.
    fetch_batch: int = Field(default=128, gt=0)
    # When a backlog has built up, consecutive batches are processed as one unit of work of up to this many
    # records: each device's state is then loaded, scored and committed once per unit, not once per batch.
    # Measured on the bench mix: 5.6x the records/s of batch-by-batch at 32k, +17 % more at 64k, flat beyond.
    unit_max_records: int = Field(default=65536, gt=0)
    protected: ProtectedConfig = ProtectedConfig()
    http: HttpConfig = HttpConfig()


class ResponderConfig(_Section):
    listen: str = "127.0.0.1:50051"
    backend: Literal["nftables", "dryrun"] = "dryrun"
    # nftables table that holds every Vigil rule; nothing outside it is touched.
    nft_table: str = "vigil"
    # Run nft inside this network namespace (`ip netns exec`), for gateways in labs/containers.
    netns: str | None = None
    reconcile_interval_s: float = Field(default=5.0, gt=0)
    max_action_duration_s: float = Field(default=24 * 3600.0, gt=0)
    protected: ProtectedConfig = ProtectedConfig()
    state_file: Path | None = None
    http: HttpConfig = HttpConfig()
    # Server side of the mutual-TLS link: with it, only clients holding a certificate signed by
    # tls.ca_file may act; without it the port is plaintext and unauthenticated.
    tls: TlsConfig = TlsConfig()


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
    log: LogConfig = LogConfig()
    up: UpConfig = UpConfig()


class ConfigError(Exception):
    """Every problem found in a configuration, reported together."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("invalid configuration:\n" + "\n".join(f"  - {p}" for p in problems))


def _set_path(tree: dict[str, Any], path: list[str], value: Any) -> None:
    node = tree
    for key in path[:-1]:
        child = node.setdefault(key, {})
        if not isinstance(child, dict):
            child = {}
            node[key] = child
        node = child
    node[path[-1]] = value


def env_overrides(environ: Mapping[str, str]) -> dict[str, Any]:
    """Turn ``VIGIL_A__B=value`` variables into a nested mapping ``{"a": {"b": value}}``."""
    tree: dict[str, Any] = {}
    for name, raw in environ.items():
        if not name.startswith(ENV_PREFIX) or name == "VIGIL_CONFIG":
            continue
        path = [part.lower() for part in name[len(ENV_PREFIX) :].split("__") if part]
        if not path:
            continue
        try:
            value = yaml.safe_load(raw) if raw != "" else ""
        except yaml.YAMLError:
            value = raw
        _set_path(tree, path, value)
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
            problems.append(f"{where}: {err['msg']}")
        raise ConfigError(problems) from None


def load(
    path: Path | None,
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> VigilConfig:
    file_tree: dict[str, Any] = {}
    if path is not None:
        try:
            loaded = yaml.safe_load(path.read_text())
        except OSError as exc:
            raise ConfigError([f"{path}: cannot read: {exc.strerror}"]) from None
        except yaml.YAMLError as exc:
            raise ConfigError([f"{path}: not valid YAML: {exc}"]) from None
        if loaded is None:
            loaded = {}
        if not isinstance(loaded, dict):
            raise ConfigError([f"{path}: top level must be a mapping"])
        file_tree = loaded
    return build(file_tree, environ if environ is not None else os.environ, overrides)
