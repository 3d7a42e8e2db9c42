"""gRPC credentials for the mutual-TLS link between the master and the responder, built from TlsConfig.

The PEM bytes are read here and handed straight to gRPC; they are never logged or put into exception
messages (errors name the file only), so a key cannot leak through logs or tracebacks.
"""

from __future__ import annotations

from pathlib import Path

import grpc

from vigil.config import TlsConfig


class TlsSetupError(ValueError):
    """A TlsConfig that cannot produce credentials (incomplete or unreadable files)."""


def _read(path: Path | None, what: str) -> bytes:
    if path is None:
        raise TlsSetupError(f"mutual TLS needs {what}")
    try:
        data = path.read_bytes()
    except OSError as exc:
        # strerror only: the OSError's str() is harmless today, but nothing from the file may follow.
        raise TlsSetupError(f"{what} {path}: cannot read: {exc.strerror}") from None
    if b"-----BEGIN" not in data:
        raise TlsSetupError(f"{what} {path}: not a PEM file")
    return data


def _check_active(cfg: TlsConfig) -> None:
    # Config validation normally guarantees this, but model_copy() and hand-built configs bypass it.
    if not cfg.active:
        raise TlsSetupError("TLS is not enabled in this configuration")


def server_credentials(cfg: TlsConfig) -> grpc.ServerCredentials:
    """Server credentials that present cert_file and REQUIRE a client certificate signed by ca_file."""
    _check_active(cfg)
    ca = _read(cfg.ca_file, "ca_file")
    cert = _read(cfg.cert_file, "cert_file")
    key = _read(cfg.key_file, "key_file")
    return grpc.ssl_server_credentials(
        [(key, cert)],
        root_certificates=ca,
        # Mutual TLS: a client without a certificate from our CA never gets to call a method.
        require_client_auth=True,
    )


def channel_credentials(cfg: TlsConfig) -> grpc.ChannelCredentials:
    """Channel credentials that trust only ca_file (not the system roots) and present cert_file."""
    _check_active(cfg)
    ca = _read(cfg.ca_file, "ca_file")
    cert = _read(cfg.cert_file, "cert_file")
    key = _read(cfg.key_file, "key_file")
    return grpc.ssl_channel_credentials(root_certificates=ca, private_key=key, certificate_chain=cert)


def channel_options(cfg: TlsConfig) -> list[tuple[str, str]]:
    """Channel options for a TLS channel: the name override when the dialled address is not in the SANs."""
    if cfg.active and cfg.server_name:
        return [("grpc.ssl_target_name_override", cfg.server_name)]
    return []
