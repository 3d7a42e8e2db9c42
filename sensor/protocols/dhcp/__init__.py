"""DHCP over UDP -> DhcpRecord / Zeek dhcp.log, one record per exchange across connections."""

from __future__ import annotations

from sensor.protocols.dhcp.session import DhcpSession, DhcpSessionFactory, TransactionTable

# One process-wide table: the lead's pipeline should call FACTORY.table.flush() at shutdown (finish() on every
# session also drains it) and may build its own DhcpSessionFactory per pipeline instead.
FACTORY: DhcpSessionFactory = DhcpSessionFactory()
TRANSPORTS: tuple[str, ...] = ("udp",)
PORTS: tuple[int, ...] = (67, 68)

__all__ = ["FACTORY", "PORTS", "TRANSPORTS", "DhcpSession", "DhcpSessionFactory", "TransactionTable"]
