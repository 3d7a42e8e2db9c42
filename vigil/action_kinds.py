"""The one spelling of an action kind outside the protobuf enum: ``ACTION_KIND_BLOCK_PORT`` is
``block_port`` in metrics labels, logs, the command line and JSON output alike."""

from __future__ import annotations

from vigil.responder.v1 import responder_pb2 as pb

ACTION_KIND_NAMES: dict[int, str] = {
    value: name.removeprefix("ACTION_KIND_").lower()
    for name, value in pb.ActionKind.items()
    if value != pb.ACTION_KIND_UNSPECIFIED
}


def action_kind_name(kind: int) -> str:
    """``block_port`` for ``ACTION_KIND_BLOCK_PORT``; "unspecified" for 0 or a kind this build lacks."""
    return ACTION_KIND_NAMES.get(kind, "unspecified")
