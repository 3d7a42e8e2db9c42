"""Bearer tokens and roles: who is asking, and may they change things.

Tokens are kept as SHA-256 digests only and compared in constant time against every configured digest, so
neither the comparison's duration nor a dump of this object gives a token away. A token never reaches a log
line or an error message: only the name of its holder does.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable
from dataclasses import dataclass

from vigil.config import ConsoleTokenConfig

READ, OPERATOR = "read", "operator"
# Longer "Authorization" values are refused unread.
MAX_HEADER = 4096


@dataclass(frozen=True)
class Principal:
    name: str
    role: str

    @property
    def may_change(self) -> bool:
        return self.role == OPERATOR


class Unauthenticated(Exception):
    """No token, or one no configured holder has (HTTP 401, gRPC UNAUTHENTICATED)."""


class Forbidden(Exception):
    """A known holder asked for what its role does not allow (HTTP 403, gRPC PERMISSION_DENIED)."""


def digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


class Tokens:
    def __init__(self, configured: Iterable[ConsoleTokenConfig]) -> None:
        self._holders: list[tuple[bytes, Principal]] = []
        for item in configured:
            if item.token is not None:
                known = digest(item.token.get_secret_value())
            else:
                known = bytes.fromhex(item.token_sha256 or "")
            self._holders.append((known, Principal(item.name, item.role)))

    def __len__(self) -> int:
        return len(self._holders)

    def authenticate(self, authorization: str | None) -> Principal:
        """The holder of ``Bearer <token>``; raises Unauthenticated for anything else."""
        if not authorization or len(authorization) > MAX_HEADER:
            raise Unauthenticated("a bearer token is required")
        scheme, _, token = authorization.strip().partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise Unauthenticated("a bearer token is required")
        offered = digest(token.strip())
        found: Principal | None = None
        for known, principal in self._holders:
            # Every digest is compared, so the time taken does not tell which one matched.
            if hmac.compare_digest(offered, known):
                found = principal
        if found is None:
            raise Unauthenticated("unknown token")
        return found


def require_change(principal: Principal) -> None:
    if not principal.may_change:
        raise Forbidden(f"{principal.name} holds a {principal.role} token; changes need the operator role")
