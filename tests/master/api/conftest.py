"""Fixtures shared by the console API's tests and the operator CLI's: the console's real stack (NATS,
Redis, master in confirm mode, responder on dry-run, console) and throwaway certificates for mutual TLS."""

from tests.master.api.test_console_api import stack
from tests.test_tls import pki

__all__ = ["pki", "stack"]
