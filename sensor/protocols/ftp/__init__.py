"""FTP control connections over TCP -> FtpRecord / Zeek ftp.log, with logon outcomes and uploads; the data
connections they announce are named "ftp-data" and their bytes counted for the transfer's row.

The FTP factory needs the registry's table of expected connections: ``FtpSessionFactory(registry.expected)``.
"""

from __future__ import annotations

from sensor.protocols.ftp.session import FtpDataSession, FtpSession, FtpSessionFactory

TRANSPORTS: tuple[str, ...] = ("tcp",)
# 21, and 2811 (GridFTP), as Zeek registers them.
PORTS: tuple[int, ...] = (21, 2811)

__all__ = ["PORTS", "TRANSPORTS", "FtpDataSession", "FtpSession", "FtpSessionFactory"]
