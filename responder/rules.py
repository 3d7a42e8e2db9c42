"""One description of the enforcement layout, from which every backend derives its work.

An action compiles to *elements*: keys in named sets. Each set has a role (``block``: drop matching
packets; ``allow``/``pol``: pattern of life) and a shape (which of source, destination, protocol and
destination port the key holds). IPv4 and IPv6 sets are generated from the same shapes, so there is
one code path for both families and the nftables rules are derived, not written twice.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Literal, NamedTuple

from responder.actions import TCP, UDP, ActiveAction, ScopeSpec
from responder.protected import IPAddress
from vigil.responder.v1 import responder_pb2 as pb

Field = Literal["src", "dst", "proto", "port"]
Role = Literal["block", "allow", "pol"]
Family = Literal[4, 6]
KeyValue = str | int

FAMILIES: tuple[Family, ...] = (4, 6)

# Most specific first; any combination a scope can express maps to exactly one shape.
BLOCK_SHAPES: tuple[tuple[Field, ...], ...] = (
    ("src", "dst", "proto", "port"),
    ("src", "dst", "proto"),
    ("src", "dst"),
    ("src", "proto", "port"),
    ("src", "proto"),
    ("src",),
    ("dst",),
)
ALLOW_SHAPES: tuple[tuple[Field, ...], ...] = (
    ("src", "dst", "proto", "port"),
    ("src", "dst", "proto"),
    ("src", "dst"),
    ("src", "proto", "port"),
    ("src", "proto"),
)
# A port without a protocol means "this port on either transport that has ports".
_PORT_PROTOCOLS = (TCP, UDP)


@dataclass(frozen=True, slots=True)
class SetSpec:
    role: Role
    fields: tuple[Field, ...]
    family: Family

    @property
    def name(self) -> str:
        return f"{self.role}_{'_'.join(self.fields)}_v{self.family}"


class Element(NamedTuple):
    """One key in one set: ``set_name`` and the key's values (addresses as text, numbers as int)."""

    set_name: str
    key: tuple[KeyValue, ...]


def set_specs() -> tuple[SetSpec, ...]:
    specs: list[SetSpec] = []
    for family in FAMILIES:
        specs += [SetSpec("block", shape, family) for shape in BLOCK_SHAPES]
        specs.append(SetSpec("pol", ("src",), family))
        specs += [SetSpec("allow", shape, family) for shape in ALLOW_SHAPES]
    return tuple(specs)


SPECS_BY_NAME = {spec.name: spec for spec in set_specs()}


def _family(ip: IPAddress) -> Family:
    return 4 if ip.version == 4 else 6


def _scope_elements(role: Role, target: IPAddress, scope: ScopeSpec) -> Iterator[Element]:
    family = _family(target)
    protocols: tuple[int | None, ...] = (
        _PORT_PROTOCOLS if scope.port and scope.protocol is None else (scope.protocol,)
    )
    for proto in protocols:
        fields: list[Field] = ["src"]
        key: list[KeyValue] = [str(target)]
        if scope.peer is not None:
            fields.append("dst")
            key.append(str(scope.peer))
        if proto is not None:
            fields.append("proto")
            key.append(proto)
            if scope.port:
                fields.append("port")
                key.append(scope.port)
        yield Element(SetSpec(role, tuple(fields), family).name, tuple(key))


def action_elements(action: ActiveAction) -> Iterator[Element]:
    """The elements that enforce one action."""
    family = _family(action.target)
    target = str(action.target)
    kind = action.kind
    if kind in (pb.ACTION_KIND_BLOCK_CONNECTION, pb.ACTION_KIND_BLOCK_PORT):
        for scope in action.scopes:
            yield from _scope_elements("block", action.target, scope)
    if kind in (pb.ACTION_KIND_BLOCK_ALL_OUTGOING, pb.ACTION_KIND_QUARANTINE):
        yield Element(SetSpec("block", ("src",), family).name, (target,))
    if kind in (pb.ACTION_KIND_BLOCK_ALL_INCOMING, pb.ACTION_KIND_QUARANTINE):
        yield Element(SetSpec("block", ("dst",), family).name, (target,))
    if kind == pb.ACTION_KIND_ENFORCE_PATTERN_OF_LIFE:
        yield Element(SetSpec("pol", ("src",), family).name, (target,))
        for scope in action.scopes:
            yield from _scope_elements("allow", action.target, scope)


def compile_actions(actions: Iterable[ActiveAction]) -> dict[Element, float]:
    """Every element the actions need, each with the latest expiry (unix seconds) among its actions."""
    out: dict[Element, float] = {}
    for action in actions:
        for element in action_elements(action):
            out[element] = max(out.get(element, 0.0), action.expire_at)
    return out
