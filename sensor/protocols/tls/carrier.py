"""Base of sessions that carry a TLS handshake in datagrams of their own framing (QUIC Initial packets,
DTLS records): a bounded number of datagrams, each read under one guard, into an inner TLS session that
writes the connection's ssl record."""

from __future__ import annotations

from sensor.protocols.base import ConnContext, Emit, ErrorCounter, ParseError
from sensor.protocols.tls.session import TlsSession


class TlsCarrier:
    protocol = ""
    carrier = "t"  # JA4's first letter for this carrier
    max_datagrams = 32

    def __init__(self, ctx: ConnContext, emit: Emit, count_error: ErrorCounter) -> None:
        self._count_error = count_error
        self._tls = TlsSession(ctx, emit, count_error, carrier=self.carrier)
        self._datagrams = 0
        self._done = False

    @property
    def done(self) -> bool:
        return self._done or self._tls.done

    def data(self, is_orig: bool, ts: float, payload: bytes) -> None:
        if self.done:
            return
        self._datagrams += 1
        if self._datagrams > self.max_datagrams:
            self._done = True
            return
        try:
            self.datagram(is_orig, ts, payload)
        except ParseError as exc:
            self._count_error(self.protocol, exc.reason)
        except Exception:  # never let an analyzer bug escape into the flow table
            self._count_error(self.protocol, "internal_error")
            self._done = True

    def datagram(self, is_orig: bool, ts: float, payload: bytes) -> None:
        """Read one datagram into ``self._tls`` (ParseError for malformed input)."""
        raise NotImplementedError

    def gap(self, is_orig: bool, ts: float, length: int) -> None:
        pass  # datagrams: there are no gaps

    def finish(self, ts: float) -> None:
        self._tls.finish(ts)
