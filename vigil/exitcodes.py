"""The exit status of every `vigil` command: one code per kind of failure (the README's table).

Scripts and supervisors (systemd, Kubernetes, `vigil up` itself) act on these, so each kind keeps its
number: what the operator must fix differs between a bad flag, a damaged capture and a dead server.
"""

from __future__ import annotations

from enum import IntEnum


class Exit(IntEnum):
    # Done as asked (a service stopped by SIGTERM after draining counts as done, and so does output whose
    # reader closed the pipe early).
    OK = 0
    # The operator's environment: a file or directory missing, of the wrong kind, unreadable or
    # unwritable; a data directory in use by another `vigil up`; root needed and not held; a network
    # interface that does not exist; an address to listen on already in use; a full or read-only disk.
    ENVIRONMENT = 1
    # The command line or the configuration is invalid; every problem is listed at once.
    USAGE = 2
    # The input is damaged or unusable: a capture truncated or corrupt (what was read before the damage
    # is still processed), or holding no packet Vigil can decode (an unknown link type); a bad truth file.
    INPUT = 3
    # The sensor stopped with telemetry it could not deliver; the batches stay in its spool for the next run.
    UNDELIVERED = 4
    # Something Vigil depends on failed and was not recovered: nats-server or Valkey could not be
    # (re)started, a service under `vigil up` died, the bus refused the credentials.
    DEPENDENCY = 5
    # `vigil eval`: a scenario was missed or a false positive raised (the table says which).
    EVAL_BELOW_TARGET = 6
    # The console refused the token: unknown to it, or a read-only token asking for a change.
    REFUSED = 7
    # The console has no such incident, breach, device or action.
    NOT_FOUND = 8
    # The change does not apply to the thing's current state (an action already confirmed, or one with
    # nothing left to revoke): look again before retrying.
    CONFLICT = 9
    # A bug in Vigil: one line on stderr; the traceback is logged at debug level.
    INTERNAL = 70
    # Interrupted from the keyboard (SIGINT).
    INTERRUPTED = 130

    @property
    def meaning(self) -> str:
        return _MEANINGS[self]


_MEANINGS = {
    Exit.OK: "done (also when the reader of the output closed it early, as `| head` does)",
    Exit.ENVIRONMENT: "a file, directory, disk, interface, permission, lock or address in use to fix",
    Exit.USAGE: "invalid command line or configuration",
    Exit.INPUT: "input damaged or not decodable",
    Exit.UNDELIVERED: "telemetry left undelivered in the sensor's spool",
    Exit.DEPENDENCY: "a server or service Vigil depends on failed",
    Exit.EVAL_BELOW_TARGET: "evaluation below target",
    Exit.REFUSED: "the console refused the token",
    Exit.NOT_FOUND: "no such incident, breach, device or action",
    Exit.CONFLICT: "the change does not apply to the current state",
    Exit.INTERNAL: "internal error (a bug)",
    Exit.INTERRUPTED: "interrupted",
}
