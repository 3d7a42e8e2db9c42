"""The single table of which analyzer runs on which connection (ports and payload heuristics)."""

from __future__ import annotations

import functools

from sensor.protocols import (
    dce_rpc,
    dns,
    dtls,
    ftp,
    http,
    kerberos,
    ldap,
    openvpn,
    quic,
    rdp,
    smb,
    smtp,
    tls,
    websocket,
    wireguard,
)  # fmt: skip
from sensor.protocols.base import SessionFactory
from sensor.protocols.dhcp import DhcpSessionFactory, TransactionTable
from sensor.registry import Registry


def default_registry() -> Registry:
    """Every analyzer Vigil ships, in a fresh registry (one per pipeline: DHCP keeps per-pipeline state)."""
    registry = Registry()
    registry.register("dns", dns.TRANSPORTS, dns.PORTS, dns.FACTORY)
    # DHCP exchanges span several "connections" (broadcast then unicast): one table pairs them.
    registry.register("dhcp", ("udp",), (67, 68), DhcpSessionFactory(TransactionTable()), server_ports=(67,))
    registry.register("http", http.TRANSPORTS, http.PORTS, http_factory(registry), heuristic=http.heuristic)
    registry.register("ssl", tls.TRANSPORTS, tls.PORTS, tls.FACTORY, heuristic=tls.heuristic)
    # UDP/443 carries QUIC and DTLS (VPN clients) alike: both are told apart by their first flight,
    # on any port, so a connection is named after what it is rather than where it goes.
    registry.register("quic", quic.TRANSPORTS, (), quic.FACTORY, quic.heuristic, quic.SERVER_PORTS)
    registry.register("dtls", dtls.TRANSPORTS, (), dtls.FACTORY, dtls.heuristic, dtls.SERVER_PORTS)
    # VPNs on any port: the service is named only once the server's answer confirms the protocol.
    registry.register("openvpn", openvpn.TRANSPORTS, openvpn.PORTS, openvpn.FACTORY, openvpn.heuristic)
    wg = wireguard
    registry.register("wireguard", wg.TRANSPORTS, wg.PORTS, wg.FACTORY, wg.heuristic)
    registry.register("rdp", rdp.TRANSPORTS, rdp.PORTS, rdp.FACTORY)
    registry.register("smb", smb.TRANSPORTS, smb.PORTS, smb.FACTORY)
    registry.register("ldap", ldap.TRANSPORTS, ldap.PORTS, ldap.FACTORY)
    registry.register("krb", kerberos.TRANSPORTS, kerberos.PORTS, kerberos.FACTORY)
    # RPC services listen on dynamic ports the endpoint mapper (135) hands out; Zeek follows the mapper's
    # answers, we recognise the bind that opens every such connection (or the server's answers to it).
    registry.register(
        "dce_rpc", dce_rpc.TRANSPORTS, dce_rpc.PORTS, dce_rpc.FACTORY, heuristic=dce_rpc.heuristic
    )
    # SMTP on any port: the server's greeting or the client's EHLO says what it is.
    registry.register("smtp", smtp.TRANSPORTS, smtp.PORTS, smtp.FACTORY, heuristic=smtp.heuristic)
    # FTP announces its data connections (PASV, PORT) in the registry's table of expected connections;
    # those get the "ftp-data" analyzer whatever their port.
    registry.register("ftp", ftp.TRANSPORTS, ftp.PORTS, ftp.FtpSessionFactory(registry.expected))
    return registry


def http_factory(registry: Registry) -> SessionFactory:
    """HTTP sessions with their upgrade table (the protocols a 101 hands a connection to, by the token
    of the server's Upgrade header) and the SQL-injection tag on request targets (http.log's
    HTTP::URI_SQLI, on by default: it is evidence the master can weigh, and costs a bounded scan of the
    first 2 KiB of each target)."""
    # The frames' payload goes to the analyzer whose payload heuristic in ``registry`` recognises it
    # (TLS inside wstunnel), as Zeek finds it by its payload. HTTP is not tried there: an upgrade inside
    # an upgrade would nest sessions without bound.
    inside = functools.partial(registry.match_payload, "tcp", skip=frozenset({"http"}))

    def find(payload: bytes, is_orig: bool) -> tuple[str, SessionFactory] | None:
        analyzer = inside(payload, is_orig)
        return None if analyzer is None else (analyzer.name, analyzer.factory)

    upgrades: dict[str, http.UpgradeFactory] = {"websocket": websocket.upgrade_factory(find)}
    return http.session_factory(upgrades, tag_sqli=True)
